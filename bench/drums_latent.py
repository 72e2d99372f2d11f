"""How the shipped drum CWAE's codes spread, per class: what the pad's axes carry.

    python bench/drums_latent.py            # the shipped CWAE (sepmodels/checkpoints/drums_cwae.pt)

From the latent map stored with the model (each class's training codes: mean, principal directions and their
variances), prints and writes to docs/bench/drums_latent.json per class: the share of the class's variance
along principal components 1, 2 and 3 (the pad's x, y and the fine slider), the largest coordinate and the
norm of the class's mean code and the total variance, beside what the MMD's N(0, I) target would give (zero,
and the code size). Takes a second; needs no data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels.drums.synth import load_synth  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "drums_latent.json")
    args = parser.parse_args()
    synth = load_synth()
    m = synth.latent_map
    size = int(m.mean.shape[1])
    classes = {}
    for c, name in enumerate(synth.classes):
        share = 100 * m.explained(c)
        classes[name] = {
            "pc_share_percent": [round(float(v), 2) for v in share[:3]],
            "mean_largest_coordinate": round(float(m.mean[c].abs().max()), 3),
            "mean_norm": round(float(m.mean[c].norm()), 3),
            "total_variance": round(float(m.variance[c].sum()), 2),
        }
        row = classes[name]
        print(f"{name:<12} PC 1-3: {share[0]:5.1f} {share[1]:5.1f} {share[2]:5.1f} %   largest mean coordinate "
              f"{row['mean_largest_coordinate']:.2f} (norm {row['mean_norm']:.2f})   total variance "
              f"{row['total_variance']:.1f}")  # fmt: skip
    report = {"code_size": size, "target": f"N(0, I): mean 0, total variance {size}", "classes": classes}
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"code size {size}; wrote {args.out}")


if __name__ == "__main__":
    main()
