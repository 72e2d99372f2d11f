"""What amortisation buys: the amortised posterior's one pass, the pass plus k sweeps, and the sweep from scratch.

    python bench/amortised.py                      # the shipped amortised posterior on the test split
    python bench/amortised.py --split valid        # the validation split (settings are chosen here)
    python bench/amortised.py --posterior CKPT --variants moving --n 4

For each toy variant (``keys``, ``continuous``, ``moving``; 1 s mixes, bench/harmonic.py's splits and seeds) it
separates ``--n`` mixes by:

- **one pass**: the encoder reads each source's pitch bin, the source models follow the notes from there
  (in the whole mix, then the posterior's rounds in what the others leave);
- **one pass + k reading sweeps**: the posterior's own sweeps (:meth:`AmortisedPosterior.sweep`: each source's
  reading replaced by its likeliest other bins and the priors' salience candidates in what the others leave,
  each decoded afresh, the best by the priors' criterion of the whole mix kept), k after one another;
- **one pass + k residual sweeps**: the harmonic priors' own residual sweep (posterior means given what the mix
  leaves, which may move a note to another pitch candidate) started at the pass's sources, one sweep per level
  down from the priors' restart level to sigma_min, one chain;
- **the sweep from scratch**: the harmonic priors' whole ladder, as bench/harmonic.py runs it (quoted from
  ``docs/bench/harmonic_{split}.json``, the same mixes; ``--scratch`` runs it again here);
- the **per-sample VAE** (the old posterior, ``toy_vae.pt``), one pass.

``--references`` adds what tells the causes apart: the same decoding from the *true* pitch bins (the encoder's
reading made perfect: what the decoding itself loses), and the pass with no joint-fit rounds (each note
followed in the whole mix alone). SI-SDR per source capped at 60 dB, mean over all sources; seconds per mix
on this machine (2 CPU cores, alone unless the output says otherwise). Writes
``docs/bench/amortised_{split}.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harmonic import CAP_DB, SPLITS, strongest_hz, summary  # noqa: E402  (bench/harmonic.py)

from sepmodels import mixing  # noqa: E402
from sepmodels.data import toy  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from sepmodels.inference.amortised import AmortisedPosterior, bin_of, load_posterior  # noqa: E402
from sepmodels.inference.separator import LangevinSeparator, make_separator  # noqa: E402
from sepmodels.metrics import si_sdr  # noqa: E402

TARGETS = {"keys": (20.0, None), "continuous": (15.0, 20.0), "moving": (15.0, 20.0)}  # one pass, <= 3 sweeps


class Rows:
    """Each method's SI-SDR per mix, seconds per mix and sources within 50 cents of their true pitch."""

    def __init__(self, params: toy.ToyClipParams, rate: int) -> None:
        self.params, self.rate = params, rate
        self.sdr: dict[str, list[torch.Tensor]] = {}
        self.seconds: dict[str, list[float]] = {}
        self.near: dict[str, int] = {}

    def add(self, name: str, est: torch.Tensor, spent: float, i: int, truth: torch.Tensor) -> None:
        self.sdr.setdefault(name, []).append(si_sdr(est.float(), truth))
        self.seconds.setdefault(name, []).append(spent)
        cents = 1200 * torch.log2(strongest_hz(est.float(), self.rate) / self.params.frequency[i]).abs()
        self.near[name] = self.near.get(name, 0) + int((cents < 50).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posterior", help="an amortised posterior file (default: the shipped one)")
    parser.add_argument("--variants", nargs="+", default=list(TARGETS), choices=list(TARGETS))
    parser.add_argument("--n", type=int, default=8, help="mixes per variant (default: 8)")
    parser.add_argument("--split", choices=list(SPLITS), default="test")
    parser.add_argument("--sweeps", type=int, nargs="*", default=[1, 2, 3],
                        help="k for the pass + k residual sweeps rows (none: no such rows)")  # fmt: skip
    parser.add_argument("--reading-sweeps", type=int, default=3,
                        help="the pass + 1 .. k reading sweeps rows (default: 3; 0: none)")  # fmt: skip
    parser.add_argument("--references", action="store_true", help="also the true-pitch and no-rounds decodings")
    parser.add_argument("--scratch", action="store_true", help="run the sweep from scratch here too")
    parser.add_argument("--no-per-sample", action="store_true", help="leave out the per-sample VAE")
    parser.add_argument("--out", type=Path, help="results file (default: docs/bench/amortised_{split}.json)")
    args = parser.parse_args()
    if args.n < 1 or any(k < 1 for k in args.sweeps) or args.reading_sweeps < 0:
        parser.error("--n and every --sweeps value must be at least 1, --reading-sweeps at least 0")

    posterior = load_posterior(args.posterior or "amortised")
    if not isinstance(posterior, AmortisedPosterior):
        parser.error("--posterior must be an amortised posterior (sepmodels train-posterior)")
    priors = posterior.priors
    rate = priors.sample_rate
    length = priors.valid_length(rate)
    seed = SPLITS[args.split]
    own = priors.sampler_defaults["residual"]
    sweepers = {k: LangevinSeparator(priors, posterior.sweep_config(k)) for k in args.sweeps}
    per_sample = None if args.no_per_sample else load_posterior("per-sample")
    scratch = make_separator("residual", priors) if args.scratch else None
    quoted_path = ROOT / "docs" / "bench" / f"harmonic_{args.split}.json"
    quoted = json.loads(quoted_path.read_text()) if quoted_path.exists() and not args.scratch else None
    report: dict[str, object] = {
        "posterior": args.posterior or "shipped", "meta": posterior.meta, "rounds": posterior.rounds,
        "split": args.split, "seed": seed, "mixes_per_variant": args.n, "seconds": length / rate,
        "cap_db": CAP_DB, "sweep_ladder": {"sigma_max": own["restart_sigma"], "steps": 1, "chains": 1},
        "cores": torch.get_num_threads(), "variants": {},
    }  # fmt: skip
    for variant in args.variants:
        truths = toy.toy_test_set(args.n, length, seed=seed, options=variant)
        params = toy.toy_test_params(args.n, seed=seed, options=variant)
        rows = Rows(params, rate)
        for i, truth in enumerate(truths):
            mix = mixing.mix(truth)
            start = time.perf_counter()
            total, probs = mix.double() * len(posterior), posterior.read(mix)
            notes = posterior.decode_best(total, posterior.readings(probs))
            est = torch.stack([n.wave for n in notes]).float()
            spent = time.perf_counter() - start
            rows.add("one pass", est, spent, i, truth)
            swept_for = spent
            for k in range(1, args.reading_sweeps + 1):
                start = time.perf_counter()
                notes = posterior.sweep(total, notes, probs)
                swept_for += time.perf_counter() - start
                rows.add(
                    f"one pass + {k} reading sweeps", torch.stack([n.wave for n in notes]), swept_for, i, truth
                )
            for k, sweeper in sweepers.items():
                start = time.perf_counter()
                swept = sweeper.separate(mix, start=est)
                rows.add(f"one pass + {k} residual sweeps", swept, spent + time.perf_counter() - start, i, truth)
            if args.references:
                start = time.perf_counter()
                notes = posterior.decode(total, bin_of(priors, params.frequency[i]).tolist())
                rows.add(
                    "true pitch bins", torch.stack([n.wave for n in notes]), time.perf_counter() - start, i, truth
                )
                start = time.perf_counter()
                notes = posterior.decode(total, posterior.read(mix).argmax(-1).tolist(), rounds=0)
                waves = torch.stack([n.wave for n in notes])
                rows.add("one pass, no rounds", waves, time.perf_counter() - start, i, truth)
            if per_sample is not None:
                start = time.perf_counter()
                rows.add("per-sample VAE", per_sample.separate(mix), time.perf_counter() - start, i, truth)
            if scratch is not None:
                start = time.perf_counter()
                rows.add("sweep from scratch", scratch.separate(mix), time.perf_counter() - start, i, truth)
            line = ", ".join(f"{name} {float(v[-1].clamp(max=CAP_DB).mean()):.1f}" for name, v in rows.sdr.items())
            print(f"  {variant} mix {i + 1}: {line} dB; one pass {rows.seconds['one pass'][-1]:.2f} s", flush=True)
        floor = torch.stack([si_sdr(mixing.mix(t).expand_as(t), t) for t in truths])
        entry: dict[str, object] = {"target_one_pass_db": TARGETS[variant][0],
                                    "target_three_sweeps_db": TARGETS[variant][1], "rows": {}}  # fmt: skip
        for name, values in rows.sdr.items():
            times = rows.seconds[name]
            entry["rows"][name] = {**summary(torch.stack(values), floor), "within_50_cents": rows.near[name],
                                   "sources": int(torch.stack(values).numel()),
                                   "seconds_per_mix_mean": round(sum(times) / len(times), 2),
                                   "seconds_per_mix_max": round(max(times), 2)}  # fmt: skip
        same = quoted is not None and quoted.get("mixes_per_variant") == args.n
        if same and variant in quoted.get("variants", {}):
            q = quoted["variants"][variant]
            keys = ("si_sdr_capped_mean", "si_sdr_mean", "si_sdr_worst", "within_50_cents", "sources",
                    "seconds_per_mix_mean", "seconds_per_mix_max")  # fmt: skip
            entry["rows"]["sweep from scratch"] = {**{key: q[key] for key in keys},
                                                   "quoted_from": str(quoted_path.relative_to(ROOT))}  # fmt: skip
        report["variants"][variant] = entry
        print(f"{variant}: (the mix itself {entry['rows']['one pass']['mix_si_sdr_mean']:.1f} dB)")
        for name, row in entry["rows"].items():
            where = f" [{row['quoted_from']}]" if "quoted_from" in row else ""
            print(f"  {name:>22}: {row['si_sdr_capped_mean']:6.1f} dB capped (worst {row['si_sdr_worst']:.1f}), "
                  f"{row['within_50_cents']}/{row['sources']} within 50 cents, "
                  f"{row['seconds_per_mix_mean']:.2f} s per mix (at most {row['seconds_per_mix_max']:.2f}){where}",
                  flush=True)  # fmt: skip
    out = args.out or ROOT / "docs" / "bench" / f"amortised_{args.split}.json"
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
