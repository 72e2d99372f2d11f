"""musdb18-HQ loading, synthetic stems from FluidSynth, and the real-music path of train and evaluate."""

import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from sepmodels.cli import main
from sepmodels.data import musdb
from sepmodels.data.musdb import MusdbConfig, MusdbData, MusdbError
from sepmodels.data.testsets import MusdbTestData, test_data_from

try:
    import musdb as _musdb_package  # noqa: F401  (imports stempeg, which needs ffmpeg)

    HAVE_MUSDB = True
except RuntimeError:
    HAVE_MUSDB = False
needs_musdb = pytest.mark.skipif(not HAVE_MUSDB, reason="the musdb package needs ffmpeg (apt-get install ffmpeg)")
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None, reason="needs FluidSynth: apt-get install fluidsynth timgm6mb-soundfont"
)


def _write_hq(root, tracks=(("train", "a", 3.0), ("train", "b", 2.0), ("test", "c", 2.5)), rate=44_100):
    """A tiny musdb18-HQ folder: stereo stems, a distinct tone per stem; track a's vocals start silent."""
    for split, name, seconds in tracks:
        folder = root / split / name
        folder.mkdir(parents=True)
        t = np.arange(int(seconds * rate)) / rate
        stems = {}
        for k, stem in enumerate(musdb.SOURCES):
            left = 0.2 * np.sin(2 * np.pi * 110 * (k + 1) * t)
            if name == "a" and stem == "vocals":
                left[: int(2.5 * rate)] = 0.0  # near-silent for most of the track
            stems[stem] = np.stack([left, 0.5 * left], axis=1)
            sf.write(folder / f"{stem}.wav", stems[stem], rate)
        sf.write(folder / "mixture.wav", sum(stems.values()), rate)
    return root


@needs_musdb
def test_loads_mono_resampled_stems(tmp_path):
    data = MusdbData(MusdbConfig(str(_write_hq(tmp_path))), "train")
    assert len(data) == 2
    stems = data.stems(0)
    assert stems.shape == (4, 3 * musdb.SAMPLE_RATE)
    # the bass stem of track a is a 220 Hz tone at amplitude 0.2 (left channel)
    spectrum = torch.fft.rfft(stems[1]).abs()
    assert abs(int(spectrum.argmax()) / 3 - 220) < 1
    assert float(stems[1].abs().max()) == pytest.approx(0.2, abs=0.01)
    mean = MusdbData(MusdbConfig(str(tmp_path), mono="mean"), "train").stems(0)
    torch.testing.assert_close(mean, 0.75 * stems, atol=1e-4, rtol=1e-3)


@needs_musdb
def test_batches_skip_near_silent_crops(tmp_path):
    data = MusdbData(MusdbConfig(str(_write_hq(tmp_path)), min_rms=0.05, peak_normalize=True), "train")
    batch = data.batch(16, 2048, torch.Generator().manual_seed(0))
    assert batch.shape == (16, 4, 2048)
    rms = batch.pow(2).mean(-1).sqrt()
    assert float(rms[:, 3].min()) > 0.05  # no silent vocal crop got through
    torch.testing.assert_close(batch.abs().amax(-1), torch.ones(16, 4))


@needs_musdb
def test_test_clips_are_aligned_across_stems(tmp_path):
    test = MusdbData(MusdbConfig(str(_write_hq(tmp_path))), "test")
    clips = test.aligned(2, 4096, seed=1)
    assert clips.shape == (2, 4, 4096)
    track = test.stems(0)
    start = int((track[0] == clips[0, 0, 0]).nonzero()[0])  # the drums crop fixes where the others start
    torch.testing.assert_close(clips[0], track[:, start : start + 4096])


@needs_musdb
def test_musdb_test_data_gives_the_aligned_test_clips(tmp_path):
    root = _write_hq(tmp_path / "musdb")
    data = MusdbTestData(str(root))
    assert data.sources == musdb.SOURCES and data.sample_rate == musdb.SAMPLE_RATE
    assert torch.equal(data.clean(2, 4096, seed=1), MusdbData(MusdbConfig(str(root)), "test").aligned(2, 4096, 1))
    assert test_data_from(data.describe() | {"n": 2, "seed": 1}) == data


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p / "missing", "is not a folder"),
        (lambda p: p, "no train/ or test/ folder"),
        (lambda p: (p / "train" / "x").mkdir(parents=True) or p, "lacks mixture.wav"),
    ],
)
def test_a_malformed_root_names_what_was_expected(tmp_path, make, message):
    with pytest.raises(MusdbError, match=message) as err:
        MusdbData(MusdbConfig(str(make(tmp_path))), "train")
    assert "musdb18-HQ" in str(err.value) and "\n" not in str(err.value)


@needs_musdb
def test_train_and_evaluate_on_musdb_from_the_cli(tmp_path, capsys):
    root = _write_hq(tmp_path / "musdb")
    out = tmp_path / "priors"
    assert main(["train", "--data", "musdb", "--root", str(root), "--config", "tiny", "--steps", "2",
                 "--batch-size", "2", "--length", "256", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert main(["evaluate", "--data", "musdb", "--root", str(root), "--priors", str(out / "priors.pt"),
                 "--n", "1", "--seconds", "1", "--levels", "1", "--steps", "1", "--json",
                 "--quiet"]) == 0  # fmt: skip
    report = capsys.readouterr().out
    assert '"sdr"' in report and '"vocals"' in report
    assert main(["evaluate", "--data", "musdb", "--priors", str(out / "priors.pt")]) == 1
    assert "needs --root" in capsys.readouterr().err


@needs_fluidsynth
@needs_musdb
def test_make_stems_is_reproducible_and_loadable(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["make-stems", "--out", str(out), "--tracks", "2", "--seconds", "1.5", "--seed", "3",
                     "--quiet"]) == 0  # fmt: skip
    assert sorted(p.name for p in (a / "train" / "track_000").iterdir()) == sorted(
        ["mixture.wav", "drums.wav", "bass.wav", "other.wav", "vocals.wav"]
    )
    for stem in ("mixture", "drums", "vocals"):
        x, rate = sf.read(a / "test" / "track_001" / f"{stem}.wav")
        y, _ = sf.read(b / "test" / "track_001" / f"{stem}.wav")
        assert rate == 44_100 and x.shape == (int(1.5 * 44_100), 2)
        np.testing.assert_array_equal(x, y)
    parts = [sf.read(a / "train" / "track_000" / f"{s}.wav")[0] for s in musdb.SOURCES]
    mixture = sf.read(a / "train" / "track_000" / "mixture.wav")[0]
    np.testing.assert_allclose(sum(parts), mixture, atol=1e-5)
    assert all(np.sqrt((p**2).mean()) > 1e-3 for p in parts)  # every stem sounds
    data = MusdbData(MusdbConfig(str(a)), "train")
    assert data.stems(0).shape == (4, int(1.5 * musdb.SAMPLE_RATE))


def test_make_stems_errors_are_one_line(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["make-stems", "--out", str(f), "--tracks", "1"]) == 1
    assert "is a file" in capsys.readouterr().err
    assert main(["make-stems", "--out", str(tmp_path / "o"), "--soundfont", str(tmp_path / "none.sf2")]) == 1
    assert "does not exist" in capsys.readouterr().err


@needs_musdb
def test_studies_and_the_priors_app_take_musdb_priors(tmp_path, capsys):
    from explorer.priors_view import CrossView
    from sepmodels.priors import PriorSet
    from sepmodels.studies import load_study

    root = _write_hq(tmp_path / "musdb")
    out = tmp_path / "priors"
    assert main(["train", "--data", "musdb", "--root", str(root), "--config", "tiny", "--steps", "1",
                 "--batch-size", "2", "--length", "256", "--out", str(out), "--quiet"]) == 0  # fmt: skip
    studies = tmp_path / "studies"
    assert main(["study", "cross", "--data", "musdb", "--root", str(root), "--priors", str(out / "priors.pt"),
                 "--n", "2", "--seconds", "0.1", "--out", str(studies), "--quiet"]) == 0  # fmt: skip
    study = load_study(studies / "cross.pt")
    assert study.results.sources == musdb.SOURCES and study.data["name"] == "musdb"
    assert study.test_data == MusdbTestData(str(root.resolve()))
    assert main(["study", "cross", "--data", "musdb", "--root", str(root), "--mono", "mean", "--priors",
                 str(out / "priors.pt"), "--n", "2", "--seconds", "0.1", "--out", str(studies),
                 "--quiet"]) == 0  # fmt: skip
    assert load_study(studies / "cross.pt").test_data == MusdbTestData(str(root.resolve()), "mean")
    view = CrossView(PriorSet.load(out / "priors.pt"), study)
    view.select("bass", "vocals")
    assert view.summary.startswith("bass clip 0 under the vocals prior")
    toy_priors = tmp_path / "toy.pt"
    PriorSet.load().save(toy_priors)
    assert main(["study", "cross", "--data", "musdb", "--root", str(root), "--priors", str(toy_priors),
                 "--out", str(studies)]) == 1  # fmt: skip
    assert "the test data has drums" in capsys.readouterr().err


@needs_musdb
def test_a_vae_posterior_trains_on_musdb_mixes(tmp_path, capsys):
    root = _write_hq(tmp_path / "musdb")
    priors, vae = tmp_path / "priors", tmp_path / "vae"
    common = ["--data", "musdb", "--root", str(root), "--config", "tiny", "--steps", "1", "--batch-size", "2",
              "--length", "256", "--quiet"]  # fmt: skip
    assert main(["train", *common, "--out", str(priors)]) == 0
    assert (
        main(["train", "--model", "vae", "--priors", str(priors / "priors.pt"), *common, "--out", str(vae)]) == 0
    )
    assert main(["evaluate", "--data", "musdb", "--root", str(root), "--method", "vae", "--posterior",
                 str(vae / "priors.pt"), "--n", "1", "--seconds", "1", "--json"]) == 0  # fmt: skip
    assert '"method": "vae"' in capsys.readouterr().out


@needs_musdb
def test_training_crops_come_from_the_tracks_in_memory(tmp_path):
    data = MusdbData(
        MusdbConfig(str(_write_hq(tmp_path)), cache_tracks=1, fresh_track_rate=0.0, min_rms=0), "train"
    )
    data.batch(4, 256, torch.Generator().manual_seed(0))
    assert len(data.cached_tracks()) == 1  # one read, then every crop reuses it
    first = data.cached_tracks()
    data.load_tracks([1 - first[0]])
    assert data.cached_tracks() == [1 - first[0]]


@needs_musdb
def test_musdb_training_resumes_exactly(tmp_path, monkeypatch):
    import sepmodels.nn.flows as flows_mod
    from sepmodels.nn.flows import FlowConfig
    from sepmodels.train import TrainConfig, Trainer, TrainingError

    root = str(_write_hq(tmp_path / "musdb"))
    cfg = TrainConfig(steps=4, batch_size=2, length=256, checkpoint_every=2, data="musdb", root=root)
    tiny = FlowConfig.preset("tiny")
    Trainer(tmp_path / "straight", tiny, cfg, progress=False).run()
    real, calls = flows_mod.nll, {"n": 0}

    def failing_at_step_3(z, logdet):
        calls["n"] += torch.is_grad_enabled()
        return torch.tensor(float("nan")) if calls["n"] == 3 else real(z, logdet)

    monkeypatch.setattr(flows_mod, "nll", failing_at_step_3)
    with pytest.raises(TrainingError, match="step 3"):
        Trainer(tmp_path / "broken", tiny, cfg, progress=False).run()
    monkeypatch.setattr(flows_mod, "nll", real)
    Trainer(tmp_path / "broken", tiny, cfg, resume=True, progress=False).run()
    from sepmodels.checkpoint import load_checkpoint

    a = load_checkpoint(tmp_path / "straight" / "priors.pt")["state_dict"]
    b = load_checkpoint(tmp_path / "broken" / "priors.pt")["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
