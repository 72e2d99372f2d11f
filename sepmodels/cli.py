"""The ``sepmodels`` command line: ``train``, ``export``, ``likelihood``, ``separate``, ``evaluate``.

User mistakes (a bad value, a missing or broken file, a foreign checkpoint) end with one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from sepmodels.checkpoint import DEFAULT_SAMPLER_PRIORS, CheckpointError, default_sampler_priors_path
from sepmodels.data.audio import AudioError

EXACT = "exact"  # --priors exact: the exact toy prior (sepmodels.priors.EXACT)
STEMS = "stems"  # --priors stems: the best shipped music model on validation (sepmodels/stems_choice.py)
MUSIC_METHODS = ("nmf", "supervised", "frames", "irm", "wiener")  # irm and wiener are oracles: evaluate only

EXIT_USER_ERROR = 1
EXIT_USAGE = 2


class UsageError(ValueError):
    """A command-line value that makes no sense; one line for the user."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(low: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``low`` (``what`` names it in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from sepmodels.registry import KINDS, preset_names

    parser = _Parser(prog="sepmodels", description="Deep generative priors for audio source separation.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser(
        "train",
        help="train priors (flow, autoregressive or score; one per source), a VAE posterior, the notes VQ-VAE, "
        "or the drum CWAE and its inverter",
    )
    t.add_argument(
        "--data",
        choices=["toy", "musdb", "notes", "drums"],
        help="training data (default: the model's own: toy; notes for vqvae; drums for cwae and mcnn)",
    )
    t.add_argument(
        "--root", type=Path, help="--data musdb: the musdb18 folder; notes: make-notes output; drums: make-drums"
    )
    t.add_argument("--mono", choices=["left", "mean"], help="--data musdb: left channel (the thesis) or downmix")
    t.add_argument("--out", required=True, type=Path, help="folder for priors.pt and train_log.csv")
    model_help = "; ".join(f"{name}: {kind.summary}" for name, kind in KINDS.items()) + " (default: flow)"
    t.add_argument("--model", choices=list(KINDS), default="flow", help=model_help)
    t.add_argument(
        "--priors", type=Path, help="--model vae: the frozen priors, flow or wave (default: the shipped flows)"
    )
    t.add_argument("--config", choices=preset_names(), default="default", help="model size (default: default)")
    t.add_argument(
        "--prior-sigma",
        type=_positive_float,
        help="--model vae: the noise level the frozen priors score the posterior's draws at (default: the "
        "priors' smallest, 0.01)",
    )
    t.add_argument("--steps", type=_positive_int, help="total optimiser steps (default: 3000)")
    t.add_argument("--batch-size", type=_positive_int, help="clips per step (default: 16)")
    t.add_argument("--length", type=_positive_int, help="samples per training crop (default: 2048)")
    t.add_argument("--lr", type=_positive_float, help="initial learning rate (default: 1e-3)")
    t.add_argument(
        "--sigma-min",
        type=_positive_float,
        help="smallest training noise; the only one for --plain flows (default: 0.01)",
    )
    t.add_argument("--sigma-max", type=_positive_float, help="largest training noise (default: 1.0)")
    t.add_argument(
        "--objective",
        choices=["dsm", "sdr"],
        help="--model score: denoising score matching, or the denoised clip's error in dB, every noise level "
        "alike (default: dsm)",
    )
    t.add_argument("--precision", choices=["fp32", "bf16"], help="bf16: autocast the forward pass (default: fp32)")
    t.add_argument("--compile", action="store_true", help="torch.compile the model (pays on a GPU, for long runs)")
    t.add_argument(
        "--init", type=Path, metavar="CKPT", help="fine-tune: start from these priors (same --model and --config)"
    )
    t.add_argument("--seed", type=int, help="seed of data, noise and initialisation (default: 0)")
    t.add_argument("--checkpoint-every", type=_positive_int, help="steps between checkpoints (default: 250)")
    t.add_argument("--log-every", type=_positive_int, help="steps between rows of train_log.csv (default: 10)")
    t.add_argument(
        "--energy",
        choices=["codecarbon", "estimate"],
        help="energy and CO2 in the log: CodeCarbon's reading or a stated per-core estimate (default: codecarbon)",
    )
    t.add_argument("--country", help="ISO 3166 alpha-3 code of the grid for CodeCarbon's CO2 (default: FRA)")
    t.add_argument("--plain", action="store_true", help="no noise conditioning: train at the minimum noise only")
    t.add_argument("--resume", action="store_true", help="continue OUT/priors.pt exactly where it stopped")
    t.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("likelihood", help="mean log-likelihood of audio files under each prior")
    s.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="audio files (any rate; stereo is downmixed)"
    )
    s.add_argument(
        "--priors",
        type=Path,
        help="priors checkpoint, or 'exact' for the exact toy prior (default: the shipped toy priors)",
    )
    s.add_argument("--sigma", type=_positive_float, help="noise level to score at (default: the priors' smallest)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument(
        "--map",
        type=Path,
        metavar="OUT.npy",
        help="save per-sample maps as float32 [files, priors, T] (NaN past each file's end)",
    )
    x = sub.add_parser("export", help="write a training checkpoint's priors without the training state")
    x.add_argument("checkpoint", type=Path, metavar="CKPT", help="a checkpoint written by train")
    x.add_argument("out", type=Path, metavar="OUT.pt", help="where to write the inference-only priors")

    sep = sub.add_parser("separate", help="separate a mix into one file per source")
    sep.add_argument("mix", type=Path, metavar="MIX.wav", help="the mix (any rate; stereo is downmixed)")
    sep.add_argument("--out", required=True, type=Path, help="folder for <source>.wav")
    sep.add_argument(
        "--peak-safe",
        action="store_true",
        help="scale all estimates by one factor so that none peaks above 0.99 (their balance is kept)",
    )
    _sampler_arguments(sep)

    ev = sub.add_parser(
        "evaluate", help="SI-SDR of separating test mixes (music: SI-SDRi and museval's SDR, beside the floor)"
    )
    ev.add_argument(
        "--data",
        choices=["toy", "stems", "musdb"],
        default="toy",
        help="toy mixes; stems: make-stems renders (the stems benchmark); musdb: musdb18 or musdb18-HQ "
        "(default: toy)",
    )
    ev.add_argument("--root", type=Path, help="--data stems or musdb: the folder; clips come from its --split")
    ev.add_argument("--split", choices=["valid", "test"], default="test",
                    help="--data stems: the split measured (default: test; choose settings on valid)")  # fmt: skip
    ev.add_argument("--n", type=_positive_int, help="number of mixes (default: toy 8; music every track)")
    ev.add_argument("--seconds", type=_positive_float, help="length of each mix (default: toy 1; music 10)")
    ev.add_argument("--offset", type=float, default=1.0,
                    help="music: where each track's clip starts, in seconds (default: 1)")  # fmt: skip
    ev.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _sampler_arguments(ev, oracle=True)

    ms = sub.add_parser(
        "make-stems", help="render random musical tracks with FluidSynth, in the musdb18-HQ layout"
    )
    ms.add_argument("--out", required=True, type=Path, help="folder for train/ and test/ (musdb18-HQ layout)")
    ms.add_argument("--tracks", type=_positive_int, default=10, help="number of tracks (default: 10)")
    ms.add_argument("--seconds", type=_positive_float, default=30.0, help="length of each track (default: 30)")
    ms.add_argument("--seed", type=int, default=0, help="seed of the compositions (default: 0)")
    ms.add_argument("--soundfont", type=Path, help="a General-MIDI .sf2 (default: Debian's, if installed)")
    ms.add_argument(
        "--split",
        choices=["train", "valid", "test"],
        help="every track into this split (default: the last 20 %% to test/, the others to train/)",
    )
    ms.add_argument("--quiet", action="store_true", help="no progress output")

    mn = sub.add_parser(
        "make-notes", help="render an NSynth-like set of single notes (4 s, 16 kHz) with FluidSynth"
    )
    mn.add_argument("--out", required=True, type=Path, help="folder for train/, valid/ and test/")
    mn.add_argument("--families", nargs="+", metavar="FAMILY", help="instrument families (default: all 11)")
    mn.add_argument("--pitches", nargs=2, type=int, metavar=("LO", "HI"), default=(36, 84),
                    help="MIDI pitch range, inclusive (default: 36 84)")  # fmt: skip
    mn.add_argument("--pitch-step", type=_positive_int, default=2, help="every Nth pitch (default: 2)")
    mn.add_argument("--velocities", nargs="+", type=int, help="MIDI velocities (default: 25 50 75 100 127)")
    mn.add_argument("--seed", type=int, default=0, help="seed of the split by instrument (default: 0)")
    mn.add_argument("--soundfont", type=Path, help="a General-MIDI .sf2 (default: Debian's, if installed)")
    mn.add_argument("--quiet", action="store_true", help="no progress output")

    md = sub.add_parser(
        "make-drums", help="render labelled drum one-shots (11 classes, 22.05 kHz) with FluidSynth, split by kit"
    )
    md.add_argument("--out", required=True, type=Path, help="folder for train/ and test/")
    md.add_argument("--per-class", type=_positive_int, default=116,
                    help="hits per class and kit, before duplicates are dropped (default: 116)")  # fmt: skip
    md.add_argument("--test-kits", type=_positive_int, default=3, help="whole kits that go to test (default: 3)")
    md.add_argument("--seed", type=int, default=0, help="seed of the hits and of the split by kit (default: 0)")
    md.add_argument("--soundfont", nargs="+", type=Path, metavar="FILE",
                    help="General-MIDI .sf2 files to take kits from (default: all Debian has)")  # fmt: skip
    md.add_argument("--quiet", action="store_true", help="no progress output")

    fc = sub.add_parser(
        "fit-codes", help="fit the codemap priors of a notes VQ-VAE (for apps/inpainting.py) and score them"
    )
    fc.add_argument("--codec", type=Path, help="a notes VQ-VAE (train --model vqvae; default: the shipped one)")
    fc.add_argument("--notes", required=True, type=Path, help="a make-notes folder: train/ fits, test/ scores")
    fc.add_argument("--out", required=True, type=Path, help="the codemap priors file to write (.pt)")
    fc.add_argument("--transformer-steps", type=_positive_int, default=1500,
                    help="training steps of the masked transformer (default: 1500)")  # fmt: skip
    fc.add_argument("--test-notes", type=_positive_int, default=200,
                    help="held-out notes to score the priors on (default: 200)")  # fmt: skip
    fc.add_argument("--seed", type=int, default=0, help="seed of the transformer and the scoring boxes")
    fc.add_argument("--energy", choices=["codecarbon", "estimate"], default="codecarbon",
                    help="how the fitting's energy is measured (default: codecarbon)")  # fmt: skip
    fc.add_argument("--quiet", action="store_true", help="no progress output")

    fw = sub.add_parser(
        "fit-waves", help="fit learned wave priors (shape, pitch and amplitude of each toy source) to solo clips"
    )
    fw.add_argument("--out", required=True, type=Path, help="the wave priors file to write (.pt)")
    fw.add_argument("--clips", type=_positive_int, default=64,
                    help="solo clips per source that fit the shapes (default: 64)")  # fmt: skip
    fw.add_argument("--length", type=_positive_int, default=4096, help="samples per clip (default: 4096)")
    fw.add_argument("--census", type=_positive_int, default=2000,
                    help="solo clips per source (of 2048 samples) whose pitches make the pitch distribution "
                    "(default: 2000)")  # fmt: skip
    fw.add_argument("--rounds", type=_positive_int, default=8, help="rounds of hard EM (default: 8)")
    fw.add_argument("--seed", type=int, default=0, help="seed of the training clips (default: 0)")
    fw.add_argument("--init", type=Path,
                    help="wave priors to go on from (more rounds on the same clips: same --seed) instead of a "
                    "sine")  # fmt: skip
    fw.add_argument("--quiet", action="store_true", help="no progress bar")

    fh = sub.add_parser(
        "fit-harmonic",
        help="fit harmonic priors (learned shapes on a continuous, moving pitch) to solo clips of the richer toy",
    )
    fh.add_argument("--out", required=True, type=Path, help="the harmonic priors file to write (.pt)")
    fh.add_argument("--clips", type=_positive_int, default=32,
                    help="solo clips per source and toy variant (default: 32)")  # fmt: skip
    fh.add_argument(
        "--variants",
        nargs="+",
        choices=["keys", "continuous", "moving"],
        default=["keys", "continuous", "moving"],
        help="toy variants the clips come from, the same number from each (default: all three)",
    )
    fh.add_argument("--seconds", type=_positive_float, default=1.0, help="seconds per clip (default: 1)")
    fh.add_argument(
        "--shapes",
        type=Path,
        help="wave priors whose learned shapes the sources keep (default: the shipped toy_waves.pt)",
    )
    fh.add_argument("--seed", type=int, default=0, help="seed of the training clips (default: 0)")
    fh.add_argument("--quiet", action="store_true", help="no progress bar")

    tp = sub.add_parser(
        "train-posterior",
        help="train the amortised posterior: an encoder that reads each source's note (harmonic priors' "
        "parameters) off a toy mix, trained on mixes alone",
    )
    tp.add_argument("--out", required=True, type=Path, help="the posterior file to write (.pt)")
    tp.add_argument("--priors", type=Path,
                    help="the harmonic priors it reads (default: the shipped toy_harmonic.pt)")  # fmt: skip
    tp.add_argument("--sleep-steps", type=_non_negative_int, default=2000,
                    help="steps on mixes drawn from the priors themselves (default: 2000)")  # fmt: skip
    tp.add_argument("--elbo-steps", type=_non_negative_int, default=0,
                    help="steps of the ELBO on unlabelled toy mixes after the sleep phase (default: 0; measured "
                    "not to help, README)")  # fmt: skip
    tp.add_argument("--mixes", type=_positive_int, default=96,
                    help="unlabelled mixes per toy variant for the ELBO (default: 96)")  # fmt: skip
    tp.add_argument("--variants", nargs="+", choices=["keys", "continuous", "moving"],
                    default=["keys", "continuous", "moving"],
                    help="toy variants of the ELBO's mixes (default: all three)")  # fmt: skip
    tp.add_argument("--seconds", type=_positive_float, default=1.0, help="seconds per mix (default: 1)")
    tp.add_argument("--config", choices=["default", "tiny"], default="default", help="encoder size")
    tp.add_argument("--init", type=Path,
                    help="an amortised posterior over the same priors to go on from (e.g. --sleep-steps 0 to add "
                    "the ELBO phase to a sleep-only one)")  # fmt: skip
    tp.add_argument("--seed", type=int, default=1, help="seed of the draws and the ELBO's mixes (default: 1)")
    tp.add_argument("--quiet", action="store_true", help="no progress bar")

    st = sub.add_parser("study", help="run a study of the priors and write its results file (for apps/priors.py)")
    st.add_argument(
        "study",
        choices=["cross", "noise", "probes", "samples", "denoise", "all"],
        help="cross-likelihood, noise conditioning, constant/noise probes, samples, one-step denoising against "
        "the exact toy prior, or all five (the first three need flow priors)",
    )
    st.add_argument("--out", required=True, type=Path, help="folder for <study>.pt")
    st.add_argument(
        "--priors",
        type=Path,
        help="priors checkpoint, or 'exact' for the exact toy prior (default: the shipped toy priors)",
    )
    st.add_argument("--n", type=_positive_int, help="test clips per source (default: per study)")
    st.add_argument("--seconds", type=_positive_float, help="length of each clip or sample (default: per study)")
    st.add_argument("--seed", type=int, default=0, help="seed of the test clips (default: 0)")
    st.add_argument("--data", choices=["toy", "musdb"], default="toy", help="test data (default: toy)")
    st.add_argument("--root", type=Path, help="--data musdb: the musdb folder; clips come from its test split")
    st.add_argument("--mono", choices=["left", "mean"], default="left",
                    help="--data musdb: left channel (the thesis) or downmix (as the stems bench)")  # fmt: skip
    st.add_argument(
        "--base-steps",
        type=_positive_int,
        default=300,
        help="noise study: steps of the plain flow before fine-tuning (default: 300)",
    )
    st.add_argument(
        "--finetune-steps",
        type=int,
        default=100,
        help="noise study: steps of each fine-tune; 0 skips the fine-tuned side (default: 100)",
    )
    st.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    st.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def _sampler_arguments(p: argparse.ArgumentParser, oracle: bool = False) -> None:
    from sepmodels.inference.langevin import METHOD_DEFAULTS, METHODS, LangevinConfig

    d = LangevinConfig()
    p.add_argument(
        "--priors",
        type=Path,
        help=f"priors checkpoint, 'harmonic' or 'waves' for the shipped harmonic or on-key wave priors, 'exact' "
        f"for the exact toy prior, or 'stems' for the best shipped music model "
        f"(drums, bass, other, vocals; chosen on the stems benchmark's validation split); with --method nmf, "
        f"supervised or frames, that model's file (default: the shipped {DEFAULT_SAMPLER_PRIORS})",
    )
    p.add_argument(
        "--method",
        choices=[*METHODS, "vae", *MUSIC_METHODS],
        help=f"Langevin sampler; vae: the posterior means of --posterior; music: nmf (one KL-NMF dictionary per "
        f"stem), frames (a VAE per stem over spectrum frames, fitted to the mix from its encoder's one-pass "
        f"answer) or supervised "
        f"(a mask network trained on mixtures and stems)"
        f"{'; irm, wiener: the oracle ratio mask or Wiener filter from the true stems' if oracle else ''} "
        f"(default: {d.method}; for --priors stems or music data, the shipped music choice)",
    )
    p.add_argument(
        "--posterior",
        type=Path,
        metavar="CKPT",
        help="--method vae: 'amortised' (the shipped amortised posterior, the default), 'per-sample' (the "
        "shipped per-sample VAE) or a posterior file (train-posterior, or train --model vae)",
    )
    p.add_argument(
        "--sweeps",
        type=_non_negative_int,
        default=0,
        help="--method vae with an amortised posterior: reading sweeps after its pass (each tries every source's "
        "other likely notes in the whole mix and keeps the best change; not the residual sampler's --steps; "
        "default: 0, the pass alone)",
    )
    own = "; ".join(
        f"{m} {v['sigma_max']:g}, {v['levels']} levels, {v['steps']} steps" for m, v in METHOD_DEFAULTS.items()
    )
    p.add_argument(
        "--steps", type=_positive_int, help="steps per noise level (residual: sweeps; default: the method's own)"
    )
    p.add_argument("--levels", type=_positive_int, help="noise levels (default: the method's own)")
    p.add_argument(
        "--sigma-max", type=_positive_float, help=f"largest noise level (default, the method's own: {own})"
    )
    p.add_argument("--sigma-min", type=_positive_float, default=d.sigma_min, help=f"(default: {d.sigma_min})")
    p.add_argument(
        "--delta", type=_positive_float, default=d.delta, help=f"step size at sigma-min (default: {d.delta})"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler (default: 0)")
    p.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _resolve_method(args: argparse.Namespace, music: bool = False) -> str:
    """``--method``, or the default for the priors and data: the shipped music choice for ``--priors stems`` or
    music data, else the samplers' default; a method the chosen priors cannot drive is one line."""
    from sepmodels.inference.langevin import LangevinConfig
    from sepmodels.stems_choice import stems_method

    stems = args.priors is not None and str(args.priors) == STEMS
    method = args.method or _music_method_of(args.priors)
    music_default = stems or (music and args.priors is None)  # priors given for music data are sampled
    method = method or (stems_method() if music_default else LangevinConfig.method)
    if stems and method not in MUSIC_METHODS:
        raise UsageError(f"--priors stems are music models (--method nmf, frames or supervised), not {method}")
    if method in MUSIC_METHODS and args.priors is not None and str(args.priors) == EXACT:
        raise UsageError(f"--method {method} separates music; the exact toy prior is for the toy oscillators")
    args.method = method
    return method


def _music_method_of(path: Path | None) -> str | None:
    """The music method whose model file ``path`` is (NMF dictionaries, frame priors or a mask network), else
    None."""
    if path is None or str(path) in (STEMS, EXACT) or not Path(path).is_file():
        return None
    from sepmodels.checkpoint import load_checkpoint

    try:
        found = load_checkpoint(path).get("class")
    except CheckpointError:
        return None  # the loader of the method named will say what is wrong with it
    return {"StemDictionaries": "nmf", "MaskNet": "supervised", "FramePriors": "frames"}.get(found)


def _check_sweeps(args: argparse.Namespace) -> None:
    """``--sweeps`` names an amortised posterior's reading sweeps: with any other method it is an error."""
    if getattr(args, "sweeps", 0) and args.method != "vae":
        raise UsageError(
            f"--sweeps is for --method vae (an amortised posterior's reading sweeps), not {args.method}"
        )


def _separator(args: argparse.Namespace, progress: bool = False, announce=None):
    """The separator that ``--method`` and its options name: NMF dictionaries, frame priors, a mask network, a
    VAE posterior or a sampler under priors (``args.method`` resolved by :func:`_resolve_method`)."""
    from sepmodels.inference.separator import make_separator

    _check_sweeps(args)
    spec = None if args.priors is None or str(args.priors) == STEMS else args.priors
    if args.method == "nmf":
        from sepmodels.nmf import NMFSeparator, StemDictionaries

        return NMFSeparator(StemDictionaries.load(spec))
    if args.method == "frames":
        from sepmodels.frames import FramePriors, FramePriorSeparator

        return FramePriorSeparator(FramePriors.load(spec))
    if args.method == "supervised":
        from sepmodels.masknet import MaskNetSeparator

        return MaskNetSeparator.load(spec)
    if args.method == "vae":
        return make_separator("vae", posterior=_demixer(args))
    priors = _load_priors(args.priors, default_sampler_priors_path(), args.device)
    settings = {"sigma_max": args.sigma_max, "sigma_min": args.sigma_min, "levels": args.levels,
                "steps": args.steps, "delta": args.delta, "seed": args.seed}  # fmt: skip
    try:
        return make_separator(args.method, priors, progress=progress, announce=announce, **settings)
    except ValueError as err:
        raise UsageError(str(err)) from None


def _load_priors(spec: Path | None, default: Path | None, device: str | None):
    """``--priors``: ``exact`` (the exact toy prior) or a checkpoint; None means ``default``."""
    from sepmodels.devices import pick_device
    from sepmodels.priors import load_priors

    if spec is not None and str(spec) == EXACT and device not in (None, "cpu"):
        print("note: the exact toy prior runs on the CPU; --device is ignored", file=sys.stderr)
        device = None
    return load_priors(spec, default, "cpu" if spec is not None and str(spec) == EXACT else pick_device(device))


def _cmd_export(args: argparse.Namespace) -> int:
    from sepmodels.checkpoint import load_checkpoint
    from sepmodels.inference.posterior import Demixer
    from sepmodels.priors import PriorSet

    if args.out.is_dir():
        raise UsageError(f"{args.out} is a folder; give a file name ending in .pt")
    ckpt = load_checkpoint(args.checkpoint)
    from sepmodels.inpaint.vqvae import NoteCodec

    if ckpt.get("class") == NoteCodec.CLASS:  # the notes VQ-VAE: drop the optimiser and the random streams
        codec = NoteCodec.load(args.checkpoint)
        codec.save(args.out)
        count = sum(p.numel() for p in codec.model.parameters())
        what = f"a notes VQ-VAE ({count} parameters, {codec.config.codebook_size} codes)"
    elif ckpt.get("class") in ("CWAE", "MCNN"):  # the drum machine's CWAE or its inverter
        from sepmodels.drums.cwae import DrumAutoencoder
        from sepmodels.drums.mcnn import DrumInverter

        model = (DrumAutoencoder if ckpt["class"] == "CWAE" else DrumInverter).load(args.checkpoint)
        model.save(args.out)
        count = sum(p.numel() for p in model.model.parameters())
        what = f"a drum {ckpt['class']} ({count} parameters)"
    elif ckpt.get("class") == Demixer.CLASS:  # a VAE posterior
        demixer = Demixer.from_checkpoint(ckpt, str(args.checkpoint))
        demixer.save(args.out)
        count = sum(p.numel() for p in demixer.encoder.parameters())
        what = f"a VAE posterior for {', '.join(demixer.names)} ({count} parameters)"
    else:
        priors = PriorSet.from_checkpoint(ckpt, str(args.checkpoint))
        priors.save(args.out)
        what = f"{len(priors)} {priors.kind} priors ({priors.parameters_count()} parameters)"
    size = args.out.stat().st_size / 1e6
    print(f"wrote {what} to {args.out} ({size:.1f} MB)")
    return 0


def _cmd_separate(args: argparse.Namespace) -> int:
    import os
    import shutil
    import tempfile

    from tqdm.auto import tqdm

    from sepmodels import heldout
    from sepmodels.data import toy
    from sepmodels.data.audio import load_audio, save_audio
    from sepmodels.data.stems import STEMS
    from sepmodels.inference.separator import LangevinSeparator, SeparationError

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    if _resolve_method(args) in ("irm", "wiener"):
        raise UsageError(f"--method {args.method} is an oracle: it needs the true stems (use it with evaluate)")
    announce = lambda line: tqdm.write(f"note: {line}", file=sys.stderr)  # noqa: E731
    separator = _separator(args, progress=not args.quiet, announce=announce)
    names, sample_rate = separator.names, separator.sample_rate
    priors = getattr(separator, "priors", None)
    audio = load_audio(args.mix, sample_rate, resample=priors is None or priors.kind != EXACT)
    for note in audio.notes:
        print(f"note: {note}", file=sys.stderr)
    try:
        separator.valid_length(audio.samples.shape[0])  # a clip the model cannot take: say so before any work
    except ValueError as err:
        raise UsageError(str(err)) from None
    # the wrong priors for the clip: toy priors on music, music models on a toy mix (said before any work)
    if tuple(names) == tuple(toy.SOURCES):
        wrong = heldout.toy_priors_note(audio.samples, sample_rate, variants=heldout.toy_variants(priors))
    else:
        wrong = heldout.stems_priors_note(audio.samples, sample_rate) if tuple(names) == STEMS else None
    if wrong:
        print(f"note: {wrong}", file=sys.stderr)
    sampler = isinstance(separator, LangevinSeparator)  # the amortised posterior has priors too, and no steps
    if sampler:
        print(f"separating {audio.samples.shape[0] / sample_rate:.2f} s with {args.method} and {priors.kind} "
              "priors; timing the first steps for an estimate", file=sys.stderr)  # fmt: skip
    try:
        estimates = separator.separate(audio.samples)
    except (ValueError, SeparationError) as err:
        raise UsageError(str(err)) from None
    how = separator.describe()
    if sampler:
        how = (f"{args.method}, {separator.steps_run} steps, final mix error {separator.last.mix_error:.2e}"
               f"{separator.output}")  # fmt: skip
    whole = audio.samples * (len(names) if getattr(separator, "mix", "mean") == "mean" else 1)
    for line in _loudness_notes(estimates, whole, names):
        print(f"note: {line}", file=sys.stderr)
    peak = float(estimates.abs().max())
    if args.peak_safe and peak > 0.99:
        estimates = estimates * (0.99 / peak)
        print(f"note: --peak-safe scaled every estimate by {0.99 / peak:.3f}", file=sys.stderr)
    # All files or none: write into a temporary folder beside --out, then move them in.
    args.out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{args.out.name}.", dir=args.out.parent))
    try:
        for name, est in zip(names, estimates, strict=True):
            save_audio(staging / f"{name}.wav", est, sample_rate)
        args.out.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(staging / f"{name}.wav", args.out / f"{name}.wav")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    print(f"wrote {', '.join(f'{n}.wav' for n in names)} to {args.out} ({how})")
    return 0


def _loudness_notes(estimates, mixture, names) -> list[str]:
    """What a listener should know before playing the estimates: peaks above full scale (float WAVs keep them,
    most players clip them) and estimates louder than the whole mix (a source the mix may not hold, or a run
    that did not separate). ``mixture`` is what the sources add up to: N times a mean mix."""
    notes = []
    mix_rms = float(mixture.pow(2).mean().sqrt())
    for name, est in zip(names, estimates, strict=True):
        peak, rms = float(est.abs().max()), float(est.pow(2).mean().sqrt())
        if peak > 1.0:
            notes.append(f"{name} peaks at {peak:.2f}, above full scale (most players clip it; pass --peak-safe)")
        if rms > mix_rms:
            notes.append(f"{name} is louder than the mix itself (RMS {rms:.2f} against {mix_rms:.2f}): it was "
                         "probably not separated, or the mix does not hold it")  # fmt: skip
    return notes


def _demixer(args: argparse.Namespace):
    from sepmodels.devices import pick_device
    from sepmodels.inference.amortised import AmortisedPosterior, load_posterior

    posterior = load_posterior(args.posterior, device=pick_device(args.device))
    if getattr(args, "sweeps", 0):
        if not isinstance(posterior, AmortisedPosterior):
            raise UsageError("--sweeps is for an amortised posterior (--posterior amortised or train-posterior's)")
        posterior.sweeps = args.sweeps
    return posterior


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from sepmodels.data import toy
    from sepmodels.evaluation import evaluate_separator
    from sepmodels.metrics import verdict

    music = args.data in ("stems", "musdb")
    if music and args.root is None:
        raise UsageError(
            f"--data {args.data} needs --root PATH (a make-stems folder, or a musdb18 or musdb18-HQ folder)"
        )
    if not music and args.root is not None:
        raise UsageError("--root is for --data stems or musdb")
    method = _resolve_method(args, music)
    if method in MUSIC_METHODS and not music:
        raise UsageError(f"--method {method} separates music: pass --data stems or musdb with --root")
    if music:
        return _evaluate_music(args)
    args.n, args.seconds = args.n or 8, args.seconds or 1.0
    model = _separator(args, progress=not args.quiet)
    try:
        length = model.valid_length(int(args.seconds * model.sample_rate))
    except ValueError as err:
        raise UsageError(str(err)) from None
    if model.names != toy.SOURCES:
        raise UsageError(
            f"--data {args.data} needs models of {', '.join(toy.SOURCES)}; these are {', '.join(model.names)}"
        )
    truths = toy.toy_test_set(args.n, length, seed=args.seed)
    result = evaluate_separator(model, truths, progress=not args.quiet)
    sdr, floor = result.separated, result.mix  # [n, N]
    steps = model.max_steps
    report = {
        "method": method,
        "steps": steps,
        "mixes": args.n,
        "seconds": length / model.sample_rate,
        "si_sdr": {n: float(v) for n, v in zip(model.names, sdr.mean(0), strict=True)},
        "si_sdr_mean": float(sdr.mean()),
        "mix_si_sdr": {n: float(v) for n, v in zip(model.names, floor.mean(0), strict=True)},
        "mix_si_sdr_mean": float(floor.mean()),
    }
    report["verdict"] = verdict([report["si_sdr"][n] for n in model.names],
                                [report["mix_si_sdr"][n] for n in model.names])  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"SI-SDR in dB, mean over {args.n} {args.data} mixes of {report['seconds']:.2f} s "
            f"({method}, {steps} steps)"
        )
        print(f"{'source':<10}{'separated':>11}{'mix itself':>12}")
        for n in model.names:
            print(f"{n:<10}{report['si_sdr'][n]:>11.2f}{report['mix_si_sdr'][n]:>12.2f}")
        print(f"{'mean':<10}{report['si_sdr_mean']:>11.2f}{report['mix_si_sdr_mean']:>12.2f}")
        print(f"verdict: {report['verdict']} (separated: every source 10 dB above the mix itself)")
    return 0


def _music_clips(args: argparse.Namespace, sample_rate: int) -> list:
    """``--data stems`` or ``musdb``: ``(track, stems [4, L])`` of ``--seconds`` from ``--offset`` on."""
    from dataclasses import replace

    from sepmodels.data.stems import StemsBenchmark, benchmark_clips, cut_clip

    bench = replace(StemsBenchmark(), offset=args.offset, clip_seconds=args.seconds, sample_rate=sample_rate)
    if args.data == "stems":
        return benchmark_clips(args.root, args.split, bench, args.n)
    from sepmodels.data import musdb

    if args.split != "test":
        raise UsageError("--data musdb measures musdb's own test split; --split is for --data stems")
    data = musdb.MusdbData(musdb.MusdbConfig(str(args.root), mono="mean", sample_rate=sample_rate), "test")
    names = [data.tracks[i].name for i in range(min(len(data), args.n or len(data)))]
    return [(name, cut_clip(data.stems(i), bench, f"musdb track {name}")) for i, name in enumerate(names)]


def _evaluate_music(args: argparse.Namespace) -> int:
    """Music: per stem SI-SDR, SI-SDRi over the mix and museval's SDR, the floor and the oracle mask beside."""
    from sepmodels.data.stems import STEMS as MUSIC_STEMS
    from sepmodels.evaluation import evaluate_stems
    from sepmodels.spectral import STFTConfig, oracle_estimates

    if args.offset < 0:
        raise UsageError(f"--offset must be 0 or more, got {args.offset:g}")
    args.seconds = args.seconds or 10.0
    oracle = {"irm": 1.0, "wiener": 2.0}.get(args.method)
    _check_sweeps(args)
    stft = STFTConfig()
    if oracle is None:
        model = _separator(args, progress=not args.quiet)
        names, sample_rate = tuple(model.names), int(model.sample_rate)
        if names != MUSIC_STEMS:
            raise UsageError(f"--data {args.data} needs models of {', '.join(MUSIC_STEMS)}; these are "
                             f"{', '.join(names)}")  # fmt: skip
        # A mean-mix model (the samplers, the VAE) takes the mean of the stems and returns them at their own
        # scale; a sum-mix model (masks, NMF) takes their sum.
        share = 1.0 if getattr(model, "mix", "mean") == "sum" else 1.0 / len(names)
        try:
            model.valid_length(round(args.seconds * sample_rate))
        except ValueError as err:
            raise UsageError(str(err)) from None

        def estimate(stems):
            return model.separate(stems.sum(0) * share, stems)

        steps, how = model.max_steps, model.describe()
    else:
        from sepmodels.data.musdb import SAMPLE_RATE

        names, sample_rate, steps = MUSIC_STEMS, SAMPLE_RATE, 0
        how = f"oracle {'ratio mask' if oracle == 1 else 'Wiener filter'} from the true stems"

        def estimate(stems):
            return oracle_estimates(stems, stft, oracle)

    try:
        stft.check_length(round(args.seconds * sample_rate))
    except ValueError as err:
        raise UsageError(f"--seconds {args.seconds:g}: {err}") from None
    clips = _music_clips(args, sample_rate)
    scores = evaluate_stems(estimate, clips, names, sample_rate, bss=True, progress=not args.quiet).summary()
    ceiling = evaluate_stems(lambda s: oracle_estimates(s, stft, 1.0), clips, names, sample_rate, bss=False)
    ceiling_db = ceiling.summary()["si_sdri_mean"]
    gain = scores["si_sdri_mean"]
    share_of_way = 100 * gain / ceiling_db if ceiling_db > 0 else float("nan")
    if gain <= 0.5:
        verdict = f"not separated: {gain:.1f} dB SI-SDRi, no better than the mix itself (0)"
    else:
        verdict = (f"{gain:.1f} dB SI-SDRi: {share_of_way:.0f} % of the way from the mix itself (0 dB) to the "
                   f"oracle ratio mask ({ceiling_db:.1f} dB)")  # fmt: skip
    report = {"data": args.data, "root": str(args.root), "split": args.split if args.data == "stems" else "test",
              "method": args.method, "described": how, "steps": steps, "seconds": args.seconds,
              "offset": args.offset, **scores, "oracle_ratio_mask_si_sdri_mean": ceiling_db,
              "verdict": verdict}  # fmt: skip
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{len(clips)} {args.data} clips of {args.seconds:g} s from {args.offset:g} s on ({how}); dB, mean over "
          "the clips where a stem sounds")  # fmt: skip
    print(f"{'stem':<8}{'SI-SDR':>8}{'mix':>8}{'SI-SDRi':>9}{'SDR':>8}{'mix SDR':>9}{'silent':>8}")
    for n in names:
        print(f"{n:<8}{scores['si_sdr'][n]:>8.2f}{scores['mix_si_sdr'][n]:>8.2f}{scores['si_sdri'][n]:>9.2f}"
              f"{scores['sdr'][n]:>8.2f}{scores['mix_sdr'][n]:>9.2f}{scores['silent'][n]:>8d}")  # fmt: skip
    print(f"{'mean':<8}{scores['si_sdr_mean']:>8.2f}{scores['mix_si_sdr_mean']:>8.2f}{gain:>9.2f}"
          f"{scores['sdr_mean']:>8.2f}{scores['mix_sdr_mean']:>9.2f}")  # fmt: skip
    print(f"verdict: {verdict}")
    print(f"time: {scores['seconds_per_clip']:.2f} s per clip; SDR: museval BSS-Eval v4, median over 1 s windows")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from sepmodels.priors import PriorSet
    from sepmodels.registry import kind_named
    from sepmodels.train import TrainConfig, Trainer

    kind = kind_named(args.model)
    data = args.data or kind.data[0]
    if data not in kind.data:
        raise UsageError(f"--model {args.model} trains on --data {' or '.join(kind.data)}, not {data}")
    overrides = {
        "steps": args.steps,
        "batch_size": args.batch_size,
        "length": args.length,
        "lr": args.lr,
        "sigma_min": args.sigma_min,
        "sigma_max": args.sigma_max,
        "seed": args.seed,
        "data": data,
        "root": None if args.root is None else str(args.root),
        "mono": args.mono,
        "precision": args.precision,
        "compile": args.compile or None,
        "checkpoint_every": args.checkpoint_every,
        "log_every": args.log_every,
        "objective": args.objective,
        "energy": args.energy,
        "country": args.country,
    }
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if args.objective is not None and args.model != "score":
        raise UsageError("--objective is for --model score")
    if "sigma_min" in overrides and "sigma_max" not in overrides:
        overrides["sigma_max"] = max(TrainConfig.sigma_max, overrides["sigma_min"])
    if overrides.get("sigma_min", TrainConfig.sigma_min) > overrides.get("sigma_max", TrainConfig.sigma_max):
        raise UsageError("--sigma-min must not exceed --sigma-max")
    if data == "musdb" and args.root is None:
        raise UsageError("--data musdb needs --root PATH (a musdb18 or musdb18-HQ folder, or make-stems output)")
    if data == "notes" and args.root is None:
        raise UsageError("--data notes needs --root PATH (a folder made by `sepmodels make-notes`)")
    if data == "notes" and not (args.root / "train" / "examples.json").is_file():
        raise UsageError(f"--root {args.root} holds no train/examples.json; make it with `sepmodels make-notes`")
    if data == "drums" and args.root is None:
        raise UsageError("--data drums needs --root PATH (a folder made by `sepmodels make-drums`)")
    if data == "drums" and not (args.root / "train" / "examples.json").is_file():
        raise UsageError(f"--root {args.root} holds no train/examples.json; make it with `sepmodels make-drums`")
    if data == "toy" and args.root is not None:
        raise UsageError("--root is for --data musdb, notes or drums")
    if data != "musdb" and args.mono is not None:
        raise UsageError("--mono is for --data musdb")
    if args.country is not None and not (len(args.country) == 3 and args.country.isalpha()):
        raise UsageError(f"--country must be an ISO 3166 alpha-3 code such as FRA or USA, got {args.country!r}")
    try:
        train_cfg = replace(TrainConfig(), **overrides)
    except ValueError as err:
        raise UsageError(str(err)) from None
    try:
        model_cfg = kind.preset(args.config)
    except ValueError as err:
        raise UsageError(f"--config: {err}") from None
    if data == "drums":  # whole hits, and batches with as many hits of every class
        from sepmodels.data.drums import CLASSES

        own = {"length": getattr(model_cfg, "length", TrainConfig.length), "batch_size": 16 * len(CLASSES)}
        train_cfg = replace(train_cfg, **{k: v for k, v in own.items() if k not in overrides})
        if train_cfg.batch_size % len(CLASSES):
            raise UsageError(f"--batch-size must be a multiple of the {len(CLASSES)} drum classes (balanced)")
        if train_cfg.length != getattr(model_cfg, "length", train_cfg.length):
            raise UsageError(f"--length must be the model's hit length, {model_cfg.length} samples")
    if args.plain:
        if args.model != "flow":
            raise UsageError("--plain applies to flow priors only (a score network always sees sigma)")
        model_cfg = replace(model_cfg, noise_conditional=False)
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    if not args.resume and (args.out / "priors.pt").exists():
        raise UsageError(f"{args.out / 'priors.pt'} exists; pass --resume to continue it or choose another --out")
    if args.init is not None and args.resume:
        raise UsageError("--init starts a new run; it cannot be combined with --resume")
    init = PriorSet.load(args.init) if args.init is not None else None
    if init is not None:  # fine-tuning keeps the initial priors' own model
        if init.kind != args.model:
            raise UsageError(f"--init {args.init} holds {init.kind} priors; pass --model {init.kind}")
        model_cfg = init.config
    frozen = None
    if kind.posterior:
        from sepmodels.priors import load_priors

        frozen = load_priors(args.priors)
        if not frozen.has_likelihood:
            raise UsageError(
                f"--priors {args.priors} holds score priors; a VAE needs a likelihood (flow or wave priors)"
            )
        if args.prior_sigma is not None:
            model_cfg = replace(model_cfg, prior_sigma=args.prior_sigma)
    elif args.priors is not None:
        raise UsageError("--priors is for --model vae (the priors it is trained against); use --init to fine-tune")
    elif args.prior_sigma is not None:
        raise UsageError("--prior-sigma is for --model vae")
    trainer = Trainer(
        args.out, model_cfg, train_cfg, resume=args.resume, device=args.device, progress=not args.quiet,
        init=init, priors=frozen,
    )  # fmt: skip
    trainer.run()
    if trainer.dist.main:
        what = {"priors": "priors", "posterior": "VAE posterior", "codec": "model"}[kind.role]
        print(f"trained {trainer.step} steps; {what} written to {trainer.ckpt_path}")
    if trainer.dist.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0


def _cmd_likelihood(args: argparse.Namespace) -> int:
    from sepmodels import heldout
    from sepmodels.data import toy
    from sepmodels.data.audio import load_audio
    from sepmodels.fileio import atomic_path

    if args.map is not None and args.map.is_dir():
        raise UsageError(f"--map {args.map} is a folder; give a file name ending in .npy")
    priors = _load_priors(args.priors, None, None)
    if not priors.has_likelihood:
        raise UsageError("these are score priors: they give no likelihood; pass flow priors with --priors")
    sigma = priors.default_sigma if args.sigma is None else args.sigma
    if not priors.noise_conditional and args.sigma is not None:
        print(f"note: these priors are not noise-conditional; --sigma {args.sigma} is ignored", file=sys.stderr)
    clips = []
    for path in args.files:  # validate every file before the slow part
        audio = load_audio(path, priors.sample_rate, resample=priors.kind != EXACT)
        for note in audio.notes:
            print(f"note: {note}", file=sys.stderr)
        try:
            priors.valid_length(audio.samples.shape[0])
        except ValueError as err:
            raise UsageError(f"{path}: {err}") from None
        clips.append(audio.samples)
    ranges = None
    if tuple(priors.names) == tuple(toy.SOURCES):  # the reference: each prior's gain on its own held-out clips
        ranges = heldout.heldout_ranges(priors, sigma)
    results, maps = [], []
    for path, clip in zip(args.files, clips, strict=True):
        m = priors.cross_log_prob(clip[None], sigma)[0]  # [N, T]
        maps.append(m.numpy())
        result = {
            "file": str(path),
            "priors": {n: float(v) for n, v in zip(priors.names, m.mean(dim=1), strict=True)},
        }
        if ranges is not None:
            gains = heldout.gain(m, clip[None].expand(len(priors), -1), sigma)
            result["gain"] = {n: float(v) for n, v in zip(priors.names, gains, strict=True)}
            result["outside"] = heldout.outside(result["gain"], ranges)
            result["verdict"] = heldout.verdict(result["gain"], ranges)
        results.append(result)
    if args.map is not None:
        longest = max(m.shape[1] for m in maps)
        stacked = np.full((len(maps), len(priors), longest), np.nan, dtype=np.float32)
        for i, m in enumerate(maps):
            stacked[i, :, : m.shape[1]] = m
        with atomic_path(args.map) as tmp, open(tmp, "wb") as f:
            np.save(f, stacked)
    if args.json:
        report = {"sigma": sigma, "unit": "nats per sample", "results": results}
        if ranges is not None:
            what = (f"gain over a Gaussian of the clip's own loudness, {heldout.CLIPS} toy clips of each source "
                    f"(seed {heldout.HELDOUT_SEED}) under its own prior")  # fmt: skip
            report["heldout"] = {"what": what, "ranges": {n: [r.low, r.high] for n, r in ranges.items()}}
        print(json.dumps(report, indent=2))
    else:
        _print_table(results, priors.names, sigma)
        if ranges is not None:
            print(
                f"gain over a Gaussian of the clip's own loudness (nats per sample), against each prior's range "
                f"on {heldout.CLIPS} held-out toy clips of its own source (1 in 16 of its own falls outside):"
            )
            print("  held-out: " + ", ".join(f"{n} {r.describe()}" for n, r in ranges.items()))
            for r in results:
                gains = ", ".join(
                    f"{n} {v:.2f}{' (out)' if n in r['outside'] else ''}" for n, v in r["gain"].items()
                )
                print(f"  {r['file']}: {gains}. {r['verdict']}")
    return 0


def _print_table(results: list[dict], names: Sequence[str], sigma: float) -> None:
    width = max(len("file"), *(len(r["file"]) for r in results))
    print(f"mean log-likelihood, nats per sample, at sigma = {sigma:g} (higher = more likely; * = best)")
    print(f"{'file':<{width}}  " + "  ".join(f"{n:>10}" for n in names))
    for r in results:
        best = max(r["priors"], key=r["priors"].get)
        cells = [f"{r['priors'][n]:>9.3f}{'*' if n == best else ' '}" for n in names]
        print(f"{r['file']:<{width}}  " + "  ".join(cells))


def _cmd_make_stems(args: argparse.Namespace) -> int:
    from sepmodels.data.stems import make_stems

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    say = (lambda i, n: None) if args.quiet else (lambda i, n: print(f"track {i}/{n} written", file=sys.stderr))
    folders = make_stems(args.out, args.tracks, args.seconds, args.seed, soundfont=args.soundfont, progress=say,
                         split=args.split)  # fmt: skip
    splits = {f.parent.name for f in folders}
    print(f"wrote {len(folders)} tracks of {args.seconds:g} s to {args.out} ({', '.join(sorted(splits))})")
    return 0


def _cmd_make_notes(args: argparse.Namespace) -> int:
    from sepmodels.data.notes import FAMILIES, VELOCITIES, make_notes

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    lo, hi = args.pitches
    if not 0 <= lo <= hi <= 127:
        raise UsageError(f"--pitches must be 0 <= LO <= HI <= 127, got {lo} {hi}")
    families = args.families or list(FAMILIES)
    unknown = [f for f in families if f not in FAMILIES]
    if unknown:
        raise UsageError(f"--families: unknown {', '.join(unknown)}; choose from {', '.join(FAMILIES)}")
    velocities = args.velocities or list(VELOCITIES)
    if not all(1 <= v <= 127 for v in velocities):
        raise UsageError("--velocities must be 1..127")
    say = (lambda i, n: None) if args.quiet else (lambda i, n: print(f"program {i}/{n} rendered", file=sys.stderr))
    counts = make_notes(args.out, families, range(lo, hi + 1, args.pitch_step), velocities, args.seed,
                        args.soundfont, say)  # fmt: skip
    print(f"wrote {sum(counts.values())} notes to {args.out} (" + ", ".join(f"{s} {n}" for s, n in counts.items())
          + ")")  # fmt: skip
    return 0


def _cmd_make_drums(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from sepmodels.data.drums import CLASSES, make_drums

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    if args.seed < 0:
        raise UsageError(f"--seed must be 0 or more, got {args.seed}")
    bars = []  # started by the first kit rendered: a bad argument is one line on stderr, with no empty bar

    def say(i: int, n: int) -> None:
        if not bars:
            bars.append(tqdm(total=n, desc="kits rendered", unit="kit", disable=args.quiet, file=sys.stderr))
        bars[0].update(i - bars[0].n)

    try:
        counts = make_drums(args.out, args.per_class, args.test_kits, args.seed, args.soundfont, say)
    except ValueError as err:
        raise UsageError(str(err)) from None
    finally:
        for bar in bars:
            bar.close()
    per = ", ".join(f"{split} {n} ({n // len(CLASSES)} per class)" for split, n in counts.items())
    print(f"wrote {sum(counts.values())} drum hits of {len(CLASSES)} classes to {args.out}: {per}; see README.txt")
    return 0


def _cmd_fit_codes(args: argparse.Namespace) -> int:
    import torch

    from sepmodels.data.notes import NotesData
    from sepmodels.inpaint.inpainter import fit_codemap_priors
    from sepmodels.inpaint.vqvae import NoteCodec

    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name ending in .pt")
    for split in ("train", "test"):
        if not (args.notes / split / "examples.json").is_file():
            raise UsageError(
                f"--notes {args.notes} holds no {split}/examples.json; make it with `sepmodels make-notes`"
            )
    codec = NoteCodec.load(args.codec)
    train, test = NotesData(args.notes, "train"), NotesData(args.notes, "test")
    picked = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.test_notes]
    say = (lambda line: None) if args.quiet else (lambda line: print(line, file=sys.stderr))
    codes = fit_codemap_priors(codec, train.clips.float() / 32768.0, test.clips[picked].float() / 32768.0,
                               args.transformer_steps, args.seed, progress=not args.quiet, say=say,
                               energy=args.energy)  # fmt: skip
    codes.save(args.out)
    print(f"wrote {len(codes.priors)} codemap priors to {args.out}; masked cells recovered on {len(picked)} "
          f"held-out notes (learned priors: the most probable code; uniform: a draw):")  # fmt: skip
    for name, value in codes.accuracy.items():
        print(f"  {name:<28}{100 * value:6.1f} %")
    print(
        f"codebook perplexity over the training codemaps: {codes.perplexity:.1f} of {codec.config.codebook_size}"
    )
    return 0


def _cmd_fit_waves(args: argparse.Namespace) -> int:
    import time

    import torch

    from sepmodels.data import toy
    from sepmodels.nn.waves import WavePriors, fit_wave_priors

    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name ending in .pt")
    # Training clips: each source's own solo clips from the training stream (never the test seeds).
    generator = torch.Generator().manual_seed(args.seed)
    clips = toy.toy_batch(args.clips, args.length, generator)
    census = toy.toy_batch(args.census, 2048, generator)
    init = WavePriors.load(args.init) if args.init is not None else None
    start = time.perf_counter()
    try:
        priors = fit_wave_priors(clips, toy.SOURCES, toy.SAMPLE_RATE, args.rounds, census, progress=not args.quiet,
                                 init=init)  # fmt: skip
    except ValueError as err:  # e.g. clips too short to hold the lowest pitch
        raise UsageError(f"--length {args.length} or --init: {err}") from None
    minutes = (time.perf_counter() - start) / 60
    before = init.meta.get("minutes", 0.0) if init is not None else 0.0
    priors.meta.update(seed=args.seed, minutes=round(before + minutes, 2))
    priors.save(args.out)
    last = priors.meta["rounds"][-1]["fit_db"]
    print(f"wrote wave priors to {args.out} in {minutes:.1f} min; fit of the last round (dB): "
          + ", ".join(f"{n} {q:.1f}" for n, q in zip(toy.SOURCES, last, strict=True))
          + "; pitches kept: " + ", ".join(str(p) for p in priors.meta["pitches"]))  # fmt: skip
    return 0


def _cmd_fit_harmonic(args: argparse.Namespace) -> int:
    import time

    import torch

    from sepmodels.data import toy
    from sepmodels.nn.waves import WavePriors
    from sepmodels.sources.harmonic import fit_harmonic_priors

    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name ending in .pt")
    shapes = WavePriors.load(args.shapes)
    length = int(args.seconds * toy.SAMPLE_RATE)
    # Training clips: each source's own solo clips from the training stream of each variant (never test seeds).
    generator = torch.Generator().manual_seed(args.seed)
    clips = torch.cat([toy.toy_batch(args.clips, length, generator, options=v) for v in args.variants])
    start = time.perf_counter()
    try:
        priors = fit_harmonic_priors(clips, toy.SOURCES, toy.SAMPLE_RATE, shapes, progress=not args.quiet)
    except ValueError as err:
        raise UsageError(f"--seconds {args.seconds}: {err}") from None
    minutes = (time.perf_counter() - start) / 60
    priors.meta.update(seed=args.seed, variants=list(args.variants), minutes=round(minutes, 2),
                       command=f"sepmodels fit-harmonic --clips {args.clips} --variants {' '.join(args.variants)} "
                       f"--seconds {args.seconds:g} --seed {args.seed}")  # fmt: skip
    priors.save(args.out)
    print(f"wrote harmonic priors to {args.out} in {minutes:.1f} min; per source: "
          + ", ".join(f"{n} {'steady' if m == 0 else f'moving within {m:g} Hz in {q:.0%} of notes'}"
                      for n, m, q in zip(toy.SOURCES, priors.motion.tolist(), priors.moving.tolist(), strict=True))
          + "; fit of the solo clips (dB): " + ", ".join(f"{v:.1f}" for v in priors.meta["fit_db"]))  # fmt: skip
    return 0


def _cmd_train_posterior(args: argparse.Namespace) -> int:
    import dataclasses
    import time

    import torch

    from sepmodels import mixing
    from sepmodels.data import toy
    from sepmodels.inference.amortised import AmortisedPosterior, EncoderConfig, train_posterior
    from sepmodels.sources.harmonic import HarmonicPriors

    if args.out.is_dir():
        raise UsageError(f"--out {args.out} is a folder; give a file name ending in .pt")
    if args.sleep_steps + args.elbo_steps == 0:
        raise UsageError("--sleep-steps and --elbo-steps are both 0: nothing to train")
    priors = HarmonicPriors.load(args.priors)
    length = int(args.seconds * priors.sample_rate)
    try:
        priors.valid_length(length)
    except ValueError as err:
        raise UsageError(f"--seconds {args.seconds}: {err}") from None
    # The ELBO's mixes: the toy's training stream of each variant (never a test seed), mixed; no source reaches
    # the posterior.
    generator = torch.Generator().manual_seed(args.seed)
    mixtures = torch.cat([mixing.mix(toy.toy_batch(args.mixes, length, generator, priors.sample_rate, options=v))
                          for v in args.variants]) if args.elbo_steps else None  # fmt: skip
    init = AmortisedPosterior.load(args.init) if args.init is not None else None
    log: list[dict[str, float]] = []
    start = time.perf_counter()
    try:
        posterior = train_posterior(priors, args.sleep_steps, args.elbo_steps, mixtures,
                                    EncoderConfig.preset(args.config), length=length, seed=args.seed,
                                    progress=not args.quiet, log=log, init=init)  # fmt: skip
    except ValueError as err:
        raise UsageError(f"--init {args.init}: {err}" if init is not None else str(err)) from None
    minutes = (time.perf_counter() - start) / 60
    sleep = [row["right"] for row in log if row["phase"] == "sleep"][-50:]
    elbos = [row["elbo"] for row in log if row["phase"] == "elbo"][-20:]
    extra = "".join(
        f" --{name} {value}" for name, value in (("priors", args.priors), ("init", args.init)) if value
    )
    posterior.meta.update(
        sleep_steps=args.sleep_steps, elbo_steps=args.elbo_steps, mixes=args.mixes, variants=list(args.variants),
        seconds=args.seconds, config=args.config if init is None else f"that of {args.init}",
        encoder=dataclasses.asdict(posterior.encoder.config), seed=args.seed, minutes=round(minutes, 2),
        sleep_right=round(sum(sleep) / len(sleep), 3) if sleep else None,
        elbo=round(sum(elbos) / len(elbos), 4) if elbos else None,
        priors=priors.meta.get("command", str(args.priors or "toy_harmonic.pt")),
        command=f"sepmodels train-posterior --sleep-steps {args.sleep_steps} --elbo-steps {args.elbo_steps} "
        f"--mixes {args.mixes} --variants {' '.join(args.variants)} --seconds {args.seconds:g} --config "
        f"{args.config} --seed {args.seed}{extra}",
    )  # fmt: skip
    posterior.save(args.out)
    facts = []
    if sleep:
        facts.append(f"bins right on the last sleep batches {posterior.meta['sleep_right']:.0%}")
    if elbos:
        facts.append(f"ELBO of the last batches {posterior.meta['elbo']:.3f} nats per sample")
    print(f"wrote an amortised posterior to {args.out} in {minutes:.1f} min; " + "; ".join(facts))
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from sepmodels.data.testsets import TOY, MusdbTestData
    from sepmodels.studies import STUDIES, describe_priors, run_study, save_study

    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"--out {args.out} is a file, not a folder")
    if args.finetune_steps < 0:
        raise UsageError(f"--finetune-steps must be 0 or more, got {args.finetune_steps}")

    priors = _load_priors(args.priors, None, args.device)
    names = STUDIES if args.study == "all" else (args.study,)
    data = TOY
    if args.data == "musdb":
        if args.root is None:
            raise UsageError(
                "--data musdb needs --root PATH (a musdb18 or musdb18-HQ folder, or make-stems output)"
            )
        data = MusdbTestData(str(args.root.resolve()), args.mono)
    say = (lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr))
    args.out.mkdir(parents=True, exist_ok=True)
    for name in names:
        say(f"study {name} ...")
        options = {}
        if name == "noise":
            options = {"base_steps": args.base_steps, "finetune_steps": args.finetune_steps,
                       "progress": not args.quiet, "log": say}  # fmt: skip
        elif name == "denoise":
            options = {"progress": not args.quiet}
        results, described = run_study(name, priors, args.n, args.seconds, args.seed, data=data, **options)
        path = args.out / f"{name}.pt"
        save_study(path, name, results, describe_priors(priors, args.priors), described)
        print(f"{name}: written to {path}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from sepmodels.data.musdb import MusdbError
    from sepmodels.data.stems import StemsError
    from sepmodels.studies import StudyError
    from sepmodels.train import TrainingError

    commands = {
        "train": _cmd_train,
        "likelihood": _cmd_likelihood,
        "export": _cmd_export,
        "separate": _cmd_separate,
        "evaluate": _cmd_evaluate,
        "study": _cmd_study,
        "make-stems": _cmd_make_stems,
        "make-notes": _cmd_make_notes,
        "make-drums": _cmd_make_drums,
        "fit-codes": _cmd_fit_codes,
        "fit-waves": _cmd_fit_waves,
        "fit-harmonic": _cmd_fit_harmonic,
        "train-posterior": _cmd_train_posterior,
    }
    try:
        return commands[args.command](args)
    except (AudioError, CheckpointError, MusdbError, StemsError, StudyError, TrainingError, UsageError) as err:
        print(f"sepmodels {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"sepmodels {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
