"""How good is a prior? One Tweedie denoising step per noise level, beside the exact toy prior's.

    python bench/denoise.py                          # the shipped score and flow priors
    python bench/denoise.py --priors A.pt exact      # any checkpoints, or the exact prior alone

Each prior replaces a clean toy test clip plus ``sigma * eps`` by its posterior mean (``x + sigma^2 * score``);
the SI-SDR of that against the clean clip, per source and noise level, is printed beside the noisy input's
and the exact toy prior's (the best any prior can do), and written to docs/bench/denoise.json. "+another" is
the mean SI-SDR when another source's clip is added to the input as well (scored against the prior's own
clip): whether the prior leaves a foreign source alone, which separation needs and solo denoising cannot show.
It is ``sepmodels study denoise`` (:func:`sepmodels.studies.denoise_study`) for several priors at once;
``--seeds 0 1 2`` repeats it on three test sets and reports each figure's spread over them.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sepmodels.checkpoint import default_priors_path
from sepmodels.data import toy
from sepmodels.fileio import atomic_path
from sepmodels.priors import load_priors
from sepmodels.studies import DENOISE_SIGMAS, denoise_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shipped = default_priors_path().parent
    default = [str(shipped / "toy_score.pt"), str(shipped / "toy_default.pt")]
    parser.add_argument("--priors", nargs="+", default=default,
                        help="checkpoints, or 'exact' (default: the shipped score and flow priors)")  # fmt: skip
    parser.add_argument("--n", type=int, default=8, help="clips per source (default: 8)")
    parser.add_argument("--seconds", type=float, default=1.0, help="clip length (default: 1)")
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(DENOISE_SIGMAS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="test-set seeds, --n clips per source each; the figures are means over them, with "
                             "their spread (default: 0)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("docs/bench/denoise.json"))
    args = parser.parse_args()
    length = int(args.seconds * toy.SAMPLE_RATE)
    rows, exact_done = [], False
    for spec in args.priors:
        priors = load_priors(spec)
        started = time.perf_counter()
        runs = [denoise_study(priors, n=args.n, length=length, sigmas=tuple(args.sigmas), seed=seed,
                              reference=not exact_done) for seed in args.seeds]  # fmt: skip
        seconds = time.perf_counter() - started
        r = runs[0]
        named = [(priors.kind, spec, [x.denoised for x in runs], [x.interfered for x in runs])]
        if r.has_exact:
            named.append(("exact", "exact", [x.exact for x in runs], [x.exact_interfered for x in runs]))
            exact_done = True
        elif priors.kind == "exact":
            exact_done = True
        print(f"{spec}: {seconds:.0f} s (with the exact reference)" if r.has_exact else f"{spec}: {seconds:.0f} s")
        print(f"{'kind':<6} {'sigma':>6} {'noisy':>7} " + " ".join(f"{s:>9}" for s in r.sources)
              + "     mean  (spread over seeds)  +another")  # fmt: skip
        for kind, name, values, interfered in named:
            for i, sigma in enumerate(r.sigmas):
                per = torch.stack([v[i].mean(dim=-1) for v in values]).mean(0)  # [sources], mean over seeds
                by_seed = torch.stack([v[i].mean() for v in values])  # [seeds]
                spread = float(by_seed.std()) if len(values) > 1 else None
                noisy = float(torch.stack([x.noisy[i].mean() for x in runs]).mean())
                other = float(torch.stack([x[i].nanmean() for x in interfered]).mean())  # own clip + another's
                print(f"{kind:<6} {sigma:>6g} {noisy:>7.1f} " + " ".join(f"{float(v):>9.1f}" for v in per)
                      + f" {float(per.mean()):>8.1f} {'' if spread is None else f'(± {spread:.1f})':>18}"
                      + f" {other:>9.1f}")  # fmt: skip
                rows.append({"priors": name, "kind": kind, "sigma": sigma, "noisy_si_sdr": noisy,
                             "denoised_si_sdr": float(per.mean()), "with_another_source_si_sdr": other,
                             "per_source": dict(zip(r.sources, per.tolist(), strict=True)),
                             "per_seed": dict(zip(args.seeds, by_seed.tolist(), strict=True)),
                             "seed_spread": spread})  # fmt: skip
    with atomic_path(args.out) as tmp:
        meta = {
            "clips_per_source": args.n,
            "seconds": args.seconds,
            "seeds": args.seeds,
            "unit": "SI-SDR in dB, mean over clips",
        }
        tmp.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
