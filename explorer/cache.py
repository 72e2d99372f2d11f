"""Priors loaded once per process and shared by every session (they are read-only at inference)."""

from __future__ import annotations

import functools
import os

from sepmodels.checkpoint import default_sampler_priors_path
from sepmodels.priors import PriorSet


@functools.lru_cache(maxsize=4)
def load_priors(path: str | None = None) -> PriorSet:
    """The priors at ``path`` (the shipped toy priors when None), loaded once."""
    return PriorSet.load(path)


def priors_from_env() -> PriorSet:
    """The priors named by ``SEPMODELS_PRIORS``, or the shipped flow priors."""
    return load_priors(os.environ.get("SEPMODELS_PRIORS") or None)


def sampler_priors_from_env() -> PriorSet:
    """The priors named by ``SEPMODELS_PRIORS``, or the shipped score priors (the samplers' default)."""
    return load_priors(os.environ.get("SEPMODELS_PRIORS") or str(default_sampler_priors_path()))


def judge_for(priors: PriorSet) -> PriorSet | None:
    """Flow priors that draw a likelihood for score priors, which give none: ``SEPMODELS_JUDGE`` or the
    shipped flow priors, when they model the same sources at the same rate. None for flow priors."""
    if priors.has_likelihood:
        return None
    judge = load_priors(os.environ.get("SEPMODELS_JUDGE") or None)
    return judge if judge.can_judge(priors) else None
