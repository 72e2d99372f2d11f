"""Samplers on Gaussian priors, where the posterior given the mix is known in closed form."""

import pytest
import torch

from sepmodels.data import toy
from sepmodels.inference.langevin import Iterate, LangevinConfig, langevin, run, time_estimate, with_likelihood
from sepmodels.priors import GaussianPriors

PRIORS = GaussianPriors(torch.tensor([0.5, -0.2, 0.1]), torch.tensor([0.04, 0.09, 0.01]))
T = 4000
MIX_VALUE = 0.2


def _moments(sources):
    return sources.mean(dim=1), sources.var(dim=1)


@pytest.mark.parametrize(
    ("config", "gamma", "sigma"),
    [
        (LangevinConfig(method="sgld", steps=3000, delta=2e-4, gamma=0.1), 0.1, None),
        (LangevinConfig(method="annealed", sigma_min=0.05, levels=5, steps=600, delta=5e-4), 0.05, 0.05),
        (LangevinConfig(method="constrained", sigma_min=0.05, levels=5, steps=600, delta=5e-4), None, 0.05),
    ],
    ids=["sgld", "annealed", "constrained"],
)
def test_long_run_moments_match_the_closed_form_posterior(config, gamma, sigma):
    mixture = torch.full((T,), MIX_VALUE, dtype=torch.float64)  # every sample is an independent chain
    last = run(mixture, PRIORS, config)
    mean, cov = PRIORS.posterior(MIX_VALUE, gamma, sigma)
    got_mean, got_var = _moments(last.sources)
    torch.testing.assert_close(got_mean, mean, atol=0.01, rtol=0)
    torch.testing.assert_close(got_var, torch.diagonal(cov), atol=0.0, rtol=0.12)
    if config.method == "constrained":
        assert last.mix_error < 1e-12


def test_sgld_without_the_mix_term_would_be_the_prior():
    # sanity of the reference itself: a huge gamma makes the posterior the prior
    mean, cov = PRIORS.posterior(MIX_VALUE, gamma=1e6)
    torch.testing.assert_close(mean, PRIORS.means, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.diagonal(cov), PRIORS.variances, atol=1e-6, rtol=0)


def test_iterates_carry_everything_the_apps_draw():
    truth = toy.toy_test_set(1, 64)[0, :3].double()
    mixture = truth.mean(0)
    cfg = LangevinConfig(method="constrained", levels=3, steps=4, sigma_min=0.1)
    its = list(langevin(mixture, PRIORS, cfg, truth=truth))
    assert [it.step for it in its] == list(range(1, 13))
    assert {it.total for it in its} == {12}
    assert [it.level for it in its] == [0] * 4 + [1] * 4 + [2] * 4
    assert its[0].sigma == pytest.approx(1.0) and its[-1].sigma == pytest.approx(0.1)
    last = its[-1]
    assert last.sources.shape == (3, 64) and last.sources.dtype == torch.float64
    assert last.log_prob.shape == (3, 64) and last.si_sdr.shape == (3,)
    rms = float((mixture - last.sources.mean(0)).pow(2).mean().sqrt())  # the mean mix of the estimates
    assert last.mix_error == pytest.approx(rms, rel=1e-6, abs=1e-12)


def test_seed_makes_runs_repeatable_and_sum_mixes_work():
    mixture = torch.full((100,), 0.3, dtype=torch.float64)
    cfg = LangevinConfig(method="constrained", levels=2, steps=5, mix="sum", seed=4)
    a, b = run(mixture, PRIORS, cfg), run(mixture, PRIORS, cfg)
    assert torch.equal(a.sources, b.sources)
    torch.testing.assert_close(a.sources.sum(0), mixture)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown method 'gibbs'"):
        LangevinConfig(method="gibbs")
    with pytest.raises(ValueError, match="sigma_min <= sigma_max"):
        LangevinConfig(method="constrained", sigma_min=2.0)
    with pytest.raises(ValueError, match="sigma_min <= restart_sigma"):
        LangevinConfig(sigma_min=2.0)
    with pytest.raises(ValueError, match="at least 1"):
        LangevinConfig(steps=0)
    with pytest.raises(ValueError, match="mono"):
        next(langevin(torch.zeros(2, 8), PRIORS, LangevinConfig()))


def test_flow_priors_run_end_to_end(tiny_priors):
    truth = toy.toy_test_set(1, 256)[0]
    last = run(truth.mean(0), tiny_priors, LangevinConfig(method="constrained", levels=2, steps=3), truth=truth)
    assert last.sources.shape == (4, 256) and torch.isfinite(last.sources).all()
    assert torch.isfinite(last.log_prob).all() and torch.isfinite(last.si_sdr).all()
    cfg = LangevinConfig(levels=2, steps=1, chains=2, restart_levels=2)  # the residual sweep through Tweedie
    last = run(truth.mean(0), tiny_priors, cfg, truth=truth)
    assert last.sources.shape == (4, 256) and torch.isfinite(last.sources).all() and last.log_prob is None


class _ScoreOnly:
    """The Gaussian priors seen through a score network's eyes: a score and no density."""

    def __len__(self):
        return len(PRIORS)

    def log_prob_and_score(self, x, sigma):
        return None, PRIORS.score(x, sigma)


def test_with_likelihood_fills_in_the_judges_density_every_k_steps_and_at_the_end():
    mixture = torch.full((50,), 0.1, dtype=torch.float64)
    cfg = LangevinConfig(method="constrained", levels=2, steps=7, sigma_min=0.1)
    its = list(with_likelihood(langevin(mixture, _ScoreOnly(), cfg), PRIORS, every=5))
    judged = [it.step for it in its if it.log_prob is not None]
    assert judged == [5, 10, 14]
    for it in its:
        if it.log_prob is not None:  # the judge's density of the iterate's own sources, at its sigma
            torch.testing.assert_close(it.log_prob, PRIORS.log_prob(it.sources[None], it.sigma)[0])
    with pytest.raises(ValueError, match="at least 1"):
        next(with_likelihood(iter(its), PRIORS, every=0))


def test_with_likelihood_leaves_a_flows_own_density_alone():
    mixture = torch.full((50,), 0.1, dtype=torch.float64)
    cfg = LangevinConfig(method="constrained", levels=1, steps=3, sigma_min=0.1)
    other = GaussianPriors(torch.zeros(3), torch.ones(3))
    for own, judged in zip(
        langevin(mixture, PRIORS, cfg),
        with_likelihood(langevin(mixture, PRIORS, cfg), other, every=1),
        strict=True,
    ):
        torch.testing.assert_close(judged.log_prob, own.log_prob)


def test_each_method_takes_its_own_ladder_unless_told():
    assert (LangevinConfig().method, LangevinConfig().sigma_max, LangevinConfig().levels) == ("residual", 45.0, 30)
    assert LangevinConfig(method="constrained").sigma_max == 1.0
    assert LangevinConfig(method="residual", sigma_max=3.0, steps=2).total_steps == 30 * 2 + 2 * 10 * 2
    assert LangevinConfig(method="residual", steps=2, restart="order").total_steps == 3 * 30 * 2


def test_residual_sweep_converges_to_the_exact_posterior_mean():
    # With Gaussian priors the sweep is coordinate descent on the MAP objective with a mix likelihood of variance
    # sigma^2; as sigma -> 0 its fixed point is the posterior mean given the exact mix.
    mixture = torch.full((8,), MIX_VALUE, dtype=torch.float64)
    cfg = LangevinConfig(method="residual", sigma_max=1.0, sigma_min=1e-3, levels=40, steps=30, chains=1)
    its = list(langevin(mixture, PRIORS, cfg))
    mean, _ = PRIORS.posterior(MIX_VALUE, gamma=None)
    torch.testing.assert_close(its[-1].sources, mean[:, None].expand(3, 8), atol=2e-3, rtol=0)
    assert its[-1].mix_error < 1e-3
    assert len(its) == cfg.total_steps and its[-1].sigma == pytest.approx(1e-3)


def test_residual_sweep_separates_a_toy_mix_under_the_exact_prior():
    from sepmodels.nn.exact import ExactToyPriors

    truth = toy.toy_test_set(1, 2940, seed=0)[0].double()  # 0.2 s
    cfg = LangevinConfig(method="residual", sigma_max=20.0, levels=15, steps=2)
    last = run(truth.mean(0), ExactToyPriors(), cfg, truth)
    assert (last.si_sdr > 20).all(), last.si_sdr


class _Stubborn:
    """Denoises every source to a fixed guess: the mix is never explained, so every chain runs."""

    def __len__(self):
        return len(PRIORS)

    def denoise(self, x, sigma, sources=None):
        return torch.zeros_like(x)


def test_residual_restarts_chains_until_the_mix_is_explained_and_keeps_the_best():
    mixture = torch.full((8,), MIX_VALUE, dtype=torch.float64)
    cfg = LangevinConfig(
        method="residual", sigma_max=1.0, sigma_min=1e-3, levels=10, steps=3, chains=3, restart_levels=10
    )
    its = list(langevin(mixture, PRIORS, cfg))  # explained by the first chain: no restart
    assert {it.chain for it in its[:-1]} == {0} and len(its) == 31 and its[0].total == 90
    assert its[-1].chain == -1 and its[-1].step == its[-1].total == 30  # the run is as long as the steps it took
    its = list(langevin(mixture, _Stubborn(), cfg))
    assert {it.chain for it in its} == {0, 1, 2, -1} and its[-1].step == 90
    assert its[-1].mix_error == pytest.approx(MIX_VALUE)


class _Greedy:
    """Source k explains whatever it is given, scaled by (k + 1) / 4: the pursuit places the last source first."""

    names = ("a", "b", "c")

    def __len__(self):
        return 3

    def denoise(self, x, sigma, sources=None):
        out = x.clone()
        for k in sources:
            out[:, k] = x[:, k] * (k + 1) / 4
        return out


def test_pursuit_places_the_source_that_explains_most_first():
    from sepmodels.inference.langevin import _pursuit

    whole = torch.full((5,), 4.0, dtype=torch.float64)
    s = _pursuit(torch.zeros(3, 5, dtype=torch.float64), whole, _Greedy(), 0.01)
    # c takes 3/4 of the mix, then b half of what is left, then a a quarter of the rest
    torch.testing.assert_close(s[:, 0], torch.tensor([0.125, 0.5, 3.0], dtype=torch.float64))


def test_pursuit_and_order_restarts_still_reach_the_exact_posterior_mean():
    mixture = torch.full((8,), MIX_VALUE, dtype=torch.float64)
    mean, _ = PRIORS.posterior(MIX_VALUE, gamma=None)
    for extra in (dict(init="pursuit"), dict(restart="order")):
        cfg = LangevinConfig(method="residual", sigma_max=1.0, sigma_min=1e-3, levels=40, steps=30, chains=2,
                             restart_sigma=1.0, restart_levels=40, accept=0.0, **extra)  # fmt: skip
        its = list(langevin(mixture, PRIORS, cfg))
        assert {it.chain for it in its} == {0, 1, -1} or {it.chain for it in its} == {0, 1}
        torch.testing.assert_close(its[-1].sources, mean[:, None].expand(3, 8), atol=2e-3, rtol=0)
        assert its[-2].step == cfg.total_steps


def test_time_estimate_announces_once_from_the_timed_steps(monkeypatch):
    clock = [100.0]  # a fake clock: the first step takes 0.5 s (warm-up), every later one 0.05 s
    monkeypatch.setattr("sepmodels.inference.langevin.time.perf_counter", lambda: clock[0])

    def steps():
        for k in range(1, 11):
            clock[0] += 0.05 if k > 1 else 0.5
            yield Iterate(k, 10, 0, 1.0, torch.zeros(2, 4), None, 0.0, None)

    lines = []
    out = list(time_estimate(steps(), lines.append, min_seconds=0.1))
    assert [it.step for it in out] == list(range(1, 11))
    assert len(lines) == 1 and lines[0].startswith("10 steps at most")
    rate = float(lines[0].split(", ")[1].split(" steps/s")[0])
    assert rate == pytest.approx(20.0)  # not dragged down by the slow first step


def test_masked_output_filters_the_sum_mix_by_the_sweeps_sources():
    from sepmodels.inference.separator import make_separator

    # Zero-mean Gaussian priors: the sweep's posterior mean gives source k the share v_k / sum(v) of the sum of
    # the sources (N times the mean mix); masks of those shares filter the sum into the same shares.
    priors = GaussianPriors(torch.zeros(3), torch.tensor([0.04, 0.09, 0.01]))
    mix = torch.randn(6000, generator=torch.Generator().manual_seed(0)) * 0.1
    share = priors.variances.float() / priors.variances.float().sum()
    for power in (1.0, 2.0):
        sep = make_separator("residual", priors, sigma_max=1.0, sigma_min=1e-3, levels=40, steps=30, chains=1,
                             mask_power=power)  # fmt: skip
        estimates = sep.separate(mix)
        expected = (share**power / (share**power).sum())[:, None] * 3 * mix
        torch.testing.assert_close(estimates, expected, atol=3e-3, rtol=0)  # the sweep is within 2e-3
        torch.testing.assert_close(estimates.sum(0), 3 * mix, atol=2e-4, rtol=1e-3)  # they add up to the mix
        assert "masks" in sep.describe()
    with pytest.raises(ValueError, match="mask_power must be positive"):
        make_separator("residual", priors, mask_power=0.0)
    with pytest.raises(ValueError, match="the STFT needs at least one window"):
        make_separator("residual", priors, levels=2, steps=1, chains=1, mask_power=1.0).separate(mix[:1000])


def test_priors_carry_the_sweep_a_bench_chose_and_the_caller_wins():
    from sepmodels.inference.separator import make_separator
    from sepmodels.priors import PriorSet
    from tests.conftest import make_tiny_priors

    plain = make_tiny_priors()
    assert plain.sampler_defaults == {} and make_separator("residual", plain).mask_power is None
    chosen = {"residual": {"sigma_max": 0.3, "levels": 4, "steps": 1, "chains": 1, "mask_power": 2.0}}
    priors = PriorSet(plain.model, plain.names, plain.sample_rate, plain.ladder, {"sampler_defaults": chosen})
    sep = make_separator("residual", priors)
    assert (sep.config.sigma_max, sep.config.levels, sep.config.chains, sep.mask_power) == (0.3, 4, 1, 2.0)
    sep = make_separator("residual", priors, levels=2, mask_power=1.0)
    assert (sep.config.sigma_max, sep.config.levels, sep.mask_power) == (0.3, 2, 1.0)
    assert make_separator("annealed", priors).config.sigma_max == 1.0  # chosen for the residual sweep only
    priors.sampler_defaults["residual"]["levels"] = 99  # a copy: the priors' meta stays as saved
    assert priors.meta["sampler_defaults"]["residual"]["levels"] == 4


def test_a_separator_started_at_the_posterior_mean_stays_there():
    from sepmodels.inference.separator import make_separator

    priors = GaussianPriors(torch.zeros(3), torch.tensor([0.04, 0.09, 0.01]))
    mix = torch.randn(500, generator=torch.Generator().manual_seed(1)) * 0.1
    share = priors.variances.float() / priors.variances.float().sum()
    posterior_mean = share[:, None] * 3 * mix  # zero-mean Gaussians split the sum of the sources by variance
    sep = make_separator("residual", priors, sigma_max=1e-3, sigma_min=1e-3, levels=1, steps=1, chains=1)
    torch.testing.assert_close(sep.separate(mix, start=posterior_mean), posterior_mean, atol=1e-3, rtol=0)
    from_zero = sep.separate(mix)  # one sweep from nothing: the first source takes nearly all of the mix
    assert (from_zero - posterior_mean).abs().max() > 0.05
