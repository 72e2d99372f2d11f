import csv

import pytest
import torch

from sepmodels.data import toy
from sepmodels.inference.langevin import LangevinConfig, run
from sepmodels.nn.score import ScoreConfig, ScoreNet
from sepmodels.priors import PriorSet
from sepmodels.train import LOG_FILE, TrainConfig, Trainer
from tests.flowcheck import perturb

TINY = ScoreConfig.preset("tiny")


def test_shapes_groups_and_score_definition():
    net = perturb(ScoreNet(3, TINY), 0.2).eval()
    x = torch.randn(2, 3, 32, requires_grad=True)
    eps_hat = net(x, torch.tensor([0.1, 0.5]))
    assert eps_hat.shape == (2, 3, 32)
    torch.testing.assert_close(
        net.score(x, torch.tensor([0.1, 0.5])), -eps_hat / torch.tensor([0.1, 0.5])[:, None, None]
    )
    (grad,) = torch.autograd.grad(eps_hat[:, 1].sum(), x)
    assert grad[:, [0, 2]].abs().max() == 0  # group 1 sees only its own input
    with pytest.raises(ValueError, match="multiple of 2"):
        net(torch.zeros(1, 3, 31), 0.1)


def test_receptive_field_bounds_the_dependency():
    net = perturb(ScoreNet(1, ScoreConfig(fold=2, layers=3, width=4, cond_features=4)), 0.3).eval()
    x = torch.randn(1, 1, 128, requires_grad=True)
    (grad,) = torch.autograd.grad(net(x, 0.1)[0, 0, 64], x)
    support = (grad[0, 0].abs() > 0).nonzero().flatten()
    assert int(support.max() - support.min() + 1) <= net.receptive_field()
    assert ScoreNet(4, ScoreConfig.preset("default")).receptive_field() >= 4096


def test_score_priors_train_load_and_drive_a_sampler(tmp_path):
    cfg = TrainConfig(steps=30, batch_size=4, length=128, lr=3e-3, checkpoint_every=30, log_every=1)
    Trainer(tmp_path, TINY, cfg, progress=False).run()
    priors = PriorSet.load(tmp_path / "priors.pt")
    assert priors.kind == "score" and not priors.has_likelihood
    assert priors.meta["objective"] == "denoising score matching"
    x = torch.randn(1, 4, 64)
    log_prob, score = priors.log_prob_and_score(x, 0.1)
    assert log_prob is None and score.shape == (1, 4, 64)
    with pytest.raises(TypeError, match="no likelihood"):
        priors.log_prob(x, 0.1)
    with pytest.raises(TypeError, match="no likelihood"):
        priors.cross_log_prob(x[:, 0], 0.1)
    assert priors.sample(2, 64, 0.1).shape == (2, 4, 64)
    truth = toy.toy_test_set(1, 128)[0]
    last = run(truth.mean(0), priors, LangevinConfig(levels=2, steps=3), truth=truth)
    assert last.log_prob is None and torch.isfinite(last.sources).all() and last.si_sdr.shape == (4,)


def test_denoising_loss_falls(tmp_path):
    cfg = TrainConfig(steps=60, batch_size=8, length=128, lr=3e-3, checkpoint_every=60, log_every=1)
    Trainer(tmp_path, ScoreConfig(fold=2, layers=3, width=8, cond_features=4), cfg, progress=False).run()
    with (tmp_path / LOG_FILE).open() as f:
        rows = list(csv.DictReader(f))
    values = [float(r["loss"]) for r in rows]
    assert sum(values[-10:]) / 10 < sum(values[:10]) / 10
    assert rows[0]["nats_per_sample"] == ""  # a score network's loss is not a likelihood


GLOBAL_TINY = ScoreConfig(fold=2, layers=2, width=4, cond_features=4, global_context=True)


def test_global_context_starts_at_zero_and_then_reaches_the_whole_clip():
    torch.manual_seed(0)
    local = perturb(ScoreNet(3, ScoreConfig(fold=2, layers=2, width=4, cond_features=4)), 0.2).eval()
    wide = ScoreNet(3, GLOBAL_TINY).eval()
    missing, unexpected = wide.load_state_dict(local.state_dict(), strict=False)
    assert unexpected == [] and all(".context." in k for k in missing)
    x = torch.randn(2, 3, 256, requires_grad=True)
    torch.testing.assert_close(wide(x, 0.1), local(x, 0.1))  # the context path starts as nothing
    assert wide.receptive_field() == float("inf")
    wide = perturb(wide, 0.2)
    (grad,) = torch.autograd.grad(wide(x, 0.1)[0, 1, :16].sum(), x)
    assert grad[0, 1, -32:].abs().max() > 0  # the first samples now hear the end of the clip
    assert grad[1].abs().max() == 0 and grad[0, [0, 2]].abs().max() == 0  # not other examples or groups


def test_global_context_parameters_learn(tmp_path):
    cfg = TrainConfig(steps=3, batch_size=2, length=64, checkpoint_every=3, log_every=1)
    trainer = Trainer(tmp_path, GLOBAL_TINY, cfg, progress=False)
    trainer.run()
    assert any(p.abs().max() > 0 for n, p in trainer.model.named_parameters() if ".context." in n)
    assert PriorSet.load(tmp_path / "priors.pt").config.global_context


SPECTRAL = ScoreConfig.preset("spectral_tiny")


def test_spectral_network_shapes_groups_and_whole_clip_dependency():
    net = perturb(ScoreNet(3, SPECTRAL), 0.2).eval()
    x = torch.randn(2, 3, 101, requires_grad=True)  # any length: no fold
    sigma = torch.tensor([0.1, 2.0])
    eps_hat = net(x, sigma)
    assert eps_hat.shape == (2, 3, 101) and torch.isfinite(eps_hat).all()
    (grad,) = torch.autograd.grad(eps_hat[:, 1, 50].sum(), x)
    assert grad[:, [0, 2]].abs().max() == 0  # group 1 sees only its own input
    assert (grad[:, 1].abs() > 0).all()  # ... all of it: the whole clip's spectrum
    denoised = x - sigma[:, None, None] * eps_hat  # the network's own output, read back
    torch.testing.assert_close(net.net(x, sigma), denoised, rtol=1e-4, atol=1e-5)
    assert net.receptive_field() == float("inf")


def test_spectral_network_starts_as_a_wiener_like_gain_that_denoises_a_steady_tone():
    net = ScoreNet(1, ScoreConfig.preset("spectral")).eval()  # untrained: the output layer is zero
    t = torch.arange(4096) / toy.SAMPLE_RATE
    clean = torch.sin(2 * torch.pi * 440.0 * t)[None, None]
    noisy = clean + 1.0 * torch.randn(1, 1, 4096, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        denoised = noisy - net(noisy, torch.tensor([1.0]))
    from sepmodels.metrics import si_sdr

    assert float(si_sdr(denoised, clean)) > float(si_sdr(noisy, clean)) + 10


def test_spectral_config_is_checked():
    with pytest.raises(ValueError, match="fold must be 1"):
        ScoreConfig(arch="spectral", fold=4)
    with pytest.raises(ValueError, match="arch"):
        ScoreConfig(arch="transformer")
    assert ScoreConfig(**ScoreConfig.preset("default").to_dict()).arch == "wavenet"  # old checkpoints' configs


def test_sdr_loss_reads_the_error_in_decibels():
    from sepmodels.nn.score import sdr_loss

    clean = torch.randn(2, 4, 64)
    assert float(sdr_loss(clean, clean)) == pytest.approx(-6.0)  # the 60 dB floor
    assert float(sdr_loss(torch.zeros_like(clean), clean)) == pytest.approx(0.0, abs=1e-5)
    assert float(sdr_loss(clean + 0.1 * clean, clean)) == pytest.approx(-2.0, abs=1e-4)  # 20 dB


def test_spectral_priors_train_with_the_sdr_objective_and_load(tmp_path):
    cfg = TrainConfig(steps=20, batch_size=4, length=512, lr=3e-3, sigma_max=30.0, objective="sdr",
                      checkpoint_every=20, log_every=1)  # fmt: skip
    from sepmodels.nn.score import sdr_loss

    trainer = Trainer(tmp_path, SPECTRAL, cfg, progress=False)
    clean = toy.toy_test_set(8, 512, seed=5)
    noisy = clean + 0.3 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))

    def held_out() -> float:  # the loss on fixed clips at one noise level (a batch's loss varies with sigma)
        with torch.no_grad():
            return float(sdr_loss(noisy - 0.3 * trainer.model(noisy, torch.full((8,), 0.3)), clean))

    before = held_out()
    priors = trainer.run()
    with (tmp_path / LOG_FILE).open() as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 20 and all(torch.isfinite(torch.tensor(losses)))
    assert held_out() < before
    loaded = PriorSet.load(tmp_path / "priors.pt")
    assert loaded.kind == "score" and loaded.config.arch == "spectral"
    x = toy.toy_test_set(1, 600)
    assert loaded.denoise(x, 1.0).shape == x.shape and loaded.valid_length(601) == 601
    assert priors.meta["train_config"]["objective"] == "sdr"
    with pytest.raises(ValueError, match="objective"):
        TrainConfig(objective="l1")
