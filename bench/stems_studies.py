"""The priors app's material for the stems flow priors: their held-out ranges and their studies.

    python bench/stems_studies.py                      # the benchmark's render (bench/stems.py), shipped files

Two things, both for ``sepmodels/checkpoints/stems_flow.pt`` (the stems priors with a likelihood; rerun this
after ``bench/stems_priors.py`` ships new ones):

1. The range of the gain over a Gaussian (:mod:`sepmodels.heldout`) that each stem's prior gives 32 sounding
   crops of 0.25 s of its own stem in the benchmark's *validation* split, at the priors' own noise level, written
   into the checkpoint's meta (``heldout``): the reference the priors app's "Your clip" and ``likelihood`` read a
   clip's figure against, so a clip unlike every stem is said to be so.
2. ``sepmodels study cross|probes|samples|denoise|noise`` on the test split's downmixed clips, written to
   ``sepmodels/checkpoints/studies_stems/`` (about 2 MB), which the priors app's music tab shows. The noise
   study fine-tunes a flow of the priors' size per noise level on the training split: about 15 of the run's
   17 minutes on 2 cores (``--no-noise`` leaves it out).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels import heldout  # noqa: E402
from sepmodels.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from sepmodels.data.stems import BENCHMARK_ROOT, STEMS, solo_audio  # noqa: E402
from sepmodels.priors import load_priors  # noqa: E402

STUDIES = ("cross", "probes", "samples", "denoise", "noise")


def write_ranges(path: Path, root: Path, clips: int, seconds: float) -> dict:
    """Measure the held-out ranges on ``root/valid`` and write them into the checkpoint at ``path``."""
    priors = load_priors(path)
    solo = solo_audio(root, priors.sample_rate, split="valid")
    length = priors.valid_length(int(seconds * priors.sample_rate))
    x = heldout.sounding_crops(solo, tuple(STEMS), clips, length, seed=heldout.HELDOUT_SEED)
    ranges = heldout.measure_ranges(priors, x, priors.default_sigma)
    ckpt = load_checkpoint(path)
    where = f"{clips} sounding crops of {length} samples of each stem, the stems benchmark's valid split"
    ckpt.setdefault("meta", {})["heldout"] = heldout.ranges_meta(ranges, where)
    save_checkpoint(path, ckpt)
    return ranges


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=BENCHMARK_ROOT / "fluidr3_gm",
                        help="the training soundfont's render (bench/stems.py; default: %(default)s)")  # fmt: skip
    parser.add_argument("--priors", type=Path, default=Path("sepmodels") / "checkpoints" / "stems_flow.pt",
                        help="relative paths are the repository's (default: %(default)s)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("sepmodels") / "checkpoints" / "studies_stems")
    parser.add_argument("--clips", type=int, default=heldout.CLIPS, help="held-out crops per stem")
    parser.add_argument("--no-noise", action="store_true", help="leave out the noise study (15 minutes)")
    args = parser.parse_args()
    for split in ("valid", "test"):
        if not (args.root / split).is_dir():
            parser.error(f"{args.root} has no {split} split: render it with python bench/stems.py")
    args.root = args.root.resolve()
    ranges = write_ranges(ROOT / args.priors, args.root, args.clips, heldout.SECONDS)
    for name, r in ranges.items():
        print(f"held-out gain of {name} under its own prior: {r.describe()} nats/sample ({r.clips} crops)")
    for study in STUDIES[:-1] if args.no_noise else STUDIES:
        command = [sys.executable, "-m", "sepmodels", "study", study, "--priors", str(args.priors),
                   "--data", "musdb", "--root", str(args.root), "--mono", "mean", "--out", str(args.out),
                   "--quiet"]  # fmt: skip
        subprocess.run(command, check=True, cwd=ROOT)  # it says where it wrote; paths recorded as given


if __name__ == "__main__":
    main()
