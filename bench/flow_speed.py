"""Forward+backward throughput of the grouped flow priors (samples per second over all sources).

    python bench/flow_speed.py                      # thesis_toy, thesis_musdb and default on this machine
    python bench/flow_speed.py --device cuda --compile

Prints a table and writes it as JSON (default: docs/bench/flow_speed_<device>.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from sepmodels.fileio import atomic_path
from sepmodels.nn.flows import FlowConfig, FlowPrior


def measure(
    config: str, sources: int, length: int, batch: int, reps: int, device: torch.device, compile_: bool
) -> dict[str, float | int | str]:
    torch.manual_seed(0)
    prior = FlowPrior(sources, FlowConfig.preset(config)).to(device).train()
    x = torch.rand(batch, sources, length, device=device) * 2 - 1
    sigma = torch.full((batch,), 0.1, device=device)
    with torch.no_grad():
        prior(x, sigma)  # ActNorm initialisation, not timed
    step = torch.compile(prior) if compile_ else prior

    def once() -> None:
        z, logdet = step(x, sigma)
        (0.5 * z.pow(2) - logdet).mean().backward()

    for _ in range(2):  # warm-up (and compilation)
        once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(reps):
        once()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - start) / reps
    return {
        "config": config,
        "parameters": sum(p.numel() for p in prior.parameters()),
        "receptive_field": prior.receptive_field(),
        "batch": batch,
        "sources": sources,
        "length": length,
        "seconds_per_step": round(seconds, 4),
        "samples_per_s": round(batch * sources * length / seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=["thesis_toy", "thesis_musdb", "default"])
    parser.add_argument("--length", type=int, default=16_384)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile the flow")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [measure(c, 4, args.length, args.batch, args.reps, device, args.compile) for c in args.configs]
    print(f"{'config':<12} {'params':>9} {'RF':>7} {'s/step':>8} {'samples/s':>11}")
    for r in rows:
        print(
            f"{r['config']:<12} {r['parameters']:>9} {r['receptive_field']:>7} {r['seconds_per_step']:>8} "
            f"{r['samples_per_s']:>11}"
        )
    report = {
        "what": "forward+backward of 4 grouped priors, samples/s over all sources",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "compiled": args.compile,
        "rows": rows,
    }
    out = args.out or Path("docs/bench") / f"flow_speed_{device.type}.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
