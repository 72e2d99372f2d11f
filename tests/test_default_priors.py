"""The shipped priors tell the toy sources apart (the full table is in README.md)."""

import torch

from sepmodels.priors import PriorSet
from sepmodels.studies import toy_cross_likelihood


def test_own_prior_ranks_first_for_at_least_95_percent_of_clips_at_sigma_001():
    priors = PriorSet.load()
    result = toy_cross_likelihood(priors, n=16, length=4096, sigma=0.01, seed=123)
    assert result.values.shape == (4, 4, 16)
    assert torch.isfinite(result.values).all()
    assert float(result.own_first().mean()) >= 0.95, result.table()


def test_shipped_priors_know_where_they_came_from():
    priors = PriorSet.load()
    assert priors.meta["data"] == "toy" and priors.meta["step"] > 0
    assert priors.sample_rate == 14_700
    assert priors.model.receptive_field() >= 4096
