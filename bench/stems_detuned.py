"""The stems benchmark's test clips off the keys: every stem pitch-shifted by the same few cents.

    python bench/stems_detuned.py                       # the shipped NMF and frame priors, 0 / 25 / 50 cents
    python bench/stems_detuned.py --frames other.pt     # frame priors from another file beside them

The benchmark's music is rendered from MIDI, so every note sits on a key of the equal-tempered scale at
A = 440 Hz, and every model here learned its stems from audio on those keys (the frame priors also from
copies shifted by whole semitones, which stay on the keys). A recording tuned elsewhere, or a band that
drifts, is not. Here the test clips of both conditions are played ``--cents`` higher (each stem resampled as a
tape played faster, :func:`sepmodels.frames.pitch_shifted`, so a clip 50 cents sharp is 2.9 % shorter), and the
shipped KL-NMF dictionaries, the shipped frame priors (and any ``--frames`` files) and the oracle ratio mask are
measured on them. Nothing is chosen here; nothing is trained.

Writes ``docs/bench/stems_detuned.json`` (``--out``). About 6 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels.data.stems import BENCHMARK_ROOT, STEMS, StemsBenchmark, benchmark_clips, render_benchmark  # noqa: E402
from sepmodels.evaluation import evaluate_stems  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from sepmodels.frames import FramePriors, FramePriorSeparator, pitch_shifted  # noqa: E402
from sepmodels.nmf import NMFSeparator, StemDictionaries  # noqa: E402
from sepmodels.spectral import oracle_estimates  # noqa: E402


def detuned(clips: list[tuple[str, torch.Tensor]], cents: float) -> list[tuple[str, torch.Tensor]]:
    """The clips with every stem ``cents`` higher (and as much shorter)."""
    return [(name, torch.stack([pitch_shifted(s, cents / 100) for s in stems])) for name, stems in clips]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--root", type=Path, default=BENCHMARK_ROOT, help=f"rendered data (default: {BENCHMARK_ROOT})"
    )
    parser.add_argument("--cents", type=float, nargs="+", default=[0.0, 25.0, 50.0], help="detunings measured")
    parser.add_argument("--frames", type=Path, nargs="*", default=[], help="more frame-prior files to measure")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "stems_detuned.json")
    args = parser.parse_args()
    if any(not (0 <= c <= 100) for c in args.cents):
        parser.error(f"--cents must lie in [0, 100], got {args.cents}")
    bench = StemsBenchmark()
    rate = bench.sample_rate
    began = time.perf_counter()
    roots = render_benchmark(args.root, bench, say=print)
    test = {c: benchmark_clips(r, "test", bench) for c, r in roots.items()}
    dictionaries = StemDictionaries.load()
    methods = {"KL-NMF (shipped)": NMFSeparator(dictionaries).separate,
               "frame priors (shipped)": FramePriorSeparator(FramePriors.load()).separate}  # fmt: skip
    names = [path.name for path in args.frames]
    if len(set(names)) < len(names):
        parser.error(f"--frames names two files of the same name ({', '.join(names)}): rename one")
    for path in args.frames:
        try:
            methods[f"frame priors ({path.name})"] = FramePriorSeparator(FramePriors.load(path)).separate
        except ValueError as error:  # a missing, corrupt or foreign file: one line
            parser.error(str(error))
    config = dictionaries.config.stft
    rows: dict[str, dict] = {}
    for cents in args.cents:
        for condition, clips in test.items():
            moved = detuned(clips, cents)
            runs = {**{n: (lambda s, f=f: f(s.sum(0))) for n, f in methods.items()},
                    "oracle ratio mask": lambda s: oracle_estimates(s, config)}  # fmt: skip
            for name, run in runs.items():
                s = evaluate_stems(run, moved, STEMS, rate, bss=False).summary()
                rows.setdefault(name, {}).setdefault(f"{cents:g}", {})[condition] = s
                print(f"{cents:4g} cents  {name:<40}{condition:<12} SI-SDRi {s['si_sdri_mean']:6.2f} +- "
                      f"{s['si_sdri_spread']['stderr']:.2f} dB (" + ", ".join(f"{n} {v:.1f}" for n, v in
                      s["si_sdri"].items()) + ")", flush=True)  # fmt: skip
    report = {"command": "python bench/stems_detuned.py " + " ".join(sys.argv[1:]), "benchmark": asdict(bench),
              "split": "test", "cents": args.cents, "rows": rows, "cores": torch.get_num_threads(),
              "minutes": round((time.perf_counter() - began) / 60, 1)}  # fmt: skip
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
