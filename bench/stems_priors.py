"""Row 5 of the stems benchmark: the thesis's approach on music. Noise-conditional flow priors and WaveNet score
priors, one per stem, trained on the solo stems of the training split, separated by the default method (the
residual sweep), measured on the same test clips as ``bench/stems.py``'s rows, with the denoising figures that
tell a prior's failure from the search's.

    python bench/stems_priors.py                  # train what is missing, choose on valid, measure test
    python bench/stems_priors.py --quick          # 2 test clips per condition, no museval SDR
    python bench/stems_priors.py --references     # then: the start-at-truth reference, added to the file

Per family (``--families``):

1. Training, unless ``WORK/<family>/priors.pt`` exists: ``sepmodels train --data musdb --root <train render>
   --mono mean --model <family> --config default`` (steps, batch and crop length below; the same as the command
   printed, so one command reproduces it).
2. Denoising (``sepmodels.studies.denoise_study``) on 2 s solo clips of the test split at a few noise levels:
   each stem's posterior mean against its clean clip (does the prior know its stem?), and with another stem
   added (does it leave a foreign stem alone? what the residual sweep needs).
3. The sampler's ladder (each ``--sigma-max`` top with each ``--levels`` length, one sweep per level, one chain)
   and its output (the sweep's sources as they are, or the mix through ratio masks or Wiener filters of their
   spectrograms)
   chosen by mean SI-SDRi over both validation conditions; one run gives all three outputs.
4. The chosen setting on the test clips of both conditions: SI-SDR, SI-SDRi, museval SDR, seconds per clip.

``--references`` (after a full run, whose results file it reads and extends) starts the sweep at the true
stems of every test clip and runs the bottom of the ladder (``TRUTH_LADDER``), output as chosen: if the priors
keep the truth there, what the full run lacks is the search; if they leave it as far as the full run lands,
the priors themselves are the limit. For priors with a likelihood (the flows) it also scores 2 s solo clips
of every stem under every stem's prior (the cross-likelihood: does the bass prior prefer bass?).

Unless --no-ship, the priors are exported to ``sepmodels/checkpoints/stems_<family>.pt`` with the chosen
settings in their meta (``sampler_defaults``), so ``separate --priors sepmodels/checkpoints/stems_flow.pt``
runs what was measured. Writes docs/bench/stems_priors.json (or --out); a run of some ``--families`` keeps the
other families' figures there.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import platform
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

from sepmodels.data.stems import BENCHMARK_ROOT, STEMS, StemsBenchmark, benchmark_clips, render_benchmark
from sepmodels.data.testsets import MusdbTestData
from sepmodels.evaluation import evaluate_stems
from sepmodels.fileio import atomic_path
from sepmodels.inference.separator import make_separator
from sepmodels.priors import load_priors
from sepmodels.spectral import STFTConfig, mask_mixture, stft
from sepmodels.studies import cross_likelihood, denoise_study

# Sized so that each family trains in well under the hour on 2 cores (measured: the minutes are in the
# results file).
TRAINING = {
    "flow": {"steps": 700, "batch-size": 8, "length": 16384},
    "score": {"steps": 3000, "batch-size": 8, "length": 8192},  # 1 200 steps (10 min) scored 1.6 dB less
}
OUTPUTS = {"sources": None, "ratio masks": 1.0, "Wiener filters": 2.0}
# Every sweep here: one chain, one sweep per level, and the mix a sum of the stems (as a song is), so that
# `separate SONG.wav` gives the priors the song as it is.
SWEEP = {"steps": 1, "chains": 1, "mix": "sum"}
TRUTH_LADDER = {"sigma_max": 0.1, "levels": 3, **SWEEP}  # the last levels of every ladder tried
CHECKPOINTS = Path(__file__).resolve().parent.parent / "sepmodels" / "checkpoints"


def train_command(family: str, train_root: Path, out: Path, steps: int | None = None) -> list[str]:
    """The one command that trains ``family``'s stems priors (``steps`` instead of :data:`TRAINING`'s)."""
    opts = [f"--{k}={v}" for k, v in {**TRAINING[family], **({"steps": steps} if steps else {})}.items()]
    return [sys.executable, "-m", "sepmodels", "train", "--data", "musdb", "--root", str(train_root), "--mono",
            "mean", "--model", family, "--config", "default", "--out", str(out), *opts, "--energy", "estimate",
            "--quiet"]  # fmt: skip


def training_minutes(folder: Path) -> float | None:
    """Wall-clock minutes of the run, from its log's last row."""
    log = folder / "train_log.csv"
    if not log.is_file():
        return None
    rows = list(csv.DictReader(log.open()))
    return round(float(rows[-1]["seconds"]) / 60, 1) if rows else None


def all_outputs(separator, stems: torch.Tensor, from_truth: bool = False) -> dict[str, torch.Tensor]:
    """One sweep's estimates of a clip (started at the true stems if ``from_truth``), as they are and through
    the masks of :data:`OUTPUTS`."""
    mixture = stems.sum(0)
    start = stems if from_truth else None  # the sweep's state: the sources at their own scale
    raw = separator.separate(mixture, start=start)  # music mixes are sums (SWEEP's mix)
    config = STFTConfig()
    spec = stft(raw, config).abs()
    mix_spec = stft(mixture, config)
    return {name: raw if power is None else mask_mixture(mixture, spec, config, power, mix_spec=mix_spec)
            for name, power in OUTPUTS.items()}  # fmt: skip


def score_outputs(separator, clips: dict[str, list], bss: bool, from_truth: bool = False) -> dict[str, dict]:
    """Every output of the sweep on every condition's clips: ``{output: {condition: summary}}``."""
    results: dict[str, dict] = {name: {} for name in OUTPUTS}
    for condition, items in clips.items():
        runs, seconds = [], []
        for i, (_name, stems) in enumerate(items):
            start = time.perf_counter()
            runs.append(all_outputs(separator, stems, from_truth))
            seconds.append(time.perf_counter() - start)
            print(f"  {condition} clip {i + 1}/{len(items)}: {seconds[-1]:.1f} s", flush=True)
        for name in OUTPUTS:
            replay = iter(run[name] for run in runs)  # evaluate_stems asks for the clips in their order
            summary = evaluate_stems(lambda _stems, replay=replay: next(replay), items, STEMS,
                                     StemsBenchmark.sample_rate, bss=bss).summary()  # fmt: skip
            summary["seconds_per_clip"] = sum(seconds) / len(seconds)  # the sweep and the masks, not the replay
            results[name][condition] = summary
    return results


def denoising(priors, root: Path, sigmas: tuple[float, ...]) -> dict:
    """The denoise study on 2 s solo clips of the test split: per stem and level, the noisy input's SI-SDR, the
    posterior mean's, and the posterior mean's with another stem added (mean over the other stems)."""
    data = MusdbTestData(str(root), mono="mean")
    result = denoise_study(priors, n=4, length=2 * priors.sample_rate, sigmas=sigmas, data=data,
                           reference=False, batch=2)  # fmt: skip
    out = {}
    for i, sigma in enumerate(result.sigmas):
        out[f"{sigma:g}"] = {
            stem: {
                "noisy": float(result.noisy[i, k].nanmean()),
                "denoised": float(result.denoised[i, k].nanmean()),
                "with another stem": float(result.interfered[i, k].nanmean()),
            }
            for k, stem in enumerate(result.sources)
        }
    return out


def cross(priors, root: Path, sigmas: tuple[float, ...]) -> dict:
    """Cross-likelihood on 2 s solo clips of the test split: each stem's clips under each stem's prior (nats
    per sample, mean over 16 clips), and in how many clips its own prior scores it highest."""
    data = MusdbTestData(str(root), mono="mean")
    out = {}
    for sigma in sigmas:
        table = cross_likelihood(priors, n=16, length=2 * priors.sample_rate, sigma=sigma, data=data)
        values = table.values  # [stems, priors, clips]
        out[f"{sigma:g}"] = {
            stem: {"mean": {p: float(values[k, j].mean()) for j, p in enumerate(table.priors)},
                   "own prior best": f"{int((values[k].argmax(0) == k).sum())} of {values.shape[-1]}"}
            for k, stem in enumerate(table.sources)
        }  # fmt: skip
    return out


def references(args: argparse.Namespace, work: Path, test: dict[str, list], train_root: Path) -> None:
    """The start-at-truth reference of every family in the results file ``args.out`` (and the cross-likelihood
    of families with a likelihood), written into it."""
    report = json.loads(args.out.read_text())
    for family, entry in report["families"].items():
        if family not in args.families:
            continue
        priors = load_priors(work / family / "priors.pt")
        if priors.has_likelihood:
            print(f"{family}: cross-likelihood of solo test clips ...", flush=True)
            entry["cross_likelihood"] = cross(priors, train_root, tuple(args.denoise_sigmas[:2]))
            for sigma, stems in entry["cross_likelihood"].items():
                print(f"  sigma {sigma}: own prior best in " + "; ".join(
                    f"{stem} {v['own prior best']}" for stem, v in stems.items()), flush=True)  # fmt: skip
        output = entry["chosen"]["output"]
        print(f"{family}: started at the truth, ladder {TRUTH_LADDER}, output {output} ...", flush=True)
        sep = make_separator("residual", priors, **TRUTH_LADDER)
        figures = score_outputs(sep, test, bss=False, from_truth=True)
        others = {o: f for o, f in figures.items() if o != output}
        entry["started_at_truth"] = {"ladder": TRUTH_LADDER, "output": output, "test": figures[output],
                                     "other_outputs": others}  # fmt: skip
        for condition, s in figures[output].items():
            print(f"{family} from the truth ({output}) {condition}: SI-SDRi {s['si_sdri_mean']:.2f} dB (full run "
                  f"{entry['test'][condition]['si_sdri_mean']:.2f})", flush=True)  # fmt: skip
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=BENCHMARK_ROOT,
                        help=f"rendered data (default: {BENCHMARK_ROOT})")  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="training runs (default: ROOT/priors)")
    parser.add_argument("--families", nargs="+", choices=list(TRAINING), default=list(TRAINING))
    parser.add_argument("--train-steps", type=int, default=None,
                        help="training steps of the families trained here (default: TRAINING's)")  # fmt: skip
    parser.add_argument("--sigma-max", type=float, nargs="+", default=[1.0, 0.1, 0.03],
                        help="tops of the ladders tried on valid")  # fmt: skip
    parser.add_argument(
        "--levels",
        type=int,
        nargs="+",
        default=[6],
        help="lengths of the ladder tried on valid, one sweep per level (default: 6)",
    )
    parser.add_argument("--denoise-sigmas", type=float, nargs="+", default=[0.01, 0.03, 0.1])
    parser.add_argument("--quick", action="store_true", help="2 test clips per condition, no museval SDR")
    parser.add_argument("--references", action="store_true",
                        help="only the start-at-truth reference, added to --out (after a full run)")  # fmt: skip
    parser.add_argument("--no-ship", action="store_true", help="write nothing into sepmodels/checkpoints/")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/stems_priors.json"))
    args = parser.parse_args()
    bench = StemsBenchmark()
    started = time.perf_counter()
    roots = render_benchmark(args.root, bench, say=print)
    train_root = next(iter(roots.values()))
    work = args.work or args.root / "priors"
    limit = 2 if args.quick else None
    valid = {c: benchmark_clips(r, "valid", bench, limit) for c, r in roots.items()}
    test = {c: benchmark_clips(r, "test", bench, limit) for c, r in roots.items()}
    if args.references:
        references(args, work, test, train_root)
        return

    report: dict = {"command": "python bench/stems_priors.py" + (" --quick" if args.quick else ""),
                    "benchmark": asdict(bench), "test_clips": {c: len(v) for c, v in test.items()},
                    "families": {}}  # fmt: skip
    if args.out.is_file():  # a rerun of some families keeps the others' figures (same benchmark, same clips)
        before = json.loads(args.out.read_text())
        same = json.loads(json.dumps({k: report[k] for k in ("benchmark", "test_clips")}))  # as JSON reads back
        if all(before.get(k) == v for k, v in same.items()):
            report["families"] = {f: e for f, e in before["families"].items() if f not in args.families}
    for family in args.families:
        folder = work / family
        command = train_command(family, train_root, folder, args.train_steps)
        if not (folder / "priors.pt").is_file():
            print(f"training the {family} priors: {' '.join(command[1:])}", flush=True)
            subprocess.run(command, check=True)
        priors = load_priors(folder / "priors.pt")
        steps = {"steps": priors.meta.get("step", TRAINING[family]["steps"])}  # what the priors were trained for
        entry: dict = {"training": {"command": "sepmodels " + " ".join(command[3:]), **TRAINING[family], **steps,
                                    "minutes": training_minutes(folder),
                                    "parameters": priors.parameters_count()}}  # fmt: skip
        print(f"{family}: denoising solo test clips at sigma {args.denoise_sigmas} ...", flush=True)
        entry["denoising"] = denoising(priors, train_root, tuple(args.denoise_sigmas))
        for sigma, stems in entry["denoising"].items():
            print(f"  sigma {sigma}: " + "; ".join(
                f"{s} {v['noisy']:.1f} -> {v['denoised']:.1f} (with another stem {v['with another stem']:.1f})"
                for s, v in stems.items()), flush=True)  # fmt: skip

        choices = []
        for top, levels in itertools.product(args.sigma_max, args.levels):
            settings = {"sigma_max": top, "levels": levels, **SWEEP}
            print(f"{family}: valid, ladder {settings} ...", flush=True)
            sep = make_separator("residual", priors, **settings)
            figures = score_outputs(sep, valid, bss=False)
            for output, by_condition in figures.items():
                db = {c: s["si_sdri_mean"] for c, s in by_condition.items()}
                choices.append({**settings, "output": output, "valid_si_sdri": db,
                                "valid_mean": sum(db.values()) / len(db)})  # fmt: skip
                shown = ", ".join(f"{c} {v:.2f}" for c, v in db.items())
                print(f"  {output}: {shown} dB SI-SDRi", flush=True)
        best = max(choices, key=lambda c: c["valid_mean"])
        settings = {"sigma_max": best["sigma_max"], "levels": best["levels"], **SWEEP}
        print(f"{family}: chosen {settings}, output {best['output']}; test ...", flush=True)
        sep = make_separator("residual", priors, **settings)
        figures = score_outputs(sep, test, bss=not args.quick)
        row = figures[best["output"]]
        for condition, s in row.items():
            print(f"{family} priors ({best['output']}) {condition}: SI-SDRi {s['si_sdri_mean']:.2f} +- "
                  f"{s['si_sdri_spread']['stderr']:.2f} dB (" + ", ".join(f"{n} {v:.1f}" for n, v in
                  s["si_sdri"].items()) + f"), {s['seconds_per_clip']:.1f} s/clip", flush=True)  # fmt: skip
        entry.update(valid=choices, chosen=best, test=row,
                     test_other_outputs={o: f for o, f in figures.items() if o != best["output"]})  # fmt: skip
        report["families"][family] = entry
        if not args.no_ship:
            defaults = {"residual": {**settings, "mask_power": OUTPUTS[best["output"]]}}
            priors.meta.update(sampler_defaults=defaults, stems_benchmark={
                "valid_mean_si_sdri": best["valid_mean"],
                "test_si_sdri": {c: s["si_sdri_mean"] for c, s in row.items()}})  # fmt: skip
            path = CHECKPOINTS / f"stems_{family}.pt"
            priors.save(path)
            print(f"wrote {path}", flush=True)
    report.update(threads=torch.get_num_threads(), machine=platform.processor() or platform.machine(),
                  minutes=round((time.perf_counter() - started) / 60, 1))  # fmt: skip
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
