"""How well the priors tell the toy sources apart: cross-likelihood tables at several noise levels.

    python bench/discrimination.py [--priors CKPT] [--n 64] [--seconds 0.5]

Writes docs/bench/discrimination.json and prints one table per noise level.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sepmodels.fileio import atomic_path
from sepmodels.priors import PriorSet
from sepmodels.studies import cross_likelihood


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--priors", type=Path)
    parser.add_argument("--n", type=int, default=64, help="clips per source")
    parser.add_argument("--seconds", type=float, default=0.5)
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.3, 1.0])
    parser.add_argument("--out", type=Path, default=Path("docs/bench/discrimination.json"))
    args = parser.parse_args()
    priors = PriorSet.load(args.priors)
    length = priors.valid_length(int(args.seconds * priors.sample_rate))
    report = {
        "priors": str(args.priors or "shipped default"),
        "clips_per_source": args.n,
        "length": length,
        "levels": [],
    }
    for sigma in args.sigmas:
        result = cross_likelihood(priors, n=args.n, length=length, sigma=sigma)
        print(f"\nsigma = {sigma:g}: mean nats/sample (rows: data, columns: prior)")
        print(result.table())
        report["levels"].append(
            {
                "sigma": sigma,
                "mean": result.mean.tolist(),
                "median": result.median.tolist(),
                "own_first": result.own_first().tolist(),
            }
        )
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
