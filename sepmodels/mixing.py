"""The mix convention, written once.

The thesis mixes N sources by their mean (``mean``: the mix is ``sum / N``, so it stays within the sources'
range); ``sum`` is the other common convention. Everything that mixes, unmixes or differentiates a mix
(the samplers, the VAE's ELBO, the Gaussian reference posterior, evaluation) asks this module.

Example:
    >>> s = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    >>> mix(s), mix(s, "sum"), gain(2), gain(2, "sum")
    (tensor([2., 3.]), tensor([4., 6.]), 0.5, 1.0)
    >>> mix(s + spread(torch.tensor([1.0, 1.0]), 2, "sum"), "sum")
    tensor([5., 7.])
"""

from __future__ import annotations

import torch

MIXES = ("mean", "sum")


def check(how: str) -> str:
    """``how`` if it names a convention, else a one-line ``ValueError``."""
    if how not in MIXES:
        raise ValueError(f"mix must be 'mean' or 'sum', got {how!r}")
    return how


def mix(sources: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Mix ``[..., N, T]`` sources into ``[..., T]``."""
    return sources.mean(dim=-2) if check(how) == "mean" else sources.sum(dim=-2)


def gain(n: int, how: str = "mean") -> float:
    """How much the mix moves per unit move of one source: ``d mix / d s_k`` (``1/N`` or 1)."""
    return 1.0 / n if check(how) == "mean" else 1.0


def total(mixture: torch.Tensor, n: int, how: str = "mean") -> torch.Tensor:
    """What the N sources add up to, given their mix (``N * mix`` for a mean mix)."""
    return mixture * n if check(how) == "mean" else mixture


def spread(delta: torch.Tensor, n: int, how: str = "mean") -> torch.Tensor:
    """The change to give every one of N sources alike so that their mix moves by ``delta``."""
    return delta if check(how) == "mean" else delta / n


__all__ = ["MIXES", "check", "gain", "mix", "spread", "total"]
