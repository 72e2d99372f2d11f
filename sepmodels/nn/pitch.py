"""A single-pitch denoiser: each prior finds one fundamental in the whole clip and passes its harmonic comb.

A toy source is one periodic wave: all of its energy sits on the harmonics of one fundamental (folded at
Nyquist, since the toy waves are not band-limited). A denoiser that passes whatever looks like a partial
also passes another source's partials, so a residual sweep cannot explain that source away with it (the
"+another" column of the denoising study). This one commits to one pitch per clip, as the exact prior does:

1. **Salience.** For every candidate fundamental on a grid of ``PITCH_STEPS`` per semitone over the piano's
   range, the power at each of its first ``HARMONICS`` partials (read from a 4x zero-padded spectrum: close
   to a matched filter at the partial's own frequency) over the white noise's power, ``log(1 + snr)``, weighted per
   harmonic by learned signed weights (one profile per source: a sine has one partial, a square only odd
   ones; a partial the source never has counts against it).
2. **One pitch.** A softmax over the candidates (learned sharpness) weights them.
3. **Comb.** The mask is the candidates' combs (learned pass weight per harmonic, a triangle of learned width
   around each partial) averaged under those weights, times a Wiener gain ``max(0, 1 - noise / power)``.

The output is ``irfft(mask * X)``; it answers as a score network (:class:`~sepmodels.nn.score.ScoreNet`
turns it into predicted noise), so samplers, trainer and checkpoints take it unchanged. Its parameters are
a few hundred numbers per source: it trains in minutes on a CPU.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sepmodels.nn.wavenet import sigma_features

HARMONICS = 24
PITCH_STEPS = 4  # candidates per semitone
_KEYS = (0.5, 88.5)  # the grid spans the piano's keys, half a key beyond each end
_PAD = 4  # zero-padding of the spectrum the salience reads


def candidate_hz() -> torch.Tensor:
    """The candidate fundamentals, Hz, float64 ``[K]``: ``PITCH_STEPS`` per semitone over the piano."""
    keys = torch.arange(_KEYS[0], _KEYS[1] + 1e-9, 1.0 / PITCH_STEPS, dtype=torch.float64)
    return 440.0 * 2.0 ** ((keys - 49.0) / 12.0)


class PitchDenoiser(nn.Module):
    """G single-pitch denoisers (see the module docstring): ``[B, G, T] -> [B, G, T]``.

    Example:
        >>> from sepmodels.nn.score import ScoreConfig
        >>> net = PitchDenoiser(4, ScoreConfig(arch="pitch", fold=1), sample_rate=14_700)
        >>> net(torch.randn(2, 4, 1470), torch.full((2,), 0.5)).shape
        torch.Size([2, 4, 1470])
    """

    def __init__(self, groups: int, config, sample_rate: int) -> None:
        super().__init__()
        self.groups, self.config, self.sample_rate = groups, config, sample_rate
        H = HARMONICS
        h = torch.arange(1, H + 1, dtype=torch.float32)
        # Salience weights start at 1/h (a decaying spectrum) and may turn negative (a partial a source never
        # has is evidence against it); the pass weights start open, the sharpness high.
        self.salience = nn.Parameter((1.0 / h).repeat(groups, 1))
        self.passing = nn.Parameter(torch.full((groups, H), 3.0))  # sigmoid(3) = 0.95
        self.sharpness = nn.Parameter(torch.full((groups,), math.log(4.0)))
        self.width = nn.Parameter(torch.full((groups,), 1.5))  # bins, half-width of each partial's triangle
        self.cond = nn.Linear(config.cond_features, 2 * groups)  # noise level -> sharpness and gain shifts
        nn.init.zeros_(self.cond.weight)
        nn.init.zeros_(self.cond.bias)
        self._grid: dict[tuple[int, str], torch.Tensor] = {}

    def receptive_field(self) -> float:
        return float("inf")  # every output sample depends on the whole clip

    def _positions(self, T: int, device: torch.device) -> torch.Tensor:
        """Each candidate's partials as fractional rfft bins, folded at Nyquist: ``[K, H]`` float32."""
        key = (T, str(device))
        if key not in self._grid:
            hz = candidate_hz()[:, None] * torch.arange(1, HARMONICS + 1, dtype=torch.float64)
            sr = float(self.sample_rate)
            folded = torch.abs(torch.remainder(hz + sr / 2, sr) - sr / 2)  # aliasing of a naive waveform
            self._grid[key] = (folded * T / sr).float().to(device)
        return self._grid[key]

    def _select(self, p: torch.Tensor, groups: list[int] | None) -> torch.Tensor:
        return p if groups is None else p[groups]

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, groups: list[int] | None = None) -> torch.Tensor:
        """The denoised clips ``[B, G, T]`` (``sigma``: ``[B]``); with ``groups``, ``x`` holds only those
        groups' clips and only they are computed."""
        B, G, T = x.shape
        spec = torch.fft.rfft(x.float(), dim=-1)  # [B, G, F]
        F = spec.shape[-1]
        power = spec.real**2 + spec.imag**2
        noise = (sigma.float() ** 2 * T).view(B, 1, 1)  # expected |X|^2 of white noise in every bin
        pos = self._positions(T, x.device)  # [K, H]
        # Each partial's power from a spectrum zero-padded PAD times: nearly the matched filter's output at the
        # partial's own frequency (a partial between two bins of the plain spectrum leaks into both).
        fine = torch.fft.rfft(x.float(), n=_PAD * T, dim=-1)
        fine_power = fine.real**2 + fine.imag**2  # [B, G, PAD * T // 2 + 1]
        near = (pos * _PAD).round().long()
        offsets = torch.arange(-1, 2, device=x.device)
        idx = (near[..., None] + offsets).clamp(0, fine_power.shape[-1] - 1)  # [K, H, 3]
        snr = fine_power[..., idx].amax(-1) / noise[..., None]  # [B, G, K, H]
        w = self._select(self.salience, groups)  # [G, H]
        score = (torch.log1p(snr) * w[None, :, None, :]).sum(-1)  # [B, G, K]
        shift = self.cond(sigma_features(sigma.float(), self.config.cond_features)).view(B, 2, -1)
        shift = shift[:, :, groups] if groups is not None else shift
        sharp = torch.exp(self._select(self.sharpness, groups))[None] * torch.exp(shift[:, 0])  # [B, G]
        weights = torch.softmax(score * sharp[..., None], dim=-1)  # [B, G, K]
        # The comb: every candidate's partials, each a triangle of half-width `width` bins.
        half = nn.functional.softplus(self._select(self.width, groups)) + 0.5  # [G]
        reach = math.ceil(float(half.detach().max())) + 1
        bins = pos.floor().long()[..., None] + torch.arange(-reach + 1, reach + 1, device=x.device)  # [K,H,R]
        tri = (1 - (bins.float() - pos[..., None]).abs()[None] / half.view(-1, 1, 1, 1)).clamp(min=0)  # [G,K,H,R]
        open_ = torch.sigmoid(self._select(self.passing, groups))  # [G, H]
        contrib = tri * open_[:, None, :, None]  # [G, K, H, R]
        flat = bins.clamp(0, F - 1).reshape(-1)  # [K*H*R]
        per = weights[..., None, None] * contrib[None]  # [B, G, K, H, R]
        mask = torch.zeros(B, G, F, device=x.device).index_add_(2, flat, per.reshape(B, G, -1))
        wiener = (1 - noise / power.clamp_min(1e-12)).clamp(min=0) * torch.sigmoid(4.0 + shift[:, 1])[..., None]
        gain = mask.clamp(max=1.0) * wiener
        return torch.fft.irfft(gain * spec, n=T, dim=-1).to(x.dtype)


__all__ = ["HARMONICS", "PITCH_STEPS", "PitchDenoiser", "candidate_hz"]
