"""Harmonic priors: each source a learned periodic shape played along a moving pitch track with an envelope.

The wave priors (:mod:`sepmodels.nn.waves`) learned the toy's shapes but kept its grid: one constant pitch per
clip from 4 candidates per semitone with mass only on the piano keys. These keep the learned shapes and drop the
grid. A clip of source k is ``A(t) w_k(c(t)) + noise``:

- ``w_k``: the shape, learned from solo clips (the wave priors' knots and edges, :func:`wave_values`);
- ``c(t)``: the running cycle count, whose rate is the pitch: a pitch drawn from a learned *density* over
  log-frequency (a histogram of the solo clips' pitches, 1/4 semitone bins, add-one); a learned share of the
  notes moves within a learned band ``motion`` (Hz) by at most ``deviation`` cents, the rest are steady;
- ``A(t)``: the envelope, moving within the same band (constant for a steady note), its peak within the learned
  amplitude range; for drawing, the pitch and envelope motions of the solo clips are kept (a bank of tracks).

Inference is a Laplace approximation over a few candidates. Given a clip ``x`` seen through noise of level
sigma, the candidate pitches are the peaks of a harmonic salience of ``x``'s spectrum (the shape's first
partials' magnitudes as weights); each is followed through the clip as a steady note, and the strongest peaks
of a salience spread over the deviation as moving notes (:func:`~sepmodels.sources.track.follow`: pitch track,
phase and envelope by demodulation). The posterior mean is the fits' waves weighted by
``exp(-|x - wave|^2 / (2 (sigma^2 + e^2)))`` times the pitch density, the share of steady or moving notes and
an Occam factor ``T^(-d/2)`` for a fit of ``d`` degrees of freedom (:func:`degrees_of_freedom`), where ``e^2``
is the energy per sample the best fit leaves (what no fit explains is noise to all of them). The log-density is
the log of that sum less the Gaussian's normaliser: an approximation (the widths of the phase, pitch and
envelope posteriors are left out), so the denoiser is not the exact gradient of the log-density, as it is for
the exact and wave priors. What is learned, by :func:`fit_harmonic_priors`, is the pitch density, the amplitude
range, the motion band (the one that best denoises noisy solo clips), the share of moving notes and the
deviation; the shapes are the wave priors'.

The residual sweep under these priors takes their own ladder (:attr:`HarmonicPriors.sampler_defaults`): each
step follows every candidate, so 10 levels of 2 sweeps, and a second chain from a greedy placement
(``init="pursuit"``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm

from sepmodels.checkpoint import CheckpointError
from sepmodels.nn.waves import JUMPS, KNOTS, WavePriors, wave_values
from sepmodels.sources.base import SourceModel
from sepmodels.sources.track import Followed, follow

CLASS = "HarmonicPriors"
PITCH_BINS = 4  # density bins per semitone
SALIENCE_HARMONICS = 8
CANDIDATES = 6  # pitch candidates followed per clip as steady notes
MOVING_CANDIDATES = 2  # candidates followed as moving notes
SUPPRESS_CENTS = 30.0  # salience peaks closer than this to a stronger one are the same candidate
MOTIONS = (0.0, 4.0, 8.0, 12.0, 16.0)  # the motion bands a fit chooses from, Hz
GOOD_FIT_DB = 20.0  # a moving solo clip's fit must reach this SI-SDR for its track to count
FIT_SIGMA = 0.2  # noise of the solo clips on which the motion band is chosen
BANK = 32  # tracks kept per source for drawing
FRAME = 147  # samples per frame of a kept track
_SERIES = 4096  # points of the period at which the shape's Fourier series is taken


@dataclass
class Drawn:
    """Draws of the harmonic priors: ``clips [n, N, T]`` float64 (clean), each note's drawn pitch ``hz [n, N]``
    (the pitch its motion deviates from) and whether it ``moving [n, N]``."""

    clips: torch.Tensor
    hz: torch.Tensor
    moving: torch.Tensor


class HarmonicPriors(SourceModel):
    """Harmonic priors, one per source (see the module docstring); the Prior contract of the exact toy prior.

    Arguments:
        names, sample_rate: the sources and their rate.
        knots, jumps, offsets: each source's learned shape (as :class:`~sepmodels.nn.waves.WavePriors`).
        pitch_edges: ``[P + 1]`` the density's bin edges, log2 Hz; pitch_log_prob: ``[N, P]`` log-probability
            of each bin.
        amplitude: ``[N, 2]`` range of each source's peak envelope.
        motion: ``[N]`` band (Hz) within which pitch and envelope move, 0 for steady notes; deviation: ``[N]``
            largest pitch deviation from the note's start, cents.
        bank_cents, bank_envelope: ``[N, BANK, F]`` pitch deviations (cents) and relative envelopes of solo
            clips, frame by frame (:data:`FRAME` samples), for drawing.
        meta: how they were fitted.

    Example:
        >>> priors = HarmonicPriors.load()  # the shipped ones
        >>> clips = priors.sample(1, 4096, sigma=0.01, generator=torch.Generator().manual_seed(0))
        >>> priors.denoise(clips, 0.01).shape
        torch.Size([1, 4, 4096])
    """

    kind = "harmonic"
    # The residual sweep's ladder for these priors (chosen on the validation split, bench/harmonic.py): each
    # step follows every candidate, so few levels; the caller's settings win (make_separator).
    sampler_defaults: ClassVar[dict[str, dict[str, object]]] = {
        "residual": {
            "levels": 10,
            "steps": 2,
            "init": "pursuit",
            "chains": 6,
            "restart_sigma": 0.05,
            "restart_levels": 3,
        }
    }
    has_likelihood = True
    noise_conditional = True
    default_sigma = 0.01
    checkpoint_class = CLASS
    checkpoint_what = "harmonic priors (sepmodels fit-harmonic)"

    def __init__(
        self,
        names: tuple[str, ...],
        sample_rate: int,
        knots: torch.Tensor,
        jumps: torch.Tensor,
        offsets: torch.Tensor,
        pitch_edges: torch.Tensor,
        pitch_log_prob: torch.Tensor,
        amplitude: torch.Tensor,
        motion: torch.Tensor,
        deviation: torch.Tensor,
        moving: torch.Tensor,
        bank_cents: torch.Tensor,
        bank_envelope: torch.Tensor,
        meta: dict[str, Any] | None = None,
        candidates: int = CANDIDATES,
    ) -> None:
        N = len(names)
        P = pitch_edges.numel() - 1
        shapes = [tuple(t.shape) for t in (knots, jumps, offsets, pitch_log_prob, amplitude, motion, deviation,
                                           moving)]  # fmt: skip
        if shapes != [(N, KNOTS), (N, JUMPS), (N,), (N, P), (N, 2), (N,), (N,), (N,)] or P < 1:
            raise ValueError(f"shapes do not fit {N} sources and {P} pitch bins: {shapes}")
        if bank_cents.dim() != 3 or bank_cents.shape[0] != N or bank_cents.shape != bank_envelope.shape:
            raise ValueError("the bank of tracks must be [N, clips, frames], cents and envelopes alike")
        if not bool((pitch_edges.diff() > 0).all()):
            raise ValueError("the pitch density's bin edges must increase")
        if not bool((amplitude[:, 0] > 0).all() and (amplitude[:, 1] >= amplitude[:, 0]).all()):
            raise ValueError("each amplitude range must be 0 < low <= high")
        if not bool((motion >= 0).all() and (deviation >= 0).all()) or candidates < 1:
            raise ValueError("motion bands and deviations must be >= 0, candidates >= 1")
        if not bool(((moving >= 0) & (moving <= 1)).all()):
            raise ValueError("the shares of moving notes must lie in [0, 1]")
        self.names = tuple(names)
        self.sample_rate = int(sample_rate)
        self.knots, self.jumps, self.offsets = knots.double(), jumps.double(), offsets.double()
        self.pitch_edges, self.pitch_log_prob = pitch_edges.double(), pitch_log_prob.double()
        self.amplitude, self.motion, self.deviation = amplitude.double(), motion.double(), deviation.double()
        self.moving = moving.double()
        self.bank_cents, self.bank_envelope = bank_cents.double(), bank_envelope.double()
        self.candidates = int(candidates)
        self.meta = {"what": "the harmonic priors (learned shapes on a continuous, moving pitch)", **(meta or {})}
        u = torch.arange(_SERIES, dtype=torch.float64) / _SERIES
        self._coefs = [torch.fft.rfft(self._wave(k, u)) / _SERIES for k in range(N)]
        self.min_length = math.ceil(2 * self.sample_rate / 2 ** float(self.pitch_edges[0]))

    # -- facts ----------------------------------------------------------------------------------------------
    def valid_length(self, length: int) -> int:
        """Any length of at least two periods of the lowest pitch; a shorter one raises ``ValueError``."""
        if length < self.min_length:
            raise ValueError(
                f"the harmonic priors need clips of at least {self.min_length} samples "
                f"({self.min_length / self.sample_rate:.3f} s at {self.sample_rate} Hz), got {length}"
            )
        return length

    def parameters_count(self) -> int:
        return int(
            sum(
                t.numel()
                for t in (
                    self.knots,
                    self.jumps,
                    self.offsets,
                    self.pitch_log_prob,
                    self.amplitude,
                    self.motion,
                    self.deviation,
                    self.moving,
                )
            )
        )

    def describe(self) -> dict[str, object]:
        return {"class": CLASS, "config": {"candidates": self.candidates, "motion": self.motion.tolist(),
                "deviation": [round(d, 1) for d in self.deviation.tolist()],
                "moving": [round(q, 3) for q in self.moving.tolist()]}}  # fmt: skip

    # -- the model's parts ----------------------------------------------------------------------------------
    def _wave(self, k: int, cycle: torch.Tensor) -> torch.Tensor:
        return wave_values(self.knots[k], self.jumps[k], float(self.offsets[k]), cycle)

    def log_pitch_density(self, k: int, hz: torch.Tensor) -> torch.Tensor:
        """Log-density of source ``k``'s pitch at ``hz`` (per octave); -inf outside the density's range."""
        octave = torch.log2(torch.as_tensor(hz, dtype=torch.float64))
        i = torch.bucketize(octave, self.pitch_edges) - 1
        inside = (i >= 0) & (i < self.pitch_log_prob.shape[1])
        width = self.pitch_edges.diff()[i.clamp(0, len(self.pitch_edges) - 2)]
        value = self.pitch_log_prob[k, i.clamp(0, self.pitch_log_prob.shape[1] - 1)] - width.log()
        return torch.where(inside, value, torch.full_like(value, -math.inf))

    def candidate_pitches(
        self,
        k: int,
        x: torch.Tensor,
        count: int | None = None,
        spread_cents: float = 0.0,
        magnitude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The ``count`` strongest pitch candidates (Hz) of source ``k`` in the clip ``x [T]``: peaks of the
        harmonic salience (partial magnitudes weighted by the shape's), within the pitch density's range.

        With ``spread_cents``, each partial's magnitude is the root of the power within that many cents of it
        (a note whose pitch moves spreads its partials over that band, and its peak sinks below a steady note's
        of less energy); peaks closer than the spread count as one. ``magnitude``: ``x``'s spectrum as
        :func:`magnitude_spectrum` gives it, where the caller has it already.
        """
        count = count or self.candidates
        spectrum = magnitude if magnitude is not None else magnitude_spectrum(x)
        n = 2 * (spectrum.numel() - 1)
        if spread_cents > 0:
            spectrum = spread_spectrum(spectrum, spread_cents)
        bin_hz = self.sample_rate / n
        low = math.ceil(2 ** float(self.pitch_edges[0]) / bin_hz)
        high = min(int(2 ** float(self.pitch_edges[-1]) / bin_hz), spectrum.numel() - 1)
        bins = torch.arange(low, high + 1)
        salience = self.salience(k, spectrum, bins)
        hz = bins.double() * bin_hz
        local = torch.ones_like(salience, dtype=torch.bool)
        local[1:-1] = (salience[1:-1] >= salience[:-2]) & (salience[1:-1] >= salience[2:])
        peaks = local.nonzero()[:, 0]
        found: list[float] = []
        apart = max(SUPPRESS_CENTS, spread_cents)
        for i in peaks[torch.argsort(salience[peaks], descending=True)].tolist():
            f = float(hz[i])
            if all(abs(1200 * math.log2(f / g)) > apart for g in found):
                found.append(f)
                if len(found) == count:
                    break
        return torch.tensor(found, dtype=torch.float64)

    def salience(self, k: int, spectrum: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
        """Source ``k``'s harmonic salience at the pitches of the spectrum's bins ``bins`` (integers): the first
        :data:`SALIENCE_HARMONICS` partials' magnitudes weighted by the shape's, each the largest within the
        half-bins its partial may fall in (``spectrum``: as :func:`magnitude_spectrum` gives it)."""
        weight = self._coefs[k][1 : SALIENCE_HARMONICS + 1].abs()
        salience = torch.zeros(len(bins), dtype=torch.float64)
        for h in range(1, SALIENCE_HARMONICS + 1):
            idx = h * bins
            keep = idx < spectrum.numel()
            width = 2 * (h // 2) + 1  # the h-th partial of a pitch between bins lies up to h/2 bins away
            peak = torch.nn.functional.max_pool1d(spectrum[None, None], width, 1, width // 2)[0, 0]
            salience[keep] += weight[h - 1] * peak[idx[keep]]
        return salience

    def _fits(self, k: int, x: torch.Tensor) -> tuple[list[Followed], torch.Tensor]:
        """The candidates of source ``k`` in the clip ``x [T]`` followed as steady notes, and the
        :data:`MOVING_CANDIDATES` strongest candidates of a salience spread over the learned deviation followed
        as moving ones; with each fit's log prior (pitch density, the share of moving notes) less half its
        degrees of freedom times log T (:func:`degrees_of_freedom`)."""
        magnitude = magnitude_spectrum(x)
        pitches = self.candidate_pitches(k, x, magnitude=magnitude)
        if len(pitches) == 0:
            raise ValueError("no pitch candidate within the priors' range")
        T = x.shape[-1]
        q = float(self.moving[k])
        fits = [self.follow(k, x, float(f)) for f in pitches]
        if q > 0 and float(self.motion[k]) > 0:
            spread = float(self.deviation[k])
            moving = self.candidate_pitches(k, x, MOVING_CANDIDATES, spread_cents=spread, magnitude=magnitude)
            fits += [self.follow(k, x, float(f), moving=True) for f in moving]
        return fits, torch.tensor([self.log_prior(k, fit, T) for fit in fits], dtype=torch.float64)

    def log_prior(self, k: int, fit: Followed, length: int) -> float:
        """A fit's log prior under source ``k``'s priors: the pitch density at its mean pitch, the share of
        steady or moving notes, less half its degrees of freedom times log T (:func:`degrees_of_freedom`)."""
        q = float(self.moving[k])
        share = q if fit.motion > 0 else 1 - q
        pitch = float(self.log_pitch_density(k, torch.tensor(fit.mean_pitch(self.sample_rate))))
        return (max(pitch, -1e4) + math.log(max(share, 1e-300))
                - 0.5 * degrees_of_freedom(fit.motion, length, self.sample_rate) * math.log(length))  # fmt: skip

    def prefer(self, k: int, fits: list[Followed], sigma: float | None = None) -> Followed:
        """The fit of source ``k`` the priors find likeliest among ``fits`` of one clip: Gaussian term at the
        noise level ``sigma^2 + e^2`` (``e^2`` what the best leaves per sample, as in the posterior mean) plus
        :meth:`log_prior`."""
        T = fits[0].wave.shape[-1]
        s = self.default_sigma if sigma is None else sigma
        level = s**2 + min(f.error for f in fits) / T
        return max(fits, key=lambda f: -f.error / (2 * level) + self.log_prior(k, f, T))

    def _shape(self, k: int):
        return lambda c: self._wave(k, c)

    def follow(self, k: int, x: torch.Tensor, hz: float, moving: bool = False) -> Followed:
        """Source ``k`` followed through the clip ``x [T]`` from the pitch ``hz``, as a steady or moving note."""
        motion = float(self.motion[k]) if moving else 0.0
        return follow(x.double(), hz, self._shape(k), self._coefs[k], self.sample_rate, motion,
                      float(self.deviation[k]) if moving else 0.0)  # fmt: skip

    def _analyse(
        self, k: int, x: torch.Tensor, sigma: float
    ) -> tuple[float, torch.Tensor, list[Followed], torch.Tensor]:
        """Log-density, posterior mean, the fits and their weights, for one clip ``x [T]`` of source ``k``.

        Each fit's weight is its Gaussian term at the noise level ``sigma^2 + e^2``, ``e^2`` the energy per
        sample that the best fit leaves unexplained (what no fit explains is noise to all of them), plus its
        log prior (:meth:`_fits`)."""
        x = x.double()
        fits, prior = self._fits(k, x)
        T = x.shape[-1]
        errors = torch.tensor([f.error for f in fits], dtype=torch.float64)
        level = sigma**2 + float(errors.min()) / T
        logits = -errors / (2 * level) + prior
        weights = torch.softmax(logits, 0)
        mean = sum(w * f.wave for w, f in zip(weights.tolist(), fits, strict=True))
        log_p = float(torch.logsumexp(logits, 0)) - 0.5 * T * math.log(2 * math.pi * level)
        return log_p, mean, fits, weights

    @staticmethod
    def _sigma(sigma: torch.Tensor | float | None) -> float:
        value = HarmonicPriors.default_sigma if sigma is None else float(sigma)
        if not value > 0:
            raise ValueError(f"the harmonic priors need a noise level sigma > 0, got {value}")
        return value

    def _check(self, x: torch.Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != len(self):
            raise ValueError(f"expected sources [B, {len(self)}, T], got shape {tuple(x.shape)}")
        self.valid_length(x.shape[-1])

    # -- the Prior contract -----------------------------------------------------------------------------------
    def posterior_mean(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None, sources: list[int] | None = None
    ) -> torch.Tensor:
        """The approximate E[s | x] of each source at noise level sigma: ``[B, N, T]``. With ``sources``, only
        those are computed; the others are returned as ``x``."""
        self._check(x)
        s = self._sigma(sigma)
        mean = x.clone()
        for k in range(len(self)) if sources is None else sources:
            for b in range(x.shape[0]):
                mean[b, k] = self._analyse(k, x[b, k], s)[1].to(x.dtype)
        return mean

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None, sources: list[int] | None = None
    ) -> torch.Tensor:
        """The posterior mean (as Tweedie's denoiser would give it)."""
        return self.posterior_mean(x, sigma, sources)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        s = self._sigma(sigma)
        return (self.posterior_mean(x, s) - x) / s**2

    def clip_log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Approximate log p_sigma of each whole clip under its own source's prior: ``[B, N]``, nats."""
        self._check(x)
        s = self._sigma(sigma)
        out = [[self._analyse(k, x[b, k], s)[0] for k in range(len(self))] for b in range(x.shape[0])]
        return torch.tensor(out, dtype=x.dtype)

    def _maps(self, x: torch.Tensor, sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
        maps, means = torch.empty_like(x, dtype=torch.float64), torch.empty_like(x, dtype=torch.float64)
        for b in range(x.shape[0]):
            for k in range(len(self)):
                log_p, mean, _, _ = self._analyse(k, x[b, k], sigma)
                local = -(x[b, k].double() - mean).square() / (2 * sigma**2) - 0.5 * math.log(
                    2 * math.pi * sigma**2
                )
                maps[b, k] = local + (log_p - local.sum()) / x.shape[-1]
                means[b, k] = mean
        return maps, means

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """A per-sample map ``[B, N, T]`` whose sum over T is the clip's approximate log p_sigma: each sample's
        Gaussian term about the posterior mean plus an equal share of the rest (as the exact prior's map)."""
        self._check(x)
        return self._maps(x, self._sigma(sigma))[0].to(x.dtype)

    def log_prob_and_score(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(x)
        s = self._sigma(sigma)
        maps, means = self._maps(x, s)
        return maps.to(x.dtype), ((means - x.double()) / s**2).to(x.dtype)

    def cross_log_prob(self, clips: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Every clip under every prior: ``[B, T] -> [B, N, T]`` maps (nats per sample)."""
        if clips.dim() != 2:
            raise ValueError(f"cross_log_prob expects clips [B, T], got shape {tuple(clips.shape)}")
        B, T = clips.shape
        return self.log_prob(clips[:, None, :].expand(B, len(self), T).contiguous(), sigma)

    def pitch_tracks(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Each source's pitch track (Hz) under its best candidate: ``[B, N, T] -> [B, N, T]``."""
        self._check(x)
        s = self._sigma(sigma)
        out = torch.empty_like(x, dtype=torch.float64)
        for b in range(x.shape[0]):
            for k in range(len(self)):
                _, _, fits, weights = self._analyse(k, x[b, k], s)
                out[b, k] = fits[int(weights.argmax())].pitch(self.sample_rate)
        return out

    def sample(
        self,
        n: int,
        length: int,
        sigma: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` draws of every source plus noise of level sigma: ``[n, N, length]`` (:meth:`draw`)."""
        s = self._sigma(sigma)
        generator = generator or torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
        clean = self.draw(n, length, generator).clips.float()
        return clean + s * torch.randn(clean.shape, generator=generator)

    def draw(self, n: int, length: int, generator: torch.Generator) -> Drawn:
        """``n`` clean draws of every source with what was drawn (:class:`Drawn`). A pitch from the density
        (uniform within its bin), a phase, a peak amplitude, and with the share of moving notes one kept solo
        clip's pitch and envelope motion (else a steady note)."""
        out = torch.empty(n, len(self), length, dtype=torch.float64)
        pitches = torch.empty(n, len(self), dtype=torch.float64)
        moving = torch.zeros(n, len(self), dtype=torch.bool)
        frames = torch.arange(length, dtype=torch.float64) / FRAME
        for k in range(len(self)):
            pick = torch.multinomial(self.pitch_log_prob[k].exp(), n, replacement=True, generator=generator)
            lo, hi = self.pitch_edges[pick], self.pitch_edges[pick + 1]
            hz = 2 ** (lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64))
            phase = torch.rand(n, generator=generator, dtype=torch.float64)
            low, high = self.amplitude[k].tolist()
            peak = low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
            which = torch.randint(0, self.bank_cents.shape[1], (n,), generator=generator)
            moves = (torch.rand(n, generator=generator, dtype=torch.float64) < self.moving[k])[:, None]
            cents = torch.where(moves, _resample(self.bank_cents[k, which], frames), 0.0)
            envelope = torch.where(moves, _resample(self.bank_envelope[k, which], frames), 1.0)
            rate = hz[:, None] * torch.pow(2.0, cents / 1200)
            cycle = phase[:, None] + (rate.cumsum(-1) - rate) / self.sample_rate
            out[:, k] = peak[:, None] * envelope * self._wave(k, torch.remainder(cycle, 1.0))
            pitches[:, k], moving[:, k] = hz, moves[:, 0]
        return Drawn(out, pitches, moving)

    # -- persistence ----------------------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        return {
            "class": CLASS,
            "sources": list(self.names),
            "sample_rate": self.sample_rate,
            "knots": self.knots,
            "jumps": self.jumps,
            "offsets": self.offsets,
            "pitch_edges": self.pitch_edges,
            "pitch_log_prob": self.pitch_log_prob,
            "amplitude": self.amplitude,
            "motion": self.motion,
            "deviation": self.deviation,
            "moving": self.moving,
            "bank_cents": self.bank_cents.float(),
            "bank_envelope": self.bank_envelope.float(),
            "meta": self.meta,
        }

    @classmethod
    def shipped_path(cls) -> Path:
        from sepmodels.checkpoint import default_harmonic_priors_path

        return default_harmonic_priors_path()

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], where: str = "checkpoint") -> HarmonicPriors:
        cls.check_class(ckpt, where)
        try:
            return cls(tuple(str(n) for n in ckpt["sources"]), int(ckpt["sample_rate"]), ckpt["knots"],
                       ckpt["jumps"], ckpt["offsets"], ckpt["pitch_edges"], ckpt["pitch_log_prob"],
                       ckpt["amplitude"], ckpt["motion"], ckpt["deviation"], ckpt["moving"], ckpt["bank_cents"],
                       ckpt["bank_envelope"], ckpt.get("meta"))  # fmt: skip
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{where} does not match its own description ({str(err)[:120]})") from None


def magnitude_spectrum(x: torch.Tensor) -> torch.Tensor:
    """The magnitude spectrum of the clip ``x [T]`` that the salience reads: Hann-windowed, zero-padded to a
    power of two at least 4 T."""
    T = x.shape[-1]
    n = 1 << (4 * T - 1).bit_length()
    return torch.fft.rfft(x.double() * torch.hann_window(T, dtype=torch.float64), n).abs()


def spread_spectrum(spectrum: torch.Tensor, cents: float) -> torch.Tensor:
    """The root of the mean power within +-``cents`` of every bin of a magnitude ``spectrum [F]`` (a running
    sum): where a moving note's partials spread their energy."""
    ratio = 2.0 ** (cents / 1200) - 1
    half = (torch.arange(spectrum.numel(), dtype=torch.float64) * ratio).round().long().clamp_min(2)
    run = torch.cat([torch.zeros(1, dtype=torch.float64), spectrum.square().cumsum(0)])
    idx = torch.arange(spectrum.numel())
    hi = (idx + half + 1).clamp(max=spectrum.numel())
    lo = (idx - half).clamp_min(0)
    return ((run[hi] - run[lo]) / (hi - lo).double()).sqrt()


def degrees_of_freedom(motion: float, length: int, sample_rate: int) -> float:
    """Free parameters of a note followed over ``length`` samples: 3 for a steady one (pitch, phase, gain), and
    for one moving within ``motion`` Hz two tracks of about ``2 * 1.5 * motion`` values per second each (the
    band is flat to ``motion`` and fades out by twice it)."""
    if motion <= 0:
        return 3.0
    return 3.0 + 2 * 3.0 * motion * length / sample_rate


def _resample(frames: torch.Tensor, at: torch.Tensor) -> torch.Tensor:
    """Frame values ``[B, F]`` read at fractional frame positions ``at [L]`` (linear; held past the last)."""
    F = frames.shape[-1]
    pos = at.clamp(0, F - 1)
    i0 = pos.floor().long().clamp(max=F - 1)
    i1 = (i0 + 1).clamp(max=F - 1)
    frac = pos - i0
    return frames[:, i0] * (1 - frac) + frames[:, i1] * frac


# -- fitting -------------------------------------------------------------------------------------------------
def fit_harmonic_priors(
    clips: torch.Tensor,
    names: tuple[str, ...],
    sample_rate: int,
    shapes: WavePriors,
    range_hz: tuple[float, float] = (26.0, 4400.0),
    generator: torch.Generator | None = None,
    progress: bool = True,
) -> HarmonicPriors:
    """Fit harmonic priors to solo clips ``[B, N, T]`` (clip b of source k is ``clips[b, k]``), with the
    shapes of ``shapes`` (wave priors learned from solo clips).

    For each source:

    1. **Motion band.** Each band of :data:`MOTIONS` (and none: steady notes only) is tried on the clips with
       noise of level :data:`FIT_SIGMA` added; the band kept is the one whose priors denoise them best (mean
       SI-SDR against the clean clips), a wider band only if it gains half a dB over the narrower ones.
    2. **The rest**, from each clean clip's best fit under that band: its mean pitch (the density: counts per
       bin, add-one over ``range_hz``), peak envelope (the amplitude range), whether it moved (the share of
       moving notes, add-one), and for moving ones that fit well (:data:`GOOD_FIT_DB`) the pitch and envelope
       motion (the bank) and the largest excursion from the mean pitch (the deviation: its 90th percentile over
       the clips, plus a quarter).
    """
    from sepmodels.metrics import si_sdr

    if clips.dim() != 3 or clips.shape[1] != len(names):
        raise ValueError(f"expected solo clips [B, {len(names)}, T], got {tuple(clips.shape)}")
    if tuple(shapes.names) != tuple(names):
        raise ValueError(f"the shapes are of {shapes.names}, the clips of {names}")
    generator = generator or torch.Generator().manual_seed(0)
    B, N, T = clips.shape
    shortest = math.ceil(2 * sample_rate / range_hz[0])
    if shortest > T:
        raise ValueError(f"clips of {T} samples are shorter than two periods of the lowest pitch ({shortest})")
    lo, hi = math.log2(range_hz[0]), math.log2(range_hz[1])
    bins = max(1, round((hi - lo) * 12 * PITCH_BINS))
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    flat = torch.full((N, bins), -math.log(bins), dtype=torch.float64)
    F = max(1, T // FRAME)

    def make(
        motion: float,
        moving: float,
        deviation: float = 100.0,
        log_prob: torch.Tensor = flat,
        amplitude: torch.Tensor | None = None,
        bank: tuple[torch.Tensor, torch.Tensor] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> HarmonicPriors:
        amplitude = amplitude if amplitude is not None else torch.tensor([[0.5, 1.0]] * N, dtype=torch.float64)
        bank = bank or (torch.zeros(N, 1, 1), torch.ones(N, 1, 1))
        full = lambda v: v if isinstance(v, torch.Tensor) else torch.full((N,), float(v))  # noqa: E731
        return HarmonicPriors(
            names,
            sample_rate,
            shapes.knots,
            shapes.jumps,
            shapes.offsets,
            edges,
            log_prob,
            amplitude,
            full(motion),
            full(deviation),
            full(moving),
            *bank,
            meta=meta,
        )

    noisy = clips.double() + FIT_SIGMA * torch.randn(clips.shape, generator=generator, dtype=torch.float64)
    motion = torch.zeros(N, dtype=torch.float64)
    scores: dict[str, dict[str, float]] = {}
    bar = tqdm(total=N * (len(MOTIONS) + 1) * B, desc="fit harmonic priors", disable=not progress)
    for k, name in enumerate(names):
        best = -math.inf
        for m in MOTIONS:
            trial = make(m, 0.5 if m > 0 else 0.0)
            db = 0.0
            for b in range(B):
                est = trial._analyse(k, noisy[b, k], FIT_SIGMA)[1]
                db += float(si_sdr(est[None].float(), clips[b, k][None].float())) / B
                bar.update(1)
            scores.setdefault(name, {})[f"{m:g} Hz" if m > 0 else "steady"] = round(db, 2)
            if db > best + 0.5:
                best, motion[k] = db, m
    counts = torch.ones(N, bins, dtype=torch.float64)
    peaks = torch.zeros(N, B, dtype=torch.float64)
    moved = torch.zeros(N, dtype=torch.float64)
    bank_c, bank_e = torch.zeros(N, BANK, F), torch.ones(N, BANK, F)
    kept = [0] * N
    excursions: list[list[float]] = [[] for _ in range(N)]
    fit_db = torch.zeros(N, dtype=torch.float64)
    trial = make(motion, 0.5)
    for k in range(N):
        for b in range(B):
            clip = clips[b, k].double()
            _, _, fits, weights = trial._analyse(k, clip, FIT_SIGMA)
            i = int(weights.argmax())
            fit = fits[i]
            is_moving = fit.motion > 0
            hz = fit.mean_pitch(sample_rate)
            j = int(torch.bucketize(torch.tensor(math.log2(max(hz, 1e-3)), dtype=torch.float64), edges)) - 1
            if 0 <= j < bins:
                counts[k, j] += 1
            peaks[k, b] = float(fit.envelope.max())
            db = float(si_sdr(fit.wave[None].float(), clips[b, k][None].float()))
            fit_db[k] += db / B
            if is_moving:
                moved[k] += 1
            if is_moving and db >= GOOD_FIT_DB:  # a poor fit's track is no evidence of how notes move
                cents = 1200 * torch.log2(fit.pitch(sample_rate).clamp_min(1e-3) / hz)
                inner = cents[FRAME:-FRAME] if T > 3 * FRAME else cents
                excursions[k].append(float(inner.abs().max()))
                if kept[k] < BANK:
                    framed = lambda v: v[: F * FRAME].reshape(F, FRAME).mean(1)  # noqa: E731
                    bank_c[k, kept[k]] = framed(cents).float()
                    bank_e[k, kept[k]] = framed(fit.envelope / fit.envelope.max().clamp_min(1e-9)).float()
                    kept[k] += 1
            bar.update(1)
    bar.close()
    size = max(1, max(kept))
    bank = (bank_c[:, :size], bank_e[:, :size])
    for k in range(N):  # a source with fewer moving clips than others repeats its own (or stays still)
        for j in range(kept[k], size):
            if kept[k]:
                bank[0][k, j], bank[1][k, j] = bank[0][k, j % kept[k]], bank[1][k, j % kept[k]]
    moving = torch.where(motion > 0, (moved + 1) / (B + 2), torch.zeros_like(moved))
    deviation = torch.tensor([float(torch.tensor(e).quantile(0.9)) if e else 0.0 for e in excursions])
    amplitude = torch.stack([peaks.min(1).values, peaks.max(1).values], 1)
    amplitude[:, 1] = torch.maximum(amplitude[:, 1], amplitude[:, 0] * 1.0001)
    meta = {
        "clips": B,
        "seconds": round(T / sample_rate, 3),
        "motion_db": scores,
        "fit_db": [round(v, 1) for v in fit_db.tolist()],
        "shapes": shapes.meta.get("what", "wave priors"),
    }
    return make(
        motion, moving, 1.25 * deviation, counts.log() - counts.sum(1, keepdim=True).log(), amplitude, bank, meta
    )
