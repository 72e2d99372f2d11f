import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from sepmodels import mixing
from sepmodels.cli import main
from sepmodels.data import toy
from tests.conftest import song_like


def _wav(path, data, rate=14_700):
    sf.write(str(path), np.asarray(data, dtype=np.float32), rate, subtype="FLOAT")
    return str(path)


@pytest.fixture
def clips(tmp_path):
    sources = toy.toy_test_set(1, 3000)[0].numpy()
    return [_wav(tmp_path / f"{name}.wav", sources[k]) for k, name in enumerate(toy.SOURCES)]


def _one_line_error(capsys, code):
    err = capsys.readouterr().err
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_likelihood_json_and_map(clips, tiny_priors_path, tmp_path, capsys):
    out = tmp_path / "maps.npy"
    code = main(
        ["likelihood", *clips[:2], "--priors", tiny_priors_path, "--json", "--map", str(out), "--sigma", "0.1"]
    )
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sigma"] == 0.1
    assert [r["file"] for r in report["results"]] == clips[:2]
    assert list(report["results"][0]["priors"]) == list(toy.SOURCES)
    maps = np.load(out)
    assert maps.shape == (2, 4, 3000)
    means = maps.mean(axis=2)
    np.testing.assert_allclose(means[0], list(report["results"][0]["priors"].values()), rtol=1e-5)


def test_likelihood_table_and_conversions(tmp_path, tiny_priors_path, capsys):
    t = np.arange(22_050) / 44_100
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), 0.5 * np.sin(2 * np.pi * 220 * t)], axis=1) * 0.8
    path = _wav(tmp_path / "stereo.wav", stereo, 44_100)
    assert main(["likelihood", path, "--priors", tiny_priors_path]) == 0
    captured = capsys.readouterr()
    assert "2 channels averaged to mono" in captured.err and "resampled from 44100 Hz" in captured.err
    assert "nats per sample" in captured.out and "saw" in captured.out and "*" in captured.out


def test_likelihood_reads_each_score_against_the_priors_held_out_range(clips, tmp_path, capsys):
    noise = _wav(tmp_path / "noise.wav", 0.2 * np.random.default_rng(0).standard_normal(3000).clip(-4, 4))
    assert main(["likelihood", clips[0], noise, "--priors", "exact", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert list(report["heldout"]["ranges"]) == list(toy.SOURCES)
    sine, hiss = report["results"]
    assert "sin" not in sine["outside"] and sine["verdict"].startswith("Like the sin prior's own clips")
    assert set(hiss["outside"]) == set(toy.SOURCES) and hiss["verdict"].startswith("Out of distribution")
    assert main(["likelihood", noise, "--priors", "exact"]) == 0
    assert "does not make it a" in capsys.readouterr().out  # the table's reading, in words


def test_likelihood_uses_the_shipped_priors_by_default(clips, capsys):
    assert main(["likelihood", clips[0], "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["sigma"] == pytest.approx(0.01)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["likelihood", "{tmp}/missing.wav", "--priors", "{priors}"], "no such file"),
        (["likelihood", "{tmp}", "--priors", "{priors}"], "is a directory"),
        (["likelihood", "{tmp}/empty.wav", "--priors", "{priors}"], "is empty"),
        (["likelihood", "{tmp}/text.wav", "--priors", "{priors}"], "not a readable audio file"),
        (["likelihood", "{tmp}/nan.wav", "--priors", "{priors}"], "NaN"),
        (["likelihood", "{tmp}/silent.wav", "--priors", "{priors}"], "silent"),
        (["likelihood", "{clip}", "--priors", "{tmp}/text.wav"], "not a readable checkpoint"),
        (["likelihood", "{clip}", "--priors", "{tmp}/missing.pt"], "no such checkpoint"),
        (["likelihood", "{clip}", "--priors", "{priors}", "--map", "{tmp}"], "is a folder"),
    ],
)
def test_likelihood_user_errors(tmp_path, clips, tiny_priors_path, args, message, capsys):
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio")
    _wav(tmp_path / "nan.wav", [0.1, np.nan, 0.3])
    _wav(tmp_path / "silent.wav", np.zeros(500))
    argv = [a.format(tmp=tmp_path, clip=clips[0], priors=tiny_priors_path) for a in args]
    line = _one_line_error(capsys, main(argv))
    assert message in line and line.startswith("sepmodels likelihood: error:")


@pytest.mark.parametrize(
    "argv",
    [
        ["likelihood", "x.wav", "--sigma", "-1"],
        ["likelihood", "x.wav", "--sigma", "nan"],
        ["train", "--out", "o", "--steps", "0"],
        ["train", "--out", "o", "--steps", "many"],
        ["train", "--out", "o", "--config", "enormous"],
        ["train", "--out", "o", "--data", "musdb18"],
        ["train"],
        ["frobnicate"],
    ],
)
def test_bad_cli_values_exit_with_one_line(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    line = _one_line_error(capsys, info.value.code)
    assert "error" in line


def test_train_refuses_to_overwrite_and_rejects_a_file_as_out(tmp_path, capsys):
    (tmp_path / "priors.pt").write_bytes(b"x")
    line = _one_line_error(capsys, main(["train", "--out", str(tmp_path), "--config", "tiny", "--steps", "1"]))
    assert "--resume" in line
    f = tmp_path / "file"
    f.write_text("x")
    line = _one_line_error(capsys, main(["train", "--out", str(f), "--config", "tiny", "--steps", "1"]))
    assert "is a file" in line


def test_module_entry_point_runs(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sepmodels",
            "train",
            "--out",
            str(tmp_path),
            "--config",
            "tiny",
            "--steps",
            "2",
            "--length",
            "64",
            "--batch-size",
            "2",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "trained 2 steps" in result.stdout
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sepmodels",
            "likelihood",
            str(tmp_path / "nothing.wav"),
            "--priors",
            str(tmp_path / "priors.pt"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_separate_writes_one_file_per_source(clips, tiny_priors_path, tmp_path, capsys):
    mix = toy.toy_test_set(1, 1000)[0].mean(0).numpy()
    path = _wav(tmp_path / "mix.wav", mix)
    out = tmp_path / "out"
    argv = [
        "separate",
        path,
        "--priors",
        tiny_priors_path,
        "--out",
        str(out),
        "--steps",
        "2",
        "--levels",
        "2",
        "--sigma-max",
        "1",
    ]  # fmt: skip  (untrained tiny priors diverge far above their training noise)
    assert main([*argv, "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.wav" for n in toy.SOURCES)
    data, rate = sf.read(str(out / "saw.wav"))
    assert rate == 14_700 and data.shape == (1000,) and np.isfinite(data).all()
    assert "wrote" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_separate_says_before_running_when_the_priors_are_wrong_for_the_clip(tmp_path, tiny_priors_path, capsys):
    song = _wav(tmp_path / "song.wav", song_like())
    fast = ["--steps", "1", "--levels", "1", "--sigma-max", "1", "--quiet"]
    assert main(["separate", song, "--priors", tiny_priors_path, "--out", str(tmp_path / "a"), *fast]) == 0
    err = capsys.readouterr().err
    assert "the toy priors model four steady oscillators" in err and "--priors stems" in err
    mix = _wav(tmp_path / "mix.wav", toy.toy_test_set(1, 14_700)[0].mean(0).numpy())
    assert main(["separate", mix, "--priors", tiny_priors_path, "--out", str(tmp_path / "b"), *fast]) == 0
    assert "steady oscillators" not in capsys.readouterr().err  # a toy mix under toy priors: nothing to say
    assert main(["separate", mix, "--priors", "stems", "--out", str(tmp_path / "c"), "--quiet"]) == 0
    assert "as steady as a toy mix" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "{tmp}/mix.wav"], "is a file"),
        (["--out", "{tmp}/o", "--sigma-min", "5"], "sigma_min <= restart_sigma"),
        (["--out", "{tmp}/o", "--method", "constrained", "--sigma-min", "5"], "sigma_min <= sigma_max"),
    ],
)
def test_separate_user_errors_leave_nothing_behind(tmp_path, tiny_priors_path, extra, message, capsys):
    path = _wav(tmp_path / "mix.wav", toy.toy_test_set(1, 500)[0].mean(0).numpy())
    argv = ["separate", path, "--priors", tiny_priors_path, *[a.format(tmp=tmp_path) for a in extra]]
    line = _one_line_error(capsys, main(argv))
    assert message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mix.wav"]


def test_separate_rejects_bad_method_and_steps(tmp_path, capsys):
    for bad in (["--method", "gibbs"], ["--steps", "-3"]):
        with pytest.raises(SystemExit) as info:
            main(["separate", "x.wav", "--out", str(tmp_path / "o"), *bad])
        _one_line_error(capsys, info.value.code)


def test_evaluate_reports_si_sdr_and_the_mix_floor(tiny_priors_path, capsys):
    argv = [
        "evaluate",
        "--priors",
        tiny_priors_path,
        "--n",
        "2",
        "--seconds",
        "0.05",
        "--method",
        "constrained",
        "--steps",
        "2",
        "--levels",
        "2",
        "--json",
        "--quiet",
    ]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["si_sdr"]) == set(toy.SOURCES) and report["mixes"] == 2
    assert report["steps"] == 4
    # the mix as an estimate of each source: around -6 dB for four equal-energy sources
    assert -12 < report["mix_si_sdr_mean"] < 0
    assert report["verdict"] in ("separated", "not separated (no source above the mix itself)") or (
        "sources above the mix itself" in report["verdict"]
    )
    assert main([*argv[:-2], "--quiet"]) == 0
    assert "verdict: " in capsys.readouterr().out


def test_verdict_reads_each_source_against_its_floor():
    from sepmodels.metrics import verdict

    assert verdict([12.0, 20.0], [-5.0, -4.0]) == "separated"
    assert verdict([-3.0, -10.0], [-5.0, -4.0]) == "1 of 2 sources above the mix itself"
    assert verdict([-6.0, -10.0], [-5.0, -4.0]).startswith("not separated")
    with pytest.raises(ValueError, match="floors"):
        verdict([1.0], [1.0, 2.0])


def test_separate_says_when_an_estimate_is_too_loud_and_can_make_it_peak_safe(tmp_path, capsys):
    from sepmodels.cli import _loudness_notes

    mixture = 0.5 * torch.sin(torch.linspace(0, 100, 1000))
    estimates = torch.stack([2.5 * mixture / 0.5, 0.1 * mixture])
    notes = _loudness_notes(estimates, mixture, ("a", "b"))
    assert len(notes) == 2 and "a peaks at 2.50" in notes[0] and "louder than the mix" in notes[1]
    quieter = _loudness_notes(0.3 * estimates, mixture, ("a", "b"))  # peak 0.75: only too loud, not clipping
    assert len(quieter) == 1 and quieter[0].startswith("a is louder than the mix itself")
    truth = toy.toy_test_set(1, 1000)[0]  # a toy mix is their mean: each source is louder than it, not the sum
    assert not _loudness_notes(truth, truth.sum(0), toy.SOURCES)
    path = _wav(tmp_path / "mix.wav", toy.toy_test_set(1, 1000)[0].mean(0).numpy())
    out = tmp_path / "out"
    argv = ["separate", path, "--priors", "exact", "--out", str(out), "--levels", "3", "--steps", "1",
            "--sigma-max", "1", "--peak-safe", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    peaks = [np.abs(sf.read(str(out / f"{n}.wav"))[0]).max() for n in toy.SOURCES]
    assert max(peaks) <= 0.99 + 1e-6


def test_score_priors_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "score"
    argv = ["train", "--model", "score", "--config", "tiny", "--out", str(out), "--steps", "2", "--length", "64",
            "--batch-size", "2", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    clip = _wav(tmp_path / "c.wav", toy.toy_test_set(1, 500)[0, 0].numpy())
    line = _one_line_error(capsys, main(["likelihood", clip, "--priors", str(out / "priors.pt")]))
    assert "score priors" in line
    line = _one_line_error(capsys, main([*argv[:-1], "--plain", "--out", str(tmp_path / "p")]))
    assert "--plain applies to flow priors only" in line
    line = _one_line_error(
        capsys, main(["train", "--model", "score", "--config", "thesis_toy", "--out", str(tmp_path / "q")])
    )
    assert "unknown config 'thesis_toy'" in line
    sep = ["separate", clip, "--priors", str(out / "priors.pt"), "--out", str(tmp_path / "sep"), "--steps", "2",
           "--levels", "2", "--quiet"]  # fmt: skip
    assert main(sep) == 0
    assert len(list((tmp_path / "sep").iterdir())) == 4


def test_export_strips_the_training_state(tmp_path, capsys):
    from sepmodels.checkpoint import load_checkpoint

    run = tmp_path / "run"
    argv = ["train", "--config", "tiny", "--out", str(run), "--steps", "2", "--length", "64", "--batch-size", "2"]
    assert main([*argv, "--quiet"]) == 0
    assert main(["export", str(run / "priors.pt"), str(tmp_path / "slim.pt")]) == 0
    slim = load_checkpoint(tmp_path / "slim.pt")
    assert "optimizer" not in slim and "rng" not in slim and slim["meta"]["step"] == 2
    assert (tmp_path / "slim.pt").stat().st_size < (run / "priors.pt").stat().st_size
    assert "wrote 4 flow priors" in capsys.readouterr().out


def test_the_exact_prior_is_chosen_by_name_and_separates_a_toy_mix(tmp_path, capsys):
    truth = toy.toy_test_set(1, 2940)[0]
    path = _wav(tmp_path / "mix.wav", mixing.mix(truth).numpy())
    out = tmp_path / "out"
    argv = ["separate", path, "--priors", "exact", "--out", str(out), "--sigma-max", "20", "--levels", "15",
            "--steps", "2", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    from sepmodels.metrics import si_sdr

    got = np.stack([sf.read(str(out / f"{n}.wav"))[0] for n in toy.SOURCES])
    import torch

    assert (si_sdr(torch.from_numpy(got).float(), truth) > 20).all()
    capsys.readouterr()
    assert main(["likelihood", path, "--priors", "exact", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["results"][0]["priors"]) == set(toy.SOURCES)


@pytest.mark.parametrize(
    ("rate", "samples", "message"),
    [(44_100, 3000, "is at 44100 Hz"), (14_700, 200, "needs clips of 535")],
)
def test_the_exact_prior_refuses_other_rates_and_short_clips(tmp_path, capsys, rate, samples, message):
    path = _wav(tmp_path / "mix.wav", 0.5 * np.sin(np.arange(samples) / 5.0), rate)
    for cmd in (["separate", path, "--out", str(tmp_path / "o")], ["likelihood", path]):
        line = _one_line_error(capsys, main([*cmd, "--priors", "exact"]))
        assert message in line
    assert not (tmp_path / "o").exists()
