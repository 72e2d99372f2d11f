"""Measuring separation: SI-SDR (and BSS-Eval SDR) of a separator's estimates against the truth, beside the
floor every separator must beat, the mix itself taken as the estimate of every source.

Used by ``sepmodels evaluate`` and ``bench/separation.py``; the studies of the priors live in
:mod:`sepmodels.studies`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from sepmodels import mixing
from sepmodels.inference.separator import Separator
from sepmodels.metrics import bss_sdr, si_sdr


@dataclass(frozen=True)
class SeparationScores:
    """SI-SDR (dB) of separating mixes: ``separated`` and, as the floor, ``mix`` (the mix itself taken as the
    estimate of every source), both ``[n_mixes, n_sources]``. Music is scored by :func:`evaluate_stems`."""

    separated: torch.Tensor
    mix: torch.Tensor


def evaluate_separator(
    separator: Separator, truths: torch.Tensor, mix: str = "mean", progress: bool = False
) -> SeparationScores:
    """Separate the mix of each ``truths[i]: [N, T]`` (their ``mix``: mean or sum) and score the estimates."""
    separated, floor = [], []
    for truth in tqdm(truths, desc="mixes", unit="mix", disable=not progress, leave=False):
        mixture = mixing.mix(truth, mix)
        estimates = separator.separate(mixture, truth)
        separated.append(si_sdr(estimates, truth))
        floor.append(si_sdr(mixture.expand_as(truth), truth))
    return SeparationScores(torch.stack(separated), torch.stack(floor))


SILENT_DB = -60.0  # a stem this far below the mix's energy in a clip is silent there: left out and counted


def silent_stems(stems: torch.Tensor, mixture: torch.Tensor) -> torch.Tensor:
    """``[N]`` bool: which of ``stems [N, T]`` lie :data:`SILENT_DB` or more below ``mixture [T]``'s energy (no
    score is given for them: an SI-SDR of near-silence measures nothing)."""
    return stems.pow(2).sum(-1) < mixture.pow(2).sum() * 10 ** (SILENT_DB / 10)


@dataclass(frozen=True)
class StemScores:
    """Per clip and stem ``[n_clips, n_stems]``: SI-SDR of the estimates and of the mix itself (the floor),
    museval's SDR of both (median over 1 s windows), and which stems are silent in a clip (their figures are
    NaN: left out of every mean, and counted). ``seconds[i]``: the time clip ``i``'s estimates took."""

    names: tuple[str, ...]
    clips: tuple[str, ...]
    si_sdr: torch.Tensor
    mix_si_sdr: torch.Tensor
    sdr: torch.Tensor | None
    mix_sdr: torch.Tensor | None
    silent: torch.Tensor
    seconds: tuple[float, ...]

    @property
    def si_sdri(self) -> torch.Tensor:
        """SI-SDR improvement over the mix itself, ``[n_clips, n_stems]``."""
        return self.si_sdr - self.mix_si_sdr

    def summary(self) -> dict:
        """Means over the non-silent clips, per stem and over stems (the mean of the stems' means), as JSON."""
        per = lambda x: {n: float(v) for n, v in zip(self.names, x.nanmean(0), strict=True)}  # noqa: E731
        out = {
            "clips": len(self.clips),
            "silent": {n: int(v) for n, v in zip(self.names, self.silent.sum(0), strict=True)},
            "seconds_per_clip": sum(self.seconds) / max(1, len(self.seconds)),
        }
        for key, value in (("si_sdr", self.si_sdr), ("si_sdri", self.si_sdri), ("mix_si_sdr", self.mix_si_sdr),
                           ("sdr", self.sdr), ("mix_sdr", self.mix_sdr)):  # fmt: skip
            if value is not None:
                out[key] = per(value)
                out[f"{key}_mean"] = float(value.nanmean(0).mean())
        # How much the figure depends on the clips drawn: each clip's mean over its sounding stems, their
        # spread, the standard error of the mean over clips, and the worst clip and stem.
        by_clip = self.si_sdri.nanmean(1)
        sounding = by_clip[torch.isfinite(by_clip)]
        spread = float(sounding.std()) if len(sounding) > 1 else float("nan")
        worst = self.si_sdri.nan_to_num(float("inf")).min(0).values  # silent stems never the worst
        named = lambda x: {n: float(v) for n, v in zip(self.names, x, strict=True)}  # noqa: E731
        out["si_sdri_spread"] = {
            "clip_std": spread,
            "stderr": spread / max(1, len(sounding)) ** 0.5,
            "worst_clip": float(sounding.min()) if len(sounding) else float("nan"),
            "median": named(self.si_sdri.nanmedian(0).values),
            "worst": named(worst),
        }
        return out


def evaluate_stems(estimate: Callable[[torch.Tensor], torch.Tensor], clips: list[tuple[str, torch.Tensor]],
                   names: tuple[str, ...], sample_rate: int, bss: bool = True,
                   progress: bool = False) -> StemScores:  # fmt: skip
    """Score ``estimate(stems [N, T]) -> [N, T]`` on music clips ``(name, stems [N, T])`` whose mixture is the
    stems' sum (an oracle reads the stems; a separator must read only their sum)."""
    rows: dict[str, list] = {k: [] for k in ("si", "mix_si", "sdr", "mix_sdr", "silent", "seconds")}
    for _name, stems in tqdm(clips, desc="clips", unit="clip", disable=not progress, leave=False):
        mixture = stems.sum(0)
        start = time.perf_counter()
        estimates = estimate(stems)
        rows["seconds"].append(time.perf_counter() - start)
        if estimates.shape != stems.shape:
            raise ValueError(f"estimates of shape {tuple(estimates.shape)} for stems {tuple(stems.shape)}")
        silent = silent_stems(stems, mixture)
        nan = torch.full((len(names),), float("nan"))
        floor = mixture.expand_as(stems)
        rows["silent"].append(silent)
        rows["si"].append(torch.where(silent, nan, si_sdr(estimates, stems)))
        rows["mix_si"].append(torch.where(silent, nan, si_sdr(floor, stems)))
        if bss:
            sdr, mix_sdr = nan.clone().double(), nan.clone().double()
            keep = ~silent
            if keep.any():  # museval v4's SDR projects on the stem's own reference: silent stems can go
                sdr[keep] = bss_sdr(estimates[keep], stems[keep], sample_rate)
                mix_sdr[keep] = bss_sdr(floor[keep].contiguous(), stems[keep], sample_rate)
            rows["sdr"].append(sdr.float())
            rows["mix_sdr"].append(mix_sdr.float())
    stack = lambda key: torch.stack(rows[key]) if rows[key] else None  # noqa: E731
    return StemScores(tuple(names), tuple(n for n, _ in clips), stack("si"), stack("mix_si"), stack("sdr"),
                      stack("mix_sdr"), stack("silent"), tuple(rows["seconds"]))  # fmt: skip


__all__ = ["SILENT_DB", "SeparationScores", "StemScores", "evaluate_separator", "evaluate_stems", "silent_stems"]
