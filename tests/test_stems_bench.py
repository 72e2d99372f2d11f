"""The stems benchmark's parts: the STFT and its masks, the NMF dictionaries, the music evaluation, reading
rendered stems, and the evaluate / separate commands on music."""

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sepmodels.cli import main
from sepmodels.data.stems import (
    STEMS,
    StemsBenchmark,
    StemsError,
    benchmark_clips,
    read_stems,
    render_benchmark,
    solo_audio,
    track_folders,
)
from sepmodels.evaluation import evaluate_stems
from sepmodels.metrics import si_sdr
from sepmodels.nmf import NMFConfig, NMFSeparator, StemDictionaries
from sepmodels.spectral import STFTConfig, istft, mask_mixture, oracle_estimates, stft

RATE = 14_700
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path("/usr/share/sounds/sf2").is_dir(),
    reason="needs FluidSynth and a GM soundfont: apt-get install fluidsynth timgm6mb-soundfont",
)


@pytest.fixture(scope="module")
def tone_dictionaries(tones_root) -> StemDictionaries:
    return StemDictionaries.fit(solo_audio(tones_root, RATE), NMFConfig(atoms=8, fit_iter=100), RATE)


def test_stft_round_trip_and_short_clips():
    config = STFTConfig(256, 64)
    x = torch.randn(3, 2000, dtype=torch.float64)
    torch.testing.assert_close(istft(stft(x, config), config, 2000), x)
    assert stft(x, config).shape == (3, 129, 2000 // 64 + 1)
    with pytest.raises(ValueError, match="at least one window of 256"):
        stft(torch.zeros(100), config)
    with pytest.raises(ValueError, match="n_fft"):
        STFTConfig(256, 512)


def test_oracle_masks_sum_to_the_mix_and_separate_disjoint_spectra():
    config = STFTConfig()
    t = torch.arange(RATE) / RATE
    stems = torch.stack([0.5 * torch.sin(2 * math.pi * 110 * t), 0.3 * torch.sin(2 * math.pi * 2500 * t)])
    for power in (1.0, 2.0):
        est = oracle_estimates(stems, config, power)
        torch.testing.assert_close(est.sum(0), stems.sum(0), atol=1e-5, rtol=0)
        assert (si_sdr(est, stems) > 40).all()  # two tones far apart in frequency: the mask is nearly binary
    with pytest.raises(ValueError, match="the mix's STFT"):
        mask_mixture(stems.sum(0), torch.ones(2, 10, 10), config)


def test_the_oracle_wiener_filter_is_the_power_ratio_mask():
    config = STFTConfig(256, 64)
    stems = torch.randn(3, 3000, dtype=torch.float64)
    S = stft(stems, config)
    power = S.abs() ** 2
    expected = istft(power / power.sum(0) * S.sum(0), config, 3000)
    torch.testing.assert_close(oracle_estimates(stems, config, 2.0), expected)


def test_nmf_dictionaries_learned_on_solo_stems_separate_their_mix(tones_root, tone_dictionaries):
    clips = benchmark_clips(tones_root, "test", StemsBenchmark(offset=0.5, clip_seconds=2.0))
    separator = NMFSeparator(tone_dictionaries)
    scores = evaluate_stems(lambda s: separator.separate(s.sum(0)), clips, STEMS, RATE, bss=False)
    floor = scores.mix_si_sdr
    assert (scores.si_sdri > 8).all(), scores.si_sdri  # every stem well above the mix itself
    assert (floor < 0).all()
    assert tone_dictionaries.meta["solo_seconds"] == dict.fromkeys(STEMS, 12.0)


def test_dictionaries_save_load_and_refuse_foreign_files(tone_dictionaries, tmp_path):
    path = tmp_path / "d.pt"
    tone_dictionaries.save(path)
    back = StemDictionaries.load(path)
    assert back.names == STEMS and back.config == tone_dictionaries.config
    torch.testing.assert_close(back.dictionaries, tone_dictionaries.dictionaries)
    torch.save({"x": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a sepmodels checkpoint"):
        StemDictionaries.load(tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="do not fit"):
        StemDictionaries(STEMS, torch.ones(3, 8, 1025), NMFConfig(atoms=8), RATE)
    with pytest.raises(ValueError, match="nonnegative"):
        StemDictionaries(STEMS, -torch.ones(4, 8, 1025), NMFConfig(atoms=8), RATE)


def test_evaluation_leaves_silent_stems_out_and_counts_them():
    stems = torch.randn(2, 4, RATE) * 0.1
    stems[1, 3] = 0.0  # vocals silent in the second clip
    clips = [("a", stems[0]), ("b", stems[1])]
    scores = evaluate_stems(lambda s: s.sum(0).expand_as(s).clone(), clips, STEMS, RATE, bss=True)
    assert scores.silent.tolist() == [[False] * 4, [False, False, False, True]]
    assert torch.isnan(scores.si_sdr[1, 3]) and torch.isnan(scores.sdr[1, 3])
    torch.testing.assert_close(scores.si_sdri.nan_to_num(0.0), torch.zeros(2, 4))  # the floor improves on nothing
    summary = scores.summary()
    assert summary["silent"] == {"drums": 0, "bass": 0, "other": 0, "vocals": 1}
    assert summary["si_sdr"]["vocals"] == pytest.approx(float(scores.si_sdr[0, 3]))
    close = evaluate_stems(lambda s: s + 1e-4 * torch.randn_like(s), clips, STEMS, RATE, bss=True)
    assert (close.sdr[~close.silent] > 40).all() and (close.si_sdri[~close.silent] > 40).all()


def test_reading_stems_and_their_errors(tmp_path, tones_root):
    stems = read_stems(tones_root / "train" / "track_000", RATE)
    assert stems.shape == (4, 6 * RATE) and stems.dtype == torch.float32
    with pytest.raises(StemsError, match="has no valid/ folder"):
        track_folders(tones_root, "valid")
    with pytest.raises(StemsError, match="is not a folder"):
        track_folders(tmp_path / "nothing", "test")
    broken = tmp_path / "broken"
    shutil.copytree(tones_root / "test" / "track_000", broken / "test" / "track_000")
    (broken / "test" / "track_000" / "bass.wav").unlink()
    with pytest.raises(StemsError, match=r"lacks bass\.wav") as err:
        benchmark_clips(broken, "test")
    assert "\n" not in str(err.value)
    with pytest.raises(StemsError, match="a clip needs 1 \\+ 10 s"):
        benchmark_clips(tones_root, "test")  # 3 s tracks are too short for the benchmark's 10 s clips


def test_evaluate_on_stems_from_the_command_line(tones_root, tone_dictionaries, tmp_path, capsys):
    common = ["evaluate", "--data", "stems", "--root", str(tones_root), "--seconds", "2", "--offset", "0.5"]
    assert main([*common, "--method", "irm", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "SI-SDRi" in out and "verdict:" in out and "oracle ratio mask" in out and "vocals" in out
    path = tmp_path / "tones_nmf.pt"
    tone_dictionaries.save(path)
    assert main([*common, "--method", "nmf", "--priors", str(path), "--json", "--quiet"]) == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "nmf" and report["clips"] == 2
    assert report["si_sdri_mean"] > 8 and report["mix_si_sdr_mean"] < 0
    assert 0 < report["si_sdri_mean"] <= report["oracle_ratio_mask_si_sdri_mean"] + 3
    assert set(report["sdr"]) == set(STEMS)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "stems"], "needs --root"),
        (["--data", "stems", "--root", "ROOT", "--seconds", "0.1"], "the STFT needs at least one window"),
        (["--data", "stems", "--root", "ROOT", "--split", "valid"], "has no valid/ folder"),
        (["--data", "stems", "--root", "ROOT", "--method", "nmf", "--priors", "exact"], "exact toy prior"),
        (["--method", "nmf"], "separates music"),
        (["--data", "stems", "--root", "ROOT", "--priors", "stems", "--method", "residual"], "--method nmf"),
    ],
)
def test_evaluate_music_errors_are_one_line(tones_root, capsys, extra, message):
    args = [str(tones_root) if a == "ROOT" else a for a in extra]
    assert main(["evaluate", *args, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_separate_with_the_stems_priors_writes_four_stems(tones_root, tmp_path, capsys):
    out = tmp_path / "out"
    mix = tones_root / "test" / "track_000" / "mixture.wav"
    assert main(["separate", str(mix), "--priors", "stems", "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "resampled from 44100 Hz" in captured.err and "2 channels" in captured.err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.wav" for n in STEMS)
    estimates = np.stack([sf.read(out / f"{n}.wav")[0] for n in STEMS])
    mixture = read_stems(tones_root / "test" / "track_000", RATE).sum(0).numpy()
    assert sf.info(str(out / "bass.wav")).samplerate == RATE
    np.testing.assert_allclose(estimates.sum(0), mixture, atol=2e-3)  # masks share the mix out
    assert main(["separate", str(mix), "--method", "irm", "--out", str(out)]) == 1
    assert "oracle" in capsys.readouterr().err


@needs_fluidsynth
def test_render_benchmark_splits_conditions_and_reuses_what_is_there(tmp_path):
    font = next(p.name for p in sorted(Path("/usr/share/sounds/sf2").glob("*.sf2")))
    bench = StemsBenchmark(train=(1, 1, 2.5), valid=(2, 1, 2.5), test=(3, 1, 2.5), train_font=font,
                           other_font=font, offset=0.5, clip_seconds=2.0)  # fmt: skip
    said = []
    roots = render_benchmark(tmp_path, bench, say=said.append)
    assert len(said) == 3  # one font: the same condition, train, valid and test each rendered once
    (condition,) = roots
    assert {p.name for p in (tmp_path / condition).iterdir()} == {"train", "valid", "test"}
    train, test = (
        benchmark_clips(roots[condition], "train", bench),
        benchmark_clips(roots[condition], "test", bench),
    )
    assert train[0][1].shape == test[0][1].shape == (4, 2 * RATE)
    assert not torch.allclose(train[0][1], test[0][1])  # another seed, another composition
    render_benchmark(tmp_path, bench, say=said.append)
    assert len(said) == 3


@pytest.fixture(scope="module")
def tone_masknet(tones_root):
    from sepmodels.masknet import MaskNetConfig, train_masknet

    tracks = [read_stems(f, RATE) for f in track_folders(tones_root, "train")]
    config = MaskNetConfig(n_fft=512, hop=128, hidden=32, layers=1)
    return train_masknet(tracks, STEMS, RATE, config, steps=150, batch=8, seconds=1.0, progress=False)


def test_the_mask_network_learns_to_separate_the_tones(tones_root, tone_masknet, tmp_path, capsys):
    clips = benchmark_clips(tones_root, "test", StemsBenchmark(offset=0.5, clip_seconds=2.0))
    scores = evaluate_stems(lambda s: tone_masknet.separate(s.sum(0)), clips, STEMS, RATE, bss=False)
    assert (scores.si_sdri > 5).all(), scores.si_sdri
    path = tmp_path / "net.pt"
    tone_masknet.save(path)
    from sepmodels.masknet import MaskNetSeparator

    back = MaskNetSeparator.load(path)
    mix = clips[0][1].sum(0)
    torch.testing.assert_close(back.separate(mix), tone_masknet.separate(mix))
    # the file names its own method: no --method needed
    assert main(["evaluate", "--data", "stems", "--root", str(tones_root), "--seconds", "2", "--offset", "0.5",
                 "--priors", str(path), "--json", "--quiet"]) == 0  # fmt: skip
    assert '"method": "supervised"' in capsys.readouterr().out


def test_the_mask_networks_validation_keeps_the_best_step(tones_root):
    from sepmodels.masknet import MaskNetConfig, train_masknet

    tracks = [read_stems(f, RATE) for f in track_folders(tones_root, "train")]
    figures = iter([3.0, 1.0, 2.0])
    net = train_masknet(tracks, STEMS, RATE, MaskNetConfig.tiny(), steps=3, batch=2, seconds=0.5,
                        validate=lambda _sep: next(figures), every=1, progress=False)  # fmt: skip
    assert [row["valid"] for row in net.meta["log"]] == [3.0, 1.0, 2.0]
    first = train_masknet(tracks, STEMS, RATE, MaskNetConfig.tiny(), steps=1, batch=2, seconds=0.5, progress=False)
    for key, value in first.net.state_dict().items():
        torch.testing.assert_close(net.net.state_dict()[key], value)  # the step that scored 3.0 was kept


def test_shipped_stems_priors_separate_a_song_as_the_table_measured(tmp_path, capsys):
    from sepmodels.checkpoint import default_priors_path
    from sepmodels.priors import load_priors
    from tests.conftest import song_like

    measured = {"sigma_max": 0.1, "levels": 6, "steps": 1, "chains": 1, "mix": "sum", "mask_power": 1.0}
    for family in ("score", "flow"):
        path = default_priors_path().parent / f"stems_{family}.pt"
        assert path.stat().st_size < 4_000_000
        priors = load_priors(str(path))
        assert (priors.kind, priors.names, priors.sample_rate) == (family, STEMS, RATE)
        assert priors.sampler_defaults == {"residual": measured}  # what bench/stems_priors.py chose on valid
        assert priors.meta["data"] == "musdb" and priors.meta["stems_benchmark"]["test_si_sdri"]
    # A song is the sum of its stems: the priors take it as it is and return stems that add up to it.
    song = song_like(RATE) * 0.5
    mix = tmp_path / "song.wav"
    sf.write(mix, np.stack([song, song], 1), 44_100 // 3, subtype="FLOAT")  # stereo at the priors' rate
    out = tmp_path / "stems"
    path = default_priors_path().parent / "stems_score.pt"
    assert main(["separate", str(mix), "--priors", str(path), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr()
    assert "then ratio masks" in printed.out and "wrote drums.wav, bass.wav, other.wav, vocals.wav" in printed.out
    estimates = np.stack([sf.read(out / f"{n}.wav")[0] for n in STEMS])
    assert estimates.shape == (4, len(song)) and np.isfinite(estimates).all()
    np.testing.assert_allclose(estimates.sum(0), song, atol=1e-4)  # ratio masks share the mix out
    assert not (estimates**2).sum(1).max() > (song**2).sum()  # no stem louder than the song
