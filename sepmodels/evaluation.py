"""Measuring separation: SI-SDR (and BSS-Eval SDR) of a separator's estimates against the truth, beside the
floor every separator must beat, the mix itself taken as the estimate of every source.

Used by ``sepmodels evaluate`` and ``bench/separation.py``; the studies of the priors live in
:mod:`sepmodels.studies`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sepmodels import mixing
from sepmodels.inference.separator import Separator
from sepmodels.metrics import bss_sdr, si_sdr


@dataclass(frozen=True)
class SeparationScores:
    """SI-SDR (dB) of separating mixes: ``separated`` and, as the floor, ``mix`` (the mix itself taken as the
    estimate of every source), both ``[n_mixes, n_sources]``; with ``bss`` the museval SDR of both too."""

    separated: torch.Tensor
    mix: torch.Tensor
    bss_separated: torch.Tensor | None = None
    bss_mix: torch.Tensor | None = None


def evaluate_separator(
    separator: Separator, truths: torch.Tensor, bss: bool = False, mix: str = "mean", progress: bool = False
) -> SeparationScores:
    """Separate the mix of each ``truths[i]: [N, T]`` (their ``mix``: mean or sum) and score the estimates."""
    separated, floor, bss_sep, bss_mix = [], [], [], []
    for truth in tqdm(truths, desc="mixes", unit="mix", disable=not progress, leave=False):
        mixture = mixing.mix(truth, mix)
        estimates = separator.separate(mixture, truth)
        separated.append(si_sdr(estimates, truth))
        floor.append(si_sdr(mixture.expand_as(truth), truth))
        if bss:
            bss_sep.append(bss_sdr(estimates, truth, separator.sample_rate))
            bss_mix.append(bss_sdr(mixture.expand_as(truth).contiguous(), truth, separator.sample_rate))
    stack = lambda xs: torch.stack(xs) if xs else None  # noqa: E731
    return SeparationScores(torch.stack(separated), torch.stack(floor), stack(bss_sep), stack(bss_mix))


__all__ = ["SeparationScores", "evaluate_separator"]
