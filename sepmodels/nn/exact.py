"""The exact prior of the toy data: the true noise-smoothed density of every toy source, by quadrature.

A toy clip of source ``kind`` is ``a * w(2 pi f t / sr + phi)``: key uniform over the 88 piano keys, phase
uniform in [0, 2 pi), amplitude uniform in [0.8, 1] (:mod:`sepmodels.data.toy`). At noise level sigma its
density is the mixture

    p_sigma(x) = E_{key, phi, a} N(x; a * w_{key, phi}, sigma^2 I).

- **Amplitude** integrates in closed form: the exponent is quadratic in ``a``, so each template contributes a
  Gaussian integral over [0.8, 1] (a difference of normal CDFs), and its posterior mean of ``a`` is a
  truncated-normal mean.
- **Phase** by quadrature over lags: a long render of each key shifted by n samples is the same wave at phase
  ``2 pi f n / sr``. The correlations of a clip with all lags of all keys come from one FFT product per key;
  every lag is weighted by the width of its phase cell (sorted phases on the circle), so the lags form a proper
  quadrature of the uniform phase even where they cover a period more than once.
- Everything is float64: at sigma = 0.01 the logits reach ``c / sigma^2`` of about 1e8.

The score is exact by Tweedie's formula, ``(E[s | x] - x) / sigma^2``, and the posterior mean is a
weighted sum of shifted templates (one more FFT product). The log-density is one number per clip; the map
that :meth:`ExactToyPriors.log_prob` returns spreads it over the samples so that it shows where the clip departs
from the posterior-mean wave (see there), and its sum over T is exact.

Quadrature floor: with ``lags`` phases per key, sharp waves (square, saw) are matched to within a few flipped
samples, which caps one-step denoising of a clean clip near 25-30 dB for them; sine and triangle go higher.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import torch

from sepmodels.data import toy
from sepmodels.sources.base import SourceModel

KEYS = 88
AMP_LOW, AMP_HIGH = 0.8, 1.0
MIN_LENGTH = 535  # one period of the lowest key (27.5 Hz) at 14 700 Hz
MAX_LENGTH = 10 * toy.SAMPLE_RATE  # the templates of 10 s take about 0.8 GB
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
_SHARP = ("square", "saw")  # waves with edges, whose sampled shape changes within a lag's phase cell
# (the refinement below renders them itself, as toy.oscillator does, without its remainder of 2 pi)


_CHUNK_BYTES = 8 << 20  # the largest FFT product computed at once (see _analyse)
_CHUNK_VALUES = 1 << 17  # trial-wave samples computed at once in the refinement (1 MB temporaries)


def fast_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c at least ``n`` (sizes the FFT does fastest)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _log_diff_ndtr(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """``log(Phi(hi) - Phi(lo))`` for ``lo < hi``, stable in both tails."""
    flip = lo > 0  # above the mean, use the mirrored lower tail where log_ndtr keeps its digits
    a = torch.where(flip, -hi, lo)
    b = torch.where(flip, -lo, hi)
    la, lb = torch.special.log_ndtr(a), torch.special.log_ndtr(b)
    return lb + torch.log(-torch.expm1((la - lb).clamp(max=-1e-300)))


@dataclass
class _Templates:
    """Everything about one source kind at one clip length that does not depend on the clip."""

    spectra: torch.Tensor  # [P, F] complex128: rfft of the long renders (one per pitch), size nfft
    energy: torch.Tensor  # [P, M] float64: ||w||^2 of each lag's template
    log_weight: torch.Tensor  # [P, M] log of the phase-cell width / 2 pi plus the pitch's log-prior
    cells: torch.Tensor  # [P, M, 2] each lag's phase cell on the circle: start and width, in periods
    nfft: int


def _phase_cells(frequency: torch.Tensor, lags: int, sample_rate: int) -> torch.Tensor:
    """The phase cell of each lag at each pitch, ``[P, lags, 2]`` (start, width), in periods.

    Lag n is the wave at phase ``f n / sr`` periods; its cell runs from halfway to the previous phase on the
    circle to halfway to the next, so the cells of one key partition the period (lags that share a phase split
    its cell) and their widths are the quadrature weights of a uniform phase.
    """
    n = torch.arange(lags, dtype=torch.float64)
    cycle = torch.remainder(frequency[:, None] * n / sample_rate, 1.0)  # [K, M] position in the period
    order = cycle.argsort(dim=1)
    sorted_ = cycle.gather(1, order)
    after = torch.diff(sorted_, dim=1, append=sorted_[:, :1] + 1.0)  # gap to the next phase, circularly
    before = after.roll(1, dims=1)
    cells = torch.stack([sorted_ - 0.5 * before, 0.5 * (before + after)], dim=-1)
    return torch.empty_like(cells).scatter_(1, order[..., None].expand_as(cells), cells)


class _LogDensityMap(torch.autograd.Function):
    """:meth:`ExactToyPriors.log_prob`'s map, differentiable through its sum over time: the gradient of a clip's
    log p_sigma is the exact score. The map's single samples have no cheap gradient of their own (that would
    need the posterior's covariance), so a backward pass that weighs the samples of one clip unequally is
    refused."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, priors: ExactToyPriors, sigma: float) -> torch.Tensor:
        maps, score = priors.log_prob_and_score(x.detach(), sigma)
        ctx.save_for_backward(score)
        return maps

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (score,) = ctx.saved_tensors
        per_clip = grad.mean(-1, keepdim=True)
        if bool(((grad - per_clip).abs() > 1e-6 * per_clip.abs() + 1e-30).any()):
            raise RuntimeError(
                "the quadrature priors' log_prob is differentiable only through each clip's sum over time "
                "(a clip's log-density does not factor over samples)"
            )
        return per_clip * score, None, None


class ExactToyPriors(SourceModel):
    """The exact noise-smoothed prior of each toy source (``sin``, ``square``, ``saw``, ``triangle``).

    Same contract as :class:`sepmodels.priors.PriorSet`; it has no parameters and needs no checkpoint, and it
    knows every noise level sigma > 0 and every length from :data:`MIN_LENGTH` to :data:`MAX_LENGTH` samples
    at the toy rate (14 700 Hz).

    Arguments:
        lags: phases per key in the quadrature (more: finer phase, slower).
        prune: templates whose log-weight is this many nats below the best are dropped from the posterior mean.
        refine, refine_cells: for the sharp waves (square, saw), the phase cells of the best ``refine_cells``
            lags are split into ``refine`` finer phases each (0 turns this off). A tuple refines in stages: the
            best ``refine_cells`` of the first stage's finer cells are split again by the next factor, and so on
            (``(16, 8)`` reaches the phase step of 128 with 48 trial waves instead of 256).

    Example:
        >>> priors = ExactToyPriors()
        >>> clips = toy.toy_test_set(1, 2048)  # [1, 4, 2048]
        >>> priors.clip_log_prob(clips, 0.01).shape
        torch.Size([1, 4])
    """

    kind = "exact"
    has_likelihood = True
    noise_conditional = True
    names: tuple[str, ...] = toy.SOURCES
    sample_rate: int = toy.SAMPLE_RATE
    default_sigma = 0.01

    def __init__(
        self, lags: int = 1024, prune: float = 40.0, refine: int | tuple[int, ...] = 32, refine_cells: int = 2
    ) -> None:
        stages = ((refine,) if refine else ()) if isinstance(refine, int) else tuple(int(r) for r in refine)
        if lags < 2 or any(r < 2 for r in stages) or refine_cells < 1:
            raise ValueError(f"need lags >= 2, refine stages >= 2 (or 0 for none), refine_cells >= 1; got {lags}, "
                             f"{refine}, {refine_cells}")  # fmt: skip
        self.lags, self.prune, self.refine, self.refine_cells = lags, prune, stages, refine_cells
        self.meta = {"what": "the exact toy prior (quadrature over key, phase, amplitude)", "lags": lags}
        self._cache: OrderedDict[tuple[str, int], _Templates] = OrderedDict()

    # -- facts ----------------------------------------------------------------------------------------------
    def valid_length(self, length: int) -> int:
        """Any length in range is valid; one out of range raises ``ValueError``."""
        self._check_length(length)
        return length

    def parameters_count(self) -> int:
        return 0

    def describe(self) -> dict[str, object]:
        """Class and settings, for results files."""
        return {"class": type(self).__name__, "config": {"lags": self.lags, "prune": self.prune,
                "refine": list(self.refine), "refine_cells": self.refine_cells}}  # fmt: skip

    def _check_length(self, length: int) -> None:
        low = self.min_length
        if not low <= length <= MAX_LENGTH:
            raise ValueError(
                f"{self.meta['what'].split(' (')[0]} needs clips of {low} to {MAX_LENGTH} samples "
                f"({low / self.sample_rate:.3f} to {MAX_LENGTH / self.sample_rate:.0f} s at "
                f"{self.sample_rate} Hz), got {length}"
            )

    # -- the model's parts, each a hook that the learned wave priors (sepmodels.nn.waves) replace -------------
    min_length = MIN_LENGTH  # the shortest clip: one period of the lowest pitch

    def _frequencies(self, kind: str) -> torch.Tensor:
        """The pitches a clip of ``kind`` may have, Hz, float64 ``[P]``: the 88 piano keys."""
        return toy.key_frequency(torch.arange(1, KEYS + 1))

    def _log_pitch_prior(self, kind: str) -> torch.Tensor:
        """Log-probability of each pitch of :meth:`_frequencies`, ``[P]``: uniform."""
        return torch.full((KEYS,), -math.log(KEYS), dtype=torch.float64)

    def _pitch_keys(self, kind: str) -> torch.Tensor:
        """The piano key (0..87) each pitch of :meth:`_frequencies` counts for in :meth:`key_posterior`."""
        return torch.arange(KEYS)

    def _amplitude_range(self, kind: str) -> tuple[float, float]:
        """The uniform amplitude's bounds."""
        return AMP_LOW, AMP_HIGH

    def _long_render(self, kind: str, frequency: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The wave at every pitch ``[P]`` over samples ``t`` ``[L]`` from phase 0: ``[P, L]`` float64."""
        return toy.oscillator(kind, 2 * math.pi * frequency[:, None] * t / self.sample_rate)

    def _wave(self, kind: str, cycle: torch.Tensor) -> torch.Tensor:
        """The wave at positions in the period ``cycle`` in [0, 1), for the refinement (sharp waves only)."""
        if kind == "square":
            return torch.where(cycle < 0.5, 1.0, -1.0).to(cycle.dtype)
        if kind == "saw":
            return 2.0 * cycle - 1.0
        return toy.oscillator(kind, 2 * math.pi * cycle)

    def _sharp(self, kind: str) -> bool:
        """Whether the wave has edges, so that its phase is refined within the best lags' cells."""
        return kind in _SHARP

    @staticmethod
    def _sigma(sigma: torch.Tensor | float | None) -> float:
        value = ExactToyPriors.default_sigma if sigma is None else float(sigma)
        if not value > 0:
            raise ValueError(f"the exact toy prior needs a noise level sigma > 0, got {value}")
        return value

    def _templates(self, kind: str, length: int) -> _Templates:
        key = (kind, length)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        M = self.lags
        nfft = fast_size(length + M - 1)
        frequency = self._frequencies(kind)  # [K] Hz, float64
        t = torch.arange(length + M - 1, dtype=torch.float64)
        render = self._long_render(kind, frequency, t)  # [K, T+M-1]
        sq = torch.cat([torch.zeros(len(frequency), 1, dtype=torch.float64), render.square().cumsum(1)], dim=1)
        energy = sq[:, length : length + M] - sq[:, :M]  # ||render[n : n + T]||^2 for each lag n
        cells = _phase_cells(frequency, M, self.sample_rate)
        log_weight = torch.log(cells[..., 1].clamp_min(1e-300)) + self._log_pitch_prior(kind)[:, None]
        entry = _Templates(torch.fft.rfft(render, nfft), energy, log_weight, cells, nfft)
        self._cache[key] = entry
        while len(self._cache) > 8:
            self._cache.popitem(last=False)
        return entry

    # -- the core: one source kind, a batch of clips ------------------------------------------------------------
    def _logits(
        self, kind: str, c: torch.Tensor, e: torch.Tensor, log_weight: torch.Tensor, sigma: float
    ) -> torch.Tensor:
        """Log-weight (up to the clip's own constant) of templates with correlation ``c`` and energy ``e`` with
        the clip: the amplitude integrated over its uniform range in closed form."""
        low, high = self._amplitude_range(kind)
        var = sigma**2
        mu, sd = c / e, sigma / e.sqrt()  # the best amplitude of each template, and its posterior spread
        log_mass = _log_diff_ndtr((low - mu) / sd, (high - mu) / sd)
        return (
            c.square() / (2 * var * e) + 0.5 * torch.log(2 * math.pi * var / e) + log_mass
            + log_weight - math.log(high - low)
        )  # fmt: skip

    def _amplitude(self, kind: str, c: torch.Tensor, e: torch.Tensor, sigma: float) -> torch.Tensor:
        """Posterior mean of the amplitude of each template: a normal truncated to the amplitude range."""
        low, high = self._amplitude_range(kind)
        mu, sd = c / e, sigma / e.sqrt()
        lo, hi = (low - mu) / sd, (high - mu) / sd
        log_mass = _log_diff_ndtr(lo, hi)
        ratio = lambda z: torch.exp(-0.5 * z.square() - _LOG_SQRT_2PI - log_mass)  # noqa: E731
        return (mu + sd * (ratio(lo) - ratio(hi))).clamp(low, high)

    def _analyse(
        self, kind: str, x: torch.Tensor, sigma: float, want_mean: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Log-density ``[B]``, posterior mean ``[B, T]`` (or None) and pitch posterior ``[B, P]`` of clips
        ``x: [B, T]`` under source ``kind`` at noise level ``sigma``."""
        B, T = x.shape
        self._check_length(T)
        tpl = self._templates(kind, T)
        M = self.lags
        x = x.to(torch.float64)
        X = torch.fft.rfft(x, tpl.nfft).conj()[:, None, :]  # [B, 1, F]
        # c[b, k, n] = sum_t x[b, t] * render_k[t + n]: the clip against every lag of every key, a few keys at a
        # time: the whole product of a 10 s clip is hundreds of MB, fresh pages on every call (as much system
        # time as compute), where chunks stay small enough for the allocator to reuse
        K = tpl.spectra.shape[0]
        c = torch.empty(B, K, M, dtype=torch.float64)
        step = max(1, _CHUNK_BYTES // (16 * B * tpl.spectra.shape[1]))
        for k in range(0, K, step):
            c[:, k : k + step] = torch.fft.irfft(X * tpl.spectra[None, k : k + step], tpl.nfft)[..., :M]
        logits = self._logits(kind, c, tpl.energy[None], tpl.log_weight[None], sigma)
        refined = self._refine(kind, x, logits, tpl, sigma) if self._sharp(kind) and self.refine else None
        log_p = torch.empty(B, dtype=torch.float64)
        mean = torch.zeros(B, T, dtype=torch.float64) if want_mean else None
        key_post = torch.empty(B, logits.shape[1], dtype=torch.float64)
        const = -x.square().sum(1) / (2 * sigma**2) - 0.5 * T * math.log(2 * math.pi * sigma**2)
        for b in range(B):
            grid = logits[b]
            sub_logits, sub_c, sub_e, sub_keys, sub_phase = (None,) * 5 if refined is None else refined[b]
            parts = [grid.reshape(-1)] if sub_logits is None else [grid.reshape(-1), sub_logits]
            log_z = torch.logsumexp(torch.cat(parts), 0)
            log_p[b] = log_z + const[b]
            post = torch.exp(grid - log_z)  # [K, M]
            key_post[b] = post.sum(1)
            if sub_logits is not None:
                sub_post = torch.exp(sub_logits - log_z)
                key_post[b].index_add_(0, sub_keys, sub_post)
            if mean is None:
                continue
            keep = (grid.amax(1) > log_z - self.prune).nonzero().squeeze(1)  # keys with any weight
            if len(keep):
                amp = self._amplitude(kind, c[b, keep], tpl.energy[keep], sigma)
                weights = post[keep] * amp  # [k, M]
                # sum_n v[n] render[t + n] for every t, summed over the kept keys in the frequency domain, a few
                # keys at a time (at a large sigma every key is kept: hundreds of MB at once otherwise)
                total = torch.zeros(tpl.spectra.shape[1], dtype=tpl.spectra.dtype)
                rows = max(1, _CHUNK_BYTES // (16 * tpl.spectra.shape[1]))
                for i in range(0, len(keep), rows):
                    V = torch.fft.rfft(weights[i : i + rows], tpl.nfft)  # [rows, F]
                    total += (V.conj() * tpl.spectra[keep[i : i + rows]]).sum(0)
                mean[b] = torch.fft.irfft(total, tpl.nfft)[:T]
            if sub_logits is not None:
                on = (sub_logits > log_z - self.prune).nonzero().squeeze(1)  # finer phases with any weight
                weight = sub_post[on] * self._amplitude(kind, sub_c[on], sub_e[on], sigma)
                for i, waves in self._trial_waves(kind, sub_keys[on], sub_phase[on], T):
                    mean[b] += weight[i : i + len(waves)] @ waves
        return log_p, mean, key_post

    def _trial_waves(self, kind: str, keys: torch.Tensor, phase: torch.Tensor, length: int):
        """The unit waves of pitch ``keys`` at start ``phase`` (periods), ``length`` samples each, a few at a time:
        yields ``(first index, waves [rows, length])`` (temporaries stay small however long the clip)."""
        frequency = self._frequencies(kind)
        t = torch.arange(length, dtype=torch.float64) / self.sample_rate
        rows = max(1, _CHUNK_VALUES // length)
        for i in range(0, len(keys), rows):
            cycle = frequency[keys[i : i + rows]][:, None] * t + phase[i : i + rows, None]
            cycle -= cycle.floor()  # position in the period, as toy.oscillator computes it
            yield i, self._wave(kind, cycle)

    def _refine(self, kind: str, x: torch.Tensor, logits: torch.Tensor, tpl: _Templates, sigma: float):
        """Split the phase cells of the best few lags of each clip into finer phases (in place of the lag).

        A square or saw wave changes a sample wherever an edge crosses it, so a phase a fraction of a lag off
        still misses samples; the finer phases within the winning cells find the clip's own edges. The split
        cells keep their total weight, so the quadrature stays one of the uniform phase. This is done only
        where those cells hold 99.9 % of the posterior (small sigma), which is where it matters; each further
        stage of ``refine`` splits the best few of the last stage's cells again, under the same rule.

        Returns per clip ``(logits [S], c [S], e [S], pitch index [S], phase [S])`` of the finer phases (the phase
        in periods, where each one's wave starts), or Nones where nothing was refined.
        """
        B, T = x.shape
        J = self.refine_cells
        log_prior = self._log_pitch_prior(kind)
        enough = math.log(0.999)
        out = []
        for b in range(B):
            flat = logits[b].reshape(-1)
            best = flat.topk(J)
            # Only where the best cells hold nearly all the mass: refining a few cells of a spread posterior
            # would trade the grid's errors there for a bias (the best cells are the ones the grid overrates).
            if torch.logsumexp(best.values, 0) - torch.logsumexp(flat, 0) < enough:
                out.append((None,) * 5)
                continue
            keys, lags = best.indices // self.lags, best.indices % self.lags
            start, width = tpl.cells[keys, lags, 0], tpl.cells[keys, lags, 1]  # [J] periods
            logits[b, keys, lags] = -math.inf  # the lags' cells are now the finer phases'
            log_rest = torch.logsumexp(logits[b].reshape(-1), 0)  # the mass left on the grid
            done: list[tuple[torch.Tensor, ...]] = []  # finer phases that are not split again
            for stage, parts in enumerate(self.refine):
                frac = torch.arange(parts, dtype=torch.float64) / parts
                sub_start = (start[:, None] + width[:, None] * frac).reshape(-1)  # [J*parts] cells' starts
                sub_width = (width / parts).repeat_interleave(parts)
                sub_keys = keys.repeat_interleave(parts)
                centre = sub_start + 0.5 * sub_width
                sub_c = torch.empty(len(sub_keys), dtype=torch.float64)
                sub_e = torch.empty(len(sub_keys), dtype=torch.float64)
                for i, waves in self._trial_waves(kind, sub_keys, centre, T):  # not kept: the mean redraws the few
                    sub_c[i : i + len(waves)] = waves @ x[b]  # it needs (hundreds of MB on a long clip otherwise)
                    sub_e[i : i + len(waves)] = waves.square().sum(1)
                log_weight = torch.log(sub_width.clamp_min(1e-300)) + log_prior[sub_keys]
                sub_logits = self._logits(kind, sub_c, sub_e, log_weight, sigma)
                nodes = (sub_logits, sub_c, sub_e, sub_keys, centre)
                if stage == len(self.refine) - 1:
                    done.append(nodes)
                    break
                best = sub_logits.topk(min(J, len(sub_logits)))
                mass = torch.logsumexp(torch.cat([log_rest[None], sub_logits, *(d[0] for d in done)]), 0)
                if torch.logsumexp(best.values, 0) - mass < enough:
                    done.append(nodes)
                    break
                stay = torch.ones(len(sub_logits), dtype=torch.bool)
                stay[best.indices] = False
                done.append(tuple(v[stay] for v in nodes))
                start, width, keys = sub_start[best.indices], sub_width[best.indices], sub_keys[best.indices]
            out.append(tuple(torch.cat(parts_) for parts_ in zip(*done, strict=True)))
        return out

    def _per_source(self, x: torch.Tensor, sigma: float, want_mean: bool, sources: list[int] | None = None):
        if x.dim() != 3 or x.shape[1] != len(self):
            raise ValueError(f"expected sources [B, {len(self)}, T], got shape {tuple(x.shape)}")
        idx = range(len(self)) if sources is None else sources
        return {k: self._analyse(self.names[k], x[:, k], sigma, want_mean) for k in idx}

    # -- the Prior contract -----------------------------------------------------------------------------------
    def clip_log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Exact log p_sigma of each whole clip under its own source's prior: ``[B, N, T] -> [B, N]``, nats."""
        out = self._per_source(x, self._sigma(sigma), want_mean=False)
        return torch.stack([out[k][0] for k in range(len(self))], dim=1).to(x.dtype)

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """A per-sample map ``[B, N, T]`` (nats) whose sum over T is the clip's exact log p_sigma.

        The density of a clip does not factor over samples; this map gives sample t the Gaussian term
        ``log N(x_t; E[s_t | x], sigma^2)`` of its distance from the posterior-mean wave, plus an equal share of
        the rest of log p, so the samples that the best explanation misses stand out.

        With ``x.requires_grad`` (and grad enabled) the map is differentiable through each clip's sum over T,
        whose gradient is the exact score (a VAE's ELBO uses it so).
        """
        s = self._sigma(sigma)
        if torch.is_grad_enabled() and x.requires_grad:
            return _LogDensityMap.apply(x, self, s)
        out = self._per_source(x, s, want_mean=True)
        return torch.stack([self._map(x[:, k], *out[k][:2], s) for k in range(len(self))], dim=1).to(x.dtype)

    @staticmethod
    def _map(x: torch.Tensor, log_p: torch.Tensor, mean: torch.Tensor, sigma: float) -> torch.Tensor:
        """The per-sample map of :meth:`log_prob` for one source: ``[B, T]`` summing to ``log_p``."""
        local = -((x.double() - mean).square()) / (2 * sigma**2) - 0.5 * math.log(2 * math.pi * sigma**2)
        return local + ((log_p - local.sum(1)) / x.shape[-1])[:, None]

    def posterior_mean(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None, sources: list[int] | None = None
    ) -> torch.Tensor:
        """E[s | x] of each source at noise level sigma: ``[B, N, T]``. With ``sources``, only those are
        computed; the others are returned as ``x``."""
        out = self._per_source(x, self._sigma(sigma), want_mean=True, sources=sources)
        mean = x.clone()
        for k, (_, m, _) in out.items():
            mean[:, k] = m.to(x.dtype)
        return mean

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None, sources: list[int] | None = None
    ) -> torch.Tensor:
        """Tweedie's denoiser ``x + sigma^2 * score``, which for this prior is the exact posterior mean."""
        return self.posterior_mean(x, sigma, sources)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Exact gradient of log p_sigma: ``(E[s | x] - x) / sigma^2``, ``[B, N, T]``."""
        s = self._sigma(sigma)
        return (self.posterior_mean(x, s) - x) / s**2

    def log_prob_and_score(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-sample map of :meth:`log_prob` and the score, from one pass."""
        s = self._sigma(sigma)
        out = self._per_source(x, s, want_mean=True)
        maps = [self._map(x[:, k], *out[k][:2], s) for k in range(len(self))]
        scores = [(out[k][1] - x[:, k].double()) / s**2 for k in range(len(self))]
        return torch.stack(maps, 1).to(x.dtype), torch.stack(scores, 1).to(x.dtype)

    def key_posterior(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Posterior probability of each piano key (1..88 at index 0..87): ``[B, N, T] -> [B, N, 88]``."""
        out = self._per_source(x, self._sigma(sigma), want_mean=False)
        per_key = []
        for k in range(len(self)):
            post = out[k][2]
            keys = self._pitch_keys(self.names[k])
            per_key.append(torch.zeros(post.shape[0], KEYS, dtype=post.dtype).index_add_(1, keys, post))
        return torch.stack(per_key, dim=1)

    def cross_log_prob(self, clips: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Every clip under every prior: ``[B, T] -> [B, N, T]`` maps (nats per sample)."""
        if clips.dim() != 2:
            raise ValueError(f"cross_log_prob expects clips [B, T], got shape {tuple(clips.shape)}")
        B, T = clips.shape
        return self.log_prob(clips[:, None, :].expand(B, len(self), T).contiguous(), sigma)

    def sample(
        self,
        n: int,
        length: int,
        sigma: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` exact draws of every source plus noise of level sigma: ``[n, N, length]``."""
        s = self._sigma(sigma)
        generator = generator or torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
        clean = toy.render(toy.draw_params(n, generator), length, self.sample_rate)
        return clean + s * torch.randn(clean.shape, generator=generator)
