"""The MCNN mel-to-waveform inverter: its config, shapes and range, alignment, gradients to every head, the
loss, a short training on synthetic hits, and its checkpoints."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from sepmodels.checkpoint import CheckpointError, save_checkpoint
from sepmodels.drums.mcnn import KIND, MCNN, DrumInverter, MCNNConfig, Upsample, _mcnn_loss
from sepmodels.drums.mel import LogMel
from sepmodels.metrics import spectral_convergence
from sepmodels.nn.contract import TrainBatch

# 2 048-sample hits, 32 bands by 32 frames, six layers for the hop of 64: smaller than the "tiny" preset
TINY = MCNNConfig(length=2048, n_fft=256, hop=64, n_mels=32, heads=2, channels=(16, 8, 8, 4, 4, 4), kernel=10)


def hits(n: int, config: MCNNConfig = TINY, seed: int = 0) -> torch.Tensor:
    """``n`` peak-normalised synthetic drum hits ``[n, length]``: a pitch-dropping decaying sine under a
    shorter noise burst, faded out to the end."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(config.length) / config.sample_rate
    fade = (1 - torch.arange(config.length) / config.length).sqrt()
    out = []
    for _ in range(n):
        f0 = 100 + 1500 * float(torch.rand((), generator=g))
        decay = 20 + 60 * float(torch.rand((), generator=g))
        tone = torch.sin(2 * math.pi * f0 * t * (1 + 0.5 * torch.exp(-30 * t))) * torch.exp(-decay * t)
        burst = 0.5 * torch.randn(config.length, generator=g) * torch.exp(-3 * decay * t)
        hit = (tone + burst) * fade
        out.append(hit / hit.abs().max())
    return torch.stack(out)


def tiny_model(seed: int = 0, config: MCNNConfig = TINY) -> MCNN:
    torch.manual_seed(seed)
    return MCNN(1, config)


def batch_of(audio: torch.Tensor, config: MCNNConfig = TINY) -> TrainBatch:
    clean = audio[:, None]
    B = clean.shape[0]
    return TrainBatch(clean, torch.zeros(B), torch.zeros_like(clean), clean, torch.Generator(), options=config)


# -- config ------------------------------------------------------------------------------------------------
def test_the_config_flattens_a_mel_config_and_survives_a_checkpoint_round_trip():
    c = MCNNConfig()
    assert c.mel.frames == 64 and c.mel.n_mels == 128 and len(c.channels) == 8
    saved = {**TINY.to_dict(), "channels": list(TINY.channels)}  # what a checkpoint gives back
    assert MCNNConfig(**saved) == TINY and isinstance(MCNNConfig(**saved).channels, tuple)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"heads": 0}, "heads must be at least 1"),
        ({"channels": (16, 8, 8, 4, 4)}, "upsample by 32, not the hop"),
        ({"channels": (16, 8, 8, 4, 4, 0)}, "channels must be positive"),
        ({"channels": ()}, "channels must be positive"),
        ({"kernel": 8}, "kernel must be 2 more than a multiple of 4"),
        ({"kernel": 13}, "kernel must be 2 more than a multiple of 4"),
        ({"sc_weight": -1.0}, "must be non-negative"),
        ({"sc_weight": 0.0, "mel_weight": 0.0}, "not both zero"),
        ({"n_fft": 255}, "n_fft must be an even number"),
        ({"length": 2000}, "length must be a positive multiple of the hop"),
    ],
)
def test_bad_configs_fail_in_one_line(change, message):
    with pytest.raises(ValueError, match=message) as err:
        replace(TINY, **change)
    assert "\n" not in str(err.value)


# -- the model ---------------------------------------------------------------------------------------------
def test_output_shape_range_and_input_checks():
    model = tiny_model().eval()
    log_mel = model.mel(hits(3))
    assert log_mel.shape == (3, TINY.n_mels, TINY.length // TINY.hop)
    audio = model.invert(log_mel)
    assert audio.shape == (3, TINY.length) and not audio.requires_grad
    assert torch.isfinite(audio).all() and float(audio.abs().max()) < float(model.scale.detach())
    with torch.no_grad():
        model.scale.fill_(0.5)
    assert float(model.invert(log_mel).abs().max()) < 0.5
    assert model.invert(log_mel[..., :5]).shape == (3, 5 * TINY.hop)  # fully convolutional over frames
    assert model.valid_length(TINY.length) == TINY.length and model.valid_length(65) == 2 * TINY.hop
    with pytest.raises(ValueError, match=r"expected log-mel \[B, 32, frames\], got \(3, 31, 32\)"):
        model(log_mel[:, :31])
    with pytest.raises(ValueError, match="one mono signal"):
        MCNN(2, TINY)


@pytest.mark.parametrize(("kernel", "groups"), [(6, 1), (10, 2)])
def test_upsample_is_a_stride_2_transposed_convolution(kernel, groups):
    torch.manual_seed(0)
    c_in, c_out, taps = 4, 6, kernel // 2
    layer = Upsample(c_in, c_out, kernel, groups)
    reference = nn.ConvTranspose1d(c_in, c_out, kernel, stride=2, padding=kernel // 2 - 1, groups=groups)
    per_in, per_out = c_in // groups, c_out // groups
    weight = torch.zeros_like(reference.weight)  # [c_in, c_out / groups, kernel]
    for o in range(c_out):
        ins = slice(o // per_out * per_in, (o // per_out + 1) * per_in)
        for phase in range(
            2
        ):  # output 2n + phase takes input n + t - (taps - 1) / 2 through tap kernel - 2 - 2t + phase
            for t in range(taps):
                weight[ins, o % per_out, kernel - 2 - 2 * t + phase] = layer.conv.weight[2 * o + phase, :, t]
    with torch.no_grad():
        layer.bias.normal_()
        reference.weight.copy_(weight)
        reference.bias.copy_(layer.bias)
    x = torch.randn(2, c_in, 9)
    assert layer(x).shape == (2, c_out, 18)
    torch.testing.assert_close(layer(x), reference(x))


def test_a_frame_reaches_the_samples_around_its_hop():
    """Frame ``t`` sits at sample ``t * hop`` of a centred STFT; each layer spreads input ``[a, b]`` over
    outputs ``[2a - (taps - 1), 2b + taps]``, so the frame reaches ``t * hop - (taps - 1)(hop - 1)`` to
    ``t * hop + taps (hop - 1)``, and no other sample."""
    model = tiny_model().eval()
    log_mel = model.mel(hits(1))
    t, taps = 10, TINY.kernel // 2
    moved = log_mel.clone()
    moved[..., t] += 1.0
    reach = torch.nonzero(model.invert(moved) - model.invert(log_mel))[:, 1]
    hop = TINY.hop
    assert int(reach.min()) == t * hop - (taps - 1) * (hop - 1)
    assert int(reach.max()) == t * hop + taps * (hop - 1)


def test_gradients_reach_every_head_and_every_parameter():
    config = TINY
    model = tiny_model()
    loss = _mcnn_loss(model, batch_of(hits(2)))
    loss.backward()
    H = config.heads
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        if name.endswith("weight") and p.dim() == 3:
            first = name.startswith("heads.0.")  # [n_mels, H * c, k]: the heads split the output channels
            per_head = (p.grad.transpose(0, 1) if first else p.grad).reshape(H, -1)
            assert (per_head.abs().sum(1) > 0).all(), name
    assert (model.head_weight.grad.abs() > 0).all() and float(model.scale.grad.abs()) > 0


def test_the_loss_reaches_the_model_through_a_wrapper():
    """The trainer may hand the loss a DDP or compiled wrapper: it calls the wrapper and finds the MCNN's
    spectrogram under ``module``."""

    class Wrapper(nn.Module):
        def __init__(self, module: nn.Module) -> None:
            super().__init__()
            self.module = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.module(x)

    model = tiny_model()
    batch = batch_of(hits(2))
    torch.testing.assert_close(_mcnn_loss(Wrapper(model), batch), _mcnn_loss(model, batch))


def test_heads_are_independent_stacks():
    """Zeroing one head's scalar removes that head's stack from the output and nothing else."""
    model = tiny_model().eval()
    log_mel = model.mel(hits(2))
    with torch.no_grad():
        pre = model.heads(log_mel / math.log(1 / TINY.floor))  # [B, H, T]
        model.head_weight.copy_(torch.tensor([1.0, 0.0]))
        only_first = model.invert(log_mel)
    torch.testing.assert_close(only_first, model.scale * torch.nn.functional.softsign(pre[:, 0]))


# -- the loss ----------------------------------------------------------------------------------------------
def test_the_loss_is_zero_only_for_the_right_waveform():
    model = tiny_model()
    audio = hits(3)
    magnitude = model.mel.magnitude(audio)
    log_mel = model.mel.from_magnitude(magnitude)
    right = model.spectral_losses(audio, magnitude, log_mel)
    quieter = model.spectral_losses(0.5 * audio, magnitude, log_mel)
    noise = model.spectral_losses(0.3 * torch.randn_like(audio), magnitude, log_mel)
    assert float(right[0]) < 1e-6 and float(right[1]) < 1e-6
    assert 0.4 < float(quieter[0]) < 0.6  # half the magnitude: half the norm off
    assert float(noise[0]) > 0.5 and float(noise[1]) > 1.0
    assert set(model.train_stats()) == {"spectral_convergence", "log_mel_l1"}
    weighted = _mcnn_loss(model, batch_of(audio, replace(TINY, sc_weight=0.0, mel_weight=1.0)))
    torch.testing.assert_close(weighted, torch.tensor(model.train_stats()["log_mel_l1"]))


def test_a_few_hundred_steps_learn_to_invert_synthetic_hits():
    model = tiny_model()
    audio = hits(3)
    mel = LogMel(TINY.mel)
    target = mel.magnitude(audio)

    def convergence() -> float:
        return float(spectral_convergence(mel.magnitude(model.invert(mel(audio))), target).mean())

    start = convergence()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = batch_of(audio)
    for _ in range(300):
        loss = KIND.loss(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    end = convergence()
    assert end < 0.6 * start, (start, end)  # 1.01 to 0.42 here


# -- checkpoints -------------------------------------------------------------------------------------------
def test_the_inverter_round_trips_through_a_checkpoint(tmp_path, monkeypatch):
    model = tiny_model(seed=3).eval()
    inverter = KIND.product(model, ["hit"], TINY.sample_rate, {"step": 7})
    assert isinstance(inverter, DrumInverter)
    inverter.save(tmp_path / "mcnn.pt")
    calls = []
    original = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return original(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    loaded = DrumInverter.load(tmp_path / "mcnn.pt")
    assert calls == [True]
    assert loaded.config == TINY and loaded.meta == {"step": 7} and not loaded.model.training
    log_mel = model.mel(hits(2))
    torch.testing.assert_close(loaded.invert(log_mel), inverter.invert(log_mel))
    torch.testing.assert_close(loaded.invert(log_mel[0]), inverter.invert(log_mel)[0])  # one unbatched hit


def test_foreign_broken_and_missing_checkpoints_fail_in_one_line(tmp_path):
    save_checkpoint(tmp_path / "other.pt", {"class": "VQVAE", "config": {}, "state_dict": {}})
    with pytest.raises(CheckpointError, match="holds a 'VQVAE', not an MCNN") as err:
        DrumInverter.load(tmp_path / "other.pt")
    assert "\n" not in str(err.value)
    payload = DrumInverter(tiny_model()).payload()
    save_checkpoint(tmp_path / "wrong.pt", {**payload, "config": {**payload["config"], "heads": 3}})
    with pytest.raises(CheckpointError, match="does not match its own description") as err:
        DrumInverter.load(tmp_path / "wrong.pt")
    assert "\n" not in str(err.value)
    save_checkpoint(tmp_path / "bad.pt", {**payload, "config": {**payload["config"], "kernel": 4}})
    with pytest.raises(CheckpointError, match="kernel must be 2 more than a multiple of 4"):
        DrumInverter.load(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        DrumInverter.load(tmp_path / "missing.pt")
