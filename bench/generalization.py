"""Where the toy priors stop: clips the toy generator never makes (pitch off the piano keys, vibrato).

    python bench/generalization.py                      # the samplers' default (the shipped wave priors)
    python bench/generalization.py --priors exact       # the exact toy prior

The toy generator puts every source on one of the 88 piano keys, at a constant pitch, amplitude and shape. This
measures what the priors give when that does not hold, on clips of seeds nothing was tuned on:

- separation of ``--n`` mixes of 1 s whose four pitches are drawn *continuously* over the piano's range
  (log-uniform; seed 500), by the default residual sweep: SI-SDR per source (capped at 60 dB) beside the mix's
  own, and how many sources ended within 50 cents of their true pitch (the nearest key, as "keys right");
- one denoising step at sigma 0.1 of an A4 square 0, 0.5, 1.2 and 37 cents above the key (the other sources'
  slots hold toy clips), and of an A4 sine with 5 Hz vibrato of +-10 cents: SI-SDR of the posterior mean beside
  the noisy input's.

Issue "Priors that generalize" is judged against these figures. Writes docs/bench/generalization.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels import mixing  # noqa: E402
from sepmodels.checkpoint import default_sampler_priors_path  # noqa: E402
from sepmodels.data import toy  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from sepmodels.inference.separator import make_separator  # noqa: E402
from sepmodels.metrics import si_sdr  # noqa: E402
from sepmodels.priors import load_priors  # noqa: E402

CAP_DB = 60.0


def off_grid_mixes(
    n: int, length: int, seed: int, rate: int = toy.SAMPLE_RATE
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` clips ``[n, 4, length]`` of the toy's four sources at pitches drawn log-uniformly between the
    piano's lowest and highest keys (not on them), uniform phase, amplitude 0.8 to 1; and the pitches
    ``[n, 4]``."""
    g = torch.Generator().manual_seed(seed)
    low, high = math.log2(27.5), math.log2(4186.0)
    hz = 2 ** (low + (high - low) * torch.rand(n, 4, generator=g, dtype=torch.float64))
    phase = 2 * math.pi * torch.rand(n, 4, generator=g, dtype=torch.float64)
    amp = 0.8 + 0.2 * torch.rand(n, 4, generator=g, dtype=torch.float64)
    t = torch.arange(length, dtype=torch.float64) / rate
    waves = torch.stack([toy.oscillator(kind, 2 * math.pi * hz[:, k, None] * t + phase[:, k, None])
                         for k, kind in enumerate(toy.SOURCES)], dim=1)  # fmt: skip
    return (amp[..., None] * waves).float(), hz


def probe(priors, kind: str, wave: torch.Tensor, sigma: float, seed: int) -> tuple[float, float]:
    """SI-SDR (dB) of the posterior mean of ``wave [T]`` plus noise at ``sigma`` in source ``kind``'s slot, and of
    the noisy input; the other slots hold toy clips."""
    k = toy.SOURCES.index(kind)
    x = toy.toy_test_set(1, wave.shape[-1], seed=seed).clone()
    x[0, k] = wave
    g = torch.Generator().manual_seed(seed)
    noisy = x + sigma * torch.randn(x.shape, generator=g)
    mean = priors.posterior_mean(noisy, sigma, sources=[k])
    return float(si_sdr(mean[0, k], wave)), float(si_sdr(noisy[0, k], wave))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--priors", help="a checkpoint or 'exact' (default: the samplers' default, wave priors)")
    parser.add_argument("--n", type=int, default=8, help="off-grid mixes (default: 8)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "generalization.json")
    args = parser.parse_args()
    priors = load_priors(args.priors, default_sampler_priors_path())
    rate, length = priors.sample_rate, priors.valid_length(priors.sample_rate)
    report: dict[str, object] = {"priors": str(args.priors or default_sampler_priors_path().name),
                                 "kind": priors.kind, "cap_db": CAP_DB}  # fmt: skip

    truths, hz = off_grid_mixes(args.n, length, seed=500, rate=rate)
    separator = make_separator("residual", priors)
    sdrs, near, seconds = [], 0, 0.0
    for i, truth in enumerate(truths):
        start = time.perf_counter()
        est = separator.separate(mixing.mix(truth)).float()
        seconds += time.perf_counter() - start
        sdrs.append(si_sdr(est, truth))
        found = toy.key_frequency(toy.dominant_key(est, rate)).double()
        near += int((1200 * torch.log2(found / hz[i]).abs() < 50).sum())
        print(f"  off-grid mix {i + 1}: " + " ".join(f"{float(v):7.1f}" for v in sdrs[-1]) + " dB", flush=True)
    sdr = torch.stack(sdrs)
    floor = torch.stack([si_sdr(mixing.mix(t).expand_as(t), t) for t in truths])
    report["off_grid_separation"] = {
        "mixes": args.n, "seconds": length / rate, "si_sdr_capped_mean": float(sdr.clamp(max=CAP_DB).mean()),
        "si_sdr_capped": dict(zip(toy.SOURCES, sdr.clamp(max=CAP_DB).mean(0).tolist(), strict=True)),
        "si_sdr_worst": float(sdr.min()), "mix_si_sdr_mean": float(floor.mean()),
        "within_50_cents": near, "sources": int(sdr.numel()), "seconds_per_mix": seconds / args.n,
    }  # fmt: skip
    r = report["off_grid_separation"]
    print(f"off-grid separation: {r['si_sdr_capped_mean']:.1f} dB capped (the mix itself "
          f"{r['mix_si_sdr_mean']:.1f}), {near}/{sdr.numel()} sources within 50 cents, "
          f"{r['seconds_per_mix']:.1f} s per mix")  # fmt: skip

    t = torch.arange(length, dtype=torch.float64) / rate
    probes = {}
    for cents in (0.0, 0.5, 1.2, 37.0):
        f = 440.0 * 2 ** (cents / 1200)
        wave = (0.9 * toy.oscillator("square", 2 * math.pi * f * t + 0.3)).float()
        probes[f"square A4 +{cents:g} cents"] = probe(priors, "square", wave, 0.1, seed=501)
    vibrato = 2 * math.pi * 440.0 * t + 2 * math.pi * 440.0 * (2 ** (10 / 1200) - 1) / (2 * math.pi * 5) * (
        -torch.cos(2 * math.pi * 5 * t)
    )  # instantaneous pitch 440 Hz +-10 cents at 5 Hz
    probes["sine A4, 5 Hz vibrato of +-10 cents"] = probe(
        priors, "sin", (0.9 * torch.sin(vibrato)).float(), 0.1, 502
    )
    report["denoise_sigma_0.1"] = {name: {"denoised": d, "noisy": n} for name, (d, n) in probes.items()}
    for name, (d, n) in probes.items():
        print(f"denoise sigma 0.1, {name:<38} {d:7.1f} dB (noisy input {n:.1f})")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
