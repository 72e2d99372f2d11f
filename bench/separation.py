"""Separation quality and speed of the samplers on fresh toy mixes, with the shipped (or given) priors.

    python bench/separation.py                                   # residual, constrained: 16 mixes of 1 s
    python bench/separation.py --priors exact --methods residual # the exact toy prior
    python bench/separation.py --n 4 --seconds 0.25 --steps 20   # a quick look
    python bench/separation.py --methods vae                     # the VAE posterior alone (one pass per mix)

Prints mean SI-SDR per source (raw, and capped at 60 dB), the mix's own SI-SDR (the floor), how many sources
ended on the right piano key, seconds per mix and steps per second (the residual sweep: sweeps actually run),
each figure per benchmark seed and its spread over the seeds (``--seeds``, 16 mixes each by default), and
writes docs/bench/separation.json (or --out). Settings are chosen on the validation split, ``--seeds 100``
(see :data:`VALID_SEED`); the benchmark seeds are only measured.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from sepmodels import mixing
from sepmodels.checkpoint import default_sampler_priors_path
from sepmodels.data import toy
from sepmodels.fileio import atomic_path
from sepmodels.inference.amortised import AmortisedPosterior, load_posterior
from sepmodels.inference.langevin import METHODS, LangevinConfig
from sepmodels.inference.posterior import Demixer
from sepmodels.inference.separator import make_separator
from sepmodels.metrics import si_sdr
from sepmodels.priors import load_priors

VALID_SEED = 100  # the toy validation split: settings are chosen on its mixes, never on the benchmark's
CAP_DB = 60.0  # SI-SDR above this is reported capped beside the raw figure (float32 alone reaches about 140)


def _posterior_facts(path: str, demixer: Demixer | AmortisedPosterior | None) -> dict[str, object]:
    """For the VAE's row: which posterior, the kind of priors it was trained against (not --priors) and the
    noise level they scored it at (the amortised posterior: how it was trained)."""
    if demixer is None:
        return {}
    if isinstance(demixer, AmortisedPosterior):
        return {"posterior": str(path), "amortised": demixer.meta.get("command")}
    kind = (demixer.meta.get("priors") or {}).get("kind")
    return {"posterior": str(path), "trained_against": kind, "prior_sigma": demixer.encoder.config.prior_sigma}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--priors", help="a checkpoint or 'exact' (default: the samplers' default, wave priors)")
    parser.add_argument("--methods", nargs="+", choices=[*METHODS, "vae"], default=["residual", "constrained"])
    parser.add_argument(
        "--posterior",
        help="VAE posterior for --methods vae: per-sample (the default: the table's row), amortised, or a file",
    )
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--steps", type=int, help="steps per level (default: the method's own)")
    parser.add_argument("--levels", type=int, help="(default: the method's own)")
    parser.add_argument("--sigma-max", type=float, help="(default: the method's own)")
    parser.add_argument("--chains", type=int, default=LangevinConfig.chains, help="residual: most chains per mix")
    parser.add_argument("--delta", type=float, default=LangevinConfig.delta)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="benchmark seeds, --n mixes each (default: 0 1 2; the validation split, where "
                             f"settings are chosen, is seed {VALID_SEED})")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("docs/bench/separation.json"))
    args = parser.parse_args()
    priors = load_priors(args.priors, default_sampler_priors_path())
    length = priors.valid_length(int(args.seconds * priors.sample_rate))
    sets = [toy.toy_test_set(args.n, length, seed=seed) for seed in args.seeds]
    truths = torch.cat(sets)  # mixes of every seed, in seed order
    seed_of = torch.tensor(args.seeds).repeat_interleave(args.n)
    floor = torch.stack([si_sdr(mixing.mix(t).expand_as(t), t) for t in truths])
    rows = []
    for method in args.methods:
        sdrs, keys_right, steps_run, per_mix, estimates_all = [], 0, 0, [], []
        posterior = args.posterior or "per-sample"
        demixer = load_posterior(posterior) if method == "vae" else None
        separator = make_separator(
            method, priors, demixer,
            steps=args.steps, levels=args.levels, sigma_max=args.sigma_max, delta=args.delta, chains=args.chains,
        )  # fmt: skip
        cfg = getattr(separator, "config", None)
        for i, truth in enumerate(tqdm(truths, desc=method, unit="mix", leave=False)):
            start = time.perf_counter()
            estimates = separator.separate(mixing.mix(truth)).float()
            steps_run += getattr(separator, "steps_run", 0)
            per_mix.append(time.perf_counter() - start)
            sdrs.append(si_sdr(estimates, truth))
            estimates_all.append(estimates)
            keys_right += int((toy.dominant_key(estimates) == toy.dominant_key(truth)).sum())
            print(f"  {method} mix {i + 1}: " + " ".join(f"{float(v):6.1f}" for v in sdrs[-1])
                  + f" dB, {per_mix[-1]:.1f} s", flush=True)  # fmt: skip
        sdr, seconds = torch.stack(sdrs), sum(per_mix)
        right = torch.stack([toy.dominant_key(e) == toy.dominant_key(t) for e, t in zip(estimates_all, truths,
                                                                                        strict=True)])  # fmt: skip
        per_seed = [
            {"seed": seed, "si_sdr_mean": float(sdr[seed_of == seed].mean()),
             "si_sdr_capped_mean": float(sdr[seed_of == seed].clamp(max=CAP_DB).mean()),
             "si_sdr_worst": float(sdr[seed_of == seed].min()), "keys_right": int(right[seed_of == seed].sum())}
            for seed in args.seeds
        ]  # fmt: skip
        capped_means = torch.tensor([r["si_sdr_capped_mean"] for r in per_seed])
        rows.append(
            {
                "method": method,
                **_posterior_facts(posterior, demixer),
                "config": None if cfg is None else {k: v for k, v in vars(cfg).items() if k != "method"},
                "steps_run": steps_run,
                "si_sdr": dict(zip(priors.names, sdr.mean(0).tolist(), strict=True)),
                "si_sdr_mean": float(sdr.mean()),
                # past CAP_DB a difference is inaudible and measures the phase search, not separation
                "si_sdr_capped": dict(zip(priors.names, sdr.clamp(max=CAP_DB).mean(0).tolist(), strict=True)),
                "si_sdr_capped_mean": float(sdr.clamp(max=CAP_DB).mean()),
                "cap_db": CAP_DB,
                "si_sdr_median": dict(zip(priors.names, sdr.median(0).values.tolist(), strict=True)),
                "si_sdr_worst": dict(zip(priors.names, sdr.min(0).values.tolist(), strict=True)),
                "si_sdr_per_mix": sdr.mean(1).tolist(),
                "si_sdr_per_source": sdr.tolist(),
                "keys_right": keys_right,
                "per_seed": per_seed,
                # the spread of a figure over benchmark seeds: differences smaller than this mean nothing
                "seed_spread_capped": float(capped_means.std()) if len(args.seeds) > 1 else None,
                "sources": int(sdr.numel()),
                "seconds_per_mix": round(seconds / len(truths), 2),
                "max_seconds_per_mix": round(max(per_mix), 2),
                "steps_per_second": round(steps_run / seconds, 2) if cfg is not None else None,
            }
        )
        print(
            f"{method:<12} mean SI-SDR {float(sdr.mean()):6.2f} dB (capped at {CAP_DB:g}: "
            f"{float(sdr.clamp(max=CAP_DB).mean()):.2f}; worst source {float(sdr.min()):.1f})  "
            + "  ".join(f"{n} {float(v):6.2f}" for n, v in zip(priors.names, sdr.mean(0), strict=True))
            + f"  | keys {keys_right}/{sdr.numel()} | {rows[-1]['seconds_per_mix']} s per mix"
        )
        for r in per_seed:
            print(f"  seed {r['seed']}: {r['si_sdr_mean']:.2f} dB, capped {r['si_sdr_capped_mean']:.2f}, worst "
                  f"source {r['si_sdr_worst']:.1f}, keys {r['keys_right']}/{len(priors) * args.n}")  # fmt: skip
    print(f"{'mix itself':<12} mean SI-SDR {float(floor.mean()):6.2f} dB")
    report = {
        "priors": str(args.priors or f"shipped default ({default_sampler_priors_path().name})"),
        "kind": priors.kind,
        "mixes": args.n * len(args.seeds),
        "seeds": args.seeds,
        "validation": args.seeds == [VALID_SEED],
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
