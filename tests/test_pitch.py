"""The single-pitch denoiser (score arch ``pitch``): one pitch per clip, its harmonic comb passed."""

import torch

from sepmodels.data import toy
from sepmodels.metrics import si_sdr
from sepmodels.nn.pitch import PitchDenoiser, candidate_hz
from sepmodels.nn.score import ScoreConfig, ScoreNet

CONFIG = ScoreConfig.preset("pitch")


def test_the_candidate_grid_holds_every_piano_key():
    hz = candidate_hz()
    keys = toy.key_frequency(torch.arange(1, 89))
    assert torch.allclose(hz[2::4].float(), keys.float(), rtol=1e-6)  # keys 1..88 sit on every fourth candidate


def test_an_untrained_head_denoises_a_tone_and_keeps_out_another():
    """Its initial weights (1/h salience, every partial passed) already find the pitch of a clean tone in noise,
    and commit to one pitch: a second tone of another pitch added to a sine is mostly kept out."""
    torch.manual_seed(0)
    net = ScoreNet(4, CONFIG).eval()
    T = toy.SAMPLE_RATE
    t = torch.arange(T) / T
    sine = 0.9 * torch.sin(2 * torch.pi * 440.0 * t)
    other = 0.5 * torch.sin(2 * torch.pi * 1318.5 * t)  # E6, not a harmonic of A4
    noise = torch.randn(T, generator=torch.Generator().manual_seed(1))
    x = torch.stack([sine, sine, sine, sine])[None]
    with torch.no_grad():
        solo = net.denoise(x + 0.5 * noise, 0.5)[0, 0]
        mixed = net.denoise(x + other + 0.5 * noise, 0.5)[0, 0]
    assert float(si_sdr(solo, sine)) > 15  # the noisy input: about -2 dB
    assert float(si_sdr(mixed, sine)) > 5  # passing the other tone whole would give about 5 dB less


def test_computing_some_groups_gives_the_same_numbers_as_all():
    torch.manual_seed(0)
    net = PitchDenoiser(4, CONFIG, toy.SAMPLE_RATE)
    x = toy.toy_test_set(2, 2048) + 0.3 * torch.randn(2, 4, 2048)
    sigma = torch.full((2,), 0.3)
    full = net(x, sigma)
    torch.testing.assert_close(net(x[:, [1, 3]], sigma, groups=[1, 3]), full[:, [1, 3]])


def test_the_shipped_pitch_priors_separate_a_toy_mix():
    """The samplers' default priors on one 1 s toy mix with the residual sweep: every source above the mix."""
    from sepmodels.checkpoint import PITCH_PRIORS, default_priors_path
    from sepmodels.inference.separator import make_separator
    from sepmodels.priors import PriorSet

    priors = PriorSet.load(default_priors_path().parent / PITCH_PRIORS)
    assert priors.kind == "score" and priors.config.arch == "pitch"
    truth = toy.toy_test_set(1, toy.SAMPLE_RATE, seed=0)[0]
    mixture = truth.mean(0)
    estimates = make_separator("residual", priors).separate(mixture)
    floor = si_sdr(mixture.expand_as(truth), truth)
    assert (si_sdr(estimates, truth) > floor + 10).all()
