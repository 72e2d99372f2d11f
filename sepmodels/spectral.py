"""The short-time Fourier transform that music separation works on, and masking with it.

Every mask-based method of the stems benchmark (the oracle masks, the NMF dictionaries, the supervised mask
network) uses one :class:`STFTConfig`, so that the oracle masks are the ceiling of all of them. A method that
models magnitudes returns waveforms through :func:`mask_mixture`: its per-source spectrograms, raised to a
power, become ratio masks of the mix's STFT (norbert's soft mask), and the inverse STFT gives estimates that
sum to the mix (up to the STFT's round trip).

Example:
    >>> stft = STFTConfig()
    >>> stems = torch.randn(4, 14_700)
    >>> oracle_estimates(stems, stft, power=2.0).shape
    torch.Size([4, 14700])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class STFTConfig:
    """An STFT with a Hann window.

    Arguments:
        n_fft: window length in samples (2048 at 14 700 Hz: 139 ms, 7.2 Hz bins).
        hop: samples between frames.
    """

    n_fft: int = 2048
    hop: int = 512

    def __post_init__(self) -> None:
        if self.n_fft < 16 or self.hop < 1 or self.hop > self.n_fft:
            raise ValueError(f"need n_fft >= 16 and 1 <= hop <= n_fft, got n_fft {self.n_fft}, hop {self.hop}")

    @property
    def bins(self) -> int:
        return self.n_fft // 2 + 1

    def check_length(self, length: int) -> None:
        """Refuse a clip shorter than one window, with one line."""
        if length < self.n_fft:
            raise ValueError(f"the clip has {length} samples; the STFT needs at least one window of {self.n_fft}")


def stft(x: torch.Tensor, config: STFTConfig) -> torch.Tensor:
    """``[..., T]`` real -> ``[..., F, frames]`` complex (centred frames, Hann window)."""
    config.check_length(x.shape[-1])
    lead = x.shape[:-1]
    flat = x.reshape(-1, x.shape[-1])
    window = torch.hann_window(config.n_fft, dtype=x.dtype, device=x.device)
    spec = torch.stft(flat, config.n_fft, config.hop, window=window, center=True, return_complex=True)
    return spec.reshape(*lead, *spec.shape[-2:])


def istft(spec: torch.Tensor, config: STFTConfig, length: int) -> torch.Tensor:
    """``[..., F, frames]`` complex -> ``[..., length]`` real, the inverse of :func:`stft`."""
    lead = spec.shape[:-2]
    flat = spec.reshape(-1, *spec.shape[-2:])
    window = torch.hann_window(config.n_fft, dtype=flat.real.dtype, device=flat.device)
    x = torch.istft(flat, config.n_fft, config.hop, window=window, center=True, length=length)
    return x.reshape(*lead, length)


def mask_mixture(mixture: torch.Tensor, spectrograms: torch.Tensor, config: STFTConfig, power: float = 1.0,
                 mix_spec: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
    """Estimates ``[N, T]`` of the sources of ``mixture [T]`` from nonnegative per-source spectrograms
    ``[N, F, frames]`` (model magnitudes, or the truth's for an oracle): norbert's soft mask with
    ``spectrograms ** power`` (1: ratio mask, 2: the Wiener filter of a mono mix), applied to the mix's STFT.
    ``mix_spec`` is the mix's STFT when the caller has it already."""
    import norbert  # the sigsep library's masking, as in open-unmix

    if power <= 0:
        raise ValueError(f"power must be positive, got {power}")
    T = mixture.shape[-1]
    X = stft(mixture, config) if mix_spec is None else mix_spec  # [F, frames]
    _N, F, frames = spectrograms.shape
    if (F, frames) != tuple(X.shape):
        raise ValueError(f"source spectrograms are {F} x {frames}; the mix's STFT is {tuple(X.shape)}")
    v = spectrograms.detach().double().clamp_min(0).pow(power).permute(2, 1, 0).numpy()[:, :, None, :]
    x = X.detach().to(torch.complex128).T.numpy()[:, :, None]  # norbert: (frames, bins, channels[, sources])
    y = norbert.softmask(v, x, eps=np.finfo(np.float64).tiny ** 0.5)  # (frames, bins, 1, N)
    Y = torch.from_numpy(np.ascontiguousarray(y[:, :, 0, :].transpose(2, 1, 0)))  # [N, F, frames]
    return istft(Y, config, T).to(mixture.dtype)


def oracle_estimates(stems: torch.Tensor, config: STFTConfig, power: float = 1.0) -> torch.Tensor:
    """The oracle mask's estimates ``[N, T]`` of ``stems [N, T]`` from their sum: the true magnitudes as
    :func:`mask_mixture`'s spectrograms (``power`` 1: the ideal ratio mask; 2: the oracle Wiener filter)."""
    mixture = stems.sum(0)
    return mask_mixture(mixture, stft(stems, config).abs(), config, power)


__all__ = ["STFTConfig", "istft", "mask_mixture", "oracle_estimates", "stft"]
