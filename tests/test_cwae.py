"""The drum CWAE: its MMD, the per-class regulariser, the model, its checkpoints and the synthesizer."""

from __future__ import annotations

import math

import pytest
import torch

from sepmodels.checkpoint import CheckpointError, save_checkpoint
from sepmodels.drums.cwae import (
    CWAE,
    CWAE_PRESETS,
    ConditionalBatchNorm,
    CWAEConfig,
    DrumAutoencoder,
    LatentMap,
    class_mmd2,
    mmd2,
)
from sepmodels.drums.mel import LogMel, MelConfig, log_mel_distance
from sepmodels.drums.synth import DrumSynth, PadPoint
from sepmodels.metrics import spectral_convergence

TINY = CWAE_PRESETS["tiny"]


def test_mmd_is_zero_in_expectation_for_one_distribution_and_grows_with_a_shift():
    g = torch.Generator().manual_seed(0)
    same = torch.stack(
        [mmd2(torch.randn(64, 8, generator=g), torch.randn(64, 8, generator=g)) for _ in range(200)]
    )
    standard_error = same.std() / math.sqrt(same.numel())
    assert abs(float(same.mean())) < 3 * float(standard_error)  # unbiased: no offset beyond its noise
    shifts = [0.25, 0.5, 1.0, 2.0]
    means = []
    for shift in shifts:
        draws = [mmd2(torch.randn(64, 8, generator=g) + shift, torch.randn(64, 8, generator=g)) for _ in range(20)]
        means.append(float(torch.stack(draws).mean()))
    assert means[0] > 3 * float(standard_error)
    assert means == sorted(means)  # a larger shift, a larger discrepancy
    with pytest.raises(ValueError, match="at least 2 samples"):
        mmd2(torch.randn(1, 8), torch.randn(5, 8))
    with pytest.raises(ValueError, match=r"\[n, d\]"):
        mmd2(torch.randn(4, 8), torch.randn(5, 7))


def test_the_per_class_regulariser_pulls_each_class_to_its_own_gaussian():
    # Each class's codes are an affine map of fixed draws, as an encoder's last layer would make them: class c
    # starts 3c away along the first axis and much too narrow. The regulariser alone must centre and widen all.
    g = torch.Generator().manual_seed(1)
    classes, n, d = 3, 64, 4
    labels = torch.arange(classes).repeat_interleave(n)
    u = torch.randn(classes * n, d, generator=g)
    shift = torch.zeros(classes, d)
    shift[:, 0] = 3.0 * torch.arange(classes)
    shift.requires_grad_(True)
    scale = torch.full((classes, d), 0.3, requires_grad=True)
    opt = torch.optim.Adam([shift, scale], lr=0.05)
    start = float(class_mmd2(u * scale[labels] + shift[labels], labels, classes, g).detach())
    for _ in range(300):
        loss = class_mmd2(u * scale[labels] + shift[labels], labels, classes, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        assert float(shift.norm(dim=1).max()) < 0.6  # every class centred on the origin ...
        assert float(scale.abs().min()) > 0.7 and float(scale.abs().max()) < 1.3  # ... with unit spread
        assert float(class_mmd2(u * scale[labels] + shift[labels], labels, classes, g)) < 0.05 * start
    with pytest.raises(ValueError, match="balanced batches"):
        class_mmd2(torch.randn(3, d), torch.tensor([0, 1, 2]), classes)


def test_conditional_batch_norm_looks_up_scale_and_shift_by_class():
    norm = ConditionalBatchNorm(2, classes=3)
    with torch.no_grad():
        norm.scale.weight[1] = torch.tensor([2.0, 3.0])
        norm.shift.weight[2] = torch.tensor([5.0, -5.0])
    x = torch.randn(6, 2, 4, 4)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    plain = torch.nn.functional.batch_norm(x, None, None, training=True)
    out = norm(x, labels)
    torch.testing.assert_close(out[:2], plain[:2])
    torch.testing.assert_close(out[2:4], plain[2:4] * torch.tensor([2.0, 3.0])[:, None, None])
    torch.testing.assert_close(out[4:], plain[4:] + torch.tensor([5.0, -5.0])[:, None, None])


def test_the_config_checks_its_sizes():
    with pytest.raises(ValueError, match="multiples of 2"):
        CWAEConfig(channels=(4, 8, 8, 8, 8, 8, 8))
    with pytest.raises(ValueError, match="latent"):
        CWAEConfig(latent=0)
    with pytest.raises(ValueError, match="beta"):
        CWAEConfig(beta=-1)
    assert CWAEConfig(**CWAEConfig().to_dict()) == CWAEConfig()  # a checkpoint's lists come back as tuples


def _hits(n: int, length: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic hits of 3 classes: a low decaying sine, a noise burst, a high ping."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / 22_050
    clips, labels = [], []
    for i in range(n):
        c = i % 3
        decay = torch.exp(-t * (8 + 4 * torch.rand(1, generator=g)))
        if c == 0:
            x = torch.sin(2 * math.pi * (50 + 20 * torch.rand(1, generator=g)) * t) * decay
        elif c == 1:
            x = torch.randn(length, generator=g) * decay**3
        else:
            x = torch.sin(2 * math.pi * (3000 + 500 * torch.rand(1, generator=g)) * t) * decay**2
        clips.append(x / x.abs().max())
        labels.append(c)
    return torch.stack(clips), torch.tensor(labels)


def _trained_tiny(steps: int = 60) -> CWAE:
    torch.manual_seed(0)
    model = CWAE(1, CWAEConfig(**dict(TINY.to_dict(), classes=3)))
    clips, labels = _hits(48, TINY.length)
    model.prepare(clips)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(steps):
        error, mmd = model(clips, labels, g)
        loss = error + model.config.beta * mmd
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.fit_latent_map(clips, labels, keep=8, generator=g)
    return model.eval()


def test_training_lowers_both_terms_and_the_stats_say_so():
    torch.manual_seed(0)
    model = CWAE(1, CWAEConfig(**dict(TINY.to_dict(), classes=3)))
    clips, labels = _hits(48, TINY.length)
    model.prepare(clips)
    assert bool(model.fitted)
    g = torch.Generator().manual_seed(0)
    first = [float(v.detach()) for v in model(clips, labels, g)]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(80):
        error, mmd = model(clips, labels, g)
        opt.zero_grad()
        (error + model.config.beta * mmd).backward()
        opt.step()
    stats = model.train_stats()
    assert set(stats) == {"reconstruction", "mmd"}
    assert stats["reconstruction"] < 0.7 * first[0]
    assert stats["mmd"] < first[1]


def test_encode_and_decode_check_their_inputs():
    model = CWAE(1, TINY).eval()
    spec = model.spectrogram(torch.randn(2, TINY.length))
    with pytest.raises(ValueError, match="log-mels"):
        model.encode(spec[:, :-1], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="labels must be in"):
        model.encode(spec, torch.tensor([0, 11]))
    with pytest.raises(ValueError, match="long class labels"):
        model.decode(torch.zeros(2, TINY.latent), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="codes"):
        model.decode(torch.zeros(2, TINY.latent + 1), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="groups"):
        CWAE(2, TINY)


def test_the_latent_map_is_a_pca_per_class():
    g = torch.Generator().manual_seed(2)
    scales = torch.tensor([3.0, 2.0, 1.0, 0.5])
    codes = torch.cat(
        [torch.randn(500, 4, generator=g) * scales + 5, torch.randn(500, 4, generator=g) * scales.flip(0)]
    )
    labels = torch.arange(2).repeat_interleave(500)
    m = LatentMap.fit(codes, labels, 2, keep=10, generator=g)
    assert m.codes.shape == (20, 4) and m.labels.tolist() == [0] * 10 + [1] * 10
    torch.testing.assert_close(m.mean[0], torch.full((4,), 5.0), atol=0.4, rtol=0)
    assert abs(float(m.components[0, 0, 0])) > 0.95  # class 0 varies most along axis 0 ...
    assert abs(float(m.components[1, 0, 3])) > 0.95  # ... class 1 along axis 3
    share = m.explained(0)
    assert float(share.sum()) == pytest.approx(1.0) and share[0] > share[1] > share[2] > share[3]
    z = codes[:5]
    torch.testing.assert_close(m.code(m.project(z, 0), 0), z, atol=1e-4, rtol=1e-4)  # project inverts code
    torch.testing.assert_close(m.project(m.mean[0], 0), torch.zeros(4), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="needs at least 2"):
        LatentMap.fit(codes[:3], torch.tensor([0, 0, 0]), 2)


def test_checkpoints_round_trip_and_refuse_foreign_or_unfinished_files(tmp_path):
    model = _trained_tiny(steps=5)
    ae = DrumAutoencoder(model, {"step": 5})
    ae.save(tmp_path / "cwae.pt")
    back = DrumAutoencoder.load(tmp_path / "cwae.pt")
    spec = model.spectrogram(_hits(3, TINY.length)[0])
    labels = torch.tensor([0, 1, 2])
    torch.testing.assert_close(back.model.encode(spec, labels), model.encode(spec, labels))
    torch.testing.assert_close(back.latent_map.components, model.latent_map.components)
    assert back.classes == ["class 0", "class 1", "class 2"]  # no names for a 3-class model
    save_checkpoint(tmp_path / "other.pt", {"class": "VQVAE", "config": {}, "state_dict": {}})
    with pytest.raises(CheckpointError, match="not a drum CWAE"):
        DrumAutoencoder.load(tmp_path / "other.pt")
    model.latent_map = None
    DrumAutoencoder(model).save(tmp_path / "mid.pt")
    with pytest.raises(CheckpointError, match="before its latent map"):
        DrumAutoencoder.load(tmp_path / "mid.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError) as err:
        DrumAutoencoder.load(tmp_path / "junk.pt")
    assert "\n" not in str(err.value)


def test_the_synth_plays_pad_points_and_codes():
    model = _trained_tiny()
    synth = DrumSynth(DrumAutoencoder(model), griffin_lim_iterations=4)
    assert synth.inverters == ["griffin-lim"]
    hit = synth.play(PadPoint(1, x=1.0, y=-0.5, fine=0.2))
    assert hit.audio.shape == (TINY.length,) and hit.log_mel.shape == (TINY.n_mels, TINY.length // TINY.hop)
    assert hit.decode_ms > 0 and hit.invert_ms > 0 and hit.inverter == "griffin-lim"
    coords = synth.coordinates(hit.code, 1)
    torch.testing.assert_close(coords[:3], torch.tensor([1.0, -0.5, 0.2]), atol=1e-4, rtol=0)
    assert float(coords[3:].abs().max()) < 1e-4  # not frozen: the other coordinates are zero
    rest = synth.random_rest(torch.Generator().manual_seed(0))
    frozen = synth.coordinates(synth.code(PadPoint(1, 1.0, -0.5, 0.2, rest)), 1)
    torch.testing.assert_close(frozen[3:], torch.tensor(rest[3:]), atol=1e-4, rtol=0)
    again = synth.play(code=hit.code, label=1)
    assert (again.audio == hit.audio).all()  # seeded Griffin-Lim: the same code, the same sound
    with pytest.raises(ValueError, match="not available"):
        synth.play(PadPoint(0), inverter="mcnn")
    with pytest.raises(ValueError, match="out of range"):
        synth.play(PadPoint(5))


def test_a_mel_round_trip_through_griffin_lim_is_close():
    mel = LogMel(MelConfig())
    clip = _hits(3, 16_384)[0]
    spec = mel(clip)
    back = mel.griffin_lim(spec, iterations=32)
    assert float(log_mel_distance(mel(back), spec).mean()) < 6.0  # dB
    assert float(spectral_convergence(mel.mel(mel(back)), mel.mel(spec)).mean()) < 0.3
    assert float(log_mel_distance(mel(torch.randn_like(clip) * 0.1), spec).mean()) > 10.0  # a wrong sound is far


def test_the_trainer_trains_a_cwae_on_labelled_hits_and_the_cli_exports_it(drums_root, tmp_path):
    from sepmodels.cli import main
    from sepmodels.drums.mcnn import DrumInverter
    from sepmodels.train import TrainConfig, Trainer, read_log

    cfg = TrainConfig(steps=3, batch_size=22, length=TINY.length, data="drums", root=str(drums_root), log_every=1,
                      energy="estimate")  # fmt: skip
    trainer = Trainer(tmp_path / "run", TINY, cfg, progress=False)
    _, _, _, labels = trainer.batch()
    assert labels.tolist() == sorted(labels.tolist()) and torch.bincount(labels).tolist() == [2] * 11  # balanced
    ae = trainer.run()
    assert isinstance(ae, DrumAutoencoder) and ae.latent_map is not None  # the finish hook fitted it
    assert ae.latent_map.codes.shape[0] == 6 * 11  # every training hit (under `keep` per class)
    log = read_log(tmp_path / "run" / "train_log.csv")
    assert {"reconstruction", "mmd", "energy_kwh"} <= set(log)
    loaded = DrumAutoencoder.load(tmp_path / "run" / "priors.pt")
    assert loaded.classes[0] == "kick" and loaded.meta["step"] == 3
    assert main(["export", str(tmp_path / "run" / "priors.pt"), str(tmp_path / "cwae.pt")]) == 0
    DrumAutoencoder.load(tmp_path / "cwae.pt")
    # the command line's own defaults for drums: whole hits, balanced batches
    out = tmp_path / "cli"
    for model in ("cwae", "mcnn"):
        assert main(["train", "--model", model, "--config", "tiny", "--root", str(drums_root), "--out",
                     str(out / model), "--steps", "2", "--batch-size", "22", "--energy", "estimate",
                     "--quiet"]) == 0  # fmt: skip
    assert DrumAutoencoder.load(out / "cwae" / "priors.pt").meta["train_config"]["length"] == TINY.length
    with pytest.raises(CheckpointError, match="not an MCNN"):
        DrumInverter.load(out / "cwae" / "priors.pt")
    ae, inverter = DrumAutoencoder.load(out / "cwae" / "priors.pt"), DrumInverter.load(out / "mcnn" / "priors.pt")
    synth = DrumSynth(ae, inverter)
    assert synth.inverters == ["griffin-lim", "mcnn"]  # the tiny presets share their spectrograms
    assert DrumSynth(ae, inverter, default="mcnn").inverters == ["mcnn", "griffin-lim"]
    with pytest.raises(ValueError, match="without an MCNN"):
        DrumSynth(ae, None, default="mcnn")
    hit = synth.play(PadPoint(3, 0.5, 0.5), inverter="mcnn")
    assert hit.inverter == "mcnn" and hit.audio.shape == (TINY.length,)


def test_the_command_line_refuses_unbalanced_drum_batches_in_one_line(drums_root, tmp_path, capsys):
    from sepmodels.cli import main

    base = ["train", "--model", "cwae", "--config", "tiny", "--root", str(drums_root), "--out", str(tmp_path)]
    assert main([*base, "--batch-size", "32"]) != 0
    assert main([*base, "--length", "4096"]) != 0
    assert main([*base, "--root", str(tmp_path / "nowhere")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and "multiple of the 11" in err[0] and "hit length" in err[1] and "make-drums" in err[2]
