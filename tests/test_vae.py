"""The truncated normal, the VAE posterior's ELBO, its training, and separation with it."""

import math

import numpy as np
import pytest
import scipy.stats as st
import soundfile as sf
import torch

from sepmodels.checkpoint import CheckpointError
from sepmodels.cli import main
from sepmodels.data import toy
from sepmodels.inference.posterior import Demixer, elbo
from sepmodels.nn.vae import TruncatedNormal, VAEConfig, VAEEncoder
from sepmodels.priors import GaussianPriors
from sepmodels.train import TrainConfig, Trainer, TrainingError

CASES = [(0.3, 0.2), (-0.9, 0.5), (0.99, 1e-3), (0.0, 3.0), (1.0, 0.05), (-1.0, 0.4)]


def _scipy(loc, scale):
    return st.truncnorm((-1 - loc) / scale, (1 - loc) / scale, loc=loc, scale=scale)


@pytest.mark.parametrize(("loc", "scale"), CASES)
def test_log_prob_mean_and_entropy_match_scipy(loc, scale):
    q = TruncatedNormal(torch.tensor(loc, dtype=torch.float64), torch.tensor(scale, dtype=torch.float64))
    ref = _scipy(loc, scale)
    x = torch.linspace(max(-1.0, loc - 3 * scale), min(1.0, loc + 3 * scale), 7, dtype=torch.float64)
    np.testing.assert_allclose(q.log_prob(x).numpy(), ref.logpdf(x.numpy()), rtol=1e-9, atol=1e-9)
    assert float(q.mean) == pytest.approx(ref.mean(), abs=1e-9)
    assert float(q.entropy()) == pytest.approx(ref.entropy(), abs=1e-7)


@pytest.mark.parametrize(("loc", "scale"), CASES)
def test_samples_stay_inside_and_follow_the_distribution(loc, scale):
    n = 20_000
    q = TruncatedNormal(torch.full((n,), loc, dtype=torch.float64), torch.full((n,), scale, dtype=torch.float64))
    x = q.rsample(torch.Generator().manual_seed(0))
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    ks = st.kstest(x.numpy(), _scipy(loc, scale).cdf)
    assert ks.pvalue > 1e-3, ks


def test_density_integrates_to_one_and_is_zero_outside():
    q = TruncatedNormal(torch.tensor(0.7, dtype=torch.float64), torch.tensor(0.6, dtype=torch.float64))
    x = torch.linspace(-1, 1, 200_001, dtype=torch.float64)
    assert float(torch.trapezoid(q.log_prob(x).exp(), x)) == pytest.approx(1.0, abs=1e-6)
    assert q.log_prob(torch.tensor([-1.01, 1.01], dtype=torch.float64)).isneginf().all()


def test_gradients_reach_loc_and_scale_through_samples():
    loc = torch.tensor([0.2, -0.5], requires_grad=True)
    scale = torch.tensor([0.3, 0.1], requires_grad=True)
    q = TruncatedNormal(loc, scale)
    x = q.rsample(torch.Generator().manual_seed(1))
    (x.sum() + q.log_prob(x).sum()).backward()
    assert torch.isfinite(loc.grad).all() and loc.grad.abs().min() > 0
    assert torch.isfinite(scale.grad).all() and scale.grad.abs().min() > 0


def test_encoder_shapes_groups_and_bounds():
    enc = VAEEncoder(3, VAEConfig.preset("tiny"))
    m = torch.randn(2, 64).clamp(-1, 1).requires_grad_(True)
    q = enc(m)
    assert q.loc.shape == q.scale.shape == (2, 3, 64)
    assert float(q.loc.detach().abs().max()) <= 1 and float(q.scale.detach().min()) >= enc.config.min_scale
    (grad,) = torch.autograd.grad(q.loc[0].sum(), m)
    assert grad[1].abs().max() == 0  # each mix only informs its own posterior
    with pytest.raises(ValueError, match="multiple of 2"):
        enc(torch.zeros(1, 63))


def test_elbo_terms_match_a_hand_computation():
    torch.manual_seed(0)
    enc = VAEEncoder(2, VAEConfig(fold=2, layers=2, width=4, gamma=0.1, beta=0.5, prior_sigma=0.0))
    priors = GaussianPriors(torch.zeros(2), torch.tensor([0.2, 0.3]))
    m = 0.3 * torch.randn(3, 32).clamp(-1, 1)
    got = elbo(enc, priors, m, generator=torch.Generator().manual_seed(5))
    q = enc(m)
    s = q.rsample(torch.Generator().manual_seed(5))
    mixing = (-0.5 * (m - s.mean(1)).pow(2) / 0.01 - 0.5 * math.log(2 * math.pi * 0.01)).mean(-1)
    prior = priors.log_prob(s, 0.0).sum(1).mean(-1)
    entropy = -q.log_prob(s).sum(1).mean(-1)
    torch.testing.assert_close(got.mixing, mixing.mean())
    torch.testing.assert_close(got.prior, prior.mean())
    torch.testing.assert_close(got.elbo, (mixing + 0.5 * (prior + entropy)).mean())


def test_vae_trains_against_frozen_priors_and_gives_bounded_means(tiny_priors, tmp_path):
    before = [p.clone() for p in tiny_priors.model.parameters()]
    cfg = TrainConfig(steps=12, batch_size=2, length=128, lr=3e-3, checkpoint_every=6, log_every=1)
    trainer = Trainer(tmp_path, VAEConfig.preset("tiny"), cfg, progress=False, priors=tiny_priors)
    trainer.run()
    assert all(torch.equal(a, b) for a, b in zip(before, tiny_priors.model.parameters(), strict=True))
    demixer = Demixer.load(tmp_path / "priors.pt")
    assert demixer.names == toy.SOURCES and demixer.meta["objective"] == "ELBO"
    out = demixer.separate(toy.toy_test_set(1, 101)[0].mean(0))
    assert out.shape == (4, 101) and float(out.abs().max()) <= 1


def test_vae_training_resumes_exactly_after_a_nan(tiny_priors, tmp_path, monkeypatch):
    import sepmodels.inference.posterior as train_mod  # where the VAE kind's loss finds elbo

    cfg = TrainConfig(steps=8, batch_size=2, length=64, lr=3e-3, checkpoint_every=4, log_every=1)
    Trainer(tmp_path / "straight", VAEConfig.preset("tiny"), cfg, progress=False, priors=tiny_priors).run()
    real, calls = train_mod.elbo, {"n": 0}

    def failing_at_step_6(*args, **kwargs):
        calls["n"] += 1
        result = real(*args, **kwargs)
        if calls["n"] == 6:
            result.elbo = result.elbo * float("nan")
        return result

    monkeypatch.setattr(train_mod, "elbo", failing_at_step_6)
    broken = tmp_path / "broken"
    with pytest.raises(TrainingError, match="step 6"):
        Trainer(broken, VAEConfig.preset("tiny"), cfg, progress=False, priors=tiny_priors).run()
    monkeypatch.setattr(train_mod, "elbo", real)
    Trainer(broken, VAEConfig.preset("tiny"), cfg, resume=True, progress=False, priors=tiny_priors).run()
    a = Demixer.load(tmp_path / "straight" / "priors.pt").encoder.state_dict()
    b = Demixer.load(broken / "priors.pt").encoder.state_dict()
    for key, value in a.items():
        assert torch.equal(b[key], value), key


def test_a_vae_needs_priors_with_a_likelihood(tmp_path):
    with pytest.raises(TrainingError, match="flow or wave priors"):
        Trainer(tmp_path, VAEConfig.preset("tiny"), TrainConfig(steps=1), progress=False)


def test_the_elbo_of_the_wave_priors_has_their_exact_score_as_gradient():
    from sepmodels.nn.waves import WavePriors

    priors = WavePriors.load()
    s = (0.2 * toy.toy_test_set(2, 600, seed=3)).requires_grad_(True)  # [2, 4, 600], quiet: a poor fit
    (priors.log_prob(s, 0.1).sum(dim=(1, 2)) * torch.tensor([1.0, 3.0])).sum().backward()
    score = priors.score(s.detach(), 0.1)
    torch.testing.assert_close(s.grad, score * torch.tensor([1.0, 3.0])[:, None, None])
    # and that gradient is the log-density's own slope, by central differences along a random direction
    v = torch.randn(s.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    eps, weights, x = 1e-6, torch.tensor([1.0, 3.0], dtype=torch.float64), s.detach().double()
    with torch.no_grad():
        up = (priors.log_prob(x + eps * v, 0.1).double().sum(dim=(1, 2)) * weights).sum()
        down = (priors.log_prob(x - eps * v, 0.1).double().sum(dim=(1, 2)) * weights).sum()
    assert float((s.grad.double() * v).sum()) == pytest.approx(float((up - down) / (2 * eps)), rel=1e-3)
    with pytest.raises(RuntimeError, match="sum over time"):  # one sample alone has no cheap gradient
        priors.log_prob(s, 0.1)[..., 0].sum().backward()


def test_the_cli_trains_a_vae_against_the_wave_priors_on_the_cpu(tmp_path, capsys):
    from sepmodels.checkpoint import default_wave_priors_path

    out, waves = tmp_path / "vae", str(default_wave_priors_path())
    assert main(["train", "--model", "vae", "--config", "tiny", "--priors", waves, "--prior-sigma", "0.1",
                 "--steps", "2", "--batch-size", "2", "--length", "600", "--out", str(out),
                 "--quiet"]) == 0  # fmt: skip
    demixer = Demixer.load(out / "priors.pt")
    assert demixer.meta["priors"]["kind"] == "waves" and demixer.names == toy.SOURCES
    assert demixer.encoder.config.prior_sigma == 0.1
    assert torch.isfinite(demixer.separate(toy.toy_test_set(1, 600)[0].mean(0))).all()


def test_a_priors_file_is_not_a_posterior(tiny_priors_path):
    with pytest.raises(CheckpointError, match="not a VAE posterior"):
        Demixer.load(tiny_priors_path)


def test_cli_trains_separates_and_evaluates_with_the_vae(tiny_priors_path, tmp_path, capsys):
    out = tmp_path / "vae"
    assert main(["train", "--model", "vae", "--config", "tiny", "--priors", tiny_priors_path, "--steps", "2",
                 "--batch-size", "2", "--length", "64", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    mix = tmp_path / "mix.wav"
    sf.write(mix, toy.toy_test_set(1, 700)[0].mean(0).numpy(), toy.SAMPLE_RATE)
    sep = tmp_path / "sep"
    code = main(
        ["separate", str(mix), "--method", "vae", "--posterior", str(out / "priors.pt"), "--out", str(sep)]
    )
    assert code == 0
    assert sorted(p.name for p in sep.iterdir()) == [f"{n}.wav" for n in sorted(toy.SOURCES)]
    assert sf.info(sep / "saw.wav").frames == 700
    capsys.readouterr()
    assert main(["evaluate", "--method", "vae", "--posterior", str(out / "priors.pt"), "--n", "1",
                 "--seconds", "0.01", "--json"]) == 0  # fmt: skip
    assert '"method": "vae"' in capsys.readouterr().out
    missing = str(tmp_path / "missing.pt")
    assert main(["separate", str(mix), "--method", "vae", "--posterior", missing, "--out", str(sep)]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["train", "--model", "score", "--priors", tiny_priors_path, "--out", str(tmp_path / "x")]) == 1
    assert main(["train", "--model", "flow", "--prior-sigma", "0.1", "--out", str(tmp_path / "x")]) == 1
    assert "--prior-sigma is for --model vae" in capsys.readouterr().err
