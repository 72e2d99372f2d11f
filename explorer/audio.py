"""Audio and waveform helpers for the browser: playable arrays and decimated drawings."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from bokeh.plotting import figure

from sepmodels.data.audio import Audio, AudioError, load_audio

MAX_UPLOAD_BYTES = 20_000_000
MAX_UPLOAD_SECONDS = 10.0


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


def load_audio_bytes(data: bytes, name: str, sample_rate: int) -> Audio:
    """Validate and decode an uploaded file (the same checks as files on disk), named ``name`` in messages."""
    if len(data) > MAX_UPLOAD_BYTES:
        raise AudioError(f"{name} is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB")
    suffix = Path(name).suffix or ".wav"
    with tempfile.NamedTemporaryFile(suffix=suffix) as f:
        f.write(data)
        f.flush()
        try:
            audio = load_audio(f.name, sample_rate, max_seconds=MAX_UPLOAD_SECONDS)
        except AudioError as err:
            raise AudioError(str(err).replace(f.name, name)) from None
    audio.notes = [n.replace(f.name, name) for n in audio.notes]
    return audio


def new_figure(title: str, x_label: str, y_label: str, height: int, **kw) -> figure:
    fig = figure(title=title, height=height, sizing_mode="stretch_width", tools="pan,wheel_zoom,box_zoom,reset",
                 output_backend="canvas", **kw)  # fmt: skip
    fig.xaxis.axis_label, fig.yaxis.axis_label = x_label, y_label
    fig.toolbar.logo = None
    return fig


def wave_data(x: torch.Tensor, sample_rate: int, bins: int = 1200) -> dict[str, np.ndarray]:
    t, lo, hi = envelope(x, sample_rate, bins)
    return {"t": t, "lo": lo, "hi": hi}
