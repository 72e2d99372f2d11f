import math

import pytest
import torch

from sepmodels.metrics import si_sdr


def test_si_sdr_hand_computed_cases():
    ref = torch.tensor([1.0, -1.0, 1.0, -1.0])
    noise = torch.tensor([1.0, 1.0, -1.0, -1.0])  # orthogonal to ref, same energy, zero mean
    assert float(si_sdr(ref + noise, ref)) == pytest.approx(0.0, abs=1e-5)
    assert float(si_sdr(ref + 0.1 * noise, ref)) == pytest.approx(20.0, abs=1e-4)
    assert float(si_sdr(3.0 * ref + 0.3 * noise, ref)) == pytest.approx(20.0, abs=1e-4)  # scale-invariant
    assert float(si_sdr(ref + 7.0, ref)) > 100  # offsets are removed
    assert float(si_sdr(noise, ref)) < -100


def test_si_sdr_of_a_mean_mix_against_each_source():
    t = torch.arange(1000.0)
    a, b = torch.sin(0.1 * t), torch.sin(0.37 * t)
    mix = 0.5 * (a + b)
    # equal energies, nearly orthogonal: about 0 dB for each
    vals = si_sdr(torch.stack([mix, mix]), torch.stack([a, b]))
    assert vals.shape == (2,)
    assert all(abs(float(v)) < 0.2 for v in vals)
    assert math.isfinite(float(vals[0]))
    with pytest.raises(ValueError, match="differ in shape"):
        si_sdr(torch.zeros(3), torch.zeros(4))
