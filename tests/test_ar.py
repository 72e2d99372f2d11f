"""The autoregressive WaveNet prior: causality, a true density, the cached sampler, and its place in a PriorSet."""

import csv

import pytest
import torch

from sepmodels.data import toy
from sepmodels.nn.ar import ARConfig, ARPrior, _draw, bin_edges
from sepmodels.priors import NoiseLadder, PriorSet
from sepmodels.train import LOG_FILE, TrainConfig, Trainer
from tests.flowcheck import perturb

TINY = ARConfig.preset("tiny")


@pytest.mark.parametrize("quantization", ["mu_law", "linear"])
def test_bins_cover_the_interval_in_order(quantization):
    e = bin_edges(256, quantization)
    assert e[0] == -1 and e[-1] == 1 and (e.diff() > 0).all()
    torch.testing.assert_close(e, -e.flip(0))  # symmetric
    if quantization == "mu_law":
        assert e.diff()[128] < e.diff()[0] / 100  # fine near zero, coarse near the ends


def _prior(groups=3, config=TINY, seed=0):
    torch.manual_seed(seed)
    return perturb(ARPrior(groups, config), 0.3, seed=seed).eval()


def test_logits_are_causal_and_groups_independent():
    prior = _prior()
    x = torch.rand(2, 3, 40, requires_grad=True) * 2 - 1
    t = 20
    (grad,) = torch.autograd.grad(prior.logits(x)[0, 1, :, t].sum(), x)
    assert grad[0, 1, t:].abs().max() == 0  # nothing at or after t
    assert grad[0, 1, :t].abs().max() > 0
    assert grad[1].abs().max() == 0 and grad[0, [0, 2]].abs().max() == 0
    support = (grad[0, 1].abs() > 0).nonzero().flatten()
    assert int(t - support.min()) <= prior.receptive_field()


def test_each_conditional_density_integrates_to_one():
    prior = _prior(config=ARConfig(levels=32, layers=2, width=4, cycle=2))
    context = torch.rand(1, 3, 9) * 2 - 1
    centres = prior.centres
    x = context.repeat(len(centres), 1, 1)
    x[:, :, -1] = centres[:, None]  # every bin's centre as the last sample
    density = prior.log_prob(x)[:, :, -1].exp()  # [bins, groups]
    widths = prior.edges.diff()
    torch.testing.assert_close((density * widths[:, None]).sum(0), torch.ones(3))


def test_log_prob_is_the_bin_probability_over_its_width():
    prior = _prior()
    x = torch.rand(2, 3, 25) * 2 - 1
    k = prior.quantize(x)
    logp = torch.log_softmax(prior.logits(x), dim=2).gather(2, k[:, :, None]).squeeze(2)
    torch.testing.assert_close(prior.log_prob(x), logp - prior.edges.diff().log()[k])
    assert (prior.edges[k] <= x).all() and (x <= prior.edges[k + 1]).all()


def test_cached_sampler_matches_the_full_forward_pass():
    prior = _prior(config=ARConfig(levels=16, layers=4, width=6, kernel=2, cycle=3))
    fast = prior.sample(2, 48, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    slow = torch.zeros(2, 3, 48)
    for t in range(48):  # recompute the whole prefix every step
        slow[..., t] = prior.centres[_draw(prior.logits(slow)[..., t], g)]
    torch.testing.assert_close(fast, slow, rtol=0, atol=0)


def test_ar_priors_train_save_load_and_score(tmp_path):
    cfg = TrainConfig(steps=40, batch_size=4, length=128, lr=3e-3, checkpoint_every=40, log_every=1)
    Trainer(tmp_path, TINY, cfg, progress=False).run()
    with (tmp_path / LOG_FILE).open() as f:
        nats = [float(r["nats_per_sample"]) for r in csv.DictReader(f)]
    assert sum(nats[-5:]) / 5 > sum(nats[:5]) / 5 + 0.03  # likelihood rises
    priors = PriorSet.load(tmp_path / "priors.pt")
    assert priors.kind == "ar" and priors.has_likelihood and priors.meta["objective"] == "maximum likelihood"
    clip = toy.toy_test_set(1, 100)[0, 0]
    m = priors.cross_log_prob(clip[None])
    assert m.shape == (1, 4, 100) and torch.isfinite(m).all()
    assert priors.sample(2, 30, generator=torch.Generator().manual_seed(0)).shape == (2, 4, 30)
    _, score = priors.log_prob_and_score(toy.toy_test_set(1, 64), 0.01)
    assert score.shape == (1, 4, 64) and torch.isfinite(score).all()


def test_in_a_prior_set_sigma_is_ignored():
    priors = PriorSet(_prior(4), toy.SOURCES, toy.SAMPLE_RATE, NoiseLadder())
    x = toy.toy_test_set(1, 64)
    torch.testing.assert_close(priors.log_prob(x, 0.5), priors.log_prob(x, 0.01))
