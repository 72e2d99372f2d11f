"""One separator: ``separate(mix [T]) -> [N, T]``, whatever does the work.

A :class:`Separator` takes a mono mix of any length and returns one estimate per source, cropped to the
mix's length; padding to a length the model accepts is its own business. Two kinds do the work:

- :class:`LangevinSeparator`: a sampler of :mod:`sepmodels.inference.langevin` (the residual sweep by
  default) under N source priors.
- :class:`~sepmodels.inference.posterior.Demixer`: a VAE posterior's means, one forward pass.

:func:`make_separator` builds either from a method name, so the command line, the evaluation and the
benchmark all go through the same call.

Example:
    >>> from sepmodels.data import toy
    >>> from sepmodels.priors import GaussianPriors
    >>> priors = GaussianPriors(torch.zeros(2), torch.ones(2))
    >>> separator = make_separator("constrained", priors, levels=2, steps=3)
    >>> separator.separate(torch.zeros(100)).shape
    torch.Size([2, 100])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from sepmodels.inference.langevin import METHODS, Iterate, LangevinConfig, langevin, time_estimate
from sepmodels.priors import Prior
from sepmodels.spectral import STFTConfig, mask_mixture, stft


class SeparationError(RuntimeError):
    """A separation that produced no usable estimates (e.g. a diverged sampler)."""


class Separator(Protocol):
    """Estimates N sources from their mono mix."""

    names: tuple[str, ...]
    sample_rate: int
    max_steps: int  # sampler steps a separation may take (0 for one forward pass)
    mix: str  # how the sources make the mix it is given: "mean" (the toy's convention) or "sum" (music's)

    def separate(self, mixture: torch.Tensor, truth: torch.Tensor | None = None) -> torch.Tensor:
        """``mixture [T] -> [N, T]`` on the CPU; ``truth [N, T]`` only feeds progress reports."""
        ...

    def describe(self) -> str:
        """What this separator does, in a few words (for reports)."""
        ...

    def valid_length(self, length: int) -> int:
        """The shortest length at or above ``length`` that the separator takes without padding."""
        ...


class LangevinSeparator:
    """Separation by a sampler of :mod:`sepmodels.inference.langevin` under ``priors``.

    Arguments:
        priors: N source priors (:class:`~sepmodels.priors.Prior`).
        config: the sampler's settings.
        progress: a tqdm bar per mix.
        announce: receives one sentence with the expected time of each run, once its first steps are timed.
        mask_power: None returns the sampler's sources as they are; a number ``p`` returns the mix filtered by
            soft masks of the sources' STFT magnitudes to the power ``p`` (1: ratio masks, 2: Wiener filters;
            :func:`~sepmodels.spectral.mask_mixture`), so the estimates add up to the mix: the usual last step
            of a music separator.

    After :meth:`separate`, :attr:`last` is the run's last :class:`Iterate` and :attr:`steps_run` how many
    steps it took (a residual sweep stops early once the mix is explained).
    """

    def __init__(
        self,
        priors: Prior,
        config: LangevinConfig,
        progress: bool = False,
        announce: Callable[[str], None] | None = None,
        mask_power: float | None = None,
    ) -> None:
        if mask_power is not None and not mask_power > 0:
            raise ValueError(f"mask_power must be positive (or None), got {mask_power}")
        self.priors, self.mask_power = priors, mask_power
        self.config, self.progress, self.announce = config, progress, announce
        self.names, self.sample_rate = tuple(priors.names), int(priors.sample_rate)
        self.max_steps, self.mix = config.total_steps, config.mix
        self.last: Iterate | None = None
        self.steps_run = 0

    @property
    def output(self) -> str:
        """What is done to the sampler's sources before they are returned, as the tail of a report line."""
        if self.mask_power is None:
            return ""
        return ", then ratio masks" if self.mask_power == 1 else f", then soft masks (power {self.mask_power:g})"

    def describe(self) -> str:
        return f"{self.config.method}, {self.config.total_steps} steps at most{self.output}"

    def valid_length(self, length: int) -> int:
        return self.priors.valid_length(length)

    def iterates(
        self, mixture: torch.Tensor, truth: torch.Tensor | None = None, start: torch.Tensor | None = None
    ) -> Iterator[Iterate]:
        """The sampler's iterates on ``mixture [T]``, padded to a length the priors take (``truth`` and ``start``
        likewise; the iterates' ``si_sdr`` is then of the padded sources): what :meth:`separate` runs, for a
        caller that watches every step (the apps). :meth:`finish` turns an iterate's sources into estimates."""
        if mixture.dim() != 1:
            raise ValueError(f"mixture must be mono [T], got shape {tuple(mixture.shape)}")
        T = mixture.shape[-1]
        pad = self.priors.valid_length(T) - T
        device = self.priors.device
        padded = F.pad(mixture, (0, pad)).to(device)
        truth = None if truth is None else F.pad(truth, (0, pad)).to(device)
        start = None if start is None else F.pad(start, (0, pad)).to(device)
        return langevin(padded, self.priors, self.config, truth, start)

    def finish(self, mixture: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
        """Estimates ``[N, T]`` from an iterate's ``sources`` on ``mixture [T]``: cropped to the mix's length and,
        with ``mask_power``, the mix filtered by their soft masks. Raises :class:`SeparationError` when the
        sources are not finite (a diverged run)."""
        T = mixture.shape[-1]
        estimates = sources[:, :T].cpu()
        if not torch.isfinite(estimates).all():
            raise SeparationError(
                f"the {self.config.method} run diverged (non-finite estimates) with these priors; try a smaller "
                "sigma_max (learned priors know sigma up to 1) or another method"
            )
        if self.mask_power is not None:
            spec = STFTConfig()
            spec.check_length(T)
            total = mixture.cpu() * (len(self.names) if self.mix == "mean" else 1)  # the sum of the sources
            estimates = mask_mixture(total, stft(estimates, spec).abs(), spec, self.mask_power)
        return estimates

    def separate(
        self, mixture: torch.Tensor, truth: torch.Tensor | None = None, start: torch.Tensor | None = None
    ) -> torch.Tensor:
        """As :meth:`Separator.separate`; ``start [N, T]`` is a state to start the sampler from instead of its
        own (a reference run: started at the truth, does the search stay there?)."""
        iterates = self.iterates(mixture, truth, start)
        if self.announce is not None:
            iterates = time_estimate(iterates, self.announce)
        if self.progress:
            iterates = tqdm(iterates, total=self.config.total_steps, desc="separating", unit="step", leave=False)
        self.steps_run = 0
        for it in iterates:
            self.steps_run += it.chain >= 0  # the residual sweep's closing "best chain" iterate is no step
            self.last = it
        return self.finish(mixture, self.last.sources)


def make_separator(
    method: str,
    priors: Prior | None = None,
    posterior: Separator | None = None,
    progress: bool = False,
    announce: Callable[[str], None] | None = None,
    **config: Any,
) -> Separator:
    """A separator by method name: ``vae`` (``posterior``, a
    :class:`~sepmodels.inference.posterior.Demixer`) or a Langevin method (``priors``; ``config`` are
    :class:`LangevinConfig` fields; None values take the priors' own ladder for the method where they carry
    one, as the harmonic priors do, else the method's own)."""
    if method == "vae":
        if posterior is None:
            raise ValueError("method vae needs a VAE posterior")
        return posterior
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose vae or one of {', '.join(METHODS)}")
    if priors is None:
        raise ValueError(f"method {method} needs priors")
    # Priors may carry their own ladder for a method (fewer, costlier steps, or the settings a bench chose on
    # validation, output masks included); the caller's settings win.
    own = dict(getattr(priors, "sampler_defaults", {}).get(method, {}))
    settings = {**own, **{k: v for k, v in config.items() if v is not None}}
    mask_power = settings.pop("mask_power", None)
    config = LangevinConfig(method=method, **settings)
    return LangevinSeparator(priors, config, progress, announce, mask_power=mask_power)


__all__ = ["LangevinSeparator", "SeparationError", "Separator", "make_separator"]
