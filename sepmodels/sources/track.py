"""Following one periodic source through a clip: its pitch track, phase and envelope (the harmonic priors' E-step).

A source is ``A(t) w(c(t))``: a periodic shape ``w`` (period 1) read at the running cycle count ``c(t)`` (the
phase over 2 pi, whose rate is the pitch) and scaled by an envelope ``A(t)``. Given a clip ``r`` that holds the
source (plus whatever else), :func:`follow` finds ``c`` and ``A`` by demodulation:

1. **Fundamental.** ``r(t) exp(-2 pi i f0 t)``, low-passed, is about ``A(t) |w_1| exp(i (phi(t) + theta_1))``
   where ``w_1 = |w_1| exp(i theta_1)`` is the shape's first Fourier coefficient and ``phi`` the phase's
   departure from the start pitch ``f0``: its unwrapped angle is the phase track, its magnitude the envelope.
   The band is wide enough for the largest pitch deviation the prior allows.
2. **All partials.** Demodulated by ``h c(t)``, partial ``h`` over ``w_h`` is about ``A exp(i h eps)`` for the
   small phase error ``eps`` left; a weighted least squares over the first partials gives ``eps`` and ``A``.
   Repeated a few times within the prior's motion band.
3. **Steady notes.** With a motion band of 0 the phase is a line (one pitch) and the envelope a constant:
   instead of low-passing, Gauss-Newton passes on the offset and slope of the phase from the partials' sums over
   the whole clip (each the clip's correlation with one partial, which rejects everything farther than about
   one over the clip's duration from it), with 1, 4, then 16 partials.
4. **Envelope.** Finally the local least-squares gain of the shape read at ``c(t)`` (the clip's own sharp
   shape, edges included, not its partials).

Low-passing is normalised convolution with a raised-cosine band (flat to ``band``, zero beyond twice it), so the
clip's ends are not dragged towards zero.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sepmodels.nn.exact import fast_size

TRACK_HARMONICS = 16  # partials used to refine the phase
STEADY_PASSES = (1, 4, 16, 16)  # partials used by each Gauss-Newton pass of a steady note


@functools.lru_cache(maxsize=16)
def _band(T: int, band: float, sample_rate: int) -> tuple[int, torch.Tensor, torch.Tensor]:
    """FFT size, gain and the normaliser (the filtered ones) of :func:`lowpass`."""
    n = fast_size(T + int(2 * sample_rate / band) + 1)  # a couple of periods of the band's edge beyond each end
    nu = torch.fft.fftfreq(n, d=1.0 / sample_rate, dtype=torch.float64).abs()
    gain = torch.where(nu <= band, 1.0, torch.where(nu >= 2 * band, 0.0,
                       0.5 * (1 + torch.cos(math.pi * (nu - band) / band))))  # fmt: skip
    den = torch.fft.ifft(torch.fft.fft(torch.ones(T, dtype=torch.float64), n) * gain)[:T].real
    return n, gain, den.clamp_min(1e-3)


def lowpass(z: torch.Tensor, band: float, sample_rate: int) -> torch.Tensor:
    """Normalised-convolution low-pass of ``z [..., T]`` (complex or real) flat to ``band`` Hz."""
    T = z.shape[-1]
    n, gain, den = _band(T, float(band), int(sample_rate))
    out = torch.fft.ifft(torch.fft.fft(z, n) * gain)[..., :T] / den
    return out if z.is_complex() else out.real


def unwrap(angle: torch.Tensor) -> torch.Tensor:
    """Angles ``[..., T]`` with their 2 pi jumps removed (the running phase)."""
    d = angle.diff(dim=-1)
    d = d - 2 * math.pi * torch.round(d / (2 * math.pi))
    return torch.cat([angle[..., :1], angle[..., :1] + d.cumsum(-1)], dim=-1)


@dataclass
class Followed:
    """One source followed through a clip: ``cycle`` (running cycle count), ``envelope`` and the ``wave``
    ``envelope * w(cycle)``, all ``[T]`` float64; ``error`` the clip's squared error left; ``motion`` the band
    (Hz) the note was followed in, 0 for a steady one."""

    cycle: torch.Tensor
    envelope: torch.Tensor
    wave: torch.Tensor
    error: float
    motion: float = 0.0  # the band it moved within (0: a steady note)

    def pitch(self, sample_rate: int) -> torch.Tensor:
        """The pitch track, Hz ``[T]`` (the cycle count's rate)."""
        d = self.cycle.diff() * sample_rate
        return torch.cat([d, d[-1:]])

    def mean_pitch(self, sample_rate: int) -> float:
        """The note's pitch (Hz): its cycles over the clip's duration."""
        T = self.cycle.shape[-1]
        return float(self.cycle[-1] - self.cycle[0]) * sample_rate / max(T - 1, 1)


def follow(
    r: torch.Tensor,
    f0: float,
    shape: Callable[[torch.Tensor], torch.Tensor],
    coefs: torch.Tensor,
    sample_rate: int,
    motion: float,
    deviation_cents: float,
    iterations: int = 3,
) -> Followed:
    """Follow the source of shape ``shape`` (a function of the position in the period; ``coefs`` its complex
    Fourier coefficients, index h for partial h) starting at pitch ``f0`` Hz through the clip ``r [T]``.

    ``motion`` is the band (Hz) within which pitch and envelope move (0: a steady note), ``deviation_cents``
    the largest pitch deviation from ``f0`` the first, fundamental-only stage must catch.
    """
    r = r.double()
    T = r.shape[-1]
    t = torch.arange(T, dtype=torch.float64)
    cycle = f0 * t / sample_rate
    if motion == 0:
        return _steady(r, cycle, shape, coefs, sample_rate)
    c1 = coefs[1]
    # 1. the fundamental, in a band wide enough for the pitch's largest excursion
    reach = f0 * (2.0 ** (deviation_cents / 1200) - 1)
    band = min(max(2 * reach + 2 * motion, 4.0), f0 / 2)
    z = lowpass(r * torch.exp(-2j * math.pi * cycle), band, sample_rate)
    phi = unwrap(torch.angle(z)) - float(torch.angle(c1))
    cycle = cycle + phi / (2 * math.pi)
    # 2. every partial below Nyquist (up to TRACK_HARMONICS), in the motion band
    track_band = motion
    for _ in range(iterations):
        top = float(cycle.diff().max()) * sample_rate
        H = max(1, min(TRACK_HARMONICS, int(sample_rate / 2 / max(top, 1.0)), coefs.shape[0] - 1))
        h = torch.arange(1, H + 1, dtype=torch.float64)
        w = coefs[1 : H + 1].abs().square()
        zh = lowpass(r * torch.exp(-2j * math.pi * h[:, None] * cycle), track_band, sample_rate)
        zh = zh / coefs[1 : H + 1, None]  # about A exp(i h eps)
        amp = (w[:, None] * zh.real).sum(0) / w.sum()
        eps = (w[:, None] * h[:, None] * zh.imag).sum(0) / (amp.abs().clamp_min(1e-9) * (w * h.square()).sum())
        eps = eps.clamp(-0.5, 0.5)  # a step of at most ~1/12 of a period per pass
        cycle = cycle + eps / (2 * math.pi)
    # 3. the envelope: the local gain of the sharp shape at these positions
    u = shape(torch.remainder(cycle, 1.0))
    envelope = lowpass(r * u, motion, sample_rate) / lowpass(u * u, motion, sample_rate).clamp_min(1e-6)
    envelope = envelope.clamp_min(0.0)
    wave = envelope * u
    return Followed(cycle, envelope.clone(), wave, float((r - wave).square().sum()), motion)


def _steady(
    r: torch.Tensor,
    cycle: torch.Tensor,
    shape: Callable[[torch.Tensor], torch.Tensor],
    coefs: torch.Tensor,
    sample_rate: int,
) -> Followed:
    """A steady note (one pitch, one gain) followed from the start ``cycle [T]`` by Gauss-Newton passes.

    With the partials demodulated by the current cycle, ``y_h = r exp(-2 pi i h c) / w_h`` is about
    ``A (1 + i h (a + b tau))`` for a small phase error ``a + b tau`` (``tau`` samples from the clip's middle), so
    ``sum y_h`` gives ``A`` and ``a``, ``sum tau y_h`` gives ``b``, each pooled over the partials with weights
    ``|w_h|^2``.
    """
    T = r.shape[-1]
    tau = torch.arange(T, dtype=torch.float64) - (T - 1) / 2
    spread = tau.square().sum()
    for H in STEADY_PASSES:
        top = float(cycle[1] - cycle[0]) * sample_rate
        H = max(1, min(H, int(sample_rate / 2 / max(top, 1.0)), coefs.shape[0] - 1))
        h = torch.arange(1, H + 1, dtype=torch.float64)
        w = coefs[1 : H + 1].abs().square()
        y = r * torch.exp(-2j * math.pi * h[:, None] * cycle) / coefs[1 : H + 1, None]  # [H, T]
        z0, z1 = y.sum(-1), (y * tau).sum(-1)
        if H == 1:  # the first pass takes the fundamental's angle whole: the start phase is anything
            turn = torch.exp(-1j * torch.angle(z0[0]))
            cycle = cycle + float(torch.angle(z0[0])) / (2 * math.pi)
            z0, z1 = z0 * turn, z1 * turn
        amp = float((w * z0.real).sum() / (T * w.sum()))
        if amp <= 0:
            break
        scale = amp * float((w * h.square()).sum())
        a = float((w * h * z0.imag).sum()) / (scale * T)
        b = float((w * h * z1.imag).sum()) / (scale * spread)
        a = 0.0 if H == 1 else max(-0.5, min(0.5, a))
        b = max(-1.0 / T, min(1.0 / T, b))  # at most ~1/12 of a period over the clip per pass
        cycle = cycle + (a + b * tau) / (2 * math.pi)
    u = shape(torch.remainder(cycle, 1.0))
    gain = max(0.0, float((r * u).sum() / (u * u).sum().clamp_min(1e-12)))
    wave = gain * u
    return Followed(cycle, torch.full((T,), gain, dtype=torch.float64), wave, float((r - wave).square().sum()))
