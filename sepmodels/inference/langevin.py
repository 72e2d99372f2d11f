"""Separation by Langevin dynamics under source priors, as generators of iterates.

Generative story: sources ``s_k ~ p(s_k)`` independently, mix ``m = mean_k s_k`` (or the sum). Three samplers
draw from ``p(s | m)``; each is a generator that yields an :class:`Iterate` after every step and does no I/O:

- ``sgld``: the thesis's Algorithm 2, corrected. One noise level sigma; the mix enters as a Gaussian
  likelihood ``N(m; mix(s), gamma^2)``; the step adds ``sqrt(2 eta) eps`` (the thesis wrote ``2 sqrt(eta)``).
- ``annealed``: BASIS (Jayaram & Thickstun, 2020). Geometric noise levels sigma_1 > ... > sigma_L, ``T`` steps
  at each with ``eta_i = delta (sigma_i / sigma_L)^2``, the priors' score at sigma_i, the mixing variance tied
  to ``sigma_i^2``, started from noise.
- ``constrained``: the same annealing with the mix enforced exactly. Every update and every noise draw is
  projected onto the sources whose mix equals ``m`` (a Dirac likelihood, as in multi-source diffusion), so the
  stiff ``1 / sigma^2`` mixing term disappears.
- ``residual``: a Gibbs-style sweep that explains away. Each source in turn is replaced by its prior's
  posterior mean (Tweedie's denoiser ``x + sigma^2 * score``) given the residual, what the mix leaves for it
  once the other sources are taken out (``N * m - sum of the others`` for a mean mix), treated as the source
  seen through noise of level sigma. A source that took another's pitch is pushed off it as soon as that source
  claims its own, and a source can jump to another pitch in one update. The ladder starts where the priors have
  not yet chosen a pitch (sigma 45 for 1 s toy clips): the pitch posterior of a whole clip is sharp long before
  sigma 1. With Gaussian priors it is coordinate descent on the MAP objective with a mix likelihood of variance
  sigma^2, which tends to the exact posterior mean as sigma -> 0 (tested).

Sources are a tensor dimension: ``[N, T]``; nothing is written per source.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sepmodels import mixing
from sepmodels.metrics import si_sdr
from sepmodels.priors import Prior

METHODS = ("residual", "constrained", "annealed", "sgld")
# Each method's own ladder and steps, used where a config leaves them out: the residual sweep needs a ladder
# that starts above the point where a prior commits to a pitch, and few sweeps per level.
METHOD_DEFAULTS: dict[str, dict[str, float | int]] = {
    "residual": {"sigma_max": 45.0, "levels": 30, "steps": 5},
    "constrained": {"sigma_max": 1.0, "levels": 10, "steps": 100},
    "annealed": {"sigma_max": 1.0, "levels": 10, "steps": 100},
    "sgld": {"sigma_max": 1.0, "levels": 10, "steps": 100},
}


@dataclass(frozen=True)
class LangevinConfig:
    """Settings of the samplers; the default is the residual sweep from sigma 45 (see the module docstring).

    Arguments:
        method: ``residual``, ``constrained``, ``annealed`` or ``sgld``.
        sigma_max, sigma_min, levels: the geometric noise ladder (``sgld`` uses ``sigma_min`` only).
            ``sigma_max`` and ``levels`` left as None take the method's own (:data:`METHOD_DEFAULTS`).
        steps: steps per level (``sgld``: steps in all; ``residual``: sweeps over all sources per level);
            None takes the method's own.
        delta: step size at the smallest level; level i uses ``delta * (sigma_i / sigma_min)**2``.
        gamma: standard deviation of the mix likelihood for ``sgld`` (``annealed`` uses sigma_i).
        mix: ``mean`` (the thesis's convention) or ``sum``.
        init: ``noise`` (sources start at ``sigma_max * eps``) or ``mix`` (every source starts as the same
            share of the mix, plus that noise). The residual sweep starts from zero; ``pursuit`` starts its second
            chain (if the first left the mix unexplained) from a greedy placement: the sources are placed one at
            a time, each time the one whose posterior mean at ``sigma_min`` given what the mix leaves explains
            the most of it, and the chain runs the later chains' ladder from there.
        seed: seed of the initial state and the injected noise (``residual``: of the later chains' orders).
        chains, accept: ``residual`` only: a chain whose RMS mixing error ends above ``accept`` times the mix's
            RMS is followed by another, up to ``chains`` in all, and the one that explains the mix best is kept.
        restart_sigma, restart_levels: ``residual`` only: the ladder of the later chains, which start from the
            best state with two sources exchanged (``restart_sigma`` down to ``sigma_min``).
        restart: ``residual`` only: ``swap`` (as above) or ``order``: each later chain starts from scratch on
            the whole ladder and takes the sources in another order (a permutation drawn from ``seed`` and the
            chain's number), for priors whose greedy first choices a swap of two cannot undo (a sine that took
            another source's partial sets off a cycle of wrong choices).
    """

    method: str = "residual"  # the best on the exact and on the shipped priors (README)
    sigma_max: float | None = None
    sigma_min: float = 0.01
    levels: int | None = None
    steps: int | None = None
    delta: float = 2e-5
    gamma: float = 0.01
    mix: str = "mean"
    init: str = "noise"
    seed: int = 0
    chains: int = 3
    accept: float = 0.02
    restart_sigma: float = 1.0
    restart_levels: int = 10
    restart: str = "swap"

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        for name, value in METHOD_DEFAULTS[self.method].items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, value)
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.levels < 1 or self.steps < 1:
            raise ValueError(f"levels and steps must be at least 1, got {self.levels}, {self.steps}")
        if not (self.delta > 0 and self.gamma > 0):
            raise ValueError(f"delta and gamma must be positive, got {self.delta}, {self.gamma}")
        mixing.check(self.mix)
        if self.init not in ("noise", "mix", "pursuit") or (self.init == "pursuit" and self.method != "residual"):
            raise ValueError(
                f"init must be 'noise' or 'mix' (or 'pursuit' for the residual sweep), got {self.init!r}"
            )
        if self.chains < 1 or not self.accept >= 0 or self.restart_levels < 1:
            raise ValueError(f"chains and restart_levels must be at least 1 and accept at least 0, got "
                             f"{self.chains}, {self.restart_levels}, {self.accept}")  # fmt: skip
        if self.restart not in ("swap", "order"):
            raise ValueError(f"restart must be 'swap' or 'order', got {self.restart!r}")
        if not self.sigma_min <= self.restart_sigma:
            raise ValueError(f"need sigma_min <= restart_sigma, got {self.sigma_min}, {self.restart_sigma}")

    def sigmas(self) -> list[float]:
        """The noise level of every level, largest first (``sgld``: one level at ``sigma_min``)."""
        if self.method == "sgld" or self.levels == 1:
            return [self.sigma_min]
        ratio = (self.sigma_min / self.sigma_max) ** (1 / (self.levels - 1))
        return [self.sigma_max * ratio**i for i in range(self.levels)]

    def restart_sigmas(self) -> list[float]:
        """The ladder of the residual sweep's later chains, largest first."""
        if self.restart_levels == 1:
            return [self.sigma_min]
        ratio = (self.sigma_min / self.restart_sigma) ** (1 / (self.restart_levels - 1))
        return [self.restart_sigma * ratio**i for i in range(self.restart_levels)]

    @property
    def total_steps(self) -> int:
        """Steps of a whole run (``residual``: if every chain runs)."""
        whole = len(self.sigmas()) * self.steps
        if self.method != "residual":
            return whole
        short = self.restart_levels * self.steps
        return whole + (self.chains - 1) * (whole if self.restart == "order" else short)

    def step_size(self, sigma: float) -> float:
        if self.method == "sgld":
            return self.delta
        return self.delta * (sigma / self.sigma_min) ** 2


@dataclass
class Iterate:
    """The sampler's state after one step.

    Attributes:
        step: 1-based step count; ``total``: steps in the whole run.
        level: 0-based index of the noise level; ``sigma``: its value.
        sources: current estimates ``[N, T]``.
        log_prob: each source's per-sample log-density under its prior at ``sigma``, ``[N, T]`` (nats),
            evaluated at the state before the step (it comes free with a flow's score); None for score
            priors, which give no likelihood, unless :func:`with_likelihood` filled it in from other priors
            (then it is the density of ``sources``, after the step).
        mix_error: root-mean-square difference between the mix and the mix of the estimates.
        si_sdr: SI-SDR per source in dB ``[N]`` when the truth was given, else None.
        chain: which chain of the residual sweep (0 for the other methods); -1 marks the chain kept at the end.
    """

    step: int
    total: int
    level: int
    sigma: float
    sources: torch.Tensor
    log_prob: torch.Tensor | None
    mix_error: float
    si_sdr: torch.Tensor | None = None
    chain: int = 0


def _project(update: torch.Tensor) -> torch.Tensor:
    """Remove the component of ``[N, T]`` that changes the mix: what stays leaves mean and sum unchanged."""
    return update - update.mean(dim=0, keepdim=True)


def _onto_mix(sources: torch.Tensor, mixture: torch.Tensor, how: str) -> torch.Tensor:
    """The closest sources (in the Euclidean sense) whose mix equals ``mixture``."""
    return sources + mixing.spread(mixture - mixing.mix(sources, how), sources.shape[0], how)


def _initial(mixture: torch.Tensor, n: int, cfg: LangevinConfig, generator: torch.Generator) -> torch.Tensor:
    noise = torch.randn((n, *mixture.shape), generator=generator, dtype=mixture.dtype).to(mixture.device)
    sigma0 = cfg.sigmas()[0]
    if cfg.init == "noise":
        return sigma0 * noise
    share = mixing.spread(mixture, n, cfg.mix)  # every source alike, mixing to the mix
    return share[None] + sigma0 * noise


def langevin(
    mixture: torch.Tensor,
    priors: Prior,
    config: LangevinConfig,
    truth: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
) -> Iterator[Iterate]:
    """Run the sampler ``config.method`` on ``mixture: [T]``; yield an :class:`Iterate` after every step.

    Arguments:
        mixture: the mix ``[T]`` (its device and dtype are used throughout).
        priors: N source priors (:class:`Prior`); ``len(priors)`` is N.
        config: the sampler's settings.
        truth: the true sources ``[N, T]``, to report SI-SDR.
        start: an initial state ``[N, T]`` instead of ``config.init``.

    Example:
        >>> for it in langevin(mix, priors, LangevinConfig(steps=20)):  # doctest: +SKIP
        ...     print(it.step, it.sigma, it.mix_error)
    """
    if mixture.dim() != 1:
        raise ValueError(f"mixture must be mono [T], got shape {tuple(mixture.shape)}")
    n_sources = len(priors)
    if truth is not None and truth.shape != (n_sources, mixture.shape[0]):
        raise ValueError(f"truth must be [{n_sources}, {mixture.shape[0]}], got {tuple(truth.shape)}")
    generator = torch.Generator().manual_seed(config.seed)
    s = _initial(mixture, n_sources, config, generator) if start is None else start.detach().clone()
    if config.method == "residual":
        yield from _residual(mixture, priors, config, truth, start)
        return
    if config.method == "constrained":
        s = _onto_mix(s, mixture, config.mix)
    sigmas = config.sigmas()
    total, step = config.total_steps, 0
    # d/ds_k of mix(s): 1/N for a mean mix, 1 for a sum.
    weight = mixing.gain(n_sources, config.mix)
    for level, sigma in enumerate(sigmas):
        eta = config.step_size(sigma)
        noise_scale = math.sqrt(2 * eta)
        gamma2 = config.gamma**2 if config.method == "sgld" else sigma**2
        for _ in range(config.steps):
            log_prob, score = priors.log_prob_and_score(s[None], sigma)
            log_prob, score = (None if log_prob is None else log_prob[0]), score[0]
            noise = torch.randn(s.shape, generator=generator, dtype=s.dtype).to(s.device)
            if config.method == "constrained":
                s = s + eta * _project(score) + noise_scale * _project(noise)
                s = _onto_mix(s, mixture, config.mix)  # only rounding moves it off; keep it exact
            else:
                residual = mixture - mixing.mix(s, config.mix)
                s = s + eta * (score + weight * residual[None] / gamma2) + noise_scale * noise
            step += 1
            err = float((mixture - mixing.mix(s, config.mix)).pow(2).mean().sqrt())
            sdr = None if truth is None else si_sdr(s, truth)
            yield Iterate(step, total, level, sigma, s, log_prob, err, sdr)


def _sweep(
    s: torch.Tensor, whole: torch.Tensor, priors: Prior, sigma: float, order: list[int] | None = None
) -> torch.Tensor:
    """One pass over the sources (in ``order``, default first to last), in place: each becomes its prior's
    posterior mean given its residual."""
    for k in range(s.shape[0]) if order is None else order:
        x = s.clone()
        x[k] = whole - (s.sum(0) - s[k])  # what the mix leaves for source k
        s[k] = priors.denoise(x[None], sigma, sources=[k])[0, k]
    return s


def _pursuit(s: torch.Tensor, whole: torch.Tensor, priors: Prior, sigma: float) -> torch.Tensor:
    """A greedy start (``init="pursuit"``): while sources are unplaced, each unplaced one's posterior mean at
    ``sigma`` given what the mix leaves (``whole`` less the placed ones) is taken, and the one that explains the
    most energy is placed. A loud square placed first takes its own partials before a sine can take its
    fundamental, which in a fixed order the sine, going first, would."""
    s = torch.zeros_like(s)
    free = list(range(s.shape[0]))
    while free:
        left = whole - s.sum(0)
        best: tuple[float, int, torch.Tensor] | None = None
        for k in free:
            x = s.clone()
            x[k] = left
            mean = priors.denoise(x[None], sigma, sources=[k])[0, k]
            gain = float(left.pow(2).sum() - (left - mean).pow(2).sum())
            if best is None or gain > best[0]:
                best = (gain, k, mean)
        s[best[1]] = best[2]
        free.remove(best[1])
    return s


def _residual(
    mixture: torch.Tensor,
    priors: Prior,
    config: LangevinConfig,
    truth: torch.Tensor | None,
    start: torch.Tensor | None,
) -> Iterator[Iterate]:
    """The residual sweep (module docstring): one :class:`Iterate` per sweep over the sources.

    A chain that ends with the mix unexplained (RMS mixing error above ``config.accept`` times the mix's RMS)
    has settled on a wrong assignment, typically two sources on each other's pitch (sine and triangle, whose
    spectra differ only in weak harmonics). Each further chain, up to ``config.chains`` in all, starts from the
    best state so far with the two sources exchanged whose exchange explains the mix best after one sweep at
    ``config.restart_sigma``, and runs the ladder from there (``config.restart="order"``: starts from scratch and
    takes the sources in another order; ``config.init="pursuit"``: the second chain starts from a greedy
    placement, :func:`_pursuit`). The mix residual judges, so no likelihood is needed. The last iterate
    (``chain`` -1) is the best chain's result, its ``step`` and ``total`` the number of steps actually run
    (fewer than ``config.total_steps`` when a chain explained the mix and no restart ran).
    """
    n_sources = len(priors)
    whole = mixing.total(mixture, n_sources, config.mix)  # what the sources add up to
    scale = float(mixture.pow(2).mean().sqrt())
    error = lambda s: float((mixture - mixing.mix(s, config.mix)).pow(2).mean().sqrt())  # noqa: E731
    total, step = config.total_steps, 0
    s = torch.zeros((n_sources, *mixture.shape), dtype=mixture.dtype, device=mixture.device)
    if start is not None:
        s = start.detach().clone().to(mixture)
    best: tuple[int, float, torch.Tensor] | None = None
    order: list[int] | None = None
    for chain in range(config.chains):
        pursue = chain == 1 and config.init == "pursuit"
        short = chain > 0 and (pursue or config.restart == "swap")
        sigmas = config.restart_sigmas() if short else config.sigmas()
        if pursue:
            s = _pursuit(s, whole, priors, config.sigma_min)
        elif chain > 0 and config.restart == "order":  # from scratch, the sources taken in another order
            order = torch.randperm(
                n_sources, generator=torch.Generator().manual_seed(config.seed + chain)
            ).tolist()
            s = torch.zeros_like(s)
        elif chain > 0:
            swaps = []
            for i in range(n_sources):
                for j in range(i + 1, n_sources):
                    trial = best[2].clone()
                    trial[[i, j]] = trial[[j, i]]
                    trial = _sweep(trial, whole, priors, sigmas[0])
                    swaps.append((error(trial), i, j))
            _, i, j = min(swaps)
            s = best[2].clone()
            s[[i, j]] = s[[j, i]]
        for level, sigma in enumerate(sigmas):
            for _ in range(config.steps):
                s = _sweep(s, whole, priors, sigma, order)
                step += 1
                sdr = None if truth is None else si_sdr(s, truth)
                yield Iterate(step, total, level, sigma, s.clone(), None, error(s), sdr, chain)
        if best is None or error(s) < best[1]:
            best = (chain, error(s), s.clone())
        if best[1] <= config.accept * scale:
            break
    kept, err, s = best
    if step < total or kept != chain:  # the run's result, numbered by the steps it took (restarts not needed
        sdr = None if truth is None else si_sdr(s, truth)  # were not run, and the run is that much shorter)
        yield Iterate(step, step, len(sigmas) - 1, sigmas[-1], s, None, err, sdr, -1)


def with_likelihood(iterates: Iterator[Iterate], judge: Prior, every: int = 10) -> Iterator[Iterate]:
    """Fill in ``log_prob`` of a score sampler's iterates from priors that have a likelihood (flows).

    Score priors give no density, so the iterates of a sampler they drive carry ``log_prob=None``. This
    evaluates ``judge.log_prob`` of the current sources, conditioned at the iterate's sigma, on every
    ``every``-th step and on the last one (a flow's forward pass costs several score steps); the others pass
    through unchanged. Iterates that already have a likelihood are left as they are.

    Arguments:
        iterates: what :func:`langevin` yields.
        judge: anything with ``log_prob(x [1, N, T], sigma) -> [1, N, T]`` over the same N sources.
        every: steps between evaluations (at least 1).
    """
    if every < 1:
        raise ValueError(f"every must be at least 1, got {every}")
    for it in iterates:
        if it.log_prob is None and (it.step % every == 0 or it.step >= it.total):
            with torch.no_grad():
                it.log_prob = judge.log_prob(it.sources[None], it.sigma)[0]
        yield it


def time_estimate(
    iterates: Iterator[Iterate], announce: Callable[[str], None], min_seconds: float = 1.0
) -> Iterator[Iterate]:
    """Pass ``iterates`` through; once the steps after the first (which pays for warm-up) have taken
    ``min_seconds``, call ``announce`` once with a sentence estimating the whole run's time."""
    start, told = None, False
    for it in iterates:
        now = time.perf_counter()
        if start is None:
            start, first = now, it.step
        elif not told and now - start >= min_seconds and it.step < it.total:
            rate = (it.step - first) / (now - start)
            told = True
            announce(
                f"{it.total} steps at most, {rate:.3g} steps/s so far: about {_duration(it.total / rate)} in all, "
                f"{_duration((it.total - it.step) / rate)} left at this rate (steps at small noise levels can "
                "cost several times more; a residual sweep stops early once the mix is explained)"
            )
        yield it


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def run(
    mixture: torch.Tensor,
    priors: Prior,
    config: LangevinConfig,
    truth: torch.Tensor | None = None,
    progress: bool = False,
    desc: str = "separating",
    announce: Callable[[str], None] | None = None,
) -> Iterate:
    """Run a sampler to the end and return its last iterate (with a tqdm bar if ``progress``; ``announce``
    receives one sentence with the expected time once the first steps are timed, see :func:`time_estimate`)."""
    iterates = langevin(mixture, priors, config, truth)
    if announce is not None:
        iterates = time_estimate(iterates, announce)
    if progress:
        iterates = tqdm(iterates, total=config.total_steps, desc=desc, unit="step", leave=False)
    (last,) = deque(iterates, maxlen=1)
    return last
