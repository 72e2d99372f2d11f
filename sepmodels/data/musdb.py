"""musdb18 and musdb18-HQ through the ``musdb`` package: four stems, mono, at the priors' sample rate.

Splits: ``train`` and ``valid`` (musdb's own validation tracks, taken out of its train subset) and ``test``.
Each track's stems are read once, made mono (the ``left`` channel, as the thesis, or the ``mean`` of both),
resampled from 44.1 kHz with torchaudio and kept in a small cache. Training batches take a random
fixed-length crop per source (each from its own random track), optionally peak-normalised, and skip
near-silent crops (a vocal crop of a guitar solo); test mixes keep the four stems of one track aligned.

musdb18 (``.stem.mp4``) needs ffmpeg; so does ``import musdb`` itself, even for musdb18-HQ:
``apt-get install ffmpeg``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torchaudio.functional as AF

SOURCES: tuple[str, ...] = ("drums", "bass", "other", "vocals")
SAMPLE_RATE = 14_700
SPLITS = ("train", "valid", "test")
_EXPECTED = (
    "a folder with train/ and test/ subfolders holding either one folder per track with mixture.wav, drums.wav, "
    "bass.wav, other.wav and vocals.wav (musdb18-HQ) or <track>.stem.mp4 files (musdb18)"
)


class MusdbError(ValueError):
    """A musdb root that cannot be used, or the musdb package that cannot load; one line for the user."""


@dataclass(frozen=True)
class MusdbConfig:
    """Where musdb is and how its audio is prepared.

    Arguments:
        root: the dataset folder (musdb18 or musdb18-HQ).
        mono: ``left`` (the thesis) or ``mean`` (a downmix).
        sample_rate: rate the audio is resampled to.
        peak_normalize: scale every training crop to a peak of 1.
        min_rms: crops quieter than this RMS are drawn again (0 keeps everything).
        cache_tracks: how many tracks' resampled stems to keep in memory: training crops come from these.
        fresh_track_rate: once the cache is full, the chance that a crop loads a new random track instead
            (evicting the oldest). Reading a track costs far more than cropping one, so most crops reuse
            what is in memory and the set drifts through the whole split.
    """

    root: str
    mono: str = "left"
    sample_rate: int = SAMPLE_RATE
    peak_normalize: bool = False
    min_rms: float = 1e-3
    cache_tracks: int = 16
    fresh_track_rate: float = 0.02

    def __post_init__(self) -> None:
        if self.mono not in ("left", "mean"):
            raise ValueError(f"mono must be 'left' or 'mean', got {self.mono!r}")


def layout(root: str | Path) -> bool:
    """Check ``root`` and tell its kind: True for musdb18-HQ (wav folders), False for musdb18 (stem.mp4)."""
    p = Path(root)
    if not p.is_dir():
        raise MusdbError(f"musdb root {p} is not a folder; expected {_EXPECTED}")
    subsets = [p / s for s in ("train", "test") if (p / s).is_dir()]
    if not subsets:
        raise MusdbError(f"musdb root {p} has no train/ or test/ folder; expected {_EXPECTED}")
    stems = [f for s in subsets for f in s.glob("*.stem.mp4")]
    folders = [d for s in subsets for d in s.iterdir() if d.is_dir()]
    if stems:
        return False
    if not folders:
        raise MusdbError(f"musdb root {p} holds no tracks; expected {_EXPECTED}")
    for d in folders:
        missing = [f"{n}.wav" for n in ("mixture", *SOURCES) if not (d / f"{n}.wav").is_file()]
        if missing:
            raise MusdbError(f"musdb track {d} lacks {', '.join(missing)}; expected {_EXPECTED}")
    return True


def _open(root: str, split: str):
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    is_wav = layout(root)
    try:
        import musdb
    except RuntimeError as err:  # stempeg refuses to import without ffmpeg
        raise MusdbError(
            f"the musdb package cannot load: {str(err).splitlines()[0]} (apt-get install ffmpeg)"
        ) from None
    subset = "test" if split == "test" else "train"
    db = musdb.DB(root=root, is_wav=is_wav, subsets=subset, split=None if split == "test" else split)
    if not db.tracks:
        raise MusdbError(f"musdb root {root} has no tracks in its {split} split")
    return db


class MusdbData:
    """The tracks of one split, served as mono stems ``[4, T]`` at ``config.sample_rate``.

    Example:
        >>> data = MusdbData(MusdbConfig("/data/musdb18hq"), "train")  # doctest: +SKIP
        >>> data.batch(8, 16384, torch.Generator().manual_seed(0)).shape  # doctest: +SKIP
        torch.Size([8, 4, 16384])
    """

    def __init__(self, config: MusdbConfig, split: str = "train") -> None:
        self.config, self.split = config, split
        self.tracks = _open(config.root, split).tracks
        self._cache: OrderedDict[int, torch.Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.tracks)

    def stems(self, index: int) -> torch.Tensor:
        """Track ``index``'s four stems, mono and resampled: ``[4, T]`` float32."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        track = self.tracks[index]
        audio = torch.stack([torch.as_tensor(track.sources[n].audio, dtype=torch.float32) for n in SOURCES])
        mono = audio[..., 0] if self.config.mono == "left" or audio.shape[-1] == 1 else audio.mean(-1)
        rate = int(track.rate)
        if rate != self.config.sample_rate:
            mono = AF.resample(mono, rate, self.config.sample_rate)
        self._cache[index] = mono.contiguous()
        while len(self._cache) > self.config.cache_tracks:
            self._cache.popitem(last=False)
        return self._cache[index]

    def _crop(self, source: int, length: int, generator: torch.Generator) -> torch.Tensor:
        best, best_rms = None, -1.0
        for _ in range(20):  # near-silent crops are drawn again, up to 20 times; the loudest try wins
            stems = self.stems(self._training_track(generator))
            x = stems[source]
            if x.shape[0] < length:
                x = torch.nn.functional.pad(x, (0, length - x.shape[0]))
            start = int(torch.randint(x.shape[0] - length + 1, (1,), generator=generator))
            crop = x[start : start + length]
            rms = float(crop.pow(2).mean().sqrt())
            if rms > best_rms:
                best, best_rms = crop, rms
            if rms >= self.config.min_rms:
                break
        if self.config.peak_normalize and best_rms > 0:
            best = best / best.abs().max()
        return best

    def cached_tracks(self) -> list[int]:
        """Which tracks are in memory, oldest first: part of a training run's state, saved for resuming."""
        return list(self._cache)

    def load_tracks(self, indices: list[int]) -> None:
        """Bring the cache back to ``indices`` (from :meth:`cached_tracks`), so a resumed run draws as the
        uninterrupted one would."""
        self._cache.clear()
        for i in indices:
            self.stems(int(i))

    def _training_track(self, generator: torch.Generator) -> int:
        """A random track for a training crop: any track until the cache is full, then mostly a cached one."""
        full = len(self._cache) >= min(self.config.cache_tracks, len(self))
        if not full or float(torch.rand((), generator=generator)) < self.config.fresh_track_rate:
            return int(torch.randint(len(self), (1,), generator=generator))
        cached = list(self._cache)
        return cached[int(torch.randint(len(cached), (1,), generator=generator))]

    def batch(self, batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """Training clips ``[batch, 4, length]``: every source a random crop of a random track."""
        return torch.stack(
            [torch.stack([self._crop(k, length, generator) for k in range(len(SOURCES))]) for _ in range(batch)]
        )

    def aligned(self, n: int, length: int, seed: int = 0) -> torch.Tensor:
        """``n`` test clips ``[n, 4, length]`` whose stems come from the same place of one track (mixable)."""
        g = torch.Generator().manual_seed(seed)
        clips = []
        for i in range(n):
            stems = self.stems(i % len(self))
            if stems.shape[-1] < length:
                stems = torch.nn.functional.pad(stems, (0, length - stems.shape[-1]))
            start = int(torch.randint(stems.shape[-1] - length + 1, (1,), generator=g))
            clips.append(stems[:, start : start + length])
        return torch.stack(clips)
