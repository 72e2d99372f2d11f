"""The ``sepmodels`` command line: ``train`` and ``likelihood``.

User mistakes (a bad value, a missing or broken file, a foreign checkpoint) end with one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sepmodels.checkpoint import CheckpointError
from sepmodels.data.audio import AudioError

EXIT_USER_ERROR = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """A command-line value that makes no sense; one line for the user."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from sepmodels.nn.flows import PRESETS

    parser = _Parser(prog="sepmodels", description="Deep generative priors for audio source separation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a set of flow priors (one per source)")
    t.add_argument("--data", choices=["toy"], default="toy", help="training data (default: toy)")
    t.add_argument("--out", required=True, type=Path, help="folder for priors.pt and train_log.csv")
    t.add_argument("--config", choices=sorted(PRESETS), default="default", help="model size (default: default)")
    t.add_argument("--steps", type=_positive_int, help="total optimiser steps (default: 3000)")
    t.add_argument("--batch-size", type=_positive_int, help="clips per step (default: 16)")
    t.add_argument("--length", type=_positive_int, help="samples per training crop (default: 2048)")
    t.add_argument("--lr", type=_positive_float, help="initial learning rate (default: 1e-3)")
    t.add_argument("--seed", type=int, help="seed of data, noise and initialisation (default: 0)")
    t.add_argument("--checkpoint-every", type=_positive_int, help="steps between checkpoints (default: 250)")
    t.add_argument("--plain", action="store_true", help="no noise conditioning: train at the minimum noise only")
    t.add_argument("--resume", action="store_true", help="continue OUT/priors.pt exactly where it stopped")
    t.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("likelihood", help="mean log-likelihood of audio files under each prior")
    s.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="audio files (any rate; stereo is downmixed)"
    )
    s.add_argument("--priors", type=Path, help="priors checkpoint (default: the shipped toy priors)")
    s.add_argument("--sigma", type=_positive_float, help="noise level to score at (default: the priors' smallest)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument(
        "--map",
        type=Path,
        metavar="OUT.npy",
        help="save per-sample maps as float32 [files, priors, T] (NaN past each file's end)",
    )
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sepmodels.nn.flows import FlowConfig
    from sepmodels.train import TrainConfig, Trainer

    overrides = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "length": args.length,
        "lr": args.lr,
        "seed": args.seed,
        "checkpoint_every": args.checkpoint_every,
    }
    train_cfg = replace(TrainConfig(), **{k: v for k, v in overrides.items() if v is not None})
    model_cfg = FlowConfig.preset(args.config)
    if args.plain:
        model_cfg = replace(model_cfg, noise_conditional=False)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    if not args.resume and (args.out / "priors.pt").exists():
        raise UsageError(f"{args.out / 'priors.pt'} exists; pass --resume to continue it or choose another --out")
    trainer = Trainer(
        args.out, model_cfg, train_cfg, resume=args.resume, device=args.device, progress=not args.quiet
    )
    trainer.run()
    if trainer.dist.main:
        print(f"trained {trainer.step} steps; priors written to {trainer.ckpt_path}")
    return 0


def _cmd_likelihood(args: argparse.Namespace) -> int:
    from sepmodels.data.audio import load_audio
    from sepmodels.fileio import atomic_path
    from sepmodels.priors import PriorSet

    if args.map is not None and args.map.is_dir():
        raise UsageError(f"--map {args.map} is a folder; give a file name ending in .npy")
    priors = PriorSet.load(args.priors)
    sigma = priors.default_sigma if args.sigma is None else args.sigma
    if not priors.model.config.noise_conditional and args.sigma is not None:
        print(f"note: these priors are not noise-conditional; --sigma {args.sigma} is ignored", file=sys.stderr)
    clips = []
    for path in args.files:  # validate every file before the slow part
        audio = load_audio(path, priors.sample_rate)
        for note in audio.notes:
            print(f"note: {note}", file=sys.stderr)
        clips.append(audio.samples)
    results, maps = [], []
    for path, clip in zip(args.files, clips, strict=True):
        m = priors.cross_log_prob(clip[None], sigma)[0]  # [N, T]
        maps.append(m.numpy())
        results.append(
            {"file": str(path), "priors": {n: float(v) for n, v in zip(priors.names, m.mean(dim=1), strict=True)}}
        )
    if args.map is not None:
        longest = max(m.shape[1] for m in maps)
        stacked = np.full((len(maps), len(priors), longest), np.nan, dtype=np.float32)
        for i, m in enumerate(maps):
            stacked[i, :, : m.shape[1]] = m
        with atomic_path(args.map) as tmp, open(tmp, "wb") as f:
            np.save(f, stacked)
    if args.json:
        print(json.dumps({"sigma": sigma, "unit": "nats per sample", "results": results}, indent=2))
    else:
        _print_table(results, priors.names, sigma)
    return 0


def _print_table(results: list[dict], names: Sequence[str], sigma: float) -> None:
    width = max(len("file"), *(len(r["file"]) for r in results))
    print(f"mean log-likelihood, nats per sample, at sigma = {sigma:g} (higher = more likely; * = best)")
    print(f"{'file':<{width}}  " + "  ".join(f"{n:>10}" for n in names))
    for r in results:
        best = max(r["priors"], key=r["priors"].get)
        cells = [f"{r['priors'][n]:>9.3f}{'*' if n == best else ' '}" for n in names]
        print(f"{r['file']:<{width}}  " + "  ".join(cells))


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from sepmodels.train import TrainingError

    commands = {"train": _cmd_train, "likelihood": _cmd_likelihood}
    try:
        return commands[args.command](args)
    except (AudioError, CheckpointError, TrainingError, UsageError) as err:
        print(f"sepmodels {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"sepmodels {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
