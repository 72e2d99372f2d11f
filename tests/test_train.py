import csv
import os
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

import sepmodels.nn.flows as flows_mod
from sepmodels.checkpoint import load_checkpoint
from sepmodels.nn.flows import FlowConfig
from sepmodels.priors import PriorSet
from sepmodels.train import TrainConfig, Trainer, TrainingError, draw_sigma, lr_at

TINY = FlowConfig.preset("tiny")
CFG = TrainConfig(steps=6, batch_size=2, length=128, lr=1e-3, checkpoint_every=3, log_every=1)


def _state(path):
    return load_checkpoint(path)["state_dict"]


def test_training_lowers_the_loss_and_writes_everything(tmp_path):
    cfg = replace(CFG, steps=40, batch_size=4, length=256, lr=3e-3, checkpoint_every=20)
    priors = Trainer(tmp_path, TINY, cfg, progress=False).run()
    assert isinstance(priors, PriorSet)
    with (tmp_path / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 40
    first = sum(float(r["loss"]) for r in rows[:5]) / 5
    last = sum(float(r["loss"]) for r in rows[-5:]) / 5
    assert last < first
    ckpt = load_checkpoint(tmp_path / "priors.pt")
    assert ckpt["class"] == "FlowPrior" and ckpt["meta"]["step"] == 40 and "optimizer" in ckpt
    assert ckpt["config"] == TINY.to_dict()
    loaded = PriorSet.load(tmp_path / "priors.pt")
    assert loaded.names == ("sin", "square", "saw", "triangle")


def test_lr_schedule_is_the_thesis_five_step_decay():
    cfg = TrainConfig(steps=600, lr=1.0)
    lrs = sorted({round(lr_at(s, cfg), 6) for s in range(600)}, reverse=True)
    assert lrs == [round(0.6**k, 6) for k in range(6)]
    assert lr_at(99, cfg) == 1.0 and lr_at(100, cfg) == pytest.approx(0.6)


def test_sigma_is_drawn_over_the_ladder_range():
    s = draw_sigma(5000, TrainConfig().ladder, torch.Generator().manual_seed(0))
    assert s.min() >= 0.01 and s.max() <= 1.0
    assert (s < 0.03).any() and (s > 0.3).any()
    # log-uniform: the median sits at the geometric mean of the range
    assert s.log10().median() == pytest.approx(-1.0, abs=0.05)


def test_resume_continues_exactly(tmp_path, monkeypatch):
    straight = tmp_path / "straight"
    Trainer(straight, TINY, CFG, progress=False).run()

    broken = tmp_path / "broken"
    real_nll, calls = flows_mod.nll, {"n": 0}

    def nll_failing_at_step_5(z, logdet):
        calls["n"] += torch.is_grad_enabled()  # the ActNorm initialisation runs without grad
        return torch.tensor(float("nan")) if calls["n"] == 5 else real_nll(z, logdet)

    monkeypatch.setattr(flows_mod, "nll", nll_failing_at_step_5)
    with pytest.raises(TrainingError, match=r"loss became nan at step 5; the last good checkpoint .* step 3"):
        Trainer(broken, TINY, CFG, progress=False).run()
    assert load_checkpoint(broken / "priors.pt")["meta"]["step"] == 3  # kept, not overwritten
    monkeypatch.setattr(flows_mod, "nll", real_nll)

    Trainer(broken, TINY, CFG, resume=True, progress=False).run()
    a, b = _state(straight / "priors.pt"), _state(broken / "priors.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    with (broken / "train_log.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(TrainingError, match="does not exist"):
        Trainer(tmp_path, TINY, CFG, resume=True, progress=False)


def test_plain_prior_trains_at_the_minimum_noise(tmp_path):
    plain = replace(TINY, noise_conditional=False)
    trainer = Trainer(tmp_path, plain, CFG, progress=False)
    _, sigma, _, labels = trainer.batch()
    assert labels is None  # toy clips carry no classes
    assert torch.all(sigma == CFG.sigma_min)
    priors = trainer.run()
    x = torch.randn(1, 4, 64)
    torch.testing.assert_close(priors.log_prob(x, 0.5), priors.log_prob(x))  # sigma ignored


@pytest.mark.slow
def test_distributed_training_with_gloo_on_two_processes(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "sepmodels",
        "train",
        "--config",
        "tiny",
        "--steps",
        "4",
        "--length",
        "128",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    ckpt = load_checkpoint(tmp_path / "priors.pt")
    assert ckpt["meta"]["world_size"] == 2 and ckpt["meta"]["step"] == 4
    assert len(ckpt["rng"]) == 2  # each rank's data stream is saved
    assert not torch.equal(ckpt["rng"][0]["data"], ckpt["rng"][1]["data"])
    assert result.stdout.count("trained 4 steps") == 1  # only rank 0 reports
    resumed = [*cmd[: cmd.index("--steps") + 1], "6", *cmd[cmd.index("--steps") + 2 :], "--resume"]
    result = subprocess.run(resumed, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert load_checkpoint(tmp_path / "priors.pt")["meta"]["step"] == 6


def test_bf16_autocast_keeps_a_float32_loss_and_float32_weights(tmp_path):
    trainer = Trainer(tmp_path, TINY, replace(CFG, precision="bf16"), progress=False)
    loss = trainer.loss(trainer.model)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    trainer.run()
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())  # autocast keeps fp32 weights


def test_compiled_training_matches_eager(tmp_path):
    from sepmodels.nn.score import ScoreConfig

    tiny = ScoreConfig.preset("tiny")
    cfg = replace(CFG, steps=2, checkpoint_every=2)
    eager = Trainer(tmp_path / "eager", tiny, cfg, progress=False)
    eager.run()
    compiled = Trainer(tmp_path / "compiled", tiny, replace(cfg, compile=True), progress=False)
    compiled.run()
    for (name, a), b in zip(eager.model.state_dict().items(), compiled.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=name)


def test_a_time_budget_stops_training_and_saves_where_it_stopped(tmp_path):
    trainer = Trainer(tmp_path, TINY, replace(CFG, steps=1000, max_seconds=1e-6), progress=False)
    priors = trainer.run()
    assert trainer.stopped_early and trainer.step == 1  # the budget is checked after every step
    assert load_checkpoint(tmp_path / "priors.pt")["meta"]["step"] == 1 and priors.meta["step"] == 1
    roomy = Trainer(tmp_path / "roomy", TINY, replace(CFG, max_seconds=3600.0), progress=False)
    roomy.run()
    assert not roomy.stopped_early and roomy.step == CFG.steps
    with pytest.raises(ValueError, match="max_seconds"):
        TrainConfig(max_seconds=0)


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        TrainConfig(precision="fp8")
