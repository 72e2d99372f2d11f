"""The exact toy prior against brute force, autograd and its own data."""

import math

import pytest
import torch

from sepmodels.data import toy
from sepmodels.metrics import si_sdr
from sepmodels.nn.exact import MIN_LENGTH, ExactToyPriors
from sepmodels.priors import EXACT, load_priors

PRIORS = ExactToyPriors()


def _monte_carlo_log_prob(x: torch.Tensor, kind: str, sigma: float, n: int, generator: torch.Generator) -> float:
    """log E N(x; a w_{key, phase}, sigma^2) by drawing key, phase and amplitude as the toy data does."""
    T = x.shape[-1]
    t = torch.arange(T, dtype=torch.float64) / toy.SAMPLE_RATE
    logs = []
    for _ in range(n // 10_000):
        key = torch.randint(1, 89, (10_000,), generator=generator)
        phase = torch.rand(10_000, generator=generator, dtype=torch.float64) * 2 * math.pi
        amp = 0.8 + 0.2 * torch.rand(10_000, generator=generator, dtype=torch.float64)
        waves = amp[:, None] * toy.oscillator(
            kind, 2 * math.pi * toy.key_frequency(key)[:, None] * t + phase[:, None]
        )
        logs.append(-(x - waves).square().sum(1) / (2 * sigma**2) - 0.5 * T * math.log(2 * math.pi * sigma**2))
    all_ = torch.cat(logs)
    return float(torch.logsumexp(all_, 0) - math.log(len(all_)))


def test_log_density_matches_brute_force_monte_carlo():
    g = torch.Generator().manual_seed(0)
    sigma, T = 4.0, MIN_LENGTH
    x = (toy.toy_test_set(1, T) + sigma * torch.randn(1, 4, T, generator=g)).double()
    exact = PRIORS.clip_log_prob(x, sigma)[0]
    for k, kind in enumerate(toy.SOURCES):
        mc = _monte_carlo_log_prob(x[0, k], kind, sigma, 200_000, g)
        assert exact[k].item() == pytest.approx(mc, abs=0.3), kind


def test_the_map_sums_to_the_clip_log_density():
    x = toy.toy_test_set(2, 1000).double() + 0.05 * torch.randn(2, 4, 1000, dtype=torch.float64)
    torch.testing.assert_close(PRIORS.log_prob(x, 0.05).sum(-1), PRIORS.clip_log_prob(x, 0.05))
    lp, _ = PRIORS.log_prob_and_score(x, 0.05)
    torch.testing.assert_close(lp, PRIORS.log_prob(x, 0.05))


@pytest.mark.parametrize("sigma", [3.0, 0.3, 0.03])
def test_score_is_the_gradient_of_the_log_density(sigma):
    x = (toy.toy_test_set(1, 700, seed=3) + sigma * torch.randn(1, 4, 700)).double().requires_grad_(True)
    (grad,) = torch.autograd.grad(PRIORS.clip_log_prob(x, sigma).sum(), x)
    score = PRIORS.score(x.detach(), sigma)
    torch.testing.assert_close(score, grad, rtol=1e-5, atol=1e-6 * grad.abs().max().item())


def test_tweedie_denoising_recovers_clean_clips():
    g = torch.Generator().manual_seed(1)
    clean = toy.toy_test_set(2, 4096, seed=5).double()
    for sigma, floor in [(1.0, 20.0), (0.1, 25.0)]:
        noisy = clean + sigma * torch.randn(clean.shape, generator=g, dtype=torch.float64)
        denoised = PRIORS.denoise(noisy, sigma)
        before, after = si_sdr(noisy.float(), clean.float()), si_sdr(denoised.float(), clean.float())
        assert (after > floor).all(), (sigma, after)
        assert (after > before).all()


def test_key_posterior_finds_the_key_and_restricted_denoising_leaves_the_rest():
    params = toy.draw_params(1, torch.Generator().manual_seed(2))
    clean = toy.render(params, 3000).double()
    post = PRIORS.key_posterior(clean + 0.3 * torch.randn(clean.shape, dtype=torch.float64), 0.3)
    assert post.shape == (1, 4, 88)
    torch.testing.assert_close(post.sum(-1), torch.ones(1, 4, dtype=torch.float64))
    assert torch.equal(post.argmax(-1) + 1, params.key)
    out = PRIORS.denoise(clean, 0.1, sources=[2])
    assert torch.equal(out[:, [0, 1, 3]], clean[:, [0, 1, 3]]) and not torch.equal(out[:, 2], clean[:, 2])


def test_samples_are_toy_clips_at_the_requested_noise():
    x = PRIORS.sample(3, 800, sigma=0.01, generator=torch.Generator().manual_seed(0))
    assert x.shape == (3, 4, 800) and x.dtype == torch.float32
    assert x.abs().max() < 1.1 and x.abs().amax(-1).min() > 0.75  # amplitudes in [0.8, 1]


def test_bad_lengths_and_sigmas_are_clear_errors():
    with pytest.raises(ValueError, match="needs clips of 535"):
        PRIORS.clip_log_prob(torch.zeros(1, 4, 100), 0.1)
    with pytest.raises(ValueError, match="sigma > 0"):
        PRIORS.score(torch.zeros(1, 4, 1000), 0.0)
    with pytest.raises(ValueError, match="CPU"):
        PRIORS.to("cuda")


def test_selectable_by_name():
    assert isinstance(load_priors(EXACT), ExactToyPriors)
    assert PRIORS.valid_length(1234) == 1234 and PRIORS.has_likelihood and PRIORS.names == toy.SOURCES


def test_refinement_in_stages_matches_one_fine_stage_and_keeps_the_score_exact():
    clean = toy.toy_test_set(2, 3000, seed=7).double()[:, 1:3]  # square and saw, the refined waves
    noisy = torch.cat([clean.new_zeros(2, 1, 3000), clean, clean.new_zeros(2, 1, 3000)], dim=1)
    noisy += 0.01 * torch.randn(noisy.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    one, flat, staged = ExactToyPriors(refine=32), ExactToyPriors(refine=(32,)), ExactToyPriors(refine=(8, 4))
    assert flat.describe()["config"]["refine"] == [32] and staged.describe()["config"]["refine"] == [8, 4]
    torch.testing.assert_close(flat.clip_log_prob(noisy, 0.01), one.clip_log_prob(noisy, 0.01), rtol=0, atol=0)
    # the same phase step in two stages (12 trial waves per clip instead of 64) finds the same edges
    sdr_flat = si_sdr(flat.denoise(noisy, 0.01)[:, 1:3], clean)
    sdr_staged = si_sdr(staged.denoise(noisy, 0.01)[:, 1:3], clean)
    assert (sdr_staged > sdr_flat - 3).all() and (sdr_staged > 100).all(), (sdr_flat, sdr_staged)  # 26 unrefined
    # every refined phase is an ordinary quadrature node, so the score is still the density's gradient
    x = noisy.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(staged.clip_log_prob(x, 0.01).sum(), x)
    torch.testing.assert_close(staged.score(noisy, 0.01), grad, rtol=1e-5, atol=1e-6 * grad.abs().max().item())
    with pytest.raises(ValueError, match="refine stages >= 2"):
        ExactToyPriors(refine=(16, 1))
