"""The VAE posterior of the thesis (eq. 50-55): one WaveNet encoder per source reads the mix and gives a
truncated normal on [-1, 1] for every sample of its source.

Shapes: mixes ``[B, T]``; the posterior's parameters and draws ``[B, N, T]`` (N sources). The N encoders are
one grouped WaveNet (groups never see each other), each fed the same mix, folded ``fold`` samples into
channels like the score network.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sepmodels.nn.wavenet import WaveNet

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class TruncatedNormal:
    """The normal ``N(loc, scale^2)`` restricted to ``[low, high]`` and renormalised.

    Sampling is reparameterised by the inverse CDF (``x = loc + scale * Phi^-1(Phi(a) + u (Phi(b) - Phi(a)))``
    with ``u ~ U(0, 1)``), so gradients reach ``loc`` and ``scale``. Tails are handled by reflecting to the side
    where the CDF is accurate.

    Example:
        >>> q = TruncatedNormal(torch.tensor([0.9]), torch.tensor([0.5]))
        >>> bool(((q.rsample() >= -1) & (q.rsample() <= 1)).all())
        True
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, low: float = -1.0, high: float = 1.0) -> None:
        if not low < high:
            raise ValueError(f"need low < high, got {low}, {high}")
        self.loc, self.scale, self.low, self.high = loc, scale, low, high
        self.alpha = (low - loc) / scale
        self.beta = (high - loc) / scale
        # Reflect where both bounds lie above the mean: Phi is accurate near 0, 1 - Phi is not.
        self._flip = self.alpha > 0
        a = torch.where(self._flip, -self.beta, self.alpha)
        b = torch.where(self._flip, -self.alpha, self.beta)
        self._cdf_a, self._cdf_b = torch.special.ndtr(a), torch.special.ndtr(b)
        self._mass = (self._cdf_b - self._cdf_a).clamp_min(1e-30)
        self._log_mass = torch.log(self._mass)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """Log-density at ``x`` (``-inf`` outside the bounds)."""
        z = (x - self.loc) / self.scale
        lp = -0.5 * z * z - _LOG_SQRT_2PI - torch.log(self.scale) - self._log_mass
        inside = (x >= self.low) & (x <= self.high)
        return torch.where(inside, lp, torch.full_like(lp, -math.inf))

    def rsample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """One reparameterised draw, shaped like ``loc``."""
        u = torch.rand(self.loc.shape, generator=generator, dtype=self.loc.dtype).to(self.loc.device)
        p = (self._cdf_a + u * self._mass).clamp(1e-12, 1 - 1e-12)
        z = torch.special.ndtri(p)
        z = torch.where(self._flip, -z, z)
        return (self.loc + self.scale * z).clamp(self.low, self.high)

    @property
    def mean(self) -> torch.Tensor:
        pdf = lambda t: torch.exp(-0.5 * t * t - _LOG_SQRT_2PI)  # noqa: E731
        return self.loc + self.scale * (pdf(self.alpha) - pdf(self.beta)) / self._mass

    def entropy(self) -> torch.Tensor:
        pdf = lambda t: torch.exp(-0.5 * t * t - _LOG_SQRT_2PI)  # noqa: E731
        a, b = self.alpha, self.beta
        # alpha * pdf(alpha) is 0 at alpha = -inf; torch gives nan for inf * 0, so clamp the bounds first.
        a, b = a.clamp(-1e4, 1e4), b.clamp(-1e4, 1e4)
        return (
            _LOG_SQRT_2PI + 0.5 + torch.log(self.scale) + self._log_mass
            + (a * pdf(a) - b * pdf(b)) / (2 * self._mass)
        )  # fmt: skip


@dataclass(frozen=True)
class VAEConfig:
    """Size of the encoders and the terms of their ELBO.

    ``gamma`` is the standard deviation of the mixing likelihood ``N(m; mix(s), gamma^2)``; ``beta`` weighs
    the prior-minus-posterior (KL) part; ``prior_sigma`` is the noise level the frozen priors score at
    (None: the priors' own smallest).
    """

    fold: int = 4
    layers: int = 10
    width: int = 32
    kernel: int = 3
    cycle: int = 100
    min_scale: float = 1e-3
    beta: float = 1.0
    gamma: float = 0.05
    prior_sigma: float | None = None

    @staticmethod
    def preset(name: str) -> VAEConfig:
        try:
            return VAE_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown config {name!r}; choose one of {', '.join(VAE_PRESETS)}") from None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


VAE_PRESETS: dict[str, VAEConfig] = {
    "default": VAEConfig(),
    "tiny": VAEConfig(fold=2, layers=2, width=4),
}


class VAEEncoder(nn.Module):
    """N encoders ``q(s_k | m)``, each a truncated normal on [-1, 1] per sample.

    Example:
        >>> enc = VAEEncoder(4, VAEConfig.preset("tiny"))
        >>> enc(torch.zeros(2, 64)).loc.shape
        torch.Size([2, 4, 64])
    """

    def __init__(self, groups: int, config: VAEConfig) -> None:
        super().__init__()
        self.groups, self.config = groups, config
        f = config.fold
        self.net = WaveNet(groups, f, 2 * f, config.width, config.layers, config.kernel, config.cycle)

    @property
    def hop(self) -> int:
        return self.config.fold

    def valid_length(self, length: int) -> int:
        return -(-length // self.hop) * self.hop

    def forward(self, mixture: torch.Tensor) -> TruncatedNormal:
        """The posterior of every source given ``mixture: [B, T]``."""
        B, T = mixture.shape
        f, G = self.config.fold, self.groups
        if T % f:
            raise ValueError(f"mix length must be a multiple of {f} samples, got {T}")
        folded = mixture.view(B, 1, T // f, f).transpose(2, 3).expand(B, G, f, T // f)
        out = self.net(folded)  # [B, G, 2f, T/f]
        raw_loc, raw_scale = out.view(B, G, 2, f, T // f).transpose(3, 4).reshape(B, G, 2, T).unbind(2)
        # The mean share of the mix is a sensible start for every source: loc starts near the mix itself.
        loc = torch.tanh(raw_loc + torch.atanh(mixture.clamp(-0.999, 0.999))[:, None])
        scale = self.config.min_scale + F.softplus(raw_scale - 2.0)
        return TruncatedNormal(loc, scale)
