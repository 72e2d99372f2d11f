"""A noise-conditional score network: the gradient of log p_sigma from one forward pass (the NCSN route).

Trained by denoising score matching: for ``x_noisy = x + sigma * eps`` the network predicts ``eps``, and the
score of the noisy density is ``-eps_hat / sigma`` (Vincent, 2011; Song & Ermon, 2019). Unlike a flow it gives
no likelihood, only its gradient, which is all a Langevin sampler needs, at the price of one forward pass
instead of a forward and a backward pass through a flow.

Shapes: clips ``[B, G, T]``; the network folds ``fold`` consecutive samples into channels first
(``[B, G, fold, T / fold]``), which makes it ``fold`` times cheaper and its receptive field ``fold`` times
longer, as the flows' squeezes do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from sepmodels.nn.flows import sigma_features
from sepmodels.nn.wavenet import WaveNet


@dataclass(frozen=True)
class ScoreConfig:
    """Size of a :class:`ScoreNet`."""

    fold: int = 4  # samples folded into channels
    layers: int = 10  # gated layers; dilations 1, 2, 4, ...
    width: int = 32
    kernel: int = 3
    cycle: int = 100
    cond_features: int = 8
    global_context: bool = False  # see WaveNet: time-averaged features bias every gate

    @staticmethod
    def preset(name: str) -> ScoreConfig:
        try:
            return SCORE_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown config {name!r}; choose one of {', '.join(SCORE_PRESETS)}") from None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


SCORE_PRESETS: dict[str, ScoreConfig] = {
    # receptive field 4 * (1 + 2 * 1023) = 8188 samples
    "default": ScoreConfig(),
    # the same with a whole-clip context path in every layer
    "global": ScoreConfig(global_context=True),
    "tiny": ScoreConfig(fold=2, layers=2, width=4, cond_features=4),
}


class ScoreNet(nn.Module):
    """G independent noise-conditional score networks in one grouped WaveNet.

    Example:
        >>> net = ScoreNet(4, ScoreConfig.preset("tiny"))
        >>> net.score(torch.randn(2, 4, 64), 0.1).shape
        torch.Size([2, 4, 64])
    """

    def __init__(self, groups: int, config: ScoreConfig) -> None:
        super().__init__()
        self.groups, self.config = groups, config
        self.net = WaveNet(groups, config.fold, config.fold, config.width, config.layers, config.kernel,
                           config.cycle, causal=False, cond_dim=config.cond_features,
                           global_context=config.global_context)  # fmt: skip

    @property
    def hop(self) -> int:
        return self.config.fold

    def valid_length(self, length: int) -> int:
        return -(-length // self.hop) * self.hop

    def receptive_field(self) -> float:
        """Input samples one output sample can depend on (``inf`` with global context)."""
        return self.config.fold * self.net.receptive_field()

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Predicted noise ``eps_hat`` of ``x: [B, G, T]`` at noise level ``sigma`` (scalar or ``[B]``)."""
        B, G, T = x.shape
        if self.groups != G:
            raise ValueError(f"expected {self.groups} groups (priors) in dim 1, got {G}")
        f = self.config.fold
        if T % f:
            raise ValueError(f"clip length must be a multiple of {f} samples, got {T}")
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.expand(B) if s.dim() == 0 else s
        cond = sigma_features(s, self.config.cond_features)
        folded = x.view(B, G, T // f, f).transpose(2, 3)  # [B, G, fold, T/fold]: channel j = sample f*t + j
        out = self.net(folded, cond)
        return out.transpose(2, 3).reshape(B, G, T)

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Estimated gradient of ``log p_sigma(x)``: ``-eps_hat / sigma``, ``[B, G, T]``."""
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.view(-1, 1, 1) if s.dim() else s
        return -self(x, sigma) / s
