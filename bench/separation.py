"""Separation quality and speed of the samplers on fresh toy mixes, with the shipped (or given) priors.

    python bench/separation.py                                   # annealed, constrained, vae: 16 mixes of 1 s
    python bench/separation.py --n 4 --seconds 0.25 --steps 20   # a quick look
    python bench/separation.py --methods vae                     # the VAE posterior alone (one pass per mix)

Prints mean SI-SDR per source, the mix's own SI-SDR (the floor), steps per second (mixes per second for the
VAE), and writes docs/bench/separation.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sepmodels.checkpoint import default_sampler_priors_path
from sepmodels.fileio import atomic_path
from sepmodels.inference.langevin import METHODS, LangevinConfig
from sepmodels.inference.posterior import Demixer, default_posterior_path
from sepmodels.priors import PriorSet
from sepmodels.studies import toy_separation, toy_vae_separation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--priors", type=Path)
    parser.add_argument(
        "--methods", nargs="+", choices=[*METHODS, "vae"], default=["annealed", "constrained", "vae"]
    )
    parser.add_argument(
        "--posterior", type=Path, help="VAE posterior for --methods vae (default: the shipped one)"
    )
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=LangevinConfig.steps, help="steps per level")
    parser.add_argument("--levels", type=int, default=LangevinConfig.levels)
    parser.add_argument("--delta", type=float, default=LangevinConfig.delta)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("docs/bench/separation.json"))
    args = parser.parse_args()
    priors = PriorSet.load(args.priors or default_sampler_priors_path())
    length = priors.model.valid_length(int(args.seconds * priors.sample_rate))
    rows = []
    for method in args.methods:
        start = time.perf_counter()
        if method == "vae":
            demixer = Demixer.load(args.posterior or default_posterior_path())
            cfg = None
            result = toy_vae_separation(demixer, args.n, length, seed=args.seed)
        else:
            cfg = LangevinConfig(method=method, steps=args.steps, levels=args.levels, delta=args.delta)
            result = toy_separation(priors, cfg, args.n, length, seed=args.seed, progress=True)
        seconds = time.perf_counter() - start
        total = 1 if cfg is None else cfg.total_steps
        sdr, floor = result.separated, result.mix
        rows.append(
            {
                "method": method,
                "steps": 0 if cfg is None else cfg.total_steps,
                "delta": None if cfg is None else cfg.delta,
                "si_sdr": dict(zip(priors.names, sdr.mean(0).tolist(), strict=True)),
                "si_sdr_mean": float(sdr.mean()),
                "wall_seconds": round(seconds, 1),
                "steps_per_second": round(args.n * total / seconds, 2),  # the VAE: mixes per second
            }
        )
        print(
            f"{method:<12} mean SI-SDR {float(sdr.mean()):6.2f} dB  "
            + "  ".join(f"{n} {float(v):6.2f}" for n, v in zip(priors.names, sdr.mean(0), strict=True))
            + f"  | {rows[-1]['steps_per_second']} steps/s"
        )
    print(f"{'mix itself':<12} mean SI-SDR {float(floor.mean()):6.2f} dB")
    report = {
        "priors": str(args.priors or "shipped default (score)"),
        "mixes": args.n,
        "seconds": length / priors.sample_rate,
        "threads": torch.get_num_threads(),
        "mix_si_sdr_mean": float(floor.mean()),
        "rows": rows,
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
