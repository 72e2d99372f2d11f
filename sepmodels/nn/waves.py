"""Learned wave priors: each source is one periodic wave of a learned shape, at a learned pitch distribution.

The model of a clip of source k is ``a * w_k(f t / sr + phi) + noise``: a pitch ``f`` drawn from a learned
distribution over candidate pitches (4 per semitone over the piano's range, as the pitch score network's
grid), a phase uniform over the period, an amplitude uniform over a learned range, and a learned periodic
shape ``w_k``. The shape is a continuous periodic curve (``KNOTS`` values, linearly interpolated) plus
``JUMPS`` edges at evenly spaced points of the period (shifted by a learned offset), each a sawtooth
``frac(u - j / JUMPS - offset) - 1/2`` of learned height: any piecewise-smooth wave whose edges sit on such a
grid of points.

Inference is the exact toy prior's quadrature (:class:`~sepmodels.nn.exact.ExactToyPriors`) with these learned
parts in place of the toy generator's: pitch, phase and amplitude integrated, an exact log-density, posterior
mean and score at every noise level. Nothing of the toy generator is used; every part is fitted from solo
clips by :func:`fit_wave_priors`, hard EM:

1. **E-step.** Each clip's best pitch, phase and amplitude under the current shape (the quadrature's best
   template, its phase refined by a local search, then, for a shape with edges, plateau by plateau between
   the phases where an edge crosses a sample, which a grid of trial phases can step over).
2. **M-step.** The shape that fits all clips best at those settings: least squares, linear in the knots and
   edge heights (normal equations), with no DC (the mean over a period held at 0) and the edges' offset found
   by a line search around the last one; then each clip's amplitude again, and the shape scaled to unit RMS.
   Two things keep EM from settling on a wrong shape that its own phases agree with. The offset: with edges at
   fixed points, the phases can settle where the data's edge falls a fraction of a knot away from every edge
   point, and the knots then carry it as a steep ramp (a small penalty on the knots' curvature makes an edge
   cheaper as an edge). The DC: a saw shifted in phase is the same saw plus a constant, so a shape free to
   carry a constant split the clips' phases into two groups.
3. The amplitude range is the fitted amplitudes' range; the pitch distribution the count of clips at each
   candidate pitch (add-one), keeping the pitches some clip has (the first E-step searches all candidates).

The first shape is a sine. It finds every toy clip's fundamental (each toy wave's strongest partial), and the
fits converge in a few rounds; each round's fit quality is printed and kept in the checkpoint's metadata.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch

from sepmodels.checkpoint import CheckpointError
from sepmodels.nn.exact import KEYS, MAX_LENGTH, ExactToyPriors
from sepmodels.nn.pitch import candidate_hz

KNOTS = 2048  # values of the continuous part over one period
JUMPS = 16  # points of the period where an edge may sit
CLASS = "WavePriors"
CHUNK = 1 << 17  # positions per pass of wave_values: 1 MB temporaries, which the allocator reuses
SMOOTHING = 1e-2  # weight of the knots' second differences in the fit, relative to the data's mean weight


def wave_values(knots: torch.Tensor, jumps: torch.Tensor, offset: float, cycle: torch.Tensor) -> torch.Tensor:
    """The wave of shape (``knots [L]``, ``jumps [J]`` at ``j / J + offset``) at positions ``cycle`` in [0, 1)
    (any shape, float64).

    The edges' sum ``sum_j h_j (frac(u - c_j) - 1/2)`` is evaluated in one pass: with ``r = frac(u - offset)``
    in segment ``m = floor(r J)`` it is ``H (r - 1/2) - sum_j h_j j / J + sum_{j > m} h_j``, ``H = sum_j h_j``.
    Large inputs go through in chunks of :data:`CHUNK` positions: the refinement's trial waves of a 10 s clip
    are tens of MB per temporary, fresh pages on every call (as much system time as compute).
    """
    flat = cycle.reshape(-1)
    if flat.numel() <= CHUNK:
        return _wave_values(knots, jumps, offset, cycle)
    out = torch.empty_like(flat)
    for i in range(0, flat.numel(), CHUNK):
        out[i : i + CHUNK] = _wave_values(knots, jumps, offset, flat[i : i + CHUNK])
    return out.reshape(cycle.shape)


def _wave_values(knots: torch.Tensor, jumps: torch.Tensor, offset: float, cycle: torch.Tensor) -> torch.Tensor:
    L, J = knots.numel(), jumps.numel()
    pos = cycle * L
    base = pos.floor()
    frac = pos - base
    i0 = base.long().remainder(L)
    value = knots[i0] * (1 - frac) + knots[(i0 + 1).remainder(L)] * frac
    if J:
        r = torch.remainder(cycle - offset, 1.0)
        segment = (r * J).floor().long().clamp(0, J - 1)
        after = jumps.flip(0).cumsum(0).flip(0) - jumps  # sum of the heights past each segment's edge
        points = torch.arange(J, dtype=jumps.dtype) / J
        value = value + jumps.sum() * (r - 0.5) - (jumps * points).sum() + after[segment]
    return value


class WavePriors(ExactToyPriors):
    """Learned wave priors, one per source (see the module docstring); the same contract as the exact prior.

    Arguments:
        names, sample_rate: the sources and their rate.
        knots: ``[N, KNOTS]`` continuous part of each shape; jumps: ``[N, JUMPS]`` edge heights; offsets:
            ``[N]`` where each shape's edge grid starts (periods).
        pitch_hz, pitch_log_prior: per source, the candidate pitches (Hz) and their log-probabilities.
        amplitude: ``[N, 2]`` each source's amplitude range.
        meta: how they were fitted.
        lags, refine: the phase quadrature's lags per pitch and the finer phases each of the best two lags'
            cells is split into (as :class:`ExactToyPriors`). Every learned wave is refined, and it needs a
            phase step of 1/128 of a lag's cell (the exact prior's 32 left two of eight square clips at 35 dB
            instead of 161 at sigma 0.3): a learned edge must land between the same two samples as the clip's
            own edge. The default reaches it in two stages, 16 then 8 within the best two of those (48 trial
            waves per clip instead of 256: one denoising call about 6 times faster, same SI-SDR).

    Example:
        >>> priors = WavePriors.load()  # the shipped ones
        >>> clips = priors.sample(1, 2048, sigma=0.01, generator=torch.Generator().manual_seed(0))
        >>> priors.denoise(clips, 0.01).shape
        torch.Size([1, 4, 2048])
    """

    kind = "waves"
    checkpoint_class = CLASS
    checkpoint_what = "a set of learned wave priors (sepmodels fit-waves)"

    def __init__(
        self,
        names: tuple[str, ...],
        sample_rate: int,
        knots: torch.Tensor,
        jumps: torch.Tensor,
        offsets: torch.Tensor,
        pitch_hz: list[torch.Tensor],
        pitch_log_prior: list[torch.Tensor],
        amplitude: torch.Tensor,
        meta: dict[str, Any] | None = None,
        lags: int = 1024,
        refine: int | tuple[int, ...] = (16, 8),
    ) -> None:
        super().__init__(lags=lags, refine=refine)
        N = len(names)
        shapes = (knots.shape, jumps.shape, offsets.shape, amplitude.shape)
        if shapes != ((N, KNOTS), (N, JUMPS), (N,), (N, 2)):
            raise ValueError(f"shapes do not fit {N} sources: knots, jumps, offsets, amplitude "
                             f"{[tuple(s) for s in shapes]}")  # fmt: skip
        if len(pitch_hz) != N or len(pitch_log_prior) != N:
            raise ValueError(f"need the pitches of {N} sources")
        for hz, lp in zip(pitch_hz, pitch_log_prior, strict=True):
            if hz.dim() != 1 or hz.shape != lp.shape or len(hz) == 0 or not bool((hz > 0).all()):
                raise ValueError("each source needs one or more positive pitches, each with a log-probability")
        if not bool((amplitude[:, 0] > 0).all() and (amplitude[:, 1] > amplitude[:, 0]).all()):
            raise ValueError("each amplitude range must be 0 < low < high")
        self.names = tuple(names)
        self.sample_rate = int(sample_rate)
        self.knots, self.jumps, self.offsets = knots.double(), jumps.double(), offsets.double()
        self.pitch_hz = [h.double() for h in pitch_hz]
        self.pitch_log_prior = [p.double() for p in pitch_log_prior]
        self.amplitude = amplitude.double()
        self.meta = {"what": "the learned wave priors (shape, pitch and amplitude fitted to solo clips)",
                     **(meta or {})}  # fmt: skip
        self.min_length = math.ceil(self.sample_rate / min(float(h.min()) for h in self.pitch_hz))

    # -- the learned parts, in place of the toy generator's ---------------------------------------------------
    def _index(self, kind: str) -> int:
        return self.names.index(kind)

    def _frequencies(self, kind: str) -> torch.Tensor:
        return self.pitch_hz[self._index(kind)]

    def _log_pitch_prior(self, kind: str) -> torch.Tensor:
        return self.pitch_log_prior[self._index(kind)]

    def _pitch_keys(self, kind: str) -> torch.Tensor:
        key = 49 + 12 * torch.log2(self._frequencies(kind) / 440.0)
        return key.round().clamp(1, KEYS).long() - 1

    def _amplitude_range(self, kind: str) -> tuple[float, float]:
        low, high = self.amplitude[self._index(kind)].tolist()
        return low, high

    def _long_render(self, kind: str, frequency: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self._wave(kind, torch.remainder(frequency[:, None] * t / self.sample_rate, 1.0))

    def _wave(self, kind: str, cycle: torch.Tensor) -> torch.Tensor:
        k = self._index(kind)
        return wave_values(self.knots[k], self.jumps[k], float(self.offsets[k]), cycle)

    def _sharp(self, kind: str) -> bool:
        return True  # refining the best phase helps every wave once its posterior is narrow

    # -- facts and persistence --------------------------------------------------------------------------------
    def parameters_count(self) -> int:
        return int(self.knots.numel() + self.jumps.numel() + self.offsets.numel() + self.amplitude.numel()
                   + sum(p.numel() for p in self.pitch_log_prior))  # fmt: skip

    def describe(self) -> dict[str, object]:
        return {"class": CLASS, "config": {"knots": KNOTS, "jumps": JUMPS, "lags": self.lags,
                "pitches": [len(h) for h in self.pitch_hz]}}  # fmt: skip

    def payload(self) -> dict[str, Any]:
        return {
            "class": CLASS,
            "sources": list(self.names),
            "sample_rate": self.sample_rate,
            "knots": self.knots,
            "jumps": self.jumps,
            "offsets": self.offsets,
            "pitch_hz": list(self.pitch_hz),
            "pitch_log_prior": list(self.pitch_log_prior),
            "amplitude": self.amplitude,
            "meta": self.meta,
        }

    @classmethod
    def shipped_path(cls) -> Path:
        from sepmodels.checkpoint import default_wave_priors_path

        return default_wave_priors_path()

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], where: str = "checkpoint") -> WavePriors:
        cls.check_class(ckpt, where)
        try:
            return cls(tuple(str(n) for n in ckpt["sources"]), int(ckpt["sample_rate"]), ckpt["knots"],
                       ckpt["jumps"], ckpt["offsets"], list(ckpt["pitch_hz"]), list(ckpt["pitch_log_prior"]),
                       ckpt["amplitude"], ckpt.get("meta"))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{where} does not match its own description ({str(err)[:120]})") from None

    # -- drawing -------------------------------------------------------------------------------------------
    def sample(
        self,
        n: int,
        length: int,
        sigma: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` draws of every source from the learned model plus noise of level sigma: ``[n, N, length]``."""
        s = self._sigma(sigma)
        generator = generator or torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
        t = torch.arange(length, dtype=torch.float64) / self.sample_rate
        out = torch.empty(n, len(self), length, dtype=torch.float64)
        for k, kind in enumerate(self.names):
            pick = torch.multinomial(self.pitch_log_prior[k].exp(), n, replacement=True, generator=generator)
            phase = torch.rand(n, generator=generator, dtype=torch.float64)
            low, high = self._amplitude_range(kind)
            amp = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
            cycle = torch.remainder(self.pitch_hz[k][pick][:, None] * t + phase[:, None], 1.0)
            out[:, k] = amp[:, None] * self._wave(kind, cycle)
        clean = out.float()
        return clean + s * torch.randn(clean.shape, generator=generator)


# -- fitting: hard EM over solo clips ----------------------------------------------------------------------
class _ShapeFit:
    """The least-squares shape of clips ``[B, T]`` at positions ``cycles [B, T]`` and amplitudes ``amps [B]``.

    The knots' part of the normal equations does not depend on the edges' offset, so it is accumulated once;
    :meth:`solve` adds the edges' part for one offset and returns the knots, edge heights and residual energy.
    """

    def __init__(self, cycles: torch.Tensor, amps: torch.Tensor, clips: torch.Tensor) -> None:
        T = clips.shape[1]
        self.L = L = KNOTS
        self.cycle = cycles.reshape(-1)
        self.amp = amps[:, None].expand(-1, T).reshape(-1)
        self.x = clips.reshape(-1).double()
        pos = self.cycle * L
        base = pos.floor()
        frac = pos - base
        i0 = base.long().remainder(L)
        self.idx = torch.stack([i0, (i0 + 1).remainder(L)], 1)  # the two knots each sample reads
        self.w = torch.stack([1 - frac, frac], 1) * self.amp[:, None]  # and their weights
        self.gram = torch.zeros(L, L, dtype=torch.float64)
        flat = (self.idx[:, :, None] * L + self.idx[:, None, :]).reshape(-1)
        self.gram.view(-1).index_add_(0, flat, (self.w[:, :, None] * self.w[:, None, :]).reshape(-1))
        self.rhs = torch.zeros(L, dtype=torch.float64).index_add_(
            0, self.idx.reshape(-1), (self.w * self.x[:, None]).reshape(-1)
        )
        # A small penalty on the knots' curvature: an edge is then cheaper as an edge than as a steep ramp between
        # two knots, while a smooth wave is barely biased.
        # (the squared circular second difference, D^T D, is the stencil 1 -4 6 -4 1: no L^3 product needed)
        eye = torch.eye(L, dtype=torch.float64)
        curvature = 6 * eye - 4 * (eye.roll(1, 1) + eye.roll(-1, 1)) + eye.roll(2, 1) + eye.roll(-2, 1)
        self.penalty = SMOOTHING * self.gram.diagonal().mean() * curvature
        self.energy = float(self.x.square().sum())

    def solve(self, offset: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        L = self.L
        D = L + JUMPS
        points = torch.arange(JUMPS, dtype=torch.float64) / JUMPS + offset
        edges = (torch.remainder(self.cycle[:, None] - points, 1.0) - 0.5) * self.amp[:, None]  # [n, J]
        gram = torch.zeros(D, D, dtype=torch.float64)
        gram[:L, :L] = self.gram + self.penalty
        cross = torch.zeros(L, JUMPS, dtype=torch.float64)
        cross.index_add_(0, self.idx.reshape(-1), (self.w[:, :, None] * edges[:, None, :]).reshape(-1, JUMPS))
        gram[:L, L:], gram[L:, :L], gram[L:, L:] = cross, cross.T, edges.T @ edges
        rhs = torch.cat([self.rhs, edges.T @ self.x])
        ridge = 1e-12 * float(gram.diagonal().mean())
        # No DC: the wave's mean over a period (the knots' mean; every edge term has none) is held at 0 by a
        # Lagrange multiplier. A saw shifted by a phase d is the same saw plus a constant; with the constant
        # free, EM settled where the shape carried one and the clips' phases split into two groups.
        bordered = torch.zeros(D + 1, D + 1, dtype=torch.float64)
        bordered[:D, :D] = gram + ridge * torch.eye(D, dtype=torch.float64)
        bordered[:L, D] = bordered[D, :L] = float(gram.diagonal()[:L].mean())  # the mean's row, scaled alike
        theta = torch.linalg.solve(bordered, torch.cat([rhs, rhs.new_zeros(1)]))[:D]
        return theta[:L], theta[L:], self.energy - 2 * float(theta @ rhs) + float(theta @ gram @ theta)

    def best(self, offset: float) -> tuple[torch.Tensor, torch.Tensor, float]:
        """The shape at the offset near ``offset`` (within two knots) that leaves the least residual."""
        span = 2.0 / self.L
        best_offset = offset
        for _ in range(3):
            trials = [best_offset + span * i / 4 for i in range(-4, 5)]
            residuals = [self.solve(o)[2] for o in trials]
            best_offset = trials[min(range(len(trials)), key=residuals.__getitem__)]
            span /= 4
        knots, jumps, _ = self.solve(best_offset)
        # Offsets a whole grid step apart describe the same edges, renumbered: keep the offset in [0, 1/J).
        shift = math.floor(best_offset * JUMPS)
        return knots, jumps.roll(shift), best_offset - shift / JUMPS


class _Fitting(WavePriors):
    """Wave priors during fitting: the E-step's best settings of each clip."""

    def best_templates(self, kind: str, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Each clip's most probable template of the quadrature: pitch index and lag, ``[B]`` each."""
        tpl = self._templates(kind, x.shape[-1])
        best = []
        for s in range(0, x.shape[0], 8):  # a few clips at a time: [8, P, nfft] correlations
            X = torch.fft.rfft(x[s : s + 8].double(), tpl.nfft)
            c = torch.fft.irfft(X.conj()[:, None, :] * tpl.spectra[None], tpl.nfft)[..., : self.lags]
            logits = self._logits(kind, c, tpl.energy[None], tpl.log_weight[None], sigma)
            best.append(logits.reshape(len(X), -1).argmax(1))
        flat = torch.cat(best)
        return flat // self.lags, flat % self.lags

    def best_settings(self, kind: str, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Each clip's most probable pitch (index) and phase (periods): the quadrature's best template, its
        phase refined by a local search (four rounds of 65 phases, each 16 times finer than the last)."""
        B, T = x.shape
        tpl = self._templates(kind, T)
        x = x.double()
        pitch, lag = self.best_templates(kind, x, sigma)
        hz = self._frequencies(kind)[pitch]
        cell = tpl.cells[pitch, lag]  # the lag's phase cell: start, width
        phase = cell[:, 0] + 0.5 * cell[:, 1]
        width = 2 * cell[:, 1]  # the cell and its neighbours: the best lag may sit at its cell's edge
        t = torch.arange(T, dtype=torch.float64) / self.sample_rate
        steps = torch.linspace(-1, 1, 65, dtype=torch.float64)
        for _ in range(4):
            for s in range(0, B, 16):
                part = slice(s, s + 16)
                trial = phase[part, None] + width[part, None] * steps  # [b, 33]
                cycle = torch.remainder(hz[part, None, None] * t + trial[..., None], 1.0)
                waves = self._wave(kind, cycle)  # [b, 33, T]
                corr = (waves * x[part, None]).sum(-1)
                fit = corr.clamp(min=0).square() / waves.square().sum(-1)
                phase[part] = trial.gather(1, fit.argmax(1, keepdim=True)).squeeze(1)
            width = width / 16  # two steps of this round either side
        k = self._index(kind)
        jumps = self.jumps[k]
        edges = (torch.arange(len(jumps), dtype=torch.float64) / len(jumps) + self.offsets[k])[
            jumps.abs() > 1e-6 * float(jumps.abs().max().clamp_min(1e-300))
        ]
        if len(edges):
            for b in range(B):
                phase[b] = self._best_plateau(kind, x[b], float(hz[b]) * t, float(phase[b]), edges)
        return pitch, torch.remainder(phase, 1.0)

    def _best_plateau(self, kind: str, x: torch.Tensor, turns: torch.Tensor, phase: float, edges: torch.Tensor,
                      span: float = 2e-3) -> float:  # fmt: skip
        """The best phase near ``phase`` of a wave with edges, searched plateau by plateau.

        Between the phases where some edge crosses some sample, every sample keeps its side of every edge; the
        fit changes smoothly there and jumps at the crossings. A grid of trial phases can step over a narrow
        plateau, and the true phase may lie in one (a saw clip was left 2e-4 of a period off, on a plateau
        whose every period has one sample on the wrong side of the edge: 25 dB where the truth gives 96). So
        every plateau within ``span`` is tried at its middle, and the best one searched within its bounds.
        """
        position = torch.remainder(turns, 1.0)  # each sample's place in the period at phase 0
        cross = torch.remainder(edges[None, :] - position[:, None] - phase + 0.5, 1.0).reshape(-1) - 0.5
        cross = torch.unique(cross[cross.abs() < span])  # sorted crossings, relative to ``phase``
        # crossings closer than the phase arithmetic's rounding (a sample's place is f t / sr of up to thousands
        # of periods) are one: a plateau between them would sit on an edge, on whichever side rounding puts it
        cross = cross[torch.cat([torch.ones(min(len(cross), 1), dtype=torch.bool), cross.diff() > 1e-9])]
        bounds = torch.cat([cross.new_tensor([-span]), cross, cross.new_tensor([span])])

        def best_of(trials: torch.Tensor) -> int:
            waves = self._wave(kind, torch.remainder(turns[None, :] + phase + trials[:, None], 1.0))
            fit = (waves @ x).clamp(min=0).square() / waves.square().sum(1)
            return int(fit.argmax())

        middles = 0.5 * (bounds[1:] + bounds[:-1])
        chosen = best_of(torch.cat([middles.new_zeros(1), middles]))
        if chosen == 0:  # the grid's own phase is at least as good as every plateau's middle
            return phase
        low, high = float(bounds[chosen - 1]), float(bounds[chosen])
        for _ in range(3):  # within the plateau the fit is smooth: three rounds of 33 phases
            trials = torch.linspace(low, high, 33, dtype=torch.float64)
            j = best_of(trials)
            step = (high - low) / 32
            low, high = max(low, float(trials[j]) - step), min(high, float(trials[j]) + step)
        return phase + 0.5 * (low + high)


def _check_clips(clips: torch.Tensor, names: tuple[str, ...], sample_rate: int, what: str) -> None:
    if clips.dim() != 3 or clips.shape[1] != len(names) or clips.shape[0] < 2:
        raise ValueError(f"expected {what} [B >= 2, {len(names)}, T], got shape {tuple(clips.shape)}")
    if not bool(torch.isfinite(clips).all()):
        raise ValueError(f"the {what} contain NaN or infinite values")
    lowest = float(candidate_hz().min())
    if not math.ceil(sample_rate / lowest) <= clips.shape[-1] <= MAX_LENGTH:
        shortest = math.ceil(sample_rate / lowest)
        raise ValueError(f"{what} of {clips.shape[-1]} samples: need one period of the lowest pitch "
                         f"({lowest:.1f} Hz, {shortest} samples) to {MAX_LENGTH}")  # fmt: skip


def fit_wave_priors(
    clips: torch.Tensor,
    names: tuple[str, ...],
    sample_rate: int,
    iterations: int = 8,
    census: torch.Tensor | None = None,
    sigma: float = 0.01,
    progress: bool = True,
    init: WavePriors | None = None,
) -> WavePriors:
    """Fit wave priors to solo clips ``[B, N, T]`` (clip b of source k is ``clips[b, k]``) by hard EM.

    The shapes and amplitude ranges come from ``clips``; the pitch distribution from the best pitch of each clip
    of ``census`` (``[C, N, T']``, default ``clips``) under the fitted shape, over every candidate pitch: the
    pitches need many clips, the shapes few. ``meta["rounds"]`` holds each round's mean fit quality in dB (the
    clips against their fitted waves) and its time. ``init`` continues from fitted priors' shapes and pitches
    (more rounds on the same clips go on where a run stopped) instead of a sine.
    """
    from tqdm.auto import tqdm

    _check_clips(clips, names, sample_rate, "solo clips")
    census = clips if census is None else census
    _check_clips(census, names, sample_rate, "census clips")
    if iterations < 1:
        raise ValueError(f"need at least one round, got {iterations}")
    B, N, T = clips.shape
    everywhere = candidate_hz()
    u = torch.arange(KNOTS, dtype=torch.float64) / KNOTS
    knots = torch.sin(2 * math.pi * u).repeat(N, 1)  # the first shape: a sine, which finds every fundamental
    jumps = torch.zeros(N, JUMPS, dtype=torch.float64)
    offsets = torch.zeros(N, dtype=torch.float64)
    pitch_hz = [everywhere.clone() for _ in range(N)]
    earlier: list[dict[str, Any]] = []
    if init is not None:
        if init.names != tuple(names) or init.sample_rate != sample_rate:
            raise ValueError(f"the initial priors are for {init.names} at {init.sample_rate} Hz, not {names}")
        knots, jumps, offsets = init.knots.clone(), init.jumps.clone(), init.offsets.clone()
        pitch_hz = [h.clone() for h in init.pitch_hz]
        earlier = list(init.meta.get("rounds", []))
    uniform = [torch.full((len(everywhere),), -math.log(len(everywhere)), dtype=torch.float64)] * N
    # The E-step takes any amplitude: a range fitted under the last shape could exclude the true setting.
    wide = torch.tensor([[0.01, 100.0]] * N, dtype=torch.float64)
    amplitude = wide.clone()
    dense = (torch.arange(1 << 16, dtype=torch.float64) + 0.5) / (1 << 16)
    t = torch.arange(T, dtype=torch.float64) / sample_rate
    rounds = []
    bar = tqdm(total=iterations * N + N, desc="fit-waves", disable=not progress, unit="step")
    for r in range(iterations):
        start = time.perf_counter()
        flat = [torch.full((len(h),), -math.log(len(h)), dtype=torch.float64) for h in pitch_hz]
        model = _Fitting(names, sample_rate, knots, jumps, offsets, pitch_hz, flat, wide)
        quality = []
        for k, kind in enumerate(names):
            x = clips[:, k].double()
            pitch, phase = model.best_settings(kind, x, sigma)
            cycles = torch.remainder(pitch_hz[k][pitch][:, None] * t + phase[:, None], 1.0)
            # amplitude under the current shape, then the shape at those settings, then the amplitude again
            w = wave_values(knots[k], jumps[k], float(offsets[k]), cycles)
            amp = ((w * x).sum(1) / w.square().sum(1)).clamp_min(1e-6)
            knots[k], jumps[k], offset = _ShapeFit(cycles, amp, x).best(float(offsets[k]))
            scale = float(wave_values(knots[k], jumps[k], offset, dense).square().mean().sqrt())  # to unit RMS
            knots[k], jumps[k], offsets[k] = knots[k] / scale, jumps[k] / scale, offset
            w = wave_values(knots[k], jumps[k], offset, cycles)
            amp = (w * x).sum(1) / w.square().sum(1)
            err = (amp[:, None] * w - x).square().sum(1)
            quality.append(float((10 * torch.log10(x.square().sum(1) / err.clamp_min(1e-300))).mean()))
            # the unbiased range of a uniform from its sample's extremes
            low, high = float(amp.clamp_min(1e-6).min()), float(amp.clamp_min(1e-6).max())
            pad = (high - low) / (B - 1)
            amplitude[k] = torch.tensor([max(low - pad, 1e-6), max(high + pad, 1.001 * low + 1e-6)])
            pitch_hz[k] = pitch_hz[k][torch.bincount(pitch, minlength=len(pitch_hz[k])) > 0]  # a faster next round
            bar.update(1)
        seconds = round(time.perf_counter() - start, 2)
        rounds.append({"round": len(earlier) + r + 1, "fit_db": quality, "seconds": seconds})
        bar.set_postfix(fit_db=" ".join(f"{q:.1f}" for q in quality))
    # The census: every candidate pitch, the fitted shapes; add-one counts over the pitches some clip has.
    start = time.perf_counter()
    model = _Fitting(names, sample_rate, knots, jumps, offsets, [everywhere] * N, uniform, wide)
    log_prior, counts_kept = [], []
    for k, kind in enumerate(names):
        pitch, _ = model.best_templates(kind, census[:, k].double(), sigma)
        counts = torch.bincount(pitch, minlength=len(everywhere)).double()
        keep = counts > 0
        pitch_hz[k] = everywhere[keep]
        log_prior.append(torch.log((counts[keep] + 1) / (counts[keep] + 1).sum()))
        counts_kept.append(int(keep.sum()))
        bar.update(1)
    bar.close()
    meta = {"clips_per_source": B, "length": T, "census_clips": census.shape[0], "census_length": census.shape[-1],
            "iterations": len(earlier) + iterations, "fit_sigma": sigma, "rounds": earlier + rounds,
            "pitches": counts_kept,
            "census_seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
    return WavePriors(names, sample_rate, knots, jumps, offsets, pitch_hz, log_prior, amplitude, meta)


__all__ = ["CLASS", "JUMPS", "KNOTS", "WavePriors", "fit_wave_priors", "wave_values"]
