"""What every grouped model class carries, and what the registry knows of each kind.

A *grouped model* holds one network per source (G groups) and evaluates them in one pass over ``[B, G, T]``.
:class:`~sepmodels.priors.PriorSet` wraps one with the source names, the sample rate and the noise ladder,
and delegates every question to it, so a model class answers for itself what it can do:

- ``has_likelihood``: whether it gives log-densities (flows, autoregressive priors) or only their gradient
  (score networks);
- ``noise_conditional``: whether it takes the noise level as an input;
- ``log_prob``, ``log_prob_and_score``, ``denoise`` (Tweedie), ``sample``, ``valid_length``.

:class:`LikelihoodModel` derives the score and the denoiser of a model with an exact ``log_prob`` by
autograd, so a flow and an autoregressive prior write only their density.

:class:`ModelKind` is a model class's entry in :mod:`sepmodels.registry`: its config class, presets,
training objective (a loss on a :class:`TrainBatch`) and what training produces.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import torch


class GroupedModel(Protocol):
    """The contract of a model class (see the module docstring); shapes are ``[B, G, T]``."""

    kind: ClassVar[str]
    has_likelihood: ClassVar[bool]
    groups: int
    config: Any

    @property
    def noise_conditional(self) -> bool: ...

    def valid_length(self, length: int) -> int: ...

    def receptive_field(self) -> float: ...

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor: ...

    def log_prob_and_score(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]: ...

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor | float, sources: list[int] | None = None
    ) -> torch.Tensor: ...

    def sample(
        self,
        n: int,
        length: int,
        sigma: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
        ladder: Sequence[float] = (),
    ) -> torch.Tensor: ...


class LikelihoodModel:
    """Mixin for models with an exact ``log_prob(x, sigma) -> [B, G, T]``: the score is its gradient (one
    forward and backward pass gives both) and the denoiser is Tweedie's ``x + sigma^2 * score``."""

    has_likelihood: ClassVar[bool] = True
    # Whether ``log_prob`` takes ``groups`` (indices of priors; ``x`` then holds only those priors' clips), so
    # that the denoiser computes only the sources asked for: the residual sweep asks for one at a time.
    selects_groups: ClassVar[bool] = False

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        raise NotImplementedError

    def log_prob_and_score(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The log-density map and its gradient with respect to ``x``, both ``[B, G, T]``."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            log_prob = self.log_prob(x, sigma)
            (grad,) = torch.autograd.grad(log_prob.sum(), x)
        return log_prob.detach(), grad

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Gradient of ``log p(x)`` with respect to ``x``: ``[B, G, T]``."""
        return self.log_prob_and_score(x, sigma)[1]

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor | float, sources: list[int] | None = None
    ) -> torch.Tensor:
        """Tweedie's posterior mean ``x + sigma^2 * score`` of every group; with ``sources``, a model that
        :attr:`selects_groups` computes only those (the others come back as ``x``), any other every group."""
        level = float(sigma)
        if sources is None or not self.selects_groups:
            return x + level**2 * self.score(x, level)
        groups = list(sources)
        with torch.enable_grad():
            part = x[:, groups].detach().requires_grad_(True)
            log_prob = self.log_prob(part, level, groups=groups)
            (grad,) = torch.autograd.grad(log_prob.sum(), part)
        out = x.clone()
        out[:, groups] = part.detach() + level**2 * grad
        return out


@dataclass
class TrainBatch:
    """One training batch, as every kind's loss receives it.

    Attributes:
        clean: clean clips ``[B, N, T]``; ``sigma``: noise level per clip ``[B]``; ``noise``: unit noise
            ``[B, N, T]``; ``noisy``: ``clean + sigma * noise``.
        generator: a seeded generator for losses that draw (the VAE's posterior samples).
        priors: frozen priors a posterior is trained against (None for priors).
        objective: the score network's choice of objective (``dsm`` or ``sdr``).
        options: the trained model's config (a posterior's ELBO weights live there).
        labels: each clip's class ``[B]`` for labelled data (drum hits), else None.
    """

    clean: torch.Tensor
    sigma: torch.Tensor
    noise: torch.Tensor
    noisy: torch.Tensor
    generator: torch.Generator
    priors: Any = None
    objective: str = "dsm"
    options: Any = None
    labels: torch.Tensor | None = None


@dataclass(frozen=True)
class ModelKind:
    """A model class's entry in the registry (:mod:`sepmodels.registry`).

    Attributes:
        name: what ``sepmodels train --model`` and :attr:`PriorSet.kind` call it.
        model_class: built as ``model_class(groups, config)``; carries :class:`GroupedModel` (or, for a
            posterior, ``valid_length`` and a forward pass over mixes).
        config_class: a frozen dataclass, rebuilt from a checkpoint as ``config_class(**saved)``.
        presets: named configs, ``default`` and ``tiny`` at least.
        objective: what training minimises, in words (stored in checkpoints).
        loss: ``loss(model, batch) -> scalar``; ``model`` may be a DDP or compiled wrapper, so call it, not
            its methods, for the pass that must be differentiated.
        nats: whether minus the loss is a log-likelihood (or bound) in nats per sample, for the log.
        role: what training produces: ``"priors"`` (a :class:`~sepmodels.priors.PriorSet`, one model per
            source), ``"posterior"`` (a VAE posterior trained against frozen priors) or ``"codec"`` (a model
            of its own data, such as the notes VQ-VAE, wrapped by ``product``).
        data: the training data it takes (``TrainConfig.data``).
        init_pass: run one loss without gradients before training (data-dependent initialisation).
        prepare: ``prepare(model, data, generator)`` before the first step of a fresh run (statistics of the
            training set, such as a spectrogram standardisation).
        finish: ``finish(model, data, generator)`` once training has reached its last step, before the final
            save (what the product needs from the trained model and the training set, such as the CWAE's
            latent map).
        product: ``product(model, names, sample_rate, meta)``: what a ``"codec"`` run returns and saves
            (anything with ``payload()``).
        stats: names of extra training-log columns; the model's ``train_stats()`` gives them each step.
        summary: what it is, in a few words (``sepmodels train --help``).
    """

    name: str
    model_class: type
    config_class: type
    presets: Mapping[str, Any]
    objective: str
    loss: Callable[[Any, TrainBatch], torch.Tensor]
    nats: bool
    role: str = "priors"
    data: tuple[str, ...] = ("toy", "musdb")
    init_pass: bool = False
    prepare: Callable[[Any, Any, torch.Generator], None] | None = None
    finish: Callable[[Any, Any, torch.Generator], None] | None = None
    product: Callable[[Any, Sequence[str], int, dict[str, Any]], Any] | None = None
    stats: tuple[str, ...] = ()
    summary: str = ""

    def __post_init__(self) -> None:
        if self.role not in ("priors", "posterior", "codec"):
            raise ValueError(f"role must be 'priors', 'posterior' or 'codec', got {self.role!r}")
        if (self.role == "codec") != (self.product is not None):
            raise ValueError("a codec kind, and only a codec kind, names its product")

    @property
    def posterior(self) -> bool:
        """Trained against frozen priors into a VAE posterior."""
        return self.role == "posterior"

    @property
    def priors(self) -> bool:
        """Trained into a set of priors, one per source."""
        return self.role == "priors"

    def preset(self, name: str) -> Any:
        """The named config, or a one-line error listing the names."""
        try:
            return self.presets[name]
        except KeyError:
            choices = ", ".join(self.presets)
            raise ValueError(f"unknown config {name!r} for {self.name}; choose one of {choices}") from None


__all__ = ["GroupedModel", "LikelihoodModel", "ModelKind", "TrainBatch"]
