"""Priors loaded once per process and shared by every session (they are read-only at inference)."""

from __future__ import annotations

import functools
import os

from sepmodels.checkpoint import (
    PITCH_PRIORS,
    default_priors_path,
    default_sampler_priors_path,
    default_wave_priors_path,
)
from sepmodels.priors import EXACT, Prior
from sepmodels.priors import load_priors as _load


@functools.lru_cache(maxsize=4)
def load_priors(path: str | None = None) -> Prior:
    """The priors at ``path`` (the shipped toy priors when None; ``exact``: the exact toy prior), loaded once."""
    return _load(path)


def sampler_choices() -> dict[str, object]:
    """The priors the Langevin app offers: the environment's (or the shipped harmonic priors, the samplers'
    default) first, then the shipped wave priors (on-key), pitch and WaveNet score priors, the shipped flow priors
    and the exact toy prior, each loaded on first use."""
    first = os.environ.get("SEPMODELS_PRIORS")
    choices: dict[str, object] = {}
    if first and first != EXACT:
        choices[f"{first} (SEPMODELS_PRIORS)"] = lambda: load_priors(first)
    choices["harmonic priors (shipped, learned)"] = lambda: load_priors(str(default_sampler_priors_path()))
    choices["wave priors (shipped, on the keys only)"] = lambda: load_priors(str(default_wave_priors_path()))
    choices["pitch score priors (shipped, learned)"] = lambda: load_priors(
        str(default_priors_path().parent / PITCH_PRIORS)
    )
    choices["WaveNet score priors (shipped, learned)"] = lambda: load_priors(
        str(default_priors_path().parent / "toy_score.pt")
    )
    choices["flow priors (shipped, learned)"] = lambda: load_priors(None)
    choices["exact toy prior (reference)"] = lambda: load_priors(EXACT)
    if first == EXACT:  # the environment's choice comes first
        choices = {"exact toy prior (reference)": choices.pop("exact toy prior (reference)"), **choices}
    return choices


def priors_from_env() -> Prior:
    """The priors named by ``SEPMODELS_PRIORS``, or the shipped flow priors."""
    return load_priors(os.environ.get("SEPMODELS_PRIORS") or None)


def judge_for(priors: Prior) -> Prior | None:
    """Priors that draw a likelihood for score priors, which give none: ``SEPMODELS_JUDGE`` (a checkpoint of
    flow priors, or ``exact``) or the shipped flow priors, when they model the same sources at the same rate.
    None for priors with a likelihood of their own."""
    if priors.has_likelihood:
        return None
    judge = load_priors(os.environ.get("SEPMODELS_JUDGE") or None)
    return judge if judge.can_judge(priors) else None


@functools.lru_cache(maxsize=1)
def amortised_posterior():
    """The shipped amortised posterior (the Langevin app's ``amortised`` method), loaded once."""
    from sepmodels.inference.amortised import load_posterior

    return load_posterior("amortised")
