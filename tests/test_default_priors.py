"""The shipped priors tell the toy sources apart (the full table is in README.md)."""

import torch

from explorer.cache import judge_for
from sepmodels.checkpoint import PITCH_PRIORS, default_sampler_priors_path
from sepmodels.priors import PriorSet, load_priors
from sepmodels.studies import cross_likelihood


def test_own_prior_ranks_first_for_at_least_95_percent_of_clips_at_sigma_001():
    priors = PriorSet.load()
    result = cross_likelihood(priors, n=16, length=4096, sigma=0.01, seed=123)
    assert result.values.shape == (4, 4, 16)
    assert torch.isfinite(result.values).all()
    assert float(result.own_first().mean()) >= 0.95, result.table()


def test_shipped_priors_know_where_they_came_from():
    priors = PriorSet.load()
    assert priors.meta["data"] == "toy" and priors.meta["step"] > 0
    assert priors.sample_rate == 14_700
    assert priors.receptive_field() >= 4096


def test_the_samplers_default_is_the_harmonic_priors_and_score_priors_are_judged():
    path = default_sampler_priors_path()
    assert path.exists() and path.stat().st_size < 4_000_000
    harmonic, flows = load_priors(str(path)), PriorSet.load()
    assert harmonic.kind == "harmonic" and harmonic.has_likelihood and judge_for(harmonic) is None
    assert harmonic.names == flows.names and harmonic.sample_rate == flows.sample_rate
    waves = load_priors("waves")  # the on-key wave priors stay a labelled choice
    assert waves.kind == "waves" and len(waves.meta["rounds"]) >= 8 and waves.meta["census_clips"] >= 1000
    score = PriorSet.load(path.parent / PITCH_PRIORS)
    assert score.kind == "score" and not score.has_likelihood and score.meta["step"] > 0
    assert judge_for(score) is not None and judge_for(flows) is None


def test_the_samplers_default_is_one_value_in_help_readme_and_app(capsys):
    import re
    from pathlib import Path

    import pytest

    from explorer.cache import load_priors as cached_priors
    from explorer.cache import sampler_choices
    from sepmodels.checkpoint import DEFAULT_SAMPLER_PRIORS
    from sepmodels.cli import main

    with pytest.raises(SystemExit):
        main(["separate", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"default: the shipped {DEFAULT_SAMPLER_PRIORS}" in help_text
    # the README's sentence that names what the samplers use by default names the same file
    readme = " ".join((Path(__file__).resolve().parents[1] / "README.md").read_text().split())
    named = re.findall(r"\(`(toy_\w+\.pt)`[^)]*\)[^.;]*?what the samplers use by default", readme)
    assert named == [DEFAULT_SAMPLER_PRIORS]
    first = next(iter(sampler_choices().values()))()  # the Langevin app's first (default) choice
    assert first is cached_priors(str(default_sampler_priors_path()))
