"""The harmonic priors: learned shapes on a continuous, moving pitch (sepmodels.sources)."""

import math

import pytest
import torch

from sepmodels import mixing
from sepmodels.checkpoint import CheckpointError, default_harmonic_priors_path, save_checkpoint
from sepmodels.data import toy
from sepmodels.inference.langevin import LangevinConfig
from sepmodels.inference.separator import make_separator
from sepmodels.metrics import si_sdr
from sepmodels.nn.waves import WavePriors
from sepmodels.priors import load_priors
from sepmodels.registry import SOURCE_MODELS
from sepmodels.sources.harmonic import HarmonicPriors, degrees_of_freedom, fit_harmonic_priors
from sepmodels.sources.track import follow, lowpass, unwrap

RATE = toy.SAMPLE_RATE


@pytest.fixture(scope="module")
def shipped() -> HarmonicPriors:
    return HarmonicPriors.load()


def _square(hz: float, length: int, phase: float = 0.3, amp: float = 0.9) -> torch.Tensor:
    t = torch.arange(length, dtype=torch.float64) / RATE
    return amp * toy.oscillator("square", 2 * math.pi * hz * t + phase)


def test_lowpass_keeps_what_is_in_band_and_removes_what_is_not_even_at_the_ends():
    t = torch.arange(RATE, dtype=torch.float64) / RATE
    slow, fast = torch.cos(2 * math.pi * 3 * t), torch.cos(2 * math.pi * 200 * t)
    out = lowpass(slow + fast + 0.5, 10.0, RATE)
    inner = slice(RATE // 10, -RATE // 10)
    assert float((out - slow - 0.5)[inner].abs().max()) < 0.02
    # the normalised convolution is not dragged towards zero at the clip's ends (zero padding would halve them)
    assert float((out - slow - 0.5).abs().max()) < 0.15
    z = torch.exp(1j * 2 * math.pi * 2 * t)
    assert torch.allclose(unwrap(torch.angle(z)), 2 * math.pi * 2 * t, atol=1e-9)


def test_follow_finds_an_off_key_square_from_a_pitch_a_bin_away(shipped):
    k = shipped.names.index("square")
    clip = _square(437.13, RATE)  # 10 cents below A4
    fit = shipped.follow(k, clip, 437.13 + 0.2)
    assert abs(fit.mean_pitch(RATE) - 437.13) < 1e-3
    assert float(si_sdr(fit.wave.float(), clip.float())) > 25
    assert fit.motion == 0 and torch.allclose(fit.envelope, fit.envelope[0].expand_as(fit.envelope))


def test_follow_tracks_vibrato_and_a_decay_that_a_steady_note_cannot():
    t = torch.arange(RATE, dtype=torch.float64) / RATE
    cents = 25 * torch.sin(2 * math.pi * 5 * t)
    hz = 660.0 * 2 ** (cents / 1200)
    phase = 2 * math.pi * (hz.cumsum(0) - hz) / RATE
    clip = torch.exp(-1.5 * t) * torch.sin(phase)
    sine = lambda c: torch.sin(2 * math.pi * c)  # noqa: E731
    coefs = torch.fft.rfft(sine(torch.arange(64, dtype=torch.float64) / 64)) / 64
    moving = follow(clip, 660.0, sine, coefs, RATE, motion=12.0, deviation_cents=40.0)
    steady = follow(clip, 660.0, sine, coefs, RATE, motion=0.0, deviation_cents=0.0)
    assert float(si_sdr(moving.wave.float(), clip.float())) > 30
    assert float(si_sdr(steady.wave.float(), clip.float())) < 10
    inner = slice(2000, RATE - 2000)
    assert float((moving.pitch(RATE)[inner] - hz[inner]).abs().max()) < 1.5  # Hz, of a 660 Hz note moving 10 Hz


def test_candidates_hold_the_true_pitch_and_the_density_integrates_to_one(shipped):
    k = shipped.names.index("saw")
    t = torch.arange(RATE, dtype=torch.float64) / RATE
    clip = 2 * torch.remainder(311.7 * t + 0.1, 1.0) - 1
    found = shipped.candidate_pitches(k, clip)
    assert abs(float(found[0]) - 311.7) < 0.5
    octaves = torch.linspace(float(shipped.pitch_edges[0]) + 1e-6, float(shipped.pitch_edges[-1]) - 1e-6, 20001)
    density = shipped.log_pitch_density(k, 2**octaves).exp()
    assert abs(float(torch.trapezoid(density, octaves)) - 1) < 1e-2
    assert float(shipped.log_pitch_density(k, torch.tensor(5.0))) == -math.inf  # below the range


def test_degrees_of_freedom_grow_with_the_band_and_the_clip():
    assert degrees_of_freedom(0.0, RATE, RATE) == 3
    assert degrees_of_freedom(8.0, RATE, RATE) < degrees_of_freedom(16.0, RATE, RATE)
    assert degrees_of_freedom(8.0, RATE, RATE) < degrees_of_freedom(8.0, 2 * RATE, RATE)


def test_contract_shapes_sampling_and_a_known_denoising_answer(shipped):
    assert shipped.kind == "harmonic" and shipped.names == toy.SOURCES and shipped.sample_rate == RATE
    g = torch.Generator().manual_seed(4)
    clips = shipped.sample(2, 3000, sigma=0.0 + 1e-9, generator=g)
    assert clips.shape == (2, 4, 3000) and torch.isfinite(clips).all()
    # a steady off-key square seen through noise: the posterior mean is the square, far above the input
    x = toy.toy_test_set(1, 3000, seed=3).double()
    x[0, 1] = _square(301.9, 3000)
    noisy = x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    mean = shipped.denoise(noisy, 0.1, sources=[1])
    assert torch.equal(mean[0, 0], noisy[0, 0])  # sources not asked for pass through
    denoised, before = (float(si_sdr(v[0, 1].float(), x[0, 1].float())) for v in (mean, noisy))
    assert denoised > 25 and denoised > before + 5
    maps, score = shipped.log_prob_and_score(noisy[:, :, :2000], 0.1)
    assert maps.shape == score.shape == (1, 4, 2000) and torch.isfinite(maps).all()
    assert torch.allclose(maps.sum(-1), shipped.clip_log_prob(noisy[:, :, :2000], 0.1), rtol=1e-6)
    with pytest.raises(ValueError, match="at least"):
        shipped.valid_length(100)
    with pytest.raises(ValueError, match="sigma > 0"):
        shipped.denoise(noisy, 0.0)


def test_separates_an_off_key_mix_with_a_known_answer(shipped):
    params = toy.ToyClipParams(
        key=torch.tensor([[40.37, 52.81, 31.55, 64.12]], dtype=torch.float64),
        phase=torch.tensor([[0.3, 1.1, 2.0, 4.0]], dtype=torch.float64),
        amplitude=torch.tensor([[0.9, 0.85, 0.95, 0.8]], dtype=torch.float64),
    )
    truth = toy.render(params, RATE // 4)[0]
    separator = make_separator("residual", shipped)
    assert separator.config.init == "pursuit" and separator.config.levels == 10  # the priors' own ladder
    est = separator.separate(mixing.mix(truth))
    assert float(si_sdr(est, truth).min()) > 20


def test_save_load_round_trip_and_foreign_files(tmp_path, shipped):
    path = tmp_path / "h.pt"
    shipped.save(path)
    again = load_priors(str(path))
    assert isinstance(again, HarmonicPriors) and torch.equal(again.motion, shipped.motion)
    assert torch.equal(again.pitch_log_prob, shipped.pitch_log_prob)
    bad = shipped.payload()
    bad["motion"] = torch.zeros(3)
    save_checkpoint(tmp_path / "bad.pt", bad)
    with pytest.raises(CheckpointError, match="does not match"):
        HarmonicPriors.load(tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not harmonic priors"):
        HarmonicPriors.from_checkpoint(WavePriors.load().payload())


def test_the_registry_names_every_source_model():
    assert set(SOURCE_MODELS) == {"exact", "waves", "harmonic"}
    assert load_priors("harmonic").kind == "harmonic"
    assert load_priors("waves").kind == "waves" and load_priors("exact").kind == "exact"
    assert default_harmonic_priors_path().stat().st_size < 1_000_000


def test_the_shipped_priors_know_how_they_were_made(shipped):
    meta = shipped.meta
    assert meta["command"].startswith("sepmodels fit-harmonic") and meta["clips"] >= 96
    assert set(meta["variants"]) == {"keys", "continuous", "moving"}
    # a third of the training notes move: every source learned a band and a share near a third
    assert bool((shipped.motion > 0).all()) and bool(((shipped.moving > 0.2) & (shipped.moving < 0.5)).all())


def test_fit_learns_steady_from_steady_clips_and_a_band_from_moving_ones():
    g = torch.Generator().manual_seed(0)
    shapes = WavePriors.load()
    square = _only(shapes, 1)
    steady = toy.toy_batch(4, RATE // 2, g, options="continuous")[:, 1:2]
    priors = fit_harmonic_priors(steady, ("square",), RATE, square, progress=False)
    assert float(priors.motion[0]) == 0 and float(priors.moving[0]) == 0
    assert priors.meta["fit_db"][0] > 25
    moving = toy.toy_batch(4, RATE // 2, g, options=toy.ToyOptions(pitch="continuous", vibrato_cents=30.0))
    priors = fit_harmonic_priors(moving[:, :1], ("sin",), RATE, _only(shapes, 0), progress=False)
    assert float(priors.motion[0]) > 0 and float(priors.moving[0]) > 0.5 and priors.deviation[0] > 10


def _only(shapes: WavePriors, k: int) -> WavePriors:
    """The wave priors of source ``k`` alone."""
    pick = slice(k, k + 1)
    return WavePriors(
        shapes.names[pick],
        shapes.sample_rate,
        shapes.knots[pick],
        shapes.jumps[pick],
        shapes.offsets[pick],
        shapes.pitch_hz[pick],
        shapes.pitch_log_prior[pick],
        shapes.amplitude[pick],
        shapes.meta,
    )


@pytest.mark.parametrize("bad", [dict(restart="shuffle"), dict(init="pursuit", method="annealed")])
def test_bad_sweep_settings_are_one_clear_error(bad):
    with pytest.raises(ValueError):
        LangevinConfig(**bad)


def test_caller_settings_win_over_the_priors_ladder(shipped):
    sep = make_separator("residual", shipped, levels=3, chains=1)
    assert sep.config.levels == 3 and sep.config.chains == 1 and sep.config.init == "pursuit"
    assert make_separator("residual", WavePriors.load()).config.levels == 30  # no ladder of its own


def test_fit_harmonic_command_writes_priors_and_refuses_bad_values(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "h.pt"
    cmd = [sys.executable, "-m", "sepmodels", "fit-harmonic", "--out", str(out), "--clips", "1", "--seconds",
           "0.1", "--variants", "continuous", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "wrote harmonic priors" in done.stdout
    priors = HarmonicPriors.load(out)
    assert priors.meta["variants"] == ["continuous"]
    assert priors.meta["command"].startswith("sepmodels fit-harmonic")
    bad = subprocess.run([*cmd[:5], str(tmp_path / "x.pt"), "--seconds", "0.05"], capture_output=True, text=True)
    assert bad.returncode == 1 and len(bad.stderr.strip().splitlines()) == 1 and "--seconds 0.05" in bad.stderr
    bad = subprocess.run([*cmd[:5], str(tmp_path / "x"), "--variants", "wobbly"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--variants" in bad.stderr
    assert not (tmp_path / "x.pt").exists() and not (tmp_path / "x").exists()


def test_separate_takes_the_harmonic_priors_by_default_and_a_moving_toy_mix_gets_no_warning(tmp_path, capsys):
    import numpy as np
    import soundfile as sf

    from sepmodels.cli import main

    mix = toy.toy_test_set(1, RATE // 4, seed=9, options="moving")[0].mean(0).numpy()
    path = tmp_path / "mix.wav"
    sf.write(str(path), mix.astype(np.float32), RATE, subtype="FLOAT")
    fast = ["--levels", "2", "--steps", "1", "--quiet"]
    assert main(["separate", str(path), "--out", str(tmp_path / "o"), *fast]) == 0
    err = capsys.readouterr().err
    assert "harmonic priors" in err and "changes over time" not in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"{n}.wav" for n in sorted(toy.SOURCES)]
