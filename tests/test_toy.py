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
