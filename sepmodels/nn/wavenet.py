"""A gated, dilated WaveNet for G independent groups in one pass.

Shapes: the network reads ``[B, G, C_in, T]`` and writes ``[B, G, C_out, T]``; the G groups never see
each other (every convolution is grouped), which is how N source priors are evaluated together.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupConv(nn.Module):
    """``G`` independent 1-D convolutions applied to ``[B, G * C_in, T]``."""

    def __init__(
        self,
        groups: int,
        c_in: int,
        c_out: int,
        kernel: int = 1,
        dilation: int = 1,
        causal: bool = False,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        if not causal and kernel % 2 == 0:
            raise ValueError(f"a centred convolution needs an odd kernel, got {kernel}")
        self.groups, self.dilation, self.causal = groups, dilation, causal
        self.pad = (kernel - 1) * dilation
        self.weight = nn.Parameter(torch.empty(groups * c_out, c_in, kernel))
        self.bias = nn.Parameter(torch.zeros(groups * c_out))
        if zero_init:
            nn.init.zeros_(self.weight)
        else:
            nn.init.kaiming_uniform_(self.weight, a=5**0.5)

    def forward(self, x: torch.Tensor, groups: list[int] | None = None) -> torch.Tensor:
        """``x``: ``[B, G * C_in, T]``; with ``groups``, ``x`` holds only those groups' channels,
        ``[B, len(groups) * C_in, T]``, and only their convolutions run (the same numbers, fewer of them)."""
        if self.pad:
            left = self.pad if self.causal else self.pad // 2
            x = F.pad(x, (left, self.pad - left))
        if groups is None:
            return F.conv1d(x, self.weight, self.bias, dilation=self.dilation, groups=self.groups)
        weight, bias = group_slices(self.weight, self.bias, self.groups, groups)
        return F.conv1d(x, weight, bias, dilation=self.dilation, groups=len(groups))


def group_slices(
    weight: torch.Tensor, bias: torch.Tensor, count: int, groups: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight ``[count * C_out, C_in, K]`` and bias ``[count * C_out]`` of a grouped convolution of ``count``
    groups, cut down to ``groups`` (in that order): a convolution of ``len(groups)`` groups that computes
    exactly those groups' outputs."""
    return weight.view(count, -1, *weight.shape[1:])[groups].flatten(0, 1), bias.view(count, -1)[groups].flatten()


class WaveNet(nn.Module):
    """Gated dilated convolutions with residual and skip paths (van den Oord et al., 2016).

    Layer i has dilation ``2 ** (i % cycle)``. The skip sum goes through ReLU -> 1x1 -> ReLU -> 1x1; the last
    1x1 can start at zero so that a coupling layer built on it starts as the identity.

    Arguments:
        groups: independent groups G (one per source prior).
        c_in, c_out: input and output channels per group.
        width: residual/gate/skip channels per group.
        layers: number of gated layers.
        kernel: kernel size of the dilated convolutions.
        cycle: dilations restart at 1 after this many layers.
        causal: left padding only (an autoregressive model); centred otherwise.
        cond_dim: size of a global condition vector per example (e.g. features of the noise level);
            0 means unconditioned. It enters every gate as a bias.
        zero_init_out: zero-initialise the output layer.
        global_context: every gate also gets a bias computed from the time-average of the residual stream
            (per example and group), so that evidence gathered over the whole clip (a pitch, a waveform
            shape) can steer every time step; the receptive field is then the whole input. The path starts
            at zero, so the network starts as its local counterpart.

    Example:
        >>> net = WaveNet(groups=4, c_in=1, c_out=2, width=8, layers=3)
        >>> net(torch.randn(2, 4, 1, 64)).shape
        torch.Size([2, 4, 2, 64])
    """

    def __init__(
        self,
        groups: int,
        c_in: int,
        c_out: int,
        width: int,
        layers: int,
        kernel: int = 3,
        cycle: int = 100,
        causal: bool = False,
        cond_dim: int = 0,
        zero_init_out: bool = False,
        global_context: bool = False,
    ) -> None:
        super().__init__()
        self.groups, self.width, self.layers, self.c_out = groups, width, layers, c_out
        self.kernel, self.causal = kernel, causal
        self.dilations = [2 ** (i % cycle) for i in range(layers)]
        G, W = groups, width
        self.start = GroupConv(G, c_in, W)
        self.gates = nn.ModuleList(GroupConv(G, W, 2 * W, kernel, d, causal=causal) for d in self.dilations)
        # Each layer's 1x1 writes residual and skip at once; the last layer has no residual.
        self.mixes = nn.ModuleList(GroupConv(G, W, 2 * W if i < layers - 1 else W) for i in range(layers))
        self.cond = GroupConv(G, cond_dim, layers * 2 * W) if cond_dim else None
        self.context = None
        if global_context:
            self.context = nn.ModuleList(GroupConv(G, W, 2 * W, zero_init=True) for _ in range(layers))
        self.head = GroupConv(G, W, W)
        self.out = GroupConv(G, W, c_out, zero_init=zero_init_out)

    def receptive_field(self) -> float:
        """Number of input steps that one output step can depend on (``inf`` with global context)."""
        if self.context is not None:
            return math.inf
        return 1 + (self.kernel - 1) * sum(self.dilations)

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None, groups: list[int] | None = None
                ) -> torch.Tensor:  # fmt: skip
        """``x``: ``[B, G, C_in, T]``; ``cond``: ``[B, cond_dim]`` or None. Returns ``[B, G, C_out, T]``. With
        ``groups`` (indices of the network's groups), ``x`` holds only those groups, ``[B, len(groups), C_in,
        T]``, and only they are computed: the same outputs as theirs in a pass over every group."""
        B, G, C, T = x.shape
        expected = self.groups if groups is None else len(groups)
        if expected != G:
            raise ValueError(f"expected {expected} groups in dim 1, got {G}")
        W = self.width
        h = self.start(x.reshape(B, G * C, T), groups)  # [B, G*W, T]
        biases = None
        if self.cond is not None:
            if cond is None:
                raise ValueError("this WaveNet is conditioned: pass cond of shape [B, cond_dim]")
            c = cond[:, None, :].expand(B, G, cond.shape[-1]).reshape(B, -1, 1)
            biases = self.cond(c, groups).view(B, G, self.layers, 2 * W)
        skip = None
        for i, (gate, mix) in enumerate(zip(self.gates, self.mixes, strict=True)):
            a = gate(h, groups)
            if biases is not None:
                a = a + biases[:, :, i].reshape(B, G * 2 * W, 1)
            if self.context is not None:
                a = a + self.context[i](h.mean(dim=-1, keepdim=True), groups)
            filt, gate_ = a.view(B, G, 2, W, T).unbind(2)
            z = (torch.tanh(filt) * torch.sigmoid(gate_)).reshape(B, G * W, T)
            m = mix(z, groups)
            if i < self.layers - 1:
                res, sk = m.view(B, G, 2, W, T).unbind(2)
                h = h + res.reshape(B, G * W, T)
                sk = sk.reshape(B, G * W, T)
            else:
                sk = m
            skip = sk if skip is None else skip + sk
        y = self.out(F.relu(self.head(F.relu(skip), groups)), groups)
        return y.view(B, G, self.c_out, T)


def sigma_features(sigma: torch.Tensor, n: int) -> torch.Tensor:
    """Features of the noise level for conditioning: ``[B] -> [B, n]``.

    ``log(sigma)`` scaled to about [-1, 1] on the range 1e-3..1e1 and sines and cosines of it at
    octave-spaced frequencies, so that nearby levels get nearby but distinguishable codes.
    """
    u = torch.log10(sigma.clamp_min(1e-6))[:, None] / 2.0 + 0.5  # 0.01 -> -0.5, 1 -> 0.5
    if n == 1:
        return u
    k = torch.arange(1, (n - 1) // 2 + 1, device=sigma.device, dtype=sigma.dtype)
    parts = [u, torch.sin(math.pi * k * u), torch.cos(math.pi * k * u)]
    feats = torch.cat(parts, dim=1)
    if feats.shape[1] < n:
        feats = torch.cat([feats, u.new_zeros(u.shape[0], n - feats.shape[1])], dim=1)
    return feats
