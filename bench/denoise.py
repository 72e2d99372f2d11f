"""How good is a prior? One Tweedie denoising step per noise level, beside the exact toy prior's.

    python bench/denoise.py                          # the shipped score and flow priors
    python bench/denoise.py --priors A.pt exact      # any checkpoints, or the exact prior alone

Each prior replaces a clean toy test clip plus ``sigma * eps`` by its posterior mean (``x + sigma^2 * score``);
the SI-SDR of that against the clean clip, per source and noise level, is printed beside the noisy input's
and the exact toy prior's (the best any prior can do), and written to docs/bench/denoise.json. "+another" is
the mean SI-SDR when another source's clip is added to the input as well (scored against the prior's own
clip): whether the prior leaves a foreign source alone, which separation needs and solo denoising cannot show.
It is ``sepmodels study denoise`` (:func:`sepmodels.studies.denoise_study`) for several priors at once.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

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
    parser.add_argument("--out", type=Path, default=Path("docs/bench/denoise.json"))
    args = parser.parse_args()
    length = int(args.seconds * toy.SAMPLE_RATE)
    rows, exact_done = [], False
    for spec in args.priors:
        priors = load_priors(spec)
        started = time.perf_counter()
        r = denoise_study(priors, n=args.n, length=length, sigmas=tuple(args.sigmas), reference=not exact_done)
        seconds = time.perf_counter() - started
        named = [(priors.kind, spec, r.denoised, r.interfered)]
        if r.has_exact:
            named.append(("exact", "exact", r.exact, r.exact_interfered))
            exact_done = True
        elif priors.kind == "exact":
            exact_done = True
        print(f"{spec}: {seconds:.0f} s (with the exact reference)" if r.has_exact else f"{spec}: {seconds:.0f} s")
        print(f"{'kind':<6} {'sigma':>6} {'noisy':>7} " + " ".join(f"{s:>9}" for s in r.sources)
              + "     mean  +another")  # fmt: skip
        for kind, name, values, interfered in named:
            for i, sigma in enumerate(r.sigmas):
                per = values[i].mean(dim=-1)
                noisy = float(r.noisy[i].mean())
                other = float(interfered[i].nanmean())  # own clip + another source's, against its own clip
                print(f"{kind:<6} {sigma:>6g} {noisy:>7.1f} " + " ".join(f"{float(v):>9.1f}" for v in per)
                      + f" {float(per.mean()):>8.1f} {other:>9.1f}")  # fmt: skip
                rows.append({"priors": name, "kind": kind, "sigma": sigma, "noisy_si_sdr": noisy,
                             "denoised_si_sdr": float(per.mean()), "with_another_source_si_sdr": other,
                             "per_source": dict(zip(r.sources, per.tolist(), strict=True))})  # fmt: skip
    with atomic_path(args.out) as tmp:
        meta = {
            "clips_per_source": args.n,
            "seconds": args.seconds,
            "seed": 0,
            "unit": "SI-SDR in dB, mean over clips",
        }
        tmp.write_text(json.dumps({**meta, "rows": rows}, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
