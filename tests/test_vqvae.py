"""The notes VQ-VAE: spectrograms and back, the model's shapes and quantizer, training through the trainer,
and the energy meter every training reads."""

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from sepmodels.checkpoint import CheckpointError, load_checkpoint
from sepmodels.data.notes import NotesData
from sepmodels.energy import EnergyMeter, paper_co2_kg
from sepmodels.inpaint import spectrogram as spec
from sepmodels.inpaint.vqvae import VQVAE, VQVAE_PRESETS, NoteCodec, VQVAEConfig
from sepmodels.priors import PriorSet
from sepmodels.train import TrainConfig, Trainer, TrainingError
from tests.conftest import synthetic_note

RATE = 16_000


def tone(f0: float, seconds: float = 0.5, rate: int = RATE) -> torch.Tensor:
    return synthetic_note(f0, seconds, rate)


# -- spectrograms ------------------------------------------------------------------------------------------
def test_spectrogram_shapes_and_the_original_phase_round_trip():
    cfg = spec.STFTConfig()
    audio = tone(220.0)[None]
    log_mag = spec.log_magnitude(audio, cfg)
    assert log_mag.shape == (1, 512, cfg.frames(audio.shape[-1]))
    back = spec.with_phase(log_mag, audio, cfg)
    assert float((back - audio).abs().max()) < 1e-3  # only the dropped Nyquist bin is lost


def test_griffin_lim_is_seeded_and_recovers_the_magnitude():
    cfg = spec.STFTConfig()
    audio = tone(330.0)[None]
    log_mag = spec.log_magnitude(audio, cfg)
    a = spec.griffin_lim(log_mag, cfg, audio.shape[-1], iterations=32)
    b = spec.griffin_lim(log_mag, cfg, audio.shape[-1], iterations=32)
    torch.testing.assert_close(a, b)
    target = spec.magnitude(log_mag, cfg)
    got = spec.stft(a, cfg).abs()
    convergence = float(torch.linalg.norm(got - target) / torch.linalg.norm(target))
    assert convergence < 0.15, convergence  # spectral convergence of a harmonic tone after 32 iterations


def test_the_standardizer_makes_every_row_zero_mean_unit_variance():
    s = spec.Standardizer(4)
    x = torch.randn(3, 4, 50) * torch.tensor([1.0, 2.0, 5.0, 0.1])[:, None] + torch.arange(4.0)[:, None]
    s.fit(x)
    z = s(x)
    torch.testing.assert_close(z.transpose(0, 1).reshape(4, -1).mean(1), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.transpose(0, 1).reshape(4, -1).std(1), torch.ones(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(s.inverse(z), x)
    with pytest.raises(ValueError, match="expected spectrograms"):
        s.fit(torch.randn(3, 5, 10))


# -- the model ---------------------------------------------------------------------------------------------
def tiny_model(seed: int = 0) -> VQVAE:
    torch.manual_seed(seed)
    return VQVAE(1, VQVAE_PRESETS["tiny"])


def test_codemaps_pad_frames_to_the_downsampling_and_decode_crops_back():
    model = tiny_model().eval()
    log_mag = model.spectrogram(torch.randn(2, 2200))  # 18 frames of 128 samples: padded to 24
    codes = model.encode(log_mag)
    assert codes.shape == (2, 128 // 8, 3) and codes.dtype == torch.long
    assert int(codes.min()) >= 0 and int(codes.max()) < model.config.codebook_size
    out = model.decode(codes, frames=log_mag.shape[-1])
    assert out.shape == log_mag.shape and torch.isfinite(out).all()


def test_channel_ablation_decodes_the_kept_latent_channels_only():
    model = tiny_model().eval()
    codes = torch.randint(16, (1, 16, 3))
    z = model.vectors(codes, keep_channels=[2])
    assert torch.count_nonzero(z[:, [0, 1, 3, 4, 5, 6, 7]]) == 0
    torch.testing.assert_close(z[:, 2], model.vectors(codes)[:, 2])
    torch.testing.assert_close(model.decode(codes, keep_channels=[2]), model.decode_latent(z))


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.decode(torch.full((1, 4, 4), 16)), "codes must be in"),
        (lambda m: m.decode(torch.zeros(4, 4, dtype=torch.long)), "expected codemaps"),
        (lambda m: m.decode(torch.zeros(1, 4, 4, dtype=torch.long), keep_channels=[8]), "keep_channels"),
        (lambda m: m.encode(torch.zeros(1, 10, 8)), "expected spectrograms"),
    ],
)
def test_bad_model_input_is_refused_in_one_line(call, match):
    with pytest.raises(ValueError, match=match):
        call(tiny_model().eval())


def test_bad_configs_are_refused():
    with pytest.raises(ValueError, match="one mono signal"):
        VQVAE(2, VQVAE_PRESETS["tiny"])
    with pytest.raises(ValueError, match="multiple of 2"):
        VQVAEConfig(n_fft=96, hop=32, channels=(4, 4, 4, 4, 4, 4))
    assert VQVAEConfig(**VQVAEConfig().to_dict()) == VQVAEConfig()  # a checkpoint's list of channels


def test_the_codebook_starts_from_the_first_batch_moves_by_ema_and_restarts_dead_codes():
    torch.manual_seed(0)
    model = VQVAE(1, replace(VQVAE_PRESETS["tiny"], decay=0.5)).train()  # a short memory: codes die quickly
    codebook = model.quantizer._codebook
    assert not bool(codebook.initted)
    assert not any(p.requires_grad and p.data_ptr() == codebook.embed.data_ptr() for p in model.parameters())
    audio = tone(200.0)[None].repeat(4, 1) * torch.linspace(0.2, 1.0, 4)[:, None]
    model(audio)
    assert bool(codebook.initted)  # k-means over the first batch's encodings
    first = codebook.embed.clone()
    model(audio)
    assert not torch.equal(first, codebook.embed)  # EMA moved it without any optimiser step
    model.train_stats()
    for _ in range(6):  # near-silence: most codes go unused and fall below the restart threshold
        model(1e-4 * audio)
    stats = model.train_stats()
    assert stats["restarts"] > 0 and 1 <= stats["codes_used"] <= 16 and stats["perplexity"] >= 1
    assert model.train_stats()["restarts"] == 0  # counted since the previous call


def test_silence_has_a_code():
    model = tiny_model().eval()
    assert 0 <= model.silence_code() < model.config.codebook_size


# -- data and training -------------------------------------------------------------------------------------
def test_notes_data_loads_a_split_and_draws_crops(notes_root):
    data = NotesData(notes_root, "train")
    assert len(data) == 12 and data.clips.dtype == torch.int16
    g = torch.Generator().manual_seed(0)
    crops = data.batch(3, 8000, g)
    assert crops.shape == (3, 1, 8000) and crops.abs().max() <= 1
    assert data.sample(2, g).shape == (2, 64_000)
    with pytest.raises(FileNotFoundError, match="make-notes"):
        NotesData(notes_root / "nowhere")
    with pytest.raises(ValueError, match="split"):
        NotesData(notes_root, "dev")


def _train_cfg(notes_root, **kw):
    base = dict(steps=12, batch_size=4, length=4096, lr=2e-3, data="notes", root=str(notes_root),
                log_every=1, checkpoint_every=6, energy="estimate")  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_the_vqvae_trains_through_the_trainer_logs_codebook_health_and_energy(notes_root, tmp_path, monkeypatch):
    modes = []
    real_save = Trainer.save

    def save_and_look(self):
        real_save(self)
        modes.append(self.model.training)

    monkeypatch.setattr(Trainer, "save", save_and_look)
    trainer = Trainer(tmp_path, VQVAE_PRESETS["tiny"], _train_cfg(notes_root), progress=False)
    codec = trainer.run()
    assert modes == [True, True]  # a checkpoint mid-run leaves the model training (its EMA codebook moving)
    assert isinstance(codec, NoteCodec) and bool(codec.model.standardize.fitted)
    with (tmp_path / "train_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    for name in ("perplexity", "codes_used", "restarts", "energy_kwh", "power_w", "co2_kg", "co2_paper_kg"):
        assert all(row[name] != "" for row in rows), name
    energy = [float(r["energy_kwh"]) for r in rows]
    assert energy == sorted(energy)  # a running total
    assert float(rows[-1]["co2_paper_kg"]) == pytest.approx(paper_co2_kg(energy[-1]), rel=1e-3)
    losses = [float(r["loss"]) for r in rows]
    assert min(losses[-3:]) < losses[0]
    loaded = NoteCodec.load(tmp_path / "priors.pt")
    assert loaded.meta["energy"]["energy_kwh"] > 0 and loaded.meta["energy"]["method"].startswith("estimate")
    audio = tone(300.0, 1.0)[None]
    torch.testing.assert_close(loaded.model.encode(loaded.model.spectrogram(audio)),
                               codec.model.encode(codec.model.spectrogram(audio)))  # fmt: skip


def test_resuming_the_vqvae_starts_from_the_saved_state_and_finishes(notes_root, tmp_path, monkeypatch):
    # Unlike the priors' (test_train.py), a resumed VQ-VAE run is not bit-identical to a straight one after
    # the resumed step: the state at that step is (weights, codebook, optimiser, every random stream), yet the
    # next steps drift by about 1e-3. The cause was not found; this test holds what is true.
    real, calls = VQVAE.forward, {"n": 0}

    def nan_at_step_8(self, audio):
        calls["n"] += 1
        recon, commit, codes = real(self, audio)
        return (recon * float("nan") if calls["n"] == 8 else recon), commit, codes

    monkeypatch.setattr(VQVAE, "forward", nan_at_step_8)
    with pytest.raises(TrainingError, match=r"step 8; the last good checkpoint .* step 6"):
        Trainer(tmp_path, VQVAE_PRESETS["tiny"], _train_cfg(notes_root), progress=False).run()
    monkeypatch.setattr(VQVAE, "forward", real)
    saved = load_checkpoint(tmp_path / "priors.pt")
    resumed = Trainer(tmp_path, VQVAE_PRESETS["tiny"], _train_cfg(notes_root), resume=True, progress=False)
    assert resumed.step == 6
    for name, value in resumed.model.state_dict().items():
        assert torch.equal(value, saved["state_dict"][name]), name
    codec = resumed.run()
    assert resumed.step == 12 and bool(codec.model.quantizer._codebook.initted)
    with (tmp_path / "train_log.csv").open() as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == list(range(1, 13))
    energy = load_checkpoint(tmp_path / "priors.pt")["meta"]["energy"]
    assert energy["seconds"] > saved["meta"]["energy"]["seconds"]  # the earlier run's energy carried over


def test_kinds_and_data_must_match(notes_root, tmp_path):
    from sepmodels.nn.flows import FlowConfig

    with pytest.raises(TrainingError, match="vqvae models train on notes"):
        Trainer(tmp_path, VQVAE_PRESETS["tiny"], TrainConfig(steps=1, energy="estimate"), progress=False)
    with pytest.raises(TrainingError, match="flow models train on toy or musdb"):
        Trainer(tmp_path, FlowConfig.preset("tiny"), _train_cfg(notes_root), progress=False)


def test_a_vqvae_checkpoint_is_not_priors_and_priors_are_not_a_vqvae(notes_root, tmp_path, tiny_priors_path):
    Trainer(tmp_path, VQVAE_PRESETS["tiny"], _train_cfg(notes_root, steps=2), progress=False).run()
    with pytest.raises(CheckpointError, match="not a set of flow or score priors"):
        PriorSet.load(tmp_path / "priors.pt")
    with pytest.raises(CheckpointError, match="not a VQ-VAE"):
        NoteCodec.load(tiny_priors_path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        NoteCodec.load(tmp_path / "junk.pt")


# -- energy ------------------------------------------------------------------------------------------------
def test_the_estimate_meter_says_what_it_is_and_counts_cpu_time():
    meter = EnergyMeter(interval=0.01, use_codecarbon=False).start()
    x = torch.randn(300, 300)
    for _ in range(200):
        x = torch.tanh(x @ x)
    reading = meter.read()
    meter.stop()
    assert reading.method.startswith("estimate") and reading.energy_kwh > 0
    assert reading.co2_paper_kg == pytest.approx(0.477 * 1.58 * reading.energy_kwh)
    assert np.isnan(reading.co2_kg)  # no grid figure without CodeCarbon: none made up


def test_a_meter_that_cannot_start_falls_back_to_the_estimate(monkeypatch):
    def broken(self):
        raise RuntimeError("no meter here")

    monkeypatch.setattr(EnergyMeter, "_codecarbon", broken)
    meter = EnergyMeter().start()
    assert meter.read().method.startswith("estimate")
    meter.stop()


@pytest.mark.codecarbon
def test_codecarbon_reads_energy_offline():
    meter = EnergyMeter(interval=0.5).start()
    x = torch.randn(400, 400)
    for _ in range(300):
        x = torch.tanh(x @ x)
    import time

    time.sleep(0.6)
    reading = meter.read()
    meter.stop()
    assert reading.method.startswith("codecarbon"), reading.method
    assert reading.energy_kwh > 0 and reading.co2_kg > 0 and reading.power_w > 0
