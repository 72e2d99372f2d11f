"""Separation of the richer toy by the harmonic priors: pitch off the keys, notes that move, and on the keys.

    python bench/harmonic.py                          # the shipped harmonic priors on the test split
    python bench/harmonic.py --split valid            # the validation split (settings are chosen here)
    python bench/harmonic.py --priors waves --variants keys --n 4   # another set of priors for comparison

For each toy variant (``keys``: the on-key toy; ``continuous``: pitch drawn continuously over the piano's
range; ``moving``: continuous pitch with vibrato up to 30 cents at 4 to 6 Hz and decaying envelopes) it
separates ``--n`` mixes of 1 s by the default residual sweep under the priors' own ladder and reports the
SI-SDR per source (capped at 60 dB, and uncapped), the worst source, the mix's own SI-SDR (the floor), how many
sources ended within 50 cents of their true pitch, and seconds per mix (2 CPU cores, measured alone unless the
output says otherwise).

``--references`` adds what tells the causes apart (RESEARCH.md section 7): the sweep started at the true
sources (one chain down the restarts' short ladder: does the search leave the truth, and does the mix error,
the sweep's judge, prefer it?), and each true source fitted alone from its true pitch (what the
source model can represent at best: the ceiling of the model, not of the search).

Seeds: the test split is seed 600, the validation split 601; both are disjoint from every training stream.
Writes docs/bench/harmonic_{split}.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels import mixing  # noqa: E402
from sepmodels.data import toy  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from sepmodels.inference.langevin import langevin  # noqa: E402
from sepmodels.inference.separator import make_separator  # noqa: E402
from sepmodels.metrics import si_sdr  # noqa: E402
from sepmodels.priors import load_priors  # noqa: E402

CAP_DB = 60.0
SPLITS = {"test": 600, "valid": 601}
TARGETS = {"keys": 30.0, "continuous": 20.0, "moving": 15.0}  # issue "Priors that generalize"


def strongest_hz(x: torch.Tensor, rate: int) -> torch.Tensor:
    """The frequency of the strongest spectral peak of each clip ``[..., T]`` (Hz, 8x zero-padded): every toy
    wave's strongest partial is its fundamental."""
    T = x.shape[-1]
    n = 1 << (8 * T - 1).bit_length()
    power = torch.fft.rfft(x.double() * torch.hann_window(T, dtype=torch.float64), n).abs()
    return power.argmax(-1).double() * rate / n


def summary(sdr: torch.Tensor, floor: torch.Tensor) -> dict[str, float]:
    capped = sdr.clamp(max=CAP_DB)
    return {
        "si_sdr_capped_mean": round(float(capped.mean()), 2),
        "si_sdr_mean": round(float(sdr.mean()), 2),
        "si_sdr_capped": {n: round(v, 2) for n, v in zip(toy.SOURCES, capped.mean(0).tolist(), strict=True)},
        "si_sdr_worst": round(float(sdr.min()), 2),
        "mix_si_sdr_mean": round(float(floor.mean()), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--priors",
        default="harmonic",
        help="'harmonic' (the shipped harmonic priors), 'waves', 'exact' or a checkpoint",
    )
    parser.add_argument("--variants", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--n", type=int, default=8, help="mixes per variant (default: 8)")
    parser.add_argument("--split", choices=list(SPLITS), default="test")
    parser.add_argument("--references", action="store_true", help="also the start-at-truth and oracle-pitch runs")
    parser.add_argument("--levels", type=int, help="the sweep's levels (default: the priors' own ladder)")
    parser.add_argument("--steps", type=int, help="sweeps per level (default: the priors' own ladder)")
    parser.add_argument("--chains", type=int, help="chains at most (default: the priors' own ladder)")
    parser.add_argument("--out", type=Path, help="results file (default: docs/bench/harmonic_{split}.json)")
    args = parser.parse_args()
    priors = load_priors(args.priors)
    rate = priors.sample_rate
    length = priors.valid_length(rate)
    seed = SPLITS[args.split]
    separator = make_separator("residual", priors, levels=args.levels, steps=args.steps, chains=args.chains)
    config = separator.config
    # the start-at-truth reference runs one chain of the restarts' short ladder: the long ladder's first levels
    # blur any start (at sigma 45 every candidate pitch weighs about the same)
    from_truth = dataclasses.replace(config, sigma_max=config.restart_sigma, levels=config.restart_levels,
                                     chains=1, init="noise")  # fmt: skip
    report: dict[str, object] = {
        "priors": args.priors, "kind": priors.kind, "describe": priors.describe(), "split": args.split,
        "seed": seed, "mixes_per_variant": args.n, "seconds": length / rate, "cap_db": CAP_DB,
        "ladder": {"sigma_max": config.sigma_max, "levels": config.levels, "steps": config.steps,
                   "chains": config.chains, "restart_levels": config.restart_levels},
        "cores": torch.get_num_threads(), "variants": {},
    }  # fmt: skip
    for variant in args.variants:
        truths = toy.toy_test_set(args.n, length, seed=seed, options=variant)
        params = toy.toy_test_params(args.n, seed=seed, options=variant)
        sdrs, seconds, near = [], [], 0
        truth_start, oracle = [], []
        for i, truth in enumerate(truths):
            mix = mixing.mix(truth)
            start = time.perf_counter()
            est = separator.separate(mix).float()
            seconds.append(time.perf_counter() - start)
            sdrs.append(si_sdr(est, truth))
            cents = 1200 * torch.log2(strongest_hz(est, rate) / params.frequency[i]).abs()
            near += int((cents < 50).sum())
            line = f"  {variant} mix {i + 1}: " + " ".join(f"{float(v):7.1f}" for v in sdrs[-1])
            line += f" dB, {seconds[-1]:.1f} s"
            if args.references:
                *_, last = langevin(mix, priors, from_truth, start=truth)
                truth_start.append(si_sdr(last.sources.float(), truth))
                if hasattr(priors, "follow"):
                    fits = [
                        priors.follow(k, truth[k], float(params.frequency[i, k]), moving=variant == "moving").wave
                        for k in range(len(toy.SOURCES))
                    ]
                    oracle.append(si_sdr(torch.stack(fits).float(), truth))
                line += f"; from the truth {float(truth_start[-1].clamp(max=CAP_DB).mean()):.1f}"
                line += f" (mix error {last.mix_error:.4f} against {separator.last.mix_error:.4f})"
            print(line, flush=True)
        sdr = torch.stack(sdrs)
        floor = torch.stack([si_sdr(mixing.mix(t).expand_as(t), t) for t in truths])
        entry = {**summary(sdr, floor), "within_50_cents": near, "sources": int(sdr.numel()),
                 "seconds_per_mix_mean": round(sum(seconds) / len(seconds), 1),
                 "seconds_per_mix_max": round(max(seconds), 1), "target_db": TARGETS[variant],
                 "per_mix_capped_mean": [round(float(v), 1) for v in sdr.clamp(max=CAP_DB).mean(1)]}  # fmt: skip
        if truth_start:
            entry["started_at_truth"] = summary(torch.stack(truth_start), floor)
        if oracle:
            entry["oracle_pitch_solo_fit"] = summary(torch.stack(oracle), floor)
        report["variants"][variant] = entry
        print(
            f"{variant:>10}: {entry['si_sdr_capped_mean']:6.1f} dB capped (uncapped {entry['si_sdr_mean']:.1f}, "
            f"worst {entry['si_sdr_worst']:.1f}; the mix itself {entry['mix_si_sdr_mean']:.1f}; target "
            f"{TARGETS[variant]:g}), {near}/{sdr.numel()} within 50 cents, {entry['seconds_per_mix_mean']:.1f} s "
            f"per mix (at most {entry['seconds_per_mix_max']:.1f})",
            flush=True,
        )
        for name in ("started_at_truth", "oracle_pitch_solo_fit"):
            if name in entry:
                print(f"{'':>12}{name.replace('_', ' ')}: {entry[name]['si_sdr_capped_mean']:.1f} dB capped")
    out = args.out or ROOT / "docs" / "bench" / f"harmonic_{args.split}.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
