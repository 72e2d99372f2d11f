import math

import pytest
import torch

from sepmodels.nn.flows import (
    ActNorm,
    AffineCoupling,
    Flip,
    FlowConfig,
    FlowPrior,
    Squeeze,
    sigma_features,
)
from sepmodels.nn.wavenet import WaveNet
from tests.flowcheck import check_group_independence, check_layer, perturb

TINY = FlowConfig.preset("tiny")
SHAPE = (3, 2, 4, 8)  # [B, G, C, T]


def _cond(batch: int, n: int = 4) -> torch.Tensor:
    return sigma_features(torch.logspace(-2, 0, batch), n)


@pytest.mark.parametrize(
    ("make", "cond"),
    [
        (lambda: Squeeze(), False),
        (lambda: Flip(), False),
        (lambda: perturb(ActNorm(2, 4)), False),
        (lambda: perturb(AffineCoupling(2, 4, width=4, layers=2)), False),
        (lambda: perturb(AffineCoupling(2, 4, width=4, layers=3, cond_dim=4)), True),
    ],
    ids=["squeeze", "flip", "actnorm", "coupling", "coupling-conditioned"],
)
def test_layer_protocol(make, cond):
    layer = make()
    c = _cond(SHAPE[0]) if cond else None
    check_layer(layer, SHAPE, c)
    check_group_independence(layer, SHAPE, c)


class _Whole(torch.nn.Module):
    """The whole FlowPrior seen as one layer on [B, G, 1, T]; ``cond`` carries sigma ``[B]``."""

    def __init__(self, prior: FlowPrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, x, cond=None):
        B, G, _, T = x.shape
        return self.prior(x.view(B, G, T), cond)

    def inverse(self, z, cond=None):
        x = self.prior.inverse(z, cond)
        _, logdet = self.prior(x, cond)
        B, G, T = x.shape
        return x.view(B, G, 1, T), -logdet


@pytest.mark.parametrize("conditional", [True, False])
def test_whole_flow_protocol(conditional):
    prior = perturb(FlowPrior(2, FlowConfig(**{**TINY.to_dict(), "noise_conditional": conditional})), 0.05)
    sigma = torch.tensor([0.01, 0.1, 1.0], dtype=torch.float64) if conditional else None
    check_layer(_Whole(prior), (3, 2, 1, 16), sigma)
    check_group_independence(_Whole(prior), (3, 2, 1, 16), sigma)


def test_squeeze_on_hand_computed_values():
    x = torch.arange(8.0).view(1, 1, 1, 8)
    y, _ = Squeeze()(x)
    # channel 2c + j at step t holds input channel c at step 2t + j
    assert y.tolist() == [[[[0.0, 2.0, 4.0, 6.0], [1.0, 3.0, 5.0, 7.0]]]]
    y2, _ = Squeeze()(y)
    assert y2[0, 0, :, 0].tolist() == [0.0, 2.0, 1.0, 3.0]
    with pytest.raises(ValueError, match="even length"):
        Squeeze()(torch.zeros(1, 1, 1, 7))


def test_coupling_and_flow_start_at_identity():
    x = torch.randn(2, 3, 4, 16)
    y, ld = AffineCoupling(3, 4, width=8, layers=3)(x)
    assert torch.equal(y, x) and torch.equal(ld, torch.zeros_like(ld))
    prior = FlowPrior(3, TINY).eval()  # ActNorm not initialised: identity too
    clip = torch.randn(2, 3, 16)
    z, logdet = prior(clip, 0.1)
    torch.testing.assert_close(prior.to_time(z), clip)
    assert logdet.abs().max() == 0


def test_actnorm_data_dependent_init_and_state_dict_round_trip():
    layer = ActNorm(2, 3).train()
    x = torch.randn(16, 2, 3, 64) * 3 + 1
    y, _ = layer(x)
    torch.testing.assert_close(y.mean(dim=(0, 3)), torch.zeros(2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 3), unbiased=False), torch.ones(2, 3), atol=1e-4, rtol=0)
    fresh = ActNorm(2, 3).train()
    fresh.load_state_dict(layer.state_dict())
    assert bool(fresh.initialized)
    y2, _ = fresh(torch.randn(16, 2, 3, 64))  # no second initialisation
    torch.testing.assert_close(fresh.logs, layer.logs)
    assert not torch.allclose(y2.std(dim=(0, 3)), torch.ones(2, 3), atol=1e-3)


def test_flow_state_dict_round_trip():
    prior = FlowPrior(2, TINY).train()
    prior(torch.randn(4, 2, 32), 0.1)  # initialises every ActNorm
    perturb(prior)
    clone = FlowPrior(2, TINY)
    clone.load_state_dict(prior.state_dict())
    x = torch.randn(2, 2, 32)
    torch.testing.assert_close(clone.eval().log_prob(x, 0.3), prior.eval().log_prob(x, 0.3))


def test_log_prob_map_sums_to_exact_log_density():
    torch.manual_seed(1)
    prior = perturb(FlowPrior(2, TINY), 0.05).double().eval()
    x = torch.randn(1, 2, 8, dtype=torch.float64)
    sigma = torch.tensor([0.05], dtype=torch.float64)
    lp = prior.log_prob(x, sigma)
    assert lp.shape == (1, 2, 8)
    # Independent computation: standard normal density of the latent plus the autograd Jacobian.
    for g in range(2):

        def f(v, g=g):
            xx = x.clone()
            xx[0, g] = v
            return prior(xx, sigma)[0][0, g].reshape(-1)

        z = f(x[0, g])
        _, logabsdet = torch.linalg.slogdet(torch.autograd.functional.jacobian(f, x[0, g]))
        exact = -0.5 * (z**2).sum() - 0.5 * z.numel() * math.log(2 * math.pi) + logabsdet
        torch.testing.assert_close(lp[0, g].sum(), exact, atol=1e-8, rtol=1e-8)


def test_map_places_each_density_term_at_its_own_sample():
    prior = FlowPrior(1, TINY).eval()  # identity flow: z = x, so the map is the normal log-density
    x = torch.randn(1, 1, 16)
    expected = -0.5 * (x**2 + math.log(2 * math.pi))
    torch.testing.assert_close(prior.log_prob(x, 0.1), expected)


def test_bad_lengths_and_valid_length():
    prior = FlowPrior(2, TINY)  # hop 4
    assert prior.hop == 4
    assert [prior.valid_length(n) for n in (1, 4, 5, 8, 9)] == [4, 4, 8, 8, 12]
    with pytest.raises(ValueError, match=r"multiple of 4 samples, got 10 \(valid_length gives 12\)"):
        prior.log_prob(torch.zeros(1, 2, 10), 0.1)
    with pytest.raises(ValueError, match="expected 2 groups"):
        prior.log_prob(torch.zeros(1, 3, 8), 0.1)
    with pytest.raises(ValueError, match="noise-conditional"):
        prior.log_prob(torch.zeros(1, 2, 8))
    with pytest.raises(ValueError, match="sigma must be a scalar"):
        prior.log_prob(torch.zeros(2, 2, 8), torch.ones(3))


def test_receptive_field_bounds_the_dependency():
    cfg = FlowConfig(n_blocks=2, n_flows=2, layers=2, width=4, cond_features=4)
    prior = perturb(FlowPrior(1, cfg), 0.2).eval()
    T = 256
    x = torch.randn(1, 1, T, requires_grad=True)
    z, _ = prior(x, 0.1)
    centre = T // 2
    (grad,) = torch.autograd.grad(prior.to_time(z)[0, 0, centre], x)
    support = (grad[0, 0].abs() > 0).nonzero().flatten()
    span = int(support.max() - support.min() + 1)
    assert span <= prior.receptive_field()
    assert span > prior.receptive_field() // 2  # the bound is not loose


def test_default_receptive_field_covers_low_notes():
    prior = FlowPrior(4, FlowConfig.preset("default"))
    assert prior.receptive_field() >= 4096  # several periods of 27.5 Hz at 14.7 kHz (535 samples)


def test_wavenet_causal_dependency():
    net = perturb(WaveNet(groups=2, c_in=1, c_out=2, width=4, layers=4, kernel=2, causal=True), 0.3)
    x = torch.randn(1, 2, 1, 40, requires_grad=True)
    t = 20
    (grad,) = torch.autograd.grad(net(x)[0, :, :, t].sum(), x)
    assert grad[..., t + 1 :].abs().max() == 0
    assert grad[..., : t + 1].abs().max() > 0


def test_wavenet_needs_condition_when_conditioned():
    net = WaveNet(groups=1, c_in=1, c_out=1, width=4, layers=2, cond_dim=3)
    with pytest.raises(ValueError, match="conditioned"):
        net(torch.zeros(1, 1, 1, 8))


def test_noise_condition_changes_the_density():
    prior = perturb(FlowPrior(2, TINY), 0.2).eval()
    x = torch.randn(1, 2, 16)
    assert not torch.allclose(prior.log_prob(x, 0.01), prior.log_prob(x, 1.0))


def test_score_matches_finite_differences():
    prior = perturb(FlowPrior(2, TINY), 0.05).double().eval()
    x = torch.randn(1, 2, 8, dtype=torch.float64)
    score = prior.score(x, 0.2)
    eps = 1e-6
    for idx in [(0, 0, 3), (0, 1, 6)]:
        xp, xm = x.clone(), x.clone()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (prior.log_prob(xp, 0.2).sum() - prior.log_prob(xm, 0.2).sum()) / (2 * eps)
        torch.testing.assert_close(score[idx], fd, atol=1e-6, rtol=1e-6)


def test_sample_inverts_the_flow():
    prior = perturb(FlowPrior(2, TINY), 0.05).eval()
    g = torch.Generator().manual_seed(0)
    s = prior.sample(3, 16, 0.1, generator=g)
    assert s.shape == (3, 2, 16) and torch.isfinite(s).all()
    z, _ = prior(s, 0.1)
    g = torch.Generator().manual_seed(0)
    z_drawn = torch.randn(3, 2, 4, 4, generator=g)
    torch.testing.assert_close(z, z_drawn, atol=1e-4, rtol=1e-4)


def test_every_parameter_gets_a_gradient():
    prior = perturb(FlowPrior(2, TINY), 0.05)
    prior.log_prob(torch.randn(2, 2, 16), 0.1).sum().backward()
    missing = [n for n, p in prior.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert not missing


def test_presets_match_the_thesis_sizes():
    toy, musdb = FlowConfig.preset("thesis_toy"), FlowConfig.preset("thesis_musdb")
    assert (toy.n_blocks, toy.n_flows, toy.layers, toy.width) == (4, 6, 10, 32)
    assert (musdb.n_blocks, musdb.n_flows, musdb.layers, musdb.width) == (8, 6, 10, 48)
    with pytest.raises(ValueError, match="unknown config 'huge'"):
        FlowConfig.preset("huge")
