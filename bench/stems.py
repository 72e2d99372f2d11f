"""The stems benchmark: music separation measured between the floor (the mix) and the ceiling (oracle masks),
with the classical one-dictionary-per-stem baseline, on make-stems renders (or musdb18 with --data musdb).

    python bench/stems.py                       # render what is missing, choose NMF on valid, measure test
    python bench/stems.py --atoms 64 --quick    # one NMF size, 2 test clips per condition: a quick look

Data (``sepmodels.data.stems.StemsBenchmark``): solo stems of the train split (seed 1, 16 tracks of 30 s,
FluidR3 GM); a validation split (seed 2) where every setting is chosen; a test split (seed 3, 8 tracks) that
is only measured. valid and test are rendered twice: with FluidR3 GM (the timbres the models learned) and with
TimGM6mb (the same compositions, timbres never heard). Clips: 10 s from 1 s on, mono, 14 700 Hz, mix = sum.

Rows: the mix itself (the floor), the oracle ratio mask and the oracle Wiener filter (the ceiling of every
mask on this STFT, 2048/512), KL-NMF with one dictionary per stem learned on that stem's solo training audio
(size and mask power chosen on valid; the chosen dictionaries are written to sepmodels/checkpoints/stems_nmf.pt
unless --no-ship). Per stem: SI-SDR, SI-SDRi over the mix, museval's SDR (median over 1 s windows); silent
stems left out and counted. Writes docs/bench/stems.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from sepmodels.data.stems import (
    BENCHMARK_ROOT,
    STEMS,
    StemsBenchmark,
    benchmark_clips,
    read_stems,
    render_benchmark,
    solo_audio,
    track_folders,
)
from sepmodels.evaluation import evaluate_stems
from sepmodels.fileio import atomic_path
from sepmodels.masknet import MaskNetConfig, train_masknet
from sepmodels.masknet import shipped_path as masknet_path
from sepmodels.nmf import NMFConfig, NMFSeparator, StemDictionaries
from sepmodels.nmf import shipped_path as nmf_path
from sepmodels.spectral import STFTConfig, oracle_estimates
from sepmodels.stems_choice import write_choice

DEFAULT_ROOT = BENCHMARK_ROOT


def _dictionaries(root: Path, cache: Path, config: NMFConfig, rate: int) -> StemDictionaries:
    """The dictionaries of ``config`` learned on root's train split; cached, since learning takes minutes."""
    path = cache / f"nmf_{config.atoms}_{config.fit_iter}_{config.seed}.pt"
    if path.is_file():
        found = StemDictionaries.load(path)
        return StemDictionaries(found.names, found.dictionaries, config, rate, found.meta)
    print(f"learning {config.atoms}-atom dictionaries on the solo training stems ...", flush=True)
    dicts = StemDictionaries.fit(solo_audio(root, rate), config, rate, say=lambda line: print(f"  {line}"))
    dicts.save(path)
    return dicts


def _row(name: str, estimate, clips: dict[str, list], bss: bool) -> dict:
    out = {"row": name}
    for condition, items in clips.items():
        scores = evaluate_stems(estimate, items, STEMS, StemsBenchmark.sample_rate, bss=bss, progress=True)
        out[condition] = scores.summary()
        s = out[condition]
        err = s["si_sdri_spread"]["stderr"]
        print(f"{name:<26}{condition:<12} SI-SDRi {s['si_sdri_mean']:6.2f} +- {err:.2f} dB  ("
              + ", ".join(f"{n} {v:.1f}" for n, v in s["si_sdri"].items())
              + f")  {s['seconds_per_clip']:.2f} s/clip", flush=True)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help=f"rendered data (default: {DEFAULT_ROOT})")
    parser.add_argument("--atoms", type=int, nargs="+", default=[32, 64, 128], help="NMF sizes tried on valid")
    parser.add_argument("--powers", type=float, nargs="+", default=[1.0, 2.0], help="mask powers tried on valid")
    parser.add_argument("--masknet-steps", type=int, default=4000, help="training steps of the mask network")
    parser.add_argument("--quick", action="store_true", help="2 test clips per condition, no museval SDR")
    parser.add_argument("--no-ship", action="store_true", help="write nothing into sepmodels/checkpoints/")
    parser.add_argument("--out", type=Path, default=Path("docs/bench/stems.json"))
    args = parser.parse_args()
    bench = StemsBenchmark()
    rate = bench.sample_rate
    started = time.perf_counter()
    roots = render_benchmark(args.root, bench, say=print)
    train_root = next(iter(roots.values()))
    limit = 2 if args.quick else None
    valid = {c: benchmark_clips(r, "valid", bench) for c, r in roots.items()}
    test = {c: benchmark_clips(r, "test", bench, limit) for c, r in roots.items()}
    stft = STFTConfig()

    # NMF: size and mask power chosen by mean SI-SDRi over both validation conditions.
    choices = []
    for atoms in args.atoms:
        dicts = _dictionaries(train_root, args.root / "cache", NMFConfig(atoms=atoms), rate)
        for power in args.powers:
            config = replace(dicts.config, power=power)
            sep = NMFSeparator(StemDictionaries(dicts.names, dicts.dictionaries, config, rate, dicts.meta))
            run = lambda s, sep=sep: sep.separate(s.sum(0))  # noqa: E731
            figures = {c: evaluate_stems(run, items, STEMS, rate, bss=False).summary()["si_sdri_mean"]
                       for c, items in valid.items()}  # fmt: skip
            choices.append({"atoms": atoms, "power": power, "valid_si_sdri": figures,
                            "valid_mean": sum(figures.values()) / len(figures)})  # fmt: skip
            print(f"valid: NMF {atoms} atoms, mask power {power:g}: "
                  + ", ".join(f"{c} {v:.2f}" for c, v in figures.items()) + " dB SI-SDRi", flush=True)  # fmt: skip
    best = max(choices, key=lambda c: c["valid_mean"])
    dicts = _dictionaries(train_root, args.root / "cache", NMFConfig(atoms=best["atoms"]), rate)
    meta = {**dicts.meta, "valid": choices, "chosen": best, "benchmark": asdict(bench)}
    chosen = StemDictionaries(
        dicts.names, dicts.dictionaries, replace(dicts.config, power=best["power"]), rate, meta
    )
    nmf = NMFSeparator(chosen)

    # The supervised bound: Open-Unmix's recipe, small; the step kept and the mask power chosen on valid.
    def on_valid(sep) -> dict[str, float]:
        run = lambda s: sep.separate(s.sum(0))  # noqa: E731
        return {c: evaluate_stems(run, items, STEMS, rate, bss=False).summary()["si_sdri_mean"]
                for c, items in valid.items()}  # fmt: skip

    mean = lambda figures: sum(figures.values()) / len(figures)  # noqa: E731
    tracks = [read_stems(f, rate) for f in track_folders(train_root, "train")]
    print(f"training the mask network on {len(tracks)} training tracks ({args.masknet_steps} steps) ...")
    net = train_masknet(
        tracks, STEMS, rate, MaskNetConfig(), args.masknet_steps, validate=lambda s: mean(on_valid(s))
    )
    powers = {p: on_valid(net.with_power(p)) for p in args.powers}
    best_power = max(powers, key=lambda p: mean(powers[p]))
    net = net.with_power(best_power)
    net.meta.update(valid_by_power={str(p): f for p, f in powers.items()}, benchmark=asdict(bench))
    print("valid: mask network, by mask power: " + "; ".join(
        f"{p:g}: " + ", ".join(f"{c} {v:.2f}" for c, v in f.items()) for p, f in powers.items()))  # fmt: skip
    candidates = {"nmf": best["valid_si_sdri"], "supervised": powers[best_power]}
    if not args.no_ship:
        chosen.save(nmf_path())
        net.save(masknet_path())
        write_choice(candidates)
        print(f"wrote {nmf_path()}, {masknet_path()} and the stems choice")

    bss = not args.quick
    rows = [
        _row("mix (floor)", lambda s: s.sum(0).expand_as(s).clone(), test, bss),
        _row("oracle ratio mask", lambda s: oracle_estimates(s, stft, 1.0), test, bss),
        _row("oracle Wiener filter", lambda s: oracle_estimates(s, stft, 2.0), test, bss),
        _row(f"KL-NMF ({best['atoms']} atoms/stem)", lambda s: nmf.separate(s.sum(0)), test, bss),
        _row("supervised mask network", lambda s: net.separate(s.sum(0)), test, bss),
    ]
    report = {
        "command": "python bench/stems.py" + (" --quick" if args.quick else ""),
        "benchmark": asdict(bench),
        "stft": asdict(stft),
        "test_clips": {c: len(v) for c, v in test.items()},
        "nmf": {"chosen": best, "valid": choices, "fit_minutes": dicts.meta.get("fit_minutes")},
        "supervised": {
            "config": asdict(net.net.config),
            "valid_by_power": net.meta["valid_by_power"],
            **{k: net.meta[k] for k in ("steps", "batch", "seconds", "minutes", "log")},
        },
        "stems_choice": candidates,
        "rows": rows,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
