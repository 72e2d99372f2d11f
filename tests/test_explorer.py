import numpy as np
import pytest
import torch

from explorer.audio import envelope, playable, smooth
from explorer.mixview import MixLikelihood, describe


def test_playable_normalises_and_clips():
    x = torch.tensor([0.0, 2.0, -4.0, float("nan")], requires_grad=True)
    a = playable(x)
    assert a.dtype == np.float32 and np.abs(a).max() == pytest.approx(0.98)
    assert np.isfinite(a).all()
    assert playable(np.zeros(5)).tolist() == [0.0] * 5


def test_envelope_keeps_extremes_and_short_clips():
    x = np.zeros(10_000)
    x[1234] = 1.0
    x[5678] = -1.0
    t, lo, hi = envelope(x, 1000, bins=100)
    assert len(t) == len(lo) == len(hi) == 100
    assert hi.max() == 1.0 and lo.min() == -1.0
    t, lo, hi = envelope(np.arange(5.0), 1000, bins=100)
    assert lo.tolist() == hi.tolist() == [0, 1, 2, 3, 4]


def test_smooth_is_a_moving_average():
    y = smooth(np.array([0.0, 0.0, 3.0, 0.0, 0.0]), 3)
    np.testing.assert_allclose(y, [0.0, 1.0, 1.0, 1.0, 0.0])


def test_mix_view_follows_its_parameters(tiny_priors):
    view = MixLikelihood(tiny_priors, seconds=0.2)
    T = int(0.2 * tiny_priors.sample_rate)
    assert view.mix.shape == (T,) and view.sources.shape == (4, T) and view.loglik.shape == (4, T)
    torch.testing.assert_close(view.mix, view.sources.mean(0))
    first_mix, first_means = view.mix.clone(), view.means()
    np.testing.assert_allclose(list(first_means.values()), view.loglik.mean(1).numpy(), rtol=1e-6)

    view.seed = 5
    assert not torch.equal(view.mix, first_mix)
    assert view._mix_player.object is not None and np.abs(view._mix_player.object).max() <= 1.0

    mix_before = view.mix.clone()
    view.sigma = 0.5
    assert torch.equal(view.mix, mix_before)  # rescoring keeps the mix
    assert view.means() != first_means

    view._new_mix_button.clicks += 1
    assert view.seed == 6
    view.seconds = 0.3
    assert view.mix.shape == (int(0.3 * tiny_priors.sample_rate),)
    assert view.__panel__() is not None


def test_describe_names_the_priors(tiny_priors):
    text = describe(tiny_priors)
    assert "sin, square, saw, triangle" in text and "noise-conditional" in text
