"""Do the lab's warnings about wrong priors hold? Music against toy mixes, and likelihoods against held-out clips.

    python bench/wrong_priors.py --root /work/stemsbench     # a bench/stems.py render (both soundfonts)

Two checks, on clips nothing was tuned on (the stems benchmark's valid and test splits, toy mixes of seed 301):

- the toy-priors note (:func:`sepmodels.heldout.toy_priors_note`): of the music clips (1 s every 3 s and
  10 s every 10 s of each mixture, both soundfonts), how many are flagged as unlike every toy mix, and of 64
  fresh toy mixes of the same lengths, how many are flagged wrongly; with the unsteadiness figures behind it;
  once against the on-key toy (the wave and exact priors) and once against the toy variants the harmonic
  priors were fitted on (their moving notes change far more than steady ones: keys ``1s_harmonic``, ...);
- the likelihood's reading (:mod:`sepmodels.heldout`): each stem of the test split's first track, 1 s from
  2 s on, under the shipped toy flows: its mean nats per sample, its gain over a Gaussian of its loudness, and
  whether that falls outside every prior's held-out range.

Writes docs/bench/wrong_priors.json. A minute or two on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels import heldout, mixing  # noqa: E402
from sepmodels.data import toy  # noqa: E402
from sepmodels.data.audio import load_audio  # noqa: E402
from sepmodels.data.stems import STEMS  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from sepmodels.priors import load_priors  # noqa: E402

FONTS = ("fluidr3_gm", "timgm6mb")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="a bench/stems.py render (FONT/SPLIT/track_*)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "wrong_priors.json")
    args = parser.parse_args()
    sr = toy.SAMPLE_RATE
    report: dict[str, object] = {"toy_priors_note": {}, "likelihood": {}}
    harmonic = heldout.toy_variants(load_priors("harmonic"))
    for label, variants in (("", ("keys",)), ("_harmonic", harmonic)):
        print(f"toy variants the priors know: {', '.join(variants)}")
        for seconds, every in ((1, 3), (10, 10)):
            threshold = 1.5 * heldout.toy_mix_unsteadiness(seconds * sr, variants=variants)
            row: dict[str, object] = {"threshold": threshold, "variants": list(variants)}
            for split in ("valid", "test"):
                values = []
                for font in FONTS:
                    for path in sorted((args.root / font / split).glob("track_*/mixture.wav")):
                        audio = torch.as_tensor(load_audio(path, sr).samples)
                        for start in range(1, int(audio.numel() / sr) - seconds + 1, every):
                            clip = audio[start * sr : (start + seconds) * sr]
                            values.append(heldout.unsteadiness(clip, sr, detrend=heldout.variants_move(variants)))
                if not values:
                    raise SystemExit(
                        f"no mixtures under {args.root}/<font>/{split}: run bench/stems.py --root first"
                    )
                v = torch.tensor(values)
                row[f"music_{split}"] = {"clips": len(values), "flagged": int((v > threshold).sum()),
                                         "least": float(v.min()), "median": float(v.median())}  # fmt: skip
            t = torch.tensor([heldout.unsteadiness(mixing.mix(m), sr, detrend=heldout.variants_move(variants))
                              for variant in variants
                              for m in toy.toy_test_set(64, seconds * sr, seed=301, options=variant)])  # fmt: skip
            row["toy_mixes"] = {"clips": len(t), "flagged": int((t > threshold).sum()), "most": float(t.max())}
            report["toy_priors_note"][f"{seconds}s{label}"] = row
            mv, mt, tm = row["music_valid"], row["music_test"], row["toy_mixes"]
            print(f"{seconds:>2} s clips: threshold {threshold:.3f}; music valid {mv['flagged']}/{mv['clips']} "
                  f"flagged (least {mv['least']:.3f}), test {mt['flagged']}/{mt['clips']} (least "
                  f"{mt['least']:.3f}); fresh toy mixes {tm['flagged']}/{tm['clips']} flagged (most "
                  f"{tm['most']:.3f})")  # fmt: skip
    flows = load_priors(None)
    sigma = flows.default_sigma
    ranges = heldout.heldout_ranges(flows, sigma)
    report["likelihood"]["heldout_ranges"] = {n: [r.low, r.high] for n, r in ranges.items()}
    track = sorted((args.root / FONTS[0] / "test").glob("track_*"))[0]
    for stem in STEMS:
        audio = torch.as_tensor(load_audio(track / f"{stem}.wav", sr).samples)[2 * sr : 3 * sr]
        with torch.no_grad():
            m = flows.cross_log_prob(audio[None], sigma)[0]
        gains = heldout.gain(m, audio[None].expand(len(flows), -1), sigma)
        scores = {n: float(v) for n, v in zip(flows.names, gains, strict=True)}
        report["likelihood"][stem] = {"nats_per_sample": dict(zip(flows.names, m.mean(1).tolist(), strict=True)),
                                      "gain": scores, "outside": heldout.outside(scores, ranges),
                                      "verdict": heldout.verdict(scores, ranges)}  # fmt: skip
        print(
            f"{stem:<7} "
            + ", ".join(f"{n} {v:.2f}" for n, v in scores.items())
            + f". {heldout.verdict(scores, ranges)}"
        )
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
