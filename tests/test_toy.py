import math

import numpy as np
import pytest
import scipy.signal
import torch

from sepmodels import mixing
from sepmodels.data import toy


def test_source_order_and_rate():
    assert toy.SOURCES == ("sin", "square", "saw", "triangle")
    assert toy.SAMPLE_RATE == 14_700


def test_piano_keys():
    f = toy.key_frequency(torch.tensor([1, 49, 88]))
    torch.testing.assert_close(f, torch.tensor([27.5, 440.0, 4186.009], dtype=torch.float64), atol=1e-3, rtol=0)


@pytest.mark.parametrize(
    ("kind", "reference"),
    [
        ("sin", np.sin),
        ("square", lambda p: scipy.signal.square(p, duty=0.5)),
        ("saw", lambda p: scipy.signal.sawtooth(p, width=1.0)),
        ("triangle", lambda p: scipy.signal.sawtooth(p, width=0.5)),
    ],
)
def test_waveforms_follow_scipy(kind, reference):
    # avoid phases within rounding of a discontinuity, where either side is right
    phase = np.linspace(-7.0, 20.0, 5001) + 1e-4
    ours = toy.oscillator(kind, torch.from_numpy(phase)).numpy()
    np.testing.assert_allclose(ours, reference(phase), atol=1e-9)


def test_unknown_oscillator():
    with pytest.raises(ValueError, match="unknown oscillator 'noise'"):
        toy.oscillator("noise", torch.zeros(3))


def test_parameters_are_in_range():
    p = toy.draw_params(2000, torch.Generator().manual_seed(0))
    assert p.key.min() >= 1 and p.key.max() <= 88 and len(p.key.unique()) == 88
    assert p.amplitude.min() >= 0.8 and p.amplitude.max() <= 1.0
    assert p.phase.min() >= 0 and p.phase.max() < 2 * math.pi
    f = p.frequency
    assert f.min() >= 27.5 - 1e-9 and f.max() <= 4186.01


def test_render_shape_range_and_frequency():
    p = toy.ToyClipParams(
        key=torch.tensor([[49, 49, 49, 49]]),
        phase=torch.zeros(1, 4, dtype=torch.float64),
        amplitude=torch.full((1, 4), 0.9, dtype=torch.float64),
    )
    x = toy.render(p, 14_700)
    assert x.shape == (1, 4, 14_700) and x.dtype == torch.float32
    assert x.abs().max() <= 0.9 + 1e-6
    spectrum = torch.fft.rfft(x[0, 0].double()).abs()
    assert int(spectrum.argmax()) == 440  # 1 s clip: bin k is k Hz


def test_streams_are_deterministic_and_test_set_is_disjoint():
    a = next(toy.toy_stream(4, 256, seed=3))
    b = next(toy.toy_stream(4, 256, seed=3))
    assert torch.equal(a, b)
    assert not torch.equal(a, next(toy.toy_stream(4, 256, seed=4)))
    t1, t2 = toy.toy_test_set(4, 256), toy.toy_test_set(4, 256)
    assert torch.equal(t1, t2)
    assert not torch.equal(t1, next(toy.toy_stream(4, 256, seed=0)))


def test_mix_is_the_mean_by_default():
    s = torch.randn(2, 4, 10)
    torch.testing.assert_close(mixing.mix(s), s.mean(1))
    torch.testing.assert_close(mixing.mix(s, "sum"), s.sum(1))
    with pytest.raises(ValueError, match="mean' or 'sum"):
        mixing.mix(s, "max")


# -- the richer toy: continuous pitch, vibrato, glides, envelopes ------------------------------------------------
def test_on_key_variant_draws_what_it_always_drew():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(toy.toy_batch(4, 500, g1), toy.toy_batch(4, 500, g2, options="keys"))


def test_continuous_pitch_leaves_the_keys():
    p = toy.toy_test_params(64, seed=5, options="continuous")
    assert p.key.dtype == torch.float64 and float(p.key.min()) >= 1 and float(p.key.max()) <= 88
    assert float((p.key - p.key.round()).abs().max()) > 0.1  # not on the key grid
    clips = toy.toy_test_set(64, 4000, seed=5, options="continuous")
    # the rendered pitch is the drawn one: the periodogram's peak of the sine lies within a bin of it
    n = 1 << 17
    peak = torch.fft.rfft(clips[:, 0].double() * torch.hann_window(4000, dtype=torch.float64), n).abs().argmax(-1)
    hz = peak.double() * toy.SAMPLE_RATE / n
    assert torch.allclose(hz, p.frequency[:, 0], atol=toy.SAMPLE_RATE / n + 1e-9)


def test_moving_notes_follow_their_pitch_track_and_envelope():
    T = toy.SAMPLE_RATE
    p = toy.toy_test_params(6, seed=8, options="moving")
    clips = toy.toy_test_set(6, T, seed=8, options="moving").double()
    assert float(p.vibrato_cents.max()) <= 30 and float(p.vibrato_hz.min()) >= 4 and float(p.vibrato_hz.max()) <= 6
    track = p.pitch_track(T)
    cents = 1200 * torch.log2(track / p.frequency[..., None])
    assert torch.allclose(cents.abs().amax(-1), p.vibrato_cents, atol=0.05)  # the peak deviation is the depth
    # the sine source is its envelope times the sine of the running phase, sample for sample
    phase = p.phase[:, 0, None] + 2 * math.pi / T * (track[:, 0].cumsum(-1) - track[:, 0])
    expected = p.envelope(T)[:, 0] * torch.sin(phase)
    assert torch.allclose(clips[:, 0], expected, atol=1e-5)
    # the envelope decays as drawn: last sample's amplitude over the first is exp(-decay * duration)
    env = p.envelope(T)
    ratio = env[..., -1] / env[..., 0]
    assert torch.allclose(ratio, torch.exp(-p.decay * (T - 1) / T))
    assert float(p.decay.min()) >= 0.5 and float(p.decay.max()) <= 3.0


def test_glide_moves_the_pitch_at_its_rate():
    opt = toy.ToyOptions(pitch="continuous", glide_cents=100.0)
    p = toy.draw_params(5, torch.Generator().manual_seed(1), options=opt)
    track = p.pitch_track(toy.SAMPLE_RATE)
    cents = 1200 * torch.log2(track[..., -1] / track[..., 0])
    assert torch.allclose(cents, p.glide_cents * (toy.SAMPLE_RATE - 1) / toy.SAMPLE_RATE)
    assert float(p.glide_cents.abs().max()) <= 100


@pytest.mark.parametrize(
    "bad",
    [dict(pitch="chromatic"), dict(vibrato_cents=-1.0), dict(vibrato_hz=(0.0, 5.0)), dict(decay=(2.0, 1.0))],
)
def test_bad_toy_options_are_one_clear_error(bad):
    with pytest.raises(ValueError):
        toy.ToyOptions(**bad)


def test_unknown_variant_names_the_choices():
    with pytest.raises(ValueError, match="keys, continuous, moving"):
        toy.toy_options("wobbly")
