"""An autoregressive WaveNet prior: p(x) = prod_t p(x_t | x_<t), a categorical over quantisation bins.

The thesis's second prior family, done as a likelihood: a causal, dilated, gated WaveNet reads the previous
samples and gives logits over ``levels`` bins of [-1, 1]. The bins are uniform in the mu-law domain
(``quantization="mu_law"``, the WaveNet choice) or in amplitude (``"linear"``: Jayaram & Thickstun found linear
bins are what keeps a mix of samples a valid sample when separating). Spreading each bin's probability
uniformly over the bin makes it a density on [-1, 1], so ``log_prob`` is a true per-sample log-density in
nats, comparable with the flows': ``log P(bin of x_t | x_<t) - log(width of that bin)``.

The density is piecewise constant in x_t, so its gradient reaches x only through the context x_<t; the
Langevin samplers need the flows or the score networks. ``sample`` draws with a cached incremental pass:
each layer keeps the inputs its dilated kernel still needs, so a sample costs one step per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sepmodels.nn.contract import LikelihoodModel, ModelKind, TrainBatch
from sepmodels.nn.wavenet import WaveNet


@dataclass(frozen=True)
class ARConfig:
    """Size and quantisation of an :class:`ARPrior`."""

    levels: int = 256
    quantization: str = "mu_law"  # or "linear"
    layers: int = 10
    width: int = 32
    kernel: int = 2
    cycle: int = 10  # dilations 1 .. 2^(cycle-1), then again
    noise_conditional: bool = False  # a plain prior: sigma is ignored

    def __post_init__(self) -> None:
        if self.quantization not in ("mu_law", "linear"):
            raise ValueError(f"quantization must be 'mu_law' or 'linear', got {self.quantization!r}")
        if self.levels < 2:
            raise ValueError(f"need at least 2 levels, got {self.levels}")

    @staticmethod
    def preset(name: str) -> ARConfig:
        try:
            return AR_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown config {name!r}; choose one of {', '.join(AR_PRESETS)}") from None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


AR_PRESETS: dict[str, ARConfig] = {
    "default": ARConfig(),
    "linear": ARConfig(quantization="linear"),
    "tiny": ARConfig(levels=16, layers=3, width=4, cycle=3),
}


def bin_edges(levels: int, quantization: str) -> torch.Tensor:
    """The ``levels + 1`` edges of the bins on [-1, 1], float64."""
    y = torch.linspace(-1.0, 1.0, levels + 1, dtype=torch.float64)
    if quantization == "linear":
        return y
    mu = levels - 1
    return torch.sign(y) * (torch.pow(1.0 + mu, y.abs()) - 1.0) / mu  # the inverse of the mu-law companding


class ARPrior(LikelihoodModel, nn.Module):
    """G independent autoregressive priors in one grouped causal WaveNet.

    Example:
        >>> prior = ARPrior(4, ARConfig.preset("tiny"))
        >>> prior.log_prob(torch.zeros(2, 4, 32)).shape
        torch.Size([2, 4, 32])
    """

    kind = "ar"

    def __init__(self, groups: int, config: ARConfig) -> None:
        super().__init__()
        self.groups, self.config = groups, config
        self.net = WaveNet(groups, 1, config.levels, config.width, config.layers, config.kernel, config.cycle,
                           causal=True)  # fmt: skip
        edges = bin_edges(config.levels, config.quantization)
        self.register_buffer("edges", edges.float(), persistent=False)
        self.register_buffer("log_width", torch.log(edges[1:] - edges[:-1]).float(), persistent=False)
        self.register_buffer("centres", ((edges[1:] + edges[:-1]) / 2).float(), persistent=False)

    @property
    def noise_conditional(self) -> bool:
        return self.config.noise_conditional  # False: a plain prior, sigma is ignored

    @property
    def hop(self) -> int:
        return 1

    def valid_length(self, length: int) -> int:
        return length

    def receptive_field(self) -> int:
        return self.net.receptive_field()

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        """Bin index of every sample (values outside [-1, 1] go to the end bins)."""
        return torch.bucketize(x.clamp(-1, 1).contiguous(), self.edges[1:-1].to(x.dtype), right=True)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, G, levels, T]`` of x_t given x_<t, for ``x: [B, G, T]``."""
        _, groups, T = x.shape
        if self.groups != groups:
            raise ValueError(f"expected {self.groups} groups (priors) in dim 1, got {groups}")
        context = F.pad(x, (1, 0))[..., :T]  # x_<t: shift right by one, zero before the start
        return self.net(context.unsqueeze(2))

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """Per-sample log-density ``[B, G, T]`` (nats); ``sigma`` is ignored (a plain prior)."""
        logp = F.log_softmax(self.logits(x), dim=2)
        k = self.quantize(x)
        return logp.gather(2, k.unsqueeze(2)).squeeze(2) - self.log_width[k].to(logp.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The per-sample log-density map (what training maximises; DDP calls forward)."""
        return self.log_prob(x)

    @torch.no_grad()
    def sample(self, n: int, length: int, sigma: object = None, generator: torch.Generator | None = None,
               ladder: Sequence[float] = (), temperature: float = 1.0) -> torch.Tensor:  # fmt: skip
        """Draw ``[n, G, length]`` with the cached incremental pass; each value is its bin's centre (``sigma``
        and ``ladder`` are not used: a plain prior). The score (:class:`LikelihoodModel`) flows through the
        context only: a sample's own bin is piecewise constant in it."""
        state = _Incremental(self.net, n)
        x = torch.zeros(n, self.groups, device=self.edges.device)
        out = torch.empty(n, self.groups, length, device=self.edges.device)
        for t in range(length):
            logits = state.step(x)  # [n, G, levels]; x_{-1} = 0 as in the full pass
            k = _draw(logits / temperature, generator)
            x = self.centres[k]
            out[..., t] = x
        return out


def _draw(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A categorical draw per row of ``[..., levels]`` by the Gumbel trick, with noise from ``generator``."""
    u = torch.rand(logits.shape, generator=generator, dtype=torch.float64).to(logits.device)
    gumbel = -torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-12)))
    return (logits.double() + gumbel).argmax(dim=-1)


class _Incremental:
    """One new time step of a causal WaveNet at a time, keeping each dilated layer's needed inputs."""

    def __init__(self, net: WaveNet, batch: int) -> None:
        self.net, self.B = net, batch
        self.queues: list[list[torch.Tensor]] = [[] for _ in net.gates]

    def _conv_last(self, conv, history: list[torch.Tensor], new: torch.Tensor) -> torch.Tensor:
        """The causal dilated convolution's output at the newest step, from the kept inputs."""
        d, k = conv.dilation, conv.weight.shape[-1]
        need = (k - 1) * d
        history.append(new)
        if len(history) > need + 1:
            del history[0]
        zero = torch.zeros_like(new)
        taps = [history[-1 - (k - 1 - j) * d] if (k - 1 - j) * d < len(history) else zero for j in range(k)]
        return F.conv1d(torch.stack(taps, dim=-1), conv.weight, conv.bias, groups=conv.groups)[..., 0]

    def step(self, x: torch.Tensor) -> torch.Tensor:
        """Feed x_{t-1} ``[B, G]``; get the logits of x_t ``[B, G, levels]``."""
        net, B = self.net, self.B
        G, W = net.groups, net.width
        h = F.conv1d(x.reshape(B, G, 1), net.start.weight, net.start.bias, groups=G)[..., 0]  # [B, G*W]
        skip = None
        for i, (gate, mix) in enumerate(zip(net.gates, net.mixes, strict=True)):
            a = self._conv_last(gate, self.queues[i], h)
            filt, gate_ = a.view(B, G, 2, W).unbind(2)
            z = (torch.tanh(filt) * torch.sigmoid(gate_)).reshape(B, G * W, 1)
            m = F.conv1d(z, mix.weight, mix.bias, groups=G)[..., 0]
            if i < net.layers - 1:
                res, sk = m.view(B, G, 2, W).unbind(2)
                h = h + res.reshape(B, G * W)
                sk = sk.reshape(B, G * W)
            else:
                sk = m
            skip = sk if skip is None else skip + sk
        y = F.conv1d(F.relu(skip)[..., None], net.head.weight, net.head.bias, groups=G)
        y = F.conv1d(F.relu(y), net.out.weight, net.out.bias, groups=G)
        return y.view(B, G, net.c_out)


def _ar_loss(model: nn.Module, batch: TrainBatch) -> torch.Tensor:
    # nats per sample of the binned density; the same gradient as the bins' cross-entropy (forward is log_prob)
    return -model(batch.noisy).mean()


KIND = ModelKind(
    name="ar",
    model_class=ARPrior,
    config_class=ARConfig,
    presets=AR_PRESETS,
    objective="maximum likelihood",
    loss=_ar_loss,
    nats=True,
    summary="autoregressive WaveNet priors (exact likelihood)",
)
