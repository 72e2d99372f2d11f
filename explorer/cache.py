"""Priors loaded once per process and shared by every session (they are read-only at inference)."""

from __future__ import annotations

import functools
import os

from sepmodels.priors import PriorSet


@functools.lru_cache(maxsize=4)
def load_priors(path: str | None = None) -> PriorSet:
    """The priors at ``path`` (the shipped toy priors when None), loaded once."""
    return PriorSet.load(path)


def priors_from_env() -> PriorSet:
    """The priors named by ``SEPMODELS_PRIORS``, or the shipped default."""
    return load_priors(os.environ.get("SEPMODELS_PRIORS") or None)
