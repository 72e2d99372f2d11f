"""Frame priors (sepmodels/frames.py): the ELBO's terms, training, separation of a mix whose stems own their
parts of the spectrum, files, the command line and the stems choice."""

import json
import math

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from sepmodels.cli import main
from sepmodels.data.stems import STEMS, StemsBenchmark, benchmark_clips, read_stems, solo_audio, track_folders
from sepmodels.evaluation import evaluate_stems
from sepmodels.frames import (
    SHIFTS,
    FrameConfig,
    FrameEncoder,
    FramePriors,
    FramePriorSeparator,
    FrameVAE,
    pitch_shifted,
    train_frame_encoder,
    train_frame_priors,
)
from sepmodels.nmf import NMFConfig, NMFSeparator, StemDictionaries
from sepmodels.spectral import stft
from sepmodels.stems_choice import stems_method, write_choice
from tests.conftest import song_like

RATE = 14_700
CONFIG = FrameConfig(latent=4, hidden=32, fit_steps=150)


@pytest.fixture(scope="module")
def tone_priors(tones_root) -> FramePriors:
    solo = solo_audio(tones_root, RATE)
    start = StemDictionaries.fit(solo, NMFConfig(atoms=8, fit_iter=100), RATE)
    return train_frame_priors(solo, RATE, CONFIG, steps=400, batch=64, start=start, progress=False)


def test_the_elbo_terms_are_the_kl_divergences_and_ignore_loudness():
    from torch.distributions import Categorical, Normal, kl_divergence

    torch.manual_seed(0)
    vae = FrameVAE(33, FrameConfig(latent=3, hidden=8))
    v = torch.rand(5, 33) + 0.01
    reconstruction, kl, loss = vae.negative_elbo(v, beta=0.5, sample=False)
    mean, log_var = vae.encode(v)
    shape = vae.decode(mean)
    torch.testing.assert_close(shape.sum(-1), torch.ones(5))
    expected = kl_divergence(Categorical(probs=v / v.sum(-1, keepdim=True)), Categorical(probs=shape))
    torch.testing.assert_close(reconstruction, expected, rtol=1e-4, atol=1e-6)
    prior = kl_divergence(Normal(mean, (0.5 * log_var).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl, prior, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(loss, reconstruction + 0.5 * kl)
    louder = vae.negative_elbo(10 * v, beta=0.5, sample=False)
    torch.testing.assert_close(louder[2], loss)  # a frame's shape, not its level, is what the prior models


def test_the_reparameterised_draw_has_q_s_moments_and_carries_the_gradient():
    torch.manual_seed(0)
    mean = torch.tensor([0.5, -1.0]).repeat(200_000, 1)
    log_var = torch.tensor([0.0, math.log(0.25)]).repeat(200_000, 1)
    z = FrameVAE.draw(mean, log_var)
    torch.testing.assert_close(z.mean(0), torch.tensor([0.5, -1.0]), atol=0.01, rtol=0)
    torch.testing.assert_close(z.var(0), torch.tensor([1.0, 0.25]), atol=0.01, rtol=0)
    vae = FrameVAE(33, FrameConfig(latent=3, hidden=8))
    v = torch.rand(5, 33) + 0.01
    rows = slice(3, 6)  # the encoder's last layer rows that give the log-variance
    for sample, moves in ((True, True), (False, False)):
        vae.zero_grad()
        vae.negative_elbo(v, beta=0.0, sample=sample)[0].sum().backward()
        assert bool(vae.encoder[-1].weight.grad[rows].abs().sum() > 0) == moves


def test_training_lowers_the_reconstruction_reproducibly_and_leaves_the_random_stream_alone(tones_root):
    solo = {name: audio[: 2 * RATE] for name, audio in solo_audio(tones_root, RATE).items()}
    state = torch.get_rng_state()
    short = train_frame_priors(solo, RATE, CONFIG, steps=1, batch=32, progress=False)
    long = train_frame_priors(solo, RATE, CONFIG, steps=200, batch=32, progress=False)
    again = train_frame_priors(solo, RATE, CONFIG, steps=200, batch=32, progress=False)
    torch.testing.assert_close(torch.get_rng_state(), state)
    for name in STEMS:
        assert (
            long.meta["training"][name]["reconstruction_nats"]
            < short.meta["training"][name]["reconstruction_nats"]
        )
    for a, b in zip(long.vaes.parameters(), again.vaes.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="too few"):
        train_frame_priors({"a": torch.zeros(RATE)}, RATE, CONFIG, steps=1, progress=False)
    with pytest.raises(ValueError, match="steps >= 1"):
        train_frame_priors(solo, RATE, CONFIG, steps=0, progress=False)


def test_pitch_shifting_moves_a_tone_by_its_semitones_and_training_learns_every_shift(tones_root):
    t = torch.arange(RATE) / RATE
    tone = torch.sin(2 * math.pi * 440.0 * t)
    assert pitch_shifted(tone, 0.0) is tone
    for semitones in (-2.0, 1.0, 0.5):
        shifted = pitch_shifted(tone, semitones)
        peak = float(torch.fft.rfft(shifted).abs().argmax()) * RATE / shifted.shape[0]
        want = 440.0 * 2 ** (semitones / 12)
        assert abs(peak - want) < RATE / shifted.shape[0]  # within one bin of the FFT
        assert abs(shifted.shape[0] / RATE - 2 ** (-semitones / 12)) < 1e-3  # a tape played faster is shorter
    solo = {name: audio[: 2 * RATE] for name, audio in solo_audio(tones_root, RATE).items()}
    plain = train_frame_priors(solo, RATE, CONFIG, steps=1, batch=8, shifts=(0,), progress=False)
    shifted = train_frame_priors(solo, RATE, CONFIG, steps=1, batch=8, shifts=(-12, 0), progress=False)
    assert plain.meta["shifts"] == [0.0] and shifted.meta["shifts"] == [-12.0, 0.0]
    for name in ("bass", "other", "vocals"):  # steady tones (the drums' bursts are shorter than a window)
        ratio = shifted.meta["training"][name]["frames"] / plain.meta["training"][name]["frames"]
        assert 2.8 < ratio < 3.2, (name, ratio)  # the audio, and an octave down at twice its length
    for bad in ((), (13.0,), (float("nan"),)):
        with pytest.raises(ValueError, match="shifts must be"):
            train_frame_priors(solo, RATE, CONFIG, steps=1, shifts=bad, progress=False)
    for bad in (float("inf"), -12.5):
        with pytest.raises(ValueError, match="pitch shift must be"):
            pitch_shifted(tone, bad)


def test_frame_priors_learned_on_solo_stems_separate_their_mix(tones_root, tone_priors):
    clips = benchmark_clips(tones_root, "test", StemsBenchmark(offset=0.5, clip_seconds=2.0))
    separator = FramePriorSeparator(tone_priors)
    scores = evaluate_stems(lambda s: separator.separate(s.sum(0)), clips, STEMS, RATE, bss=False)
    assert (scores.si_sdri > 8).all(), scores.si_sdri  # every stem well above the mix itself
    nmf = NMFSeparator(tone_priors.start)
    baseline = evaluate_stems(lambda s: nmf.separate(s.sum(0)), clips, STEMS, RATE, bss=False)
    # NMF is near perfect on tones in disjoint registers (about 39 dB); the fit from its answer, under 4-latent
    # test priors with coarser shapes, must keep most of it (about 36 dB), not wander off
    assert float(scores.si_sdri.mean()) > float(baseline.si_sdri.mean()) - 6
    estimates = separator.separate(clips[0][1].sum(0))
    torch.testing.assert_close(estimates.sum(0), clips[0][1].sum(0), atol=1e-4, rtol=0)  # masks share the mix
    # the fit lowers its objective from the NMF start: the model explains the mix at least as well as it began
    mix = clips[0][1].sum(0)
    X = stft(mix, CONFIG.stft)
    M = X.abs().T
    start = tone_priors.starting_point(mix, X)

    def divergence(z_gain) -> float:
        fit = tone_priors.magnitudes(*z_gain).sum(0).T + 1e-9
        return float((M * (torch.log(M + 1e-9) - torch.log(fit)) - M + fit).sum() / M.sum())

    assert divergence(tone_priors.fit(mix, X, start)) < divergence(start)
    # without NMF dictionaries a fit starts from zero latents and the mix shared equally
    bare = FramePriors(tone_priors.names, tone_priors.vaes, CONFIG, RATE)
    z, gain = bare.starting_point(mix, X)
    assert float(z.abs().max()) == 0 and torch.allclose(gain[0], gain[3])
    assert "zero latents" in FramePriorSeparator(bare).describe()


def test_frame_priors_save_load_and_refuse_what_does_not_fit(tone_priors, tones_root, tmp_path):
    path = tmp_path / "frames.pt"
    tone_priors.save(path)
    back = FramePriors.load(path)
    assert back.names == STEMS and back.config == tone_priors.config and back.start is not None
    mix = read_stems(tones_root / "test" / "track_000", RATE).sum(0)[:RATE]
    torch.testing.assert_close(
        FramePriorSeparator(back).separate(mix), FramePriorSeparator(tone_priors).separate(mix)
    )
    torch.save({"x": 1}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a sepmodels checkpoint"):
        FramePriors.load(tmp_path / "foreign.pt")
    tone_priors.start.save(tmp_path / "nmf.pt")
    with pytest.raises(ValueError, match="not frame priors"):
        FramePriors.load(tmp_path / "nmf.pt")
    with pytest.raises(ValueError, match="do not fit"):
        FramePriors(STEMS, nn.ModuleList(list(tone_priors.vaes)[:3]), CONFIG, RATE)
    other_stft = StemDictionaries(STEMS, torch.ones(4, 8, 129), NMFConfig(atoms=8, n_fft=256, hop=64), RATE)
    with pytest.raises(ValueError, match="same stems and STFT"):
        FramePriors(STEMS, tone_priors.vaes, CONFIG, RATE, other_stft)
    separator = FramePriorSeparator(tone_priors)
    with pytest.raises(ValueError, match="mono"):
        separator.separate(torch.zeros(2, RATE))
    with pytest.raises(ValueError, match="NaN"):
        separator.separate(torch.full((RATE,), float("nan")))
    with pytest.raises(ValueError, match="at least one window"):
        separator.separate(torch.zeros(100))
    with pytest.raises(ValueError, match="FrameConfig"):
        FrameConfig(latent=0)


def test_an_encoder_trained_on_mixtures_alone_starts_the_fit_and_ships_in_the_file(
    tones_root, tone_priors, tmp_path
):
    mixtures = [read_stems(f, RATE).sum(0) for f in track_folders(tones_root, "train")]  # no stem is read
    encoder, losses = train_frame_encoder(tone_priors, mixtures, steps=80, seconds=1.0, batch=4, channels=32,
                                          layers=1, progress=False)  # fmt: skip
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])  # the fit's objective at its answer goes down
    mix = read_stems(tones_root / "test" / "track_000", RATE).sum(0)[: 2 * RATE]
    X = stft(mix, CONFIG.stft)
    amortised = tone_priors.with_encoder(encoder, fit_steps=0)
    z0, gain0 = encoder(X.abs()[None])  # the start is the encoder's answer, not NMF's
    torch.testing.assert_close(amortised.starting_point(mix, X), (z0[0], gain0[0]))
    assert amortised.with_settings(power=1.5).encoder is encoder
    bare = FramePriors(tone_priors.names, tone_priors.vaes, CONFIG, RATE)
    # on a mix it never saw, its one pass explains the mix better than the flat start with zero latents
    at = {name: float(tone_priors.objective(X.abs(), *p.starting_point(mix, X))) for name, p in
          (("encoder", amortised), ("flat", bare))}  # fmt: skip
    assert at["encoder"] < at["flat"], at
    separator = FramePriorSeparator(amortised)
    assert "encoder" in separator.describe()
    estimates = separator.separate(mix)
    torch.testing.assert_close(estimates.sum(0), mix, atol=1e-4, rtol=0)
    # the fit from its answer lowers the objective further; the NMF start is used again without it
    z, gain = amortised.starting_point(mix, X)
    fitted = amortised.with_settings(fit_steps=50).fit(mix, X)
    assert float(tone_priors.objective(X.abs(), *fitted)) < float(tone_priors.objective(X.abs(), z, gain))
    assert amortised.with_encoder(None).encoder is None
    torch.testing.assert_close(amortised.with_encoder(None).starting_point(mix, X)[1],
                               tone_priors.starting_point(mix, X)[1])  # fmt: skip
    # the file keeps it (at half precision, which training already rounded to: the same separation)
    path = tmp_path / "with_encoder.pt"
    amortised.save(path)
    back = FramePriors.load(path)
    assert back.encoder is not None and back.encoder.sizes == encoder.sizes
    torch.testing.assert_close(back.starting_point(mix, X), amortised.starting_point(mix, X))
    torch.testing.assert_close(FramePriorSeparator(back).separate(mix), estimates)
    with pytest.raises(ValueError, match="does not fit"):
        FramePriors(STEMS, tone_priors.vaes, CONFIG, RATE, encoder=FrameEncoder(CONFIG.stft.bins, 4, 3))
    with pytest.raises(ValueError, match="mono"):
        train_frame_encoder(tone_priors, [torch.zeros(2, 6 * RATE)], steps=1, progress=False)
    with pytest.raises(ValueError, match="longer than"):
        train_frame_encoder(tone_priors, [mix[:RATE]], steps=1, seconds=3.0, progress=False)
    with pytest.raises(ValueError, match="steps >= 1"):
        train_frame_encoder(tone_priors, mixtures, steps=0, progress=False)


def test_frame_priors_from_the_command_line(tones_root, tone_priors, tmp_path, capsys):
    path = tmp_path / "tones_frames.pt"
    tone_priors.save(path)
    common = ["evaluate", "--data", "stems", "--root", str(tones_root), "--seconds", "2", "--offset", "0.5"]
    assert main([*common, "--priors", str(path), "--json", "--quiet"]) == 0  # the file names its method
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "frames" and report["clips"] == 2 and report["si_sdri_mean"] > 8
    out = tmp_path / "out"
    mix = tones_root / "test" / "track_000" / "mixture.wav"
    assert (
        main(["separate", str(mix), "--method", "frames", "--priors", str(path), "--out", str(out), "--quiet"])
        == 0
    )
    estimates = np.stack([sf.read(out / f"{n}.wav")[0] for n in STEMS])
    np.testing.assert_allclose(estimates.sum(0), read_stems(mix.parent, RATE).sum(0).numpy(), atol=2e-3)
    capsys.readouterr()
    assert main(["separate", str(mix), "--method", "frames", "--priors", str(tones_root / "nope.pt"), "--out",
                 str(out)]) == 1  # fmt: skip
    err = capsys.readouterr().err
    assert "nope.pt: no such checkpoint" in err and err.count("error") == 1


def test_the_stems_choice_keeps_the_methods_a_bench_did_not_measure(tmp_path):
    path = tmp_path / "stems.json"
    assert write_choice({"nmf": {"a": 10.0, "b": 6.0}, "supervised": {"a": 12.0, "b": 9.0}}, path) == "supervised"
    assert write_choice({"frames": {"a": 13.0, "b": 9.0}}, path) == "frames"
    recorded = json.loads(path.read_text())
    assert set(recorded["valid_si_sdri"]) == {"nmf", "supervised", "frames"}
    assert stems_method(path) == "frames"
    assert write_choice({"nmf": {"a": 20.0, "b": 20.0}}, path) == "nmf"  # a rerun of one bench updates its entry
    with pytest.raises(ValueError, match="unknown music methods"):
        write_choice({"magic": {"a": 1.0}}, path)
    path.write_text("{ not json")
    with pytest.raises(ValueError, match="not a stems choice file"):
        write_choice({"nmf": {"a": 1.0}}, path)


def test_the_shipped_frame_priors_are_what_their_bench_chose_and_measured():
    from sepmodels.frames import shipped_path

    assert shipped_path().stat().st_size < 7_000_000
    priors = FramePriors.load()
    assert priors.encoder is not None  # bench/amortised_music.py --model frames --ship chose it on valid
    if priors.encoder is not None:
        assert priors.meta["encoder"]["fit_steps"] == priors.config.fit_steps
        assert priors.meta["encoder"]["valid_choice"]["chosen"].startswith("one pass + ")
    chosen = priors.meta["chosen"]
    assert priors.names == STEMS and priors.sample_rate == RATE and priors.start is not None
    assert (priors.config.beta, priors.config.prior, priors.config.smooth) == (
        chosen["beta"], chosen["prior"], chosen["smooth"])  # fmt: skip
    assert set(priors.meta["test_si_sdri"]) == {"fluidr3_gm", "timgm6mb"}
    assert priors.meta["shifts"] == list(SHIFTS)  # learned at the pitch shifts the library defaults to
    mix = torch.from_numpy(song_like(RATE)).float() * 0.5
    estimates = FramePriorSeparator(priors).separate(mix)
    assert estimates.shape == (4, mix.shape[0]) and bool(torch.isfinite(estimates).all())
    torch.testing.assert_close(estimates.sum(0), mix, atol=1e-4, rtol=0)  # ratio masks share the mix out
    with pytest.raises(ValueError, match="not separation settings"):
        priors.with_settings(latent=8)
