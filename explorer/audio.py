"""Audio and waveform helpers for the browser: playable arrays and decimated drawings."""

from __future__ import annotations

import numpy as np
import torch


def playable(x: torch.Tensor | np.ndarray, headroom: float = 0.98) -> np.ndarray:
    """Mono float32 ``[T]`` peak-normalised to ``headroom`` and clipped.

    ``pn.pane.Audio`` wraps values at 1.0 around to -1 instead of clipping, and refuses tensors that
    need grad or live on a GPU, so everything sent to a player goes through here.
    """
    a = torch.as_tensor(x).detach().to("cpu", torch.float32).numpy().reshape(-1)
    a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    peak = float(np.abs(a).max()) if a.size else 0.0
    if peak > 0:
        a = a * (headroom / peak)
    return np.clip(a, -1.0, 1.0).astype(np.float32)


def envelope(x: torch.Tensor | np.ndarray, sample_rate: int, bins: int = 1200) -> tuple[np.ndarray, ...]:
    """Min/max envelope of ``[T]`` in ``bins`` bins: ``(seconds, low, high)``.

    Drawing every sample of a second of audio is slow and aliases; the envelope shows what the eye can
    see of it (for short clips, with fewer samples than bins, it is the waveform itself).
    """
    a = torch.as_tensor(x).detach().to("cpu", torch.float32).numpy().reshape(-1)
    T = a.size
    if bins >= T:
        t = np.arange(T) / sample_rate
        return t, a, a
    per = T // bins
    trimmed = a[: per * bins].reshape(bins, per)
    t = (np.arange(bins) * per + per / 2) / sample_rate
    return t, trimmed.min(axis=1), trimmed.max(axis=1)


def smooth(x: torch.Tensor | np.ndarray, window: int) -> np.ndarray:
    """Moving average of ``[T]`` over ``window`` samples (same length, edges averaged over what exists)."""
    a = torch.as_tensor(x).detach().to("cpu", torch.float64).numpy().reshape(-1)
    if window <= 1:
        return a
    kernel = np.ones(window)
    num = np.convolve(a, kernel, mode="same")
    den = np.convolve(np.ones_like(a), kernel, mode="same")
    return num / den
