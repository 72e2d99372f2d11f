"""Self-describing checkpoints: config, class name, state dict, training metadata in one file.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(..., weights_only=True)``: a file from a stranger cannot run code. Writes are atomic.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from sepmodels.fileio import atomic_path

FORMAT = "sepmodels-checkpoint"
VERSION = 1
DEFAULT_PRIORS = "toy_default.pt"
# The samplers' default: the shipped priors that separate best within the CPU speed target (README).
DEFAULT_WAVE_PRIORS = "toy_waves.pt"  # the learned wave priors (sepmodels fit-waves)
DEFAULT_HARMONIC_PRIORS = "toy_harmonic.pt"  # the harmonic priors (sepmodels fit-harmonic)
DEFAULT_SAMPLER_PRIORS = DEFAULT_HARMONIC_PRIORS
PITCH_PRIORS = "toy_pitch.pt"  # the single-pitch score priors, the samplers' default before the wave priors


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message is one line meant for the user."""


def first_line(err: BaseException) -> str:
    """An exception's first line for a one-line message (its type's name when it has no text)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` (which must name its ``class``) with the format header, atomically."""
    if "class" not in payload:
        raise ValueError("a checkpoint payload must name its 'class'")
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)


def safe_load(path: Path, error: type[Exception], what: str, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, any failure raised as ``error`` with one line naming ``what``."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise error(f"{path} is not a sepmodels {what} (it holds objects that are unsafe to load)") from None
        raise error(f"{path} is not a readable {what} (not a torch.save file)") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        first = first_line(err)
        raise error(f"{path} is not a readable {what} ({first[:120]})") from None
    except Exception as err:  # torch's legacy reader fails on foreign files in any way (KeyError, IndexError, ...)
        raise error(f"{path} is not a readable {what} (not a torch.save file: {type(err).__name__})") from None


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else raises :class:`CheckpointError`."""
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such checkpoint")
    if p.is_dir():
        raise CheckpointError(f"{p} is a directory, not a checkpoint file")
    ckpt = safe_load(p, CheckpointError, "checkpoint", map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a sepmodels checkpoint (no '{FORMAT}' header)")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(f"{p} has checkpoint version {ckpt.get('version')}; this sepmodels reads {VERSION}")
    return ckpt


def load_model_file(where: Path, class_name: str, what: str, build: Any) -> tuple[Any, dict[str, Any]]:
    """Load the checkpoint at ``where``, check that it holds a ``class_name`` (else one line naming ``what``, e.g.
    "a VQ-VAE (train --model vqvae)"), and rebuild its model with ``build(ckpt)``; a checkpoint whose weights or
    config do not fit its own class raises one line too. Returns ``(model, checkpoint)``."""
    ckpt = load_checkpoint(where)
    if ckpt.get("class") != class_name:
        raise CheckpointError(f"{where} holds a {ckpt.get('class')!r}, not {what}")
    try:
        return build(ckpt), ckpt
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{where} does not match its own description ({first_line(err)[:120]})") from None


def default_priors_path() -> Path:
    """The toy flow priors shipped with the package: the likelihood behind the studies, the mix explorer and
    ``likelihood`` (used when ``--priors`` is omitted there)."""
    return Path(str(resources.files("sepmodels") / "checkpoints" / DEFAULT_PRIORS))


def default_sampler_priors_path() -> Path:
    """The learned priors that ``separate``, ``evaluate`` and the Langevin app use when none are named: the
    harmonic priors, the only shipped priors that separate the toy off the piano keys and with moving notes
    as well as on them (README, bench/harmonic.py)."""
    return Path(str(resources.files("sepmodels") / "checkpoints" / DEFAULT_SAMPLER_PRIORS))


def stems_priors_path(family: str) -> Path:
    """The shipped priors per stem of the stems benchmark, ``family`` ``score`` or ``flow``
    (``python bench/stems_priors.py``), with the sweep chosen on validation in their meta."""
    if family not in ("score", "flow"):
        raise ValueError(f"no shipped stems priors of family {family!r}; choose score or flow")
    return Path(str(resources.files("sepmodels") / "checkpoints" / f"stems_{family}.pt"))


def default_wave_priors_path() -> Path:
    """The learned wave priors shipped with the package (``sepmodels fit-waves``)."""
    return Path(str(resources.files("sepmodels") / "checkpoints" / DEFAULT_WAVE_PRIORS))


def default_harmonic_priors_path() -> Path:
    """The harmonic priors shipped with the package (``sepmodels fit-harmonic``)."""
    return Path(str(resources.files("sepmodels") / "checkpoints" / DEFAULT_HARMONIC_PRIORS))
