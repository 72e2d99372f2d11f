"""Reading, validating and writing mono audio.

Everything that enters the library from a file goes through :func:`load_audio`, which turns every way a
file can be wrong into one :class:`AudioError` with a one-line message, and reports what it changed
(resampling, downmixing) in :attr:`Audio.notes` so that callers can announce it.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from sepmodels.fileio import atomic_path

MAX_SECONDS = 600.0
_SILENCE_PEAK = 1e-6


class AudioError(ValueError):
    """An audio file that cannot be used; the message is one line meant for the user."""


@dataclass
class Audio:
    """Mono audio as float32 ``[T]`` at ``sample_rate`` Hz, with notes on what loading changed."""

    samples: torch.Tensor
    sample_rate: int
    notes: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


def validate_samples(samples: np.ndarray | torch.Tensor, name: str = "audio") -> None:
    """Raise :class:`AudioError` for empty, non-finite, silent or out-of-range samples."""
    x = torch.as_tensor(samples)
    if x.numel() == 0:
        raise AudioError(f"{name} holds no audio samples")
    if not torch.isfinite(x).all():
        raise AudioError(f"{name} contains NaN or infinite samples")
    peak = float(x.abs().max())
    if peak < _SILENCE_PEAK:
        raise AudioError(f"{name} is silent (peak {peak:.1e}); nothing to analyse")
    if peak > 1.0 + 1e-4:
        raise AudioError(f"{name} has samples outside [-1, 1] (peak {peak:.3f}); normalise it first")


def load_audio(
    path: str | os.PathLike[str], sample_rate: int, max_seconds: float = MAX_SECONDS, resample: bool = True
) -> Audio:
    """Read ``path`` as mono float32 at ``sample_rate`` Hz.

    Stereo (or more channels) is averaged to mono and another rate is resampled with torchaudio (or, with
    ``resample=False``, refused); both are recorded in the returned notes. Raises :class:`AudioError` for a
    missing path, a directory, an empty or non-audio file, NaN/inf, silence, samples beyond [-1, 1] and files
    longer than ``max_seconds``.
    """
    p = Path(path)
    if not p.exists():
        raise AudioError(f"{p}: no such file")
    if p.is_dir():
        raise AudioError(f"{p} is a directory, not an audio file")
    if p.stat().st_size == 0:
        raise AudioError(f"{p} is empty (0 bytes)")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{p} is not a readable audio file ({str(err).strip().splitlines()[0]})") from None
    if info.frames <= 0:
        raise AudioError(f"{p} holds no audio samples")
    if info.duration > max_seconds:
        raise AudioError(f"{p} is {info.duration:.1f} s long; the limit is {max_seconds:.0f} s")
    try:
        data, file_rate = sf.read(str(p), dtype="float32", always_2d=True)  # [T, channels]
    except (sf.LibsndfileError, RuntimeError) as err:
        raise AudioError(f"{p} could not be decoded ({str(err).strip().splitlines()[0]})") from None
    notes: list[str] = []
    if data.shape[1] > 1:
        notes.append(f"{p}: {data.shape[1]} channels averaged to mono")
    mono = torch.from_numpy(np.ascontiguousarray(data.mean(axis=1)))
    validate_samples(mono, str(p))
    if file_rate != sample_rate and not resample:
        raise AudioError(f"{p} is at {file_rate} Hz; these priors model {sample_rate} Hz clips and resampling "
                         "would change their waveforms")  # fmt: skip
    if file_rate != sample_rate:
        notes.append(f"{p}: resampled from {file_rate} Hz to {sample_rate} Hz")
        mono = AF.resample(mono, int(file_rate), int(sample_rate)).clamp(-1.0, 1.0)
    return Audio(samples=mono.contiguous(), sample_rate=sample_rate, notes=notes)


def save_audio(path: str | os.PathLike[str], samples: torch.Tensor | np.ndarray, sample_rate: int) -> None:
    """Write mono ``[T]`` samples to a 32-bit float WAV, atomically."""
    x = torch.as_tensor(samples).detach().to("cpu", torch.float32)
    if x.dim() != 1:
        raise ValueError(f"save_audio expects mono samples [T], got shape {tuple(x.shape)}")
    with atomic_path(path) as tmp:
        sf.write(str(tmp), x.numpy(), int(sample_rate), subtype="FLOAT", format="WAV")


def read_split(root: str | os.PathLike[str], split: str, splits: tuple[str, ...], command: str, noun: str,
               rate: int, length: int) -> tuple[dict[str, dict], list[str], torch.Tensor]:  # fmt: skip
    """One split of a rendered set (``ROOT/SPLIT/examples.json`` and a mono 16-bit WAV per entry), as written
    by ``sepmodels {command}``: ``(examples, names in sorted order, clips [N, length] int16)``. Shorter files
    are zero-padded; a wrong rate, channel count or a longer file is a one-line ValueError, a missing index a
    one-line FileNotFoundError that names the command."""
    if split not in splits:
        raise ValueError(f"split must be one of {', '.join(splits)}, got {split!r}")
    folder = Path(root) / split
    index = folder / "examples.json"
    if not index.is_file():
        raise FileNotFoundError(f"{index} does not exist: make the set with `sepmodels {command} --out {root}`")
    examples: dict[str, dict] = json.loads(index.read_text())
    if not examples:
        raise ValueError(f"{index} lists no {noun}")
    names = sorted(examples)
    clips = []
    for name in names:
        data, found = sf.read(folder / f"{name}.wav", dtype="int16", always_2d=True)
        if found != rate or data.shape[1] != 1 or data.shape[0] > length:
            raise ValueError(f"{folder / name}.wav is {found} Hz, {data.shape[1]} channels, {data.shape[0]} "
                             f"samples; expected {rate} Hz mono, at most {length} samples")  # fmt: skip
        clips.append(np.pad(data[:, 0], (0, length - data.shape[0])))
    return examples, names, torch.from_numpy(np.stack(clips))
