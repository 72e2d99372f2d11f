"""Log-mel spectrograms of drum hits, and two ways back to audio.

The paper takes 1 s hits at 22 050 Hz through a 1 024-sample Hann window, hop 256 and a 2 048-point FFT, and
folds the 1 025 bins into 512 mel bands. Our hits are 16 384 samples (0.74 s), and the app has to decode a
new one in a few tens of milliseconds on two cores, so :class:`MelConfig` keeps the window and the hop and
takes a 1 024-point FFT into 128 mel bands: a hit is ``[128, 64]`` (the last centred frame, past the end of
the hit, is dropped, so 64 frames times the hop is exactly the hit's length).

Values are ``log(mel + floor)`` of the magnitude (not power) mel spectrogram; the floor (1e-3) sits about
90 dB under a full-scale hit's loudest band.

Back to audio without a learned inverter: the mel bands are spread back onto the linear bins by the
filterbank's pseudo-inverse (negative values clipped), then fast Griffin-Lim (torchaudio, momentum 0.99)
finds a phase. :class:`~sepmodels.drums.mcnn.MCNN` is the learned alternative.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torchaudio
from torch import nn


@dataclass(frozen=True)
class MelConfig:
    """How a hit becomes a log-mel spectrogram ``[n_mels, length / hop]``."""

    sample_rate: int = 22_050
    length: int = 16_384  # samples per hit
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 128
    f_min: float = 20.0
    floor: float = 1e-3

    def __post_init__(self) -> None:
        if self.n_fft < 16 or self.n_fft % 2:
            raise ValueError(f"n_fft must be an even number of at least 16, got {self.n_fft}")
        if not 0 < self.hop <= self.n_fft:
            raise ValueError(f"hop must be in 1..n_fft, got {self.hop}")
        if self.length < self.hop or self.length % self.hop:
            raise ValueError(f"length must be a positive multiple of the hop ({self.hop}), got {self.length}")
        if not 1 <= self.n_mels <= self.n_fft // 2:
            raise ValueError(f"n_mels must be in 1..{self.n_fft // 2}, got {self.n_mels}")
        if not 0 <= self.f_min < self.sample_rate / 2:
            raise ValueError(f"f_min must be in [0, {self.sample_rate / 2}), got {self.f_min}")
        if not self.floor > 0:
            raise ValueError(f"floor must be positive, got {self.floor}")

    @property
    def frames(self) -> int:
        return self.length // self.hop

    @property
    def mel(self) -> MelConfig:
        """Just the mel settings (a model's config extends them): what two models must share to fit together."""
        return MelConfig(**{f.name: getattr(self, f.name) for f in fields(MelConfig)})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LogMel(nn.Module):
    """``[..., length]`` audio to ``[..., n_mels, frames]`` log-mel, and back (see the module docstring).

    Example:
        >>> mel = LogMel(MelConfig(length=2048, n_mels=32))
        >>> spec = mel(torch.randn(3, 2048))
        >>> tuple(spec.shape), tuple(mel.griffin_lim(spec, iterations=2).shape)
        ((3, 32, 8), (3, 2048))
    """

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        bank = torchaudio.functional.melscale_fbanks(
            config.n_fft // 2 + 1, config.f_min, config.sample_rate / 2, config.n_mels, config.sample_rate
        )  # [bins, mels]
        self.register_buffer("bank", bank, persistent=False)
        self.register_buffer("pinv", torch.linalg.pinv(bank), persistent=False)  # [mels, bins]
        self.register_buffer("window", torch.hann_window(config.n_fft), persistent=False)

    def magnitude(self, audio: torch.Tensor) -> torch.Tensor:
        """Linear STFT magnitude ``[..., n_fft / 2 + 1, frames]`` (frames as :meth:`forward`)."""
        c = self.config
        if audio.shape[-1] != c.length:
            raise ValueError(f"expected hits of {c.length} samples, got {audio.shape[-1]}")
        lead = audio.shape[:-1]
        spec = torch.stft(audio.reshape(-1, c.length), c.n_fft, c.hop, window=self.window, return_complex=True)
        return spec.abs()[..., : c.frames].reshape(*lead, c.n_fft // 2 + 1, c.frames)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.from_magnitude(self.magnitude(audio))

    def from_magnitude(self, magnitude: torch.Tensor) -> torch.Tensor:
        """Log-mel of a linear magnitude spectrogram ``[..., bins, frames]``."""
        return torch.log(torch.einsum("...bt,bm->...mt", magnitude, self.bank) + self.config.floor)

    def mel(self, log_mel: torch.Tensor) -> torch.Tensor:
        """The mel magnitudes of ``log_mel`` (the log undone, never negative)."""
        return (torch.exp(log_mel) - self.config.floor).clamp_min(0.0)

    def griffin_lim(self, log_mel: torch.Tensor, iterations: int = 32, momentum: float = 0.99,
                    seed: int = 0) -> torch.Tensor:  # fmt: skip
        """Audio ``[..., length]`` for ``log_mel [..., n_mels, frames]``: pseudo-inverse onto linear bins, then
        fast Griffin-Lim from a seeded random phase (the same call gives the same audio)."""
        c = self.config
        if iterations < 1:
            raise ValueError(f"iterations must be at least 1, got {iterations}")
        linear = torch.einsum("...mt,mb->...bt", self.mel(log_mel), self.pinv).clamp_min(0.0)
        linear = torch.cat([linear, torch.zeros_like(linear[..., :1])], dim=-1)  # the dropped end frame
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # torchaudio draws the initial phase from the global generator
        try:
            return torchaudio.functional.griffinlim(
                linear, self.window, c.n_fft, c.hop, c.n_fft, power=1.0, n_iter=iterations, momentum=momentum,
                length=c.length, rand_init=True,
            )  # fmt: skip
        finally:
            torch.random.set_rng_state(state)


def log_mel_distance(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of two log-mel spectrograms per item, in dB (20 log10 of the magnitude ratio)."""
    return (estimate - target).abs().mean(dim=(-2, -1)) * (20 / torch.log(torch.tensor(10.0)))


__all__ = ["LogMel", "MelConfig", "log_mel_distance"]
