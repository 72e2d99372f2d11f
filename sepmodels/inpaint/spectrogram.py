"""Log-magnitude spectrograms of notes, their standardisation, and the way back to audio.

STFT settings (:class:`STFTConfig`): a 1 024-sample Hann window with a hop of 256 at 16 kHz (64 ms, 16 ms).
At 15.6 Hz per bin the lowest notes of the set (MIDI 36, 65 Hz) still have four bins between harmonics, and
the 16 ms hop resolves an attack; a 4 s note is 251 frames. The Nyquist bin is dropped, so a spectrogram has
512 rows, which halves cleanly through the encoder's strided convolutions.

Magnitudes are taken as ``log(|X| + floor)``. The floor (1e-3, about 108 dB under a full-scale sine's peak
bin) keeps silence finite. Each frequency row is then standardised with a mean and a standard deviation
learned from the training set (:class:`Standardizer`, buffers of the model that uses it): high bins are
quieter by tens of dB, and an unweighted squared error would otherwise spend the whole model on the lows.

Back to audio: Griffin-Lim's fast variant (torchaudio, momentum 0.99; Perraudin et al., 2013), or, when the
original clip is at hand, its own phase (exact for an unchanged spectrogram; an A/B reference for edits).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio
from torch import nn


@dataclass(frozen=True)
class STFTConfig:
    """How audio becomes a spectrogram ``[F = n_fft / 2, frames]`` (the Nyquist bin dropped)."""

    n_fft: int = 1024
    hop: int = 256
    floor: float = 1e-3  # added to |X| before the log

    def __post_init__(self) -> None:
        if self.n_fft < 8 or self.n_fft % 2:
            raise ValueError(f"n_fft must be an even number of at least 8, got {self.n_fft}")
        if not 0 < self.hop <= self.n_fft:
            raise ValueError(f"hop must be in 1..n_fft, got {self.hop}")
        if not self.floor > 0:
            raise ValueError(f"floor must be positive, got {self.floor}")

    @property
    def bins(self) -> int:
        return self.n_fft // 2

    def frames(self, samples: int) -> int:
        """Frames of a clip of ``samples`` samples (centred frames)."""
        return samples // self.hop + 1


def _window(cfg: STFTConfig, like: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(cfg.n_fft, device=like.device, dtype=like.dtype)


def stft(audio: torch.Tensor, cfg: STFTConfig) -> torch.Tensor:
    """Complex STFT ``[..., F, frames]`` of ``audio [..., T]``, Nyquist bin dropped."""
    lead = audio.shape[:-1]
    spec = torch.stft(audio.reshape(-1, audio.shape[-1]), cfg.n_fft, cfg.hop, window=_window(cfg, audio),
                      return_complex=True)  # fmt: skip
    return spec[:, : cfg.bins].reshape(*lead, cfg.bins, spec.shape[-1])


def log_magnitude(audio: torch.Tensor, cfg: STFTConfig) -> torch.Tensor:
    """``log(|STFT| + floor)``: ``[..., T]`` -> ``[..., F, frames]``."""
    return torch.log(stft(audio, cfg).abs() + cfg.floor)


def _full(spec: torch.Tensor) -> torch.Tensor:
    """Put back the Nyquist row (zero) that :func:`stft` dropped."""
    return torch.cat([spec, torch.zeros_like(spec[..., :1, :])], dim=-2)


def magnitude(log_mag: torch.Tensor, cfg: STFTConfig) -> torch.Tensor:
    """Inverse of the log: ``|X| = exp(log_mag) - floor``, never below zero."""
    return (torch.exp(log_mag) - cfg.floor).clamp_min(0.0)


def griffin_lim(log_mag: torch.Tensor, cfg: STFTConfig, length: int, iterations: int = 32,
                momentum: float = 0.99, seed: int = 0) -> torch.Tensor:  # fmt: skip
    """Audio ``[..., length]`` whose spectrogram matches ``log_mag [..., F, frames]`` in magnitude: fast
    Griffin-Lim from a seeded random phase (the same call gives the same audio)."""
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    transform = torchaudio.transforms.GriffinLim(
        n_fft=cfg.n_fft, hop_length=cfg.hop, power=1.0, n_iter=iterations, momentum=momentum, length=length,
        rand_init=True,
    ).to(log_mag.device)  # fmt: skip
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # torchaudio draws the initial phase from the global generator
    try:
        return transform(_full(magnitude(log_mag, cfg)))
    finally:
        torch.random.set_rng_state(state)


def with_phase(log_mag: torch.Tensor, reference: torch.Tensor, cfg: STFTConfig) -> torch.Tensor:
    """Audio from ``log_mag [..., F, frames]`` with the phase of ``reference [..., T]`` (same frames)."""
    phase = torch.angle(stft(reference, cfg))
    if phase.shape != log_mag.shape:
        raise ValueError(
            f"the reference has {tuple(phase.shape)} STFT frames, the spectrogram {tuple(log_mag.shape)}"
        )
    spec = _full(torch.polar(magnitude(log_mag, cfg), phase))
    lead = spec.shape[:-2]
    audio = torch.istft(spec.reshape(-1, *spec.shape[-2:]), cfg.n_fft, cfg.hop, window=_window(cfg, log_mag),
                        length=reference.shape[-1])  # fmt: skip
    return audio.reshape(*lead, -1)


class Standardizer(nn.Module):
    """Per-frequency standardisation of log-magnitudes: ``(S - mean[f]) / std[f]``, learned by :meth:`fit`.

    ``fitted`` is a buffer, so a model saved before fitting says so after loading.
    """

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(bins))
        self.register_buffer("std", torch.ones(bins))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, log_mag: torch.Tensor) -> None:
        """Learn the statistics from training spectrograms ``[N, F, frames]``."""
        if log_mag.dim() != 3 or log_mag.shape[1] != self.mean.numel():
            raise ValueError(f"expected spectrograms [N, {self.mean.numel()}, frames], got {tuple(log_mag.shape)}")
        rows = log_mag.transpose(0, 1).reshape(self.mean.numel(), -1)
        self.mean.copy_(rows.mean(dim=1))
        self.std.copy_(rows.std(dim=1).clamp_min(1e-3))
        self.fitted.fill_(True)

    def forward(self, log_mag: torch.Tensor) -> torch.Tensor:
        return (log_mag - self.mean[:, None]) / self.std[:, None]

    def inverse(self, z: torch.Tensor) -> torch.Tensor:
        return z * self.std[:, None] + self.mean[:, None]


__all__ = ["STFTConfig", "Standardizer", "griffin_lim", "log_magnitude", "magnitude", "stft", "with_phase"]
