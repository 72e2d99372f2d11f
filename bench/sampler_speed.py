"""Sampler speed: steps per second of separating one 4-source toy mix, for several prior sizes and kinds.

    python bench/sampler_speed.py                        # 1 s mixes, the shipped priors and other sizes
    python bench/sampler_speed.py --seconds 0.5 --steps 20

One step is one score evaluation of all four priors plus the update (a flow: forward and backward; a score
network: one forward; with a flow judge, as in the Langevin app, a flow forward pass every 20 steps as well).
The priors are freshly initialised except the shipped ones (speed does not depend on the weights). Also times
the first step, what the app shows a second after Start. Prints a table and writes
docs/bench/sampler_speed.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from sepmodels import mixing
from sepmodels.checkpoint import default_priors_path
from sepmodels.data import toy
from sepmodels.fileio import atomic_path
from sepmodels.inference.langevin import LangevinConfig, langevin, with_likelihood
from sepmodels.nn.flows import FlowConfig, FlowPrior
from sepmodels.nn.score import ScoreConfig, ScoreNet
from sepmodels.priors import NoiseLadder, PriorSet

CASES = [
    ("flow", "default (shipped)"),
    ("score", "global (shipped)"),
    ("score", "global (shipped) + flow judge"),  # the Langevin app: the flows' likelihood every 20 steps
    ("flow", "tiny"),
    ("flow", "thesis_toy"),
    ("score", "default"),
    ("score", "global"),
]
JUDGE_EVERY = 20


def priors_for(kind: str, config: str) -> PriorSet:
    if config == "default (shipped)":
        return PriorSet.load()
    if config.startswith("global (shipped)"):
        return PriorSet.load(default_priors_path().parent / "toy_score.pt")
    torch.manual_seed(0)
    model = FlowPrior(4, FlowConfig.preset(config)) if kind == "flow" else ScoreNet(4, ScoreConfig.preset(config))
    model.eval().requires_grad_(False)
    return PriorSet(model, toy.SOURCES, toy.SAMPLE_RATE, NoiseLadder())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per case (after one warm-up step)")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/sampler_speed.json"))
    args = parser.parse_args()
    rows = []
    print(f"{'priors':<40}{'parameters':>12}{'first step s':>14}{'steps/s':>10}")
    for kind, config in CASES:
        priors = priors_for(kind, config)
        judge = PriorSet.load() if config.endswith("judge") else None
        length = priors.valid_length(int(args.seconds * priors.sample_rate))
        if judge is not None:  # a length both take (hops are powers of 2), as the app makes it
            length = priors.valid_length(judge.valid_length(length))
        mixture = mixing.mix(toy.toy_test_set(1, length))[0]
        cfg = LangevinConfig(method="constrained", levels=1, steps=args.steps + 1)
        it = langevin(mixture, priors, cfg)
        if judge is not None:
            it = with_likelihood(it, judge, every=JUDGE_EVERY)
        start = time.perf_counter()
        next(it)
        first = time.perf_counter() - start
        start = time.perf_counter()
        for _ in it:
            pass
        rate = args.steps / (time.perf_counter() - start)
        rows.append({"kind": kind, "config": config, "parameters": priors.parameters_count(),
                     "first_step_seconds": round(first, 3), "steps_per_second": round(rate, 2)})  # fmt: skip
        print(f"{kind + ' ' + config:<40}{rows[-1]['parameters']:>12}{first:>14.3f}{rate:>10.2f}")
    report = {"seconds": args.seconds, "sources": 4, "threads": torch.get_num_threads(), "rows": rows}
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
