"""The likelihood's reference: the gain over a Gaussian of the clip's loudness, and each prior's range of it on
its own held-out clips, which tells an out-of-distribution clip from a likely one."""

import math

import pytest
import torch

from sepmodels import mixing
from sepmodels.data import toy
from sepmodels.heldout import (
    HeldoutRange,
    gain,
    heldout_ranges,
    outside,
    toy_priors_note,
    toy_variants,
    verdict,
)
from sepmodels.priors import GaussianPriors, load_priors


def test_gain_is_zero_for_gaussian_noise_under_the_gaussian_of_its_own_power():
    x = torch.randn(3, 1, 5000, dtype=torch.float64)
    x = x / x.square().mean(-1, keepdim=True).sqrt() * 0.3  # power exactly 0.09
    priors = GaussianPriors(torch.zeros(1), torch.full((1,), 0.09))
    sigma = 0.1
    log_p = priors.log_prob(x, sigma)  # N(0, 0.09 + 0.01) per sample
    assert gain(log_p, x, sigma).abs().max() < 1e-6
    # louder than the prior expects: the prior loses to the clip's own Gaussian, by the closed form
    y = 2 * x
    var, power = 0.1, 4 * 0.09
    expected = (
        -0.5 * math.log(2 * math.pi * var)
        - 0.5 * power / var
        + 0.5 * math.log(2 * math.pi * (power + 0.01))
        + 0.5 * power / (power + 0.01)
    )
    torch.testing.assert_close(
        gain(priors.log_prob(y, sigma), y, sigma), torch.full((3, 1), expected, dtype=torch.float64)
    )


def test_the_verdict_reads_the_ranges():
    ranges = {n: HeldoutRange(1.0, 3.0, 32, 0.01) for n in ("sin", "square")}
    assert outside({"sin": 2.0, "square": 3.5}, ranges) == {"square": "above"}
    assert verdict({"sin": 2.0, "square": 0.5}, ranges).startswith("Like the sin prior's own clips")
    assert verdict({"sin": 2.0, "square": 2.5}, ranges).startswith("Within every prior's held-out range")
    assert verdict({"sin": 0.2, "square": -4.0}, ranges).startswith("Out of distribution")
    assert "does not make it a sin" in verdict({"sin": 0.2, "square": -4.0}, ranges)
    assert verdict({"sin": 3.5, "square": 2.0}, ranges).startswith("The best gain (sin) lies above")


@pytest.fixture(scope="module")
def waves():
    return load_priors("waves")


def test_own_fresh_clips_fall_inside_and_noise_outside(waves):
    sigma = waves.default_sigma
    ranges = heldout_ranges(waves, sigma, clips=16, seconds=0.1)
    assert all(r.low <= r.high for r in ranges.values())
    fresh = toy.toy_test_set(16, 1470, seed=300)  # a seed of its own
    inside = torch.zeros(4)
    for clip in fresh:
        g = gain(waves.log_prob(clip[None], sigma)[0], clip, sigma)
        inside += torch.tensor([ranges[n].contains(float(v)) for n, v in zip(waves.names, g, strict=True)]).float()
    assert (inside / len(fresh) >= 0.6).all(), inside  # 2 / 17 of them fall outside by chance, on average
    noise = 0.3 * torch.randn(1, 1470, generator=torch.Generator().manual_seed(0))
    m = waves.cross_log_prob(noise, sigma)[0]
    g = {n: float(v) for n, v in zip(waves.names, gain(m, noise.expand(4, -1), sigma), strict=True)}
    assert set(outside(g, ranges)) == set(waves.names)
    assert verdict(g, ranges).startswith("Out of distribution")


def test_held_out_ranges_need_toy_sources_and_a_likelihood():
    with pytest.raises(ValueError, match="toy clips"):
        heldout_ranges(GaussianPriors(torch.zeros(2), torch.ones(2)), 0.1)


def test_priors_that_know_moving_notes_judge_a_clip_by_what_its_bands_do_beyond_a_decay():
    from tests.conftest import song_like

    variants = toy_variants(load_priors("harmonic"))
    assert variants == ("continuous", "keys", "moving") and toy_variants(load_priors("waves")) == ("keys",)
    moving = mixing.mix(toy.toy_test_set(8, 14_700, seed=9, options="moving"))
    # the on-key toy's statistic takes a decaying note for music; the detrended one does not
    assert any(toy_priors_note(m, 14_700) for m in moving)
    assert not any(toy_priors_note(m, 14_700, variants=variants) for m in moving)
    note = toy_priors_note(torch.as_tensor(song_like()), 14_700, variants=variants)
    assert note is not None and "vibrato and decays" in note


def test_measured_ranges_of_gaussian_clips_under_their_own_gaussian_are_zero_and_keep_leaves_clips_out():
    from sepmodels.heldout import measure_ranges

    x = torch.randn(5, 2, 4000, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    x = x / x.square().mean(-1, keepdim=True).sqrt() * torch.tensor([0.3, 0.1], dtype=torch.float64)[:, None]
    priors = GaussianPriors(torch.zeros(2), torch.tensor([0.09, 0.01]), names=("a", "b"))
    loud = x.clone()
    loud[0, 1] *= 5  # one clip of b much louder than b's prior expects: its gain is far below 0
    ranges = measure_ranges(priors, loud, 0.01)
    assert ranges["b"].low < -1 and abs(ranges["a"].low) < 1e-6 and abs(ranges["a"].high) < 1e-6
    keep = torch.ones(5, 2, dtype=torch.bool)
    keep[0, 1] = False
    kept = measure_ranges(priors, loud, 0.01, keep)
    assert abs(kept["b"].low) < 1e-6 and abs(kept["b"].high) < 1e-6 and kept["b"].clips == 4


def test_sounding_crops_skip_the_rests_and_keep_each_source_in_its_column():
    from sepmodels.heldout import sounding_crops

    t = torch.arange(20_000) / 14_700
    half = torch.cat([torch.zeros(10_000), 0.5 * torch.sin(2 * torch.pi * 440 * t[:10_000])])  # a rest, a note
    loud = 0.1 * torch.randn(20_000, generator=torch.Generator().manual_seed(0))
    crops = sounding_crops({"note": half, "hiss": loud}, ("hiss", "note"), clips=16, length=1000, seed=1)
    assert crops.shape == (16, 2, 1000)
    assert (crops[:, 1].square().mean(-1) > 0.05).all()  # never a crop of the rest (nor one mostly of it)
    assert torch.allclose(crops[:, 0].square().mean(-1).sqrt(), torch.full((16,), 0.1), atol=0.02)
    click = torch.zeros(1_000_000)
    click[500_000] = 1.0  # one click in a minute of silence: a crop that holds it is found too rarely
    with pytest.raises(ValueError, match="sounding crops"):
        sounding_crops({"x": click}, ("x",), 8, 1000, 0)


def test_ranges_a_checkpoint_carries_are_read_back_only_at_their_sigma_and_for_their_sources():
    from sepmodels.heldout import ranges_meta, stored_ranges

    ranges = {"drums": HeldoutRange(-0.1, 1.5, 32, 0.01), "bass": HeldoutRange(0.8, 1.4, 30, 0.01)}
    priors = GaussianPriors(torch.zeros(2), torch.ones(2), names=("drums", "bass"))
    priors.meta = {"heldout": ranges_meta(ranges, "valid crops")}
    back = stored_ranges(priors, 0.01)
    assert back["drums"] == HeldoutRange(-0.1, 1.5, 30, 0.01) and back["bass"].describe() == "0.800 to 1.400"
    assert heldout_ranges(priors, 0.01) == back  # priors of other sources than the toy's: what they carry
    assert stored_ranges(priors, 0.03) is None
    with pytest.raises(ValueError, match=r"carry no held-out ranges at sigma 0\.03"):
        heldout_ranges(priors, 0.03)
    priors.names = ("drums", "vocals")
    assert stored_ranges(priors, 0.01) is None


def test_the_shipped_stems_flow_priors_carry_their_held_out_ranges():
    from sepmodels.checkpoint import stems_priors_path
    from sepmodels.heldout import stored_ranges

    priors = load_priors(stems_priors_path("flow"))
    ranges = stored_ranges(priors, priors.default_sigma)
    assert ranges is not None and set(ranges) == {"drums", "bass", "other", "vocals"}
    assert all(r.low < r.high and r.clips == 32 for r in ranges.values())
    assert "valid split" in priors.meta["heldout"]["where"]
