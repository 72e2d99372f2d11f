"""Does each stem's NMF dictionary explain its own stem best? The classical baseline's cross-likelihood.

    python bench/stems_cross.py --root /work/stemsbench     # a bench/stems.py render (both soundfonts)

For every clip of the test split (both soundfonts: the timbres the dictionaries learned and timbres never
heard), every true stem is fitted by every stem's shipped dictionary alone
(:meth:`sepmodels.nmf.StemDictionaries.cross_fit`: the KL divergence of its magnitude from the best fit, per
unit of magnitude; lower is better). Prints and writes to docs/bench/stems_cross.json the mean matrix and, per
stem, how often its own dictionary explains it best: the music analogue of the toy priors' "own prior ranks
first". A stem another dictionary explains better is one the baseline hands to that stem. Under a minute.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels.data.stems import STEMS, StemsBenchmark, benchmark_clips  # noqa: E402
from sepmodels.evaluation import silent_stems  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from sepmodels.nmf import StemDictionaries  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a bench/stems.py render (CONDITION/test/...)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "stems_cross.json")
    args = parser.parse_args()
    dicts, bench = StemDictionaries.load(), StemsBenchmark()
    report: dict[str, object] = {"unit": "KL divergence per unit of magnitude (lower: better explained)"}
    for condition in bench.conditions():
        clips = benchmark_clips(args.root / condition, "test", bench)
        mats = []
        for _name, stems in clips:
            mixture = stems.sum(0)
            silent = silent_stems(stems, mixture)
            mats.append(dicts.cross_fit(stems, silent))
        m = torch.stack(mats)  # [clips, true stem, dictionary]
        sounding = torch.isfinite(m[:, :, 0])
        own_first = (m.nan_to_num(float("inf")).argmin(-1) == torch.arange(len(STEMS))) & sounding
        rate = {s: float(own_first[:, j].sum() / sounding[:, j].sum().clamp_min(1)) for j, s in enumerate(STEMS)}
        best_other = {}
        mean = m.nanmean(0)
        for j, s in enumerate(STEMS):
            order = [STEMS[k] for k in mean[j].argsort().tolist()]
            best_other[s] = order[0] if order[0] != s else order[1]
        table = {s: dict(zip(STEMS, mean[j].tolist(), strict=True)) for j, s in enumerate(STEMS)}
        report[condition] = {"clips": len(clips), "own_first": rate, "mean": table,
                             "closest_other_dictionary": best_other}  # fmt: skip
        print(f"{condition} ({len(clips)} clips): own dictionary explains best: "
              + ", ".join(f"{s} {100 * r:.0f} %" for s, r in rate.items()))  # fmt: skip
        print("  mean (rows: true stem; columns: dictionary " + " ".join(STEMS) + ")")
        for j, s in enumerate(STEMS):
            print(f"  {s:<7}" + " ".join(f"{float(v):7.3f}" for v in mean[j]))
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
