"""Flow layers and the FloWaveNet-style flow prior, for G source priors evaluated in one pass.

Direction: data -> latent. Every layer maps ``x: [B, G, C, T]`` to ``y`` of its output shape and returns
``(y, logdet)``, where ``logdet`` has the shape of ``y``: the log-scale each output element received.
Summing it over ``(C, T)`` gives each example's (and group's) log |det J|; keeping it per element is what
lets :meth:`FlowPrior.log_prob` attribute the log-density to the time step each element came from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from sepmodels.nn.contract import LikelihoodModel, ModelKind, TrainBatch
from sepmodels.nn.wavenet import WaveNet, sigma_features

_LOG_2PI = math.log(2 * math.pi)


def _no_logdet(y: torch.Tensor) -> torch.Tensor:
    """Zero log-scales shaped like ``y`` without allocating them (a broadcast view of one zero)."""
    return y.new_zeros(()).expand_as(y)


class FlowLayer(nn.Module):
    """The one protocol every flow layer follows (see the module docstring)."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class Squeeze(FlowLayer):
    """Fold time into channels: ``[B, G, C, T] -> [B, G, 2C, T/2]``.

    Output channel ``2c + j`` at step ``t`` holds input channel ``c`` at step ``2t + j``. Volume preserving.
    """

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, G, C, T = x.shape
        if T % 2:
            raise ValueError(f"Squeeze needs an even length, got T={T}")
        y = x.view(B, G, C, T // 2, 2).transpose(3, 4).reshape(B, G, 2 * C, T // 2)
        return y, _no_logdet(y)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        B, G, C2, T2 = y.shape
        x = y.view(B, G, C2 // 2, 2, T2).transpose(3, 4).reshape(B, G, C2 // 2, 2 * T2)
        return x, _no_logdet(x)


class Flip(FlowLayer):
    """Reverse the channel order, so the next coupling transforms the half this one conditioned on."""

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return x.flip(2), _no_logdet(x)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        return y.flip(2), _no_logdet(y)


class ActNorm(FlowLayer):
    """Per-channel affine map ``y = (x + bias) * exp(logs)`` (Kingma & Dhariwal, 2018).

    On its first forward pass in training mode it sets ``bias`` and ``logs`` so that the batch has zero
    mean and unit variance per channel; the ``initialized`` buffer records this and travels in the
    state dict.
    """

    def __init__(self, groups: int, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(groups, channels, 1))
        self.logs = nn.Parameter(torch.zeros(groups, channels, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 3))  # [G, C]
        std = x.std(dim=(0, 3), unbiased=False)
        self.bias.copy_(-mean[..., None])
        self.logs.copy_(-torch.log(std.clamp_min(1e-6))[..., None])
        self.initialized.fill_(True)

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, groups: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self._initialize(x)
        bias, logs = (self.bias, self.logs) if groups is None else (self.bias[groups], self.logs[groups])
        y = (x + bias) * torch.exp(logs)
        return y, logs.expand_as(y)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = y * torch.exp(-self.logs) - self.bias
        return x, (-self.logs).expand_as(x)


class AffineCoupling(FlowLayer):
    """Affine coupling (Dinh et al., 2017) with a WaveNet conditioner.

    The first half of the channels ``x_a`` passes unchanged and feeds a centred WaveNet that gives a
    log-scale and a shift for the second half: ``y_b = x_b * exp(s) + t``. The log-scale is soft-clamped to
    ``(-clamp, clamp)`` so that no single layer can make the density arbitrarily peaked. The WaveNet's
    output layer starts at zero, so the layer starts as the identity.
    """

    def __init__(
        self,
        groups: int,
        channels: int,
        width: int,
        layers: int,
        kernel: int = 3,
        cycle: int = 100,
        cond_dim: int = 0,
        clamp: float = 2.0,
    ) -> None:
        super().__init__()
        if channels % 2:
            raise ValueError(f"AffineCoupling needs an even number of channels, got {channels}")
        self.half, self.clamp = channels // 2, clamp
        self.net = WaveNet(
            groups,
            self.half,
            2 * self.half,
            width,
            layers,
            kernel,
            cycle,
            causal=False,
            cond_dim=cond_dim,
            zero_init_out=True,
        )

    def _scale_shift(
        self, xa: torch.Tensor, cond: torch.Tensor | None, groups: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(xa, cond, groups).chunk(2, dim=2)
        return self.clamp * torch.tanh(raw_s / self.clamp), t

    def forward(
        self, x: torch.Tensor, cond: torch.Tensor | None = None, groups: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x.split(self.half, dim=2)
        s, t = self._scale_shift(xa, cond, groups)
        y = torch.cat([xa, xb * torch.exp(s) + t], dim=2)
        return y, torch.cat([torch.zeros_like(s), s], dim=2)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        ya, yb = y.split(self.half, dim=2)
        s, t = self._scale_shift(ya, cond)
        x = torch.cat([ya, (yb - t) * torch.exp(-s)], dim=2)
        return x, torch.cat([torch.zeros_like(s), -s], dim=2)


@dataclass(frozen=True)
class FlowConfig:
    """Size and conditioning of a :class:`FlowPrior`."""

    n_blocks: int = 5  # squeezes; the latent has 2**n_blocks channels
    n_flows: int = 2  # ActNorm -> coupling -> flip per block
    layers: int = 5  # gated layers per coupling WaveNet
    width: int = 16  # channels per layer of each WaveNet
    kernel: int = 3
    cycle: int = 100  # dilations 1, 2, 4, ... restart after this many layers
    clamp: float = 2.0  # bound of each coupling's log-scale
    noise_conditional: bool = True  # couplings see features of log(sigma)
    cond_features: int = 8  # size of the sigma feature vector

    @staticmethod
    def preset(name: str) -> FlowConfig:
        """A named configuration: see :data:`PRESETS`."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown config {name!r}; choose one of {', '.join(PRESETS)}") from None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


PRESETS: dict[str, FlowConfig] = {
    # The thesis's toy prior (Table 1): 4 blocks x 6 flows x 10 layers x width 32.
    "thesis_toy": FlowConfig(n_blocks=4, n_flows=6, layers=10, width=32),
    # The thesis's musdb18 prior: 8 blocks x 6 flows x 10 layers x width 48.
    "thesis_musdb": FlowConfig(n_blocks=8, n_flows=6, layers=10, width=48),
    # Small enough to train and sample on a 2-core CPU; receptive field 7720 samples (0.5 s), about 14
    # periods of the lowest piano note. Speed here is set by the number of layers, not their width.
    "default": FlowConfig(n_blocks=5, n_flows=2, layers=5, width=16),
    # For tests only.
    "tiny": FlowConfig(n_blocks=2, n_flows=2, layers=2, width=4, cond_features=4),
}


class FlowPrior(LikelihoodModel, nn.Module):
    """G independent FloWaveNet-style flow priors evaluated in one pass (Kim et al., 2019).

    ``n_blocks`` blocks of ``Squeeze -> n_flows x (ActNorm -> AffineCoupling -> Flip)`` map a clip
    ``[B, G, T]`` to a latent ``[B, G, 2**n_blocks, T / 2**n_blocks]`` under a standard normal. Group g is
    prior g; groups never exchange information.

    Arguments:
        groups: number of priors G.
        config: sizes; see :class:`FlowConfig`.

    Example:
        >>> prior = FlowPrior(4, FlowConfig.preset("tiny")).eval()
        >>> x = torch.rand(2, 4, 64) * 2 - 1
        >>> prior.log_prob(x, sigma=torch.full((2,), 0.1)).shape
        torch.Size([2, 4, 64])

    References:
        Kim et al., "FloWaveNet: A Generative Flow for Raw Audio", ICML 2019.
    """

    kind = "flow"
    selects_groups = True  # log_prob(x, sigma, groups): the sweep's denoiser computes one prior at a time

    def __init__(self, groups: int, config: FlowConfig) -> None:
        super().__init__()
        self.groups, self.config = groups, config
        cond_dim = config.cond_features if config.noise_conditional else 0
        layers: list[FlowLayer] = []
        channels = 1
        for _ in range(config.n_blocks):
            layers.append(Squeeze())
            channels *= 2
            for _ in range(config.n_flows):
                layers.append(ActNorm(groups, channels))
                layers.append(
                    AffineCoupling(
                        groups,
                        channels,
                        config.width,
                        config.layers,
                        config.kernel,
                        config.cycle,
                        cond_dim,
                        config.clamp,
                    )
                )
                layers.append(Flip())
        self.layers = nn.ModuleList(layers)

    @property
    def noise_conditional(self) -> bool:
        """Whether the couplings see the noise level (a plain flow knows its training noise only)."""
        return self.config.noise_conditional

    # -- shapes ------------------------------------------------------------------------------------------
    @property
    def hop(self) -> int:
        """Lengths must be multiples of this: ``2 ** n_blocks``."""
        return 2**self.config.n_blocks

    def valid_length(self, length: int) -> int:
        """The smallest length >= ``length`` that the flow accepts."""
        return -(-length // self.hop) * self.hop

    def check_length(self, length: int) -> None:
        if length < self.hop or length % self.hop:
            raise ValueError(
                f"clip length must be a positive multiple of {self.hop} samples, got {length} "
                f"(valid_length gives {self.valid_length(max(length, 1))})"
            )

    def receptive_field(self) -> int:
        """How many input samples one latent element can depend on (the thesis's appendix, made exact).

        A coupling in block b (time step 2**(b+1) samples) whose WaveNet sees ``r`` steps widens the
        dependency by ``(r - 1) * 2**(b+1)`` samples; squeezes add the width of the last fold.
        """
        total = self.hop
        for b in range(self.config.n_blocks):
            r = 1 + (self.config.kernel - 1) * sum(2 ** (i % self.config.cycle) for i in range(self.config.layers))
            total += self.config.n_flows * (r - 1) * 2 ** (b + 1)
        return total

    # -- conditioning ------------------------------------------------------------------------------------
    def condition(self, sigma: torch.Tensor | float | None, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        """Features of ``sigma`` (scalar or ``[B]``) for the couplings; None for a plain prior."""
        if not self.config.noise_conditional:
            return None
        if sigma is None:
            raise ValueError("this prior is noise-conditional: pass sigma (the noise level of x)")
        s = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
        if s.dim() == 0:
            s = s.expand(batch)
        if s.shape != (batch,):
            raise ValueError(f"sigma must be a scalar or have shape [{batch}], got {tuple(s.shape)}")
        return sigma_features(s, self.config.cond_features)

    # -- the flow ------------------------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None, groups: list[int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Map ``x: [B, G, T]`` to the latent and the per-element log-scales, both ``[B, G, 2**nb, T/2**nb]``.
        With ``groups`` (indices of priors), ``x`` holds only those priors' clips, ``[B, len(groups), T]``, and
        only they are computed."""
        B, G, T = x.shape
        expected = self.groups if groups is None else len(groups)
        if expected != G:
            raise ValueError(f"expected {expected} groups (priors) in dim 1, got {G}")
        self.check_length(T)
        cond = self.condition(sigma, B, x)
        h = x.view(B, G, 1, T)
        acc = torch.zeros_like(h)  # log-scales received by each element, moved along with it
        for layer in self.layers:
            if isinstance(layer, (Squeeze, Flip)):
                h, _ = layer(h, cond)
                acc, _ = layer(acc)
            else:
                h, ld = layer(h, cond, groups)
                acc = acc + ld
        return h, acc

    def inverse(self, z: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Map a latent ``[B, G, 2**nb, T/2**nb]`` back to clips ``[B, G, T]``."""
        B, G, C, T = z.shape
        cond = self.condition(sigma, B, z)
        h = z
        for layer in reversed(self.layers):
            h, _ = layer.inverse(h, cond)
        return h.view(B, G, C * T)

    def to_time(self, m: torch.Tensor) -> torch.Tensor:
        """Move a per-element map in latent layout back to the sample each element came from: ``[B, G, T]``."""
        for layer in reversed(self.layers):
            if isinstance(layer, (Squeeze, Flip)):
                m, _ = layer.inverse(m)
        B, G, _, T = m.shape
        return m.view(B, G, T)

    def log_prob(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None, groups: list[int] | None = None
    ) -> torch.Tensor:
        """Per-sample log-density of ``x: [B, G, T]`` under each group's prior, in nats: ``[B, G, T]`` (with
        ``groups``, ``x`` holds only those priors' clips and only they are computed).

        Each latent element's standard-normal log-density plus the log-scales it received on its way,
        placed at the time index it came from; the sum over T is exactly ``log p(x)`` of the clip.
        """
        z, logdet = self.forward(x, sigma, groups)
        return self.to_time(-0.5 * (z * z + _LOG_2PI) + logdet)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        length: int,
        sigma: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
        ladder: Sequence[float] = (),
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """Draw ``n`` clips ``[n, G, length]`` from every prior (at noise level ``sigma``) by inverting the
        latent; ``ladder`` is not used (a flow draws at any level in one pass)."""
        self.check_length(length)
        p = next(self.parameters())
        # Drawn on the CPU, where a seeded generator lives, then moved: the same seed gives the same draw anywhere.
        z = torch.randn(n, self.groups, self.hop, length // self.hop, generator=generator, dtype=p.dtype)
        z = z.to(p.device) * temperature
        return self.inverse(z, sigma)


def nll(z: torch.Tensor, logdet: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood in nats per sample, from a flow's latent and per-element log-scales."""
    return (0.5 * (z * z + math.log(2 * math.pi)) - logdet).mean()


def _flow_loss(model: nn.Module, batch: TrainBatch) -> torch.Tensor:
    z, logdet = model(batch.noisy, batch.sigma)
    return nll(z.float(), logdet.float())


KIND = ModelKind(
    name="flow",
    model_class=FlowPrior,
    config_class=FlowConfig,
    presets=PRESETS,
    objective="maximum likelihood",
    loss=_flow_loss,
    nats=True,
    init_pass=True,  # ActNorm's data-dependent initialisation
    summary="flow priors (exact likelihood)",
)
