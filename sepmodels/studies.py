"""Experiments on trained priors: how well does each prior tell its own source from the others, and how
well do they separate toy mixes?

Clips are scored at a noise level sigma as the priors define it: a clean clip plus ``sigma * eps``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sepmodels.data import toy
from sepmodels.inference.langevin import LangevinConfig, run
from sepmodels.metrics import si_sdr
from sepmodels.priors import PriorSet


@dataclass(frozen=True)
class CrossLikelihood:
    """Mean log-likelihood (nats per sample) of every source's clips under every prior.

    Attributes:
        sources: the data's source names (rows); ``priors`` the priors' names (columns).
        values: ``[n_sources, n_priors, n_clips]`` per-clip means.
        sigma: noise level the clips were scored at.
    """

    sources: tuple[str, ...]
    priors: tuple[str, ...]
    values: torch.Tensor
    sigma: float

    @property
    def mean(self) -> torch.Tensor:
        return self.values.mean(dim=2)

    @property
    def median(self) -> torch.Tensor:
        return self.values.median(dim=2).values

    def own_first(self) -> torch.Tensor:
        """Per source, the fraction of clips whose own prior gives the highest likelihood: ``[n_sources]``."""
        own = torch.tensor([self.priors.index(s) for s in self.sources])
        best = self.values.argmax(dim=1)  # [n_sources, n_clips]
        return (best == own[:, None]).double().mean(dim=1)

    def table(self) -> str:
        """A plain-text table of the means with the own-prior-first rate."""
        corner = "data / prior"
        head = f"{corner:<14}" + "".join(f"{p:>11}" for p in self.priors) + f"{'own first':>11}"
        rows = [head]
        for i, s in enumerate(self.sources):
            cells = "".join(f"{float(v):>11.3f}" for v in self.mean[i])
            rows.append(f"{s:<14}{cells}{100 * float(self.own_first()[i]):>10.0f}%")
        return "\n".join(rows)


def toy_cross_likelihood(
    priors: PriorSet, n: int = 32, length: int = 4096, sigma: float | None = None, seed: int = 0, batch: int = 8
) -> CrossLikelihood:
    """Score ``n`` fresh toy test clips of every source under every prior at ``sigma``."""
    sigma = priors.default_sigma if sigma is None else sigma
    clean = toy.toy_test_set(n, length, seed=seed)  # [n, 4, T]
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed + 1))
    noisy = clean + sigma * noise
    values = torch.empty(len(toy.SOURCES), len(priors), n)
    for k in range(len(toy.SOURCES)):
        for start in range(0, n, batch):
            clips = noisy[start : start + batch, k]
            values[k, :, start : start + batch] = priors.cross_log_prob(clips, sigma).mean(dim=2).T
    return CrossLikelihood(toy.SOURCES, priors.names, values, float(sigma))


@dataclass(frozen=True)
class ToySeparation:
    """SI-SDR (dB) of separating fresh toy mixes: ``separated`` and, as the floor, ``mix`` (the mix itself taken
    as the estimate of every source), both ``[n_mixes, n_sources]``."""

    separated: torch.Tensor
    mix: torch.Tensor


def toy_separation(priors: PriorSet, config: LangevinConfig, n: int, length: int, seed: int = 0,
                   progress: bool = False) -> ToySeparation:  # fmt: skip
    """Separate ``n`` fresh toy mixes of ``length`` samples with the sampler ``config``."""
    truths = toy.toy_test_set(n, length, seed=seed).to(priors.device)
    separated, floor = [], []
    for i, truth in enumerate(truths):
        mixture = toy.mix(truth)
        last = run(mixture, priors, len(priors), config, truth, progress=progress, desc=f"mix {i + 1}/{n}")
        separated.append(last.si_sdr.cpu())
        floor.append(si_sdr(mixture.expand_as(truth), truth).cpu())
    return ToySeparation(torch.stack(separated), torch.stack(floor))
