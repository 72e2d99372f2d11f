"""The ``Prior`` contract and :class:`PriorSet`, N named source priors evaluated in one pass.

Shapes: clips are ``[B, N, T]`` (one per source, in the set's order) or, for scoring one clip under every
prior, ``[B, T]``. Log-densities are in nats per sample; a map's sum over T is the clip's exact log p.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from sepmodels import mixing
from sepmodels.checkpoint import CheckpointError, default_priors_path, first_line, load_checkpoint, save_checkpoint
from sepmodels.nn.contract import GroupedModel
from sepmodels.nn.exact import ExactToyPriors

EXACT = "exact"  # the name that selects the exact toy prior wherever priors are chosen


class Prior(Protocol):
    """N named source priors, as every sampler, study, view and command uses them.

    :class:`PriorSet` (a grouped model of :mod:`sepmodels.registry` with its names, rate and noise ladder),
    :class:`~sepmodels.nn.exact.ExactToyPriors` and :class:`GaussianPriors` carry it. Clips are ``[B, N, T]``,
    log-densities nats per sample; ``sigma`` None means :attr:`default_sigma`.
    """

    names: tuple[str, ...]
    sample_rate: int
    kind: str  # flow, ar, score, exact, gaussian
    has_likelihood: bool  # log-densities (else the score only: log_prob raises TypeError)
    noise_conditional: bool  # whether sigma changes anything
    default_sigma: float
    device: torch.device

    def __len__(self) -> int: ...

    def valid_length(self, length: int) -> int: ...

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor: ...

    def log_prob_and_score(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]: ...

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None, sources: list[int] | None = None
    ) -> torch.Tensor: ...

    def sample(
        self,
        n: int,
        length: int,
        sigma: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor: ...

    def cross_log_prob(self, clips: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Every clip under every prior: ``[B, T] -> [B, N, T]`` on the CPU (any length)."""
        ...


@dataclass(frozen=True)
class NoiseLadder:
    """Geometric noise levels from ``sigma_max`` down to ``sigma_min`` (BASIS: 1.0 -> 0.01, 10 levels)."""

    sigma_max: float = 1.0
    sigma_min: float = 0.01
    levels: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.sigma_min <= self.sigma_max:
            raise ValueError(f"need 0 < sigma_min <= sigma_max, got {self.sigma_min}, {self.sigma_max}")
        if self.levels < 1:
            raise ValueError(f"need at least one noise level, got {self.levels}")

    def sigmas(self) -> torch.Tensor:
        """The levels, largest first, float64 ``[levels]``."""
        if self.levels == 1:
            return torch.tensor([self.sigma_min], dtype=torch.float64)
        return torch.logspace(
            torch.log10(torch.tensor(self.sigma_max)),
            torch.log10(torch.tensor(self.sigma_min)),
            self.levels,
            dtype=torch.float64,
        )


class PriorSet:
    """N named source priors sharing one grouped model (a kind of :mod:`sepmodels.registry`: a flow, an
    autoregressive prior or a score network), which answers every question itself
    (:class:`~sepmodels.nn.contract.GroupedModel`); the set adds the names, the rate and the noise ladder.

    Arguments:
        model: the grouped model; ``model.groups`` must equal ``len(names)``.
        names: source names in group order, e.g. ``("sin", "square", "saw", "triangle")``.
        sample_rate: rate the priors were trained at, Hz.
        ladder: the noise levels the model was trained on (a plain prior has one level, its training noise).
        meta: training metadata carried in the checkpoint.
    """

    def __init__(
        self,
        model: GroupedModel,
        names: tuple[str, ...],
        sample_rate: int,
        ladder: NoiseLadder,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if model.groups != len(names):
            raise ValueError(f"model has {model.groups} groups but {len(names)} names were given")
        self.model, self.names, self.sample_rate, self.ladder = model, tuple(names), sample_rate, ladder
        self.meta = dict(meta or {})

    # -- basic facts -------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def default_sigma(self) -> float:
        """The smallest noise level the priors know: the default for scoring."""
        return self.ladder.sigma_min

    @property
    def sampler_defaults(self) -> dict[str, dict[str, Any]]:
        """Sampler settings chosen for these priors on a validation split, by method (``meta``'s
        ``sampler_defaults``, written by the bench that chose them); :func:`~sepmodels.inference.separator.
        make_separator` applies them unless the caller overrides. Empty when nothing was chosen."""
        return {m: dict(v) for m, v in self.meta.get("sampler_defaults", {}).items()}

    @property
    def has_likelihood(self) -> bool:
        """Whether these priors give log-densities (flows, autoregressive) or only their gradient (score)."""
        return self.model.has_likelihood

    @property
    def kind(self) -> str:
        """The model's kind in :mod:`sepmodels.registry`: ``flow``, ``ar`` or ``score``."""
        return self.model.kind

    @property
    def noise_conditional(self) -> bool:
        """Whether the priors take the noise level as an input (plain flows know one level only)."""
        return self.model.noise_conditional

    @property
    def config(self) -> Any:
        """The model's config (a frozen dataclass of its kind)."""
        return self.model.config

    def receptive_field(self) -> float:
        """Input samples one output sample depends on (``inf`` for whole-clip models)."""
        return self.model.receptive_field()

    def can_judge(self, other: Prior) -> bool:
        """Whether these priors can stand in for ``other``'s missing likelihood: they have one, and they model
        the same sources at the same rate (see :func:`sepmodels.inference.langevin.with_likelihood`)."""
        return self.has_likelihood and self.names == other.names and self.sample_rate == other.sample_rate

    def valid_length(self, length: int) -> int:
        """The shortest length the model accepts that is at least ``length`` samples."""
        return self.model.valid_length(length)

    def to(self, device: str | torch.device) -> PriorSet:
        self.model.to(device)
        return self

    def freeze(self) -> PriorSet:
        """For inference only: eval mode and no weight gradients (which also halves the work of a score)."""
        self.model.eval().requires_grad_(False)
        return self

    def describe(self) -> dict[str, Any]:
        """Class and config, for results files."""
        return {"class": type(self.model).__name__, "config": self.model.config.to_dict()}

    def parameters_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The model's weights (to start a fine-tune from)."""
        return self.model.state_dict()

    # -- the Prior contract: the model answers -------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Per-sample log-density of each source under its own prior: ``[B, N, T] -> [B, N, T]``, nats."""
        return self.model.log_prob(x, self._sigma(sigma))

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Gradient of each source's log-density with respect to it: ``[B, N, T]``."""
        return self.model.log_prob_and_score(x, self._sigma(sigma))[1]

    def log_prob_and_score(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """The log-density map and its gradient, both ``[B, N, T]`` (a flow: one forward and backward pass);
        a score network gives ``(None, score)`` from one forward pass."""
        return self.model.log_prob_and_score(x, self._sigma(sigma))

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None, sources: list[int] | None = None
    ) -> torch.Tensor:
        """Tweedie's denoiser ``x + sigma^2 * score``: each source's posterior mean given ``x`` seen through
        noise of level sigma, ``[B, N, T]``. Flows and score networks compute only ``sources`` when given (the
        others come back as ``x``); an autoregressive prior evaluates every source whatever ``sources`` asks."""
        level = self.default_sigma if sigma is None else float(sigma)
        with torch.no_grad():
            return self.model.denoise(x, level, sources)

    def sample(
        self,
        n: int,
        length: int,
        sigma: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``n`` draws from every prior: ``[n, N, length]`` (a flow inverts its latent, an autoregressive
        prior draws sample by sample, a score network anneals down the ladder to ``sigma``)."""
        ladder = [float(v) for v in self.ladder.sigmas()]
        return self.model.sample(n, length, self._sigma(sigma), generator=generator, ladder=ladder)

    # -- conveniences for scoring arbitrary clips -----------------------------------------------------------
    def cross_log_prob(self, clips: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Every clip under every prior: ``[B, T] -> [B, N, T]`` (nats per sample).

        Clips of any length are zero-padded to a valid length and the map is cropped back, so it covers
        exactly the given samples.
        """
        if clips.dim() != 2:
            raise ValueError(f"cross_log_prob expects clips [B, T], got shape {tuple(clips.shape)}")
        if not self.has_likelihood:
            raise TypeError("score priors give no likelihood; load flow priors to score clips")
        B, T = clips.shape
        padded = F.pad(clips, (0, self.valid_length(T) - T))
        x = padded[:, None, :].expand(B, len(self), padded.shape[-1]).contiguous()
        with torch.no_grad():
            return self.log_prob(x.to(self.device), sigma)[..., :T].cpu()

    def _sigma(self, sigma: torch.Tensor | float | None) -> torch.Tensor | float | None:
        if not self.noise_conditional:
            return None
        return self.default_sigma if sigma is None else sigma

    # -- persistence -------------------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        """The checkpoint dict for this set (no optimiser state)."""
        return {
            "class": type(self.model).__name__,
            "config": self.model.config.to_dict(),
            "sources": list(self.names),
            "sample_rate": int(self.sample_rate),
            "noise": asdict(self.ladder),
            "state_dict": self.model.state_dict(),
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], where: str = "checkpoint") -> PriorSet:
        """Build a set from a loaded checkpoint dict; ``where`` names it in error messages."""
        from sepmodels.registry import kind_of_class

        kind = kind_of_class(str(ckpt.get("class")))
        if kind is None or not kind.priors:
            raise CheckpointError(f"{where} holds a {ckpt.get('class')!r}, not a set of flow or score priors")
        model_class, config_class = kind.model_class, kind.config_class
        try:
            config = config_class(**ckpt["config"])
            names = tuple(str(n) for n in ckpt["sources"])
            ladder = NoiseLadder(**ckpt["noise"])
            model = model_class(len(names), config)
            model.load_state_dict(ckpt["state_dict"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            first = first_line(err)
            raise CheckpointError(f"{where} does not match its own description ({first[:120]})") from None
        return cls(model, names, int(ckpt["sample_rate"]), ladder, ckpt.get("meta")).freeze()

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> PriorSet:
        """Load priors from ``path``, or the shipped default toy priors when ``path`` is None."""
        p = default_priors_path() if path is None else path
        return cls.from_checkpoint(load_checkpoint(p), str(p)).to(device)


def load_priors(
    spec: str | os.PathLike[str] | None,
    default: str | os.PathLike[str] | None = None,
    device: str | torch.device = "cpu",
) -> Prior:
    """Priors by name or path.

    A name of :data:`sepmodels.registry.SOURCE_MODELS` selects that source model: ``exact`` (no file),
    ``waves`` or ``harmonic`` (the shipped file); a path is a checkpoint, whose ``class`` entry picks the source
    model that reads it, else a set of flow or score priors; None is ``default`` (a path; None there means the
    shipped flow priors). Source models run on the CPU.
    """
    from sepmodels.registry import SOURCE_MODELS, source_model_of_class

    if spec is not None and str(spec) in SOURCE_MODELS and not os.path.exists(spec):
        model = SOURCE_MODELS[str(spec)]
        return model() if model is ExactToyPriors else model.load(None)
    path = spec if spec is not None else default
    if path is None:
        return PriorSet.load(None, device)
    ckpt = load_checkpoint(path)
    model = source_model_of_class(str(ckpt.get("class")))
    if model is not None and model is not ExactToyPriors:
        return model.from_checkpoint(ckpt, str(path))
    return PriorSet.from_checkpoint(ckpt, str(path)).to(device)


class GaussianPriors:
    """Independent Gaussian priors, one per source: ``s_k[t] ~ N(mean_k, var_k)`` for every sample t.

    At noise level sigma the density is that of ``s + sigma * eps``: ``N(mean_k, var_k + sigma^2)``. The
    posterior of the sources given their mix is Gaussian in closed form, which makes these the reference
    case on which every sampler is tested.

    Arguments:
        means, variances: ``[N]`` each.
        names: source names (default ``s0, s1, ...``).
    """

    def __init__(
        self,
        means: torch.Tensor,
        variances: torch.Tensor,
        names: tuple[str, ...] | None = None,
        sample_rate: int = 14_700,
    ) -> None:
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.variances = torch.as_tensor(variances, dtype=torch.float64)
        if self.means.shape != self.variances.shape or self.means.dim() != 1:
            raise ValueError("means and variances must both be [N]")
        self.names = names or tuple(f"s{k}" for k in range(len(self.means)))
        self.sample_rate = sample_rate

    # The parts of the PriorSet interface that the studies and samplers use.
    has_likelihood = True
    noise_conditional = True
    kind = "gaussian"
    device = torch.device("cpu")
    default_sigma = 0.0

    def __len__(self) -> int:
        return len(self.names)

    def valid_length(self, length: int) -> int:
        return length

    def _moments(self, x: torch.Tensor, sigma: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        var = self.variances + (0.0 if sigma is None else float(sigma) ** 2)
        return self.means.to(x)[:, None], var.to(x)[:, None]

    def log_prob(self, x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        mu, var = self._moments(x, sigma)
        return -0.5 * ((x - mu) ** 2 / var + torch.log(2 * torch.pi * var))

    def score(self, x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        mu, var = self._moments(x, sigma)
        return -(x - mu) / var

    def log_prob_and_score(self, x: torch.Tensor, sigma: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return self.log_prob(x, sigma), self.score(x, sigma)

    def denoise(
        self, x: torch.Tensor, sigma: float | None = None, sources: list[int] | None = None
    ) -> torch.Tensor:
        """The exact posterior mean ``mean + var / (var + sigma^2) * (x - mean)`` (Tweedie's formula)."""
        level = 0.0 if sigma is None else float(sigma)
        return x + level**2 * self.score(x, sigma)

    def sample(
        self, n: int, length: int, sigma: float | None = None, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        mu, var = self._moments(torch.zeros(()), sigma)
        z = torch.randn(n, len(self.means), length, generator=generator, dtype=torch.float64)
        return (mu + var.sqrt() * z).float()

    def cross_log_prob(self, clips: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
        """Every clip under every prior: ``[B, T] -> [B, N, T]``."""
        if clips.dim() != 2:
            raise ValueError(f"cross_log_prob expects clips [B, T], got shape {tuple(clips.shape)}")
        return self.log_prob(clips[:, None, :].expand(-1, len(self), -1), sigma)

    def posterior(
        self, mixture: float, gamma: float | None, sigma: float | None = None, how: str = "mean"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``[N]`` and covariance ``[N, N]`` of the sources at one sample given its mix value.

        ``gamma`` is the standard deviation of the mix likelihood; None means the mix is exact.
        """
        mu, var = self._moments(torch.zeros((), dtype=torch.float64), sigma)
        mu, V = mu[:, 0], torch.diag(var[:, 0])
        N = len(mu)
        a = torch.full((N,), mixing.gain(N, how), dtype=torch.float64)
        noise = 0.0 if gamma is None else gamma**2
        gain = V @ a / (a @ V @ a + noise)  # Kalman gain of one linear observation
        mean = mu + gain * (mixture - a @ mu)
        cov = V - torch.outer(gain, a @ V)
        return mean, cov
