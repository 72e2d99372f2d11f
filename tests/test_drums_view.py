"""The drum pad's view, driven by its params (no browser): moves play, freezing keeps the rest, uploads land."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf
import torch

from explorer.drums_view import DrumPad
from sepmodels.data.drums import as_hit
from sepmodels.drums.cwae import DrumAutoencoder
from sepmodels.drums.synth import DrumSynth
from tests.test_cwae import TINY, _hits, _trained_tiny


@pytest.fixture(scope="module")
def pad():
    synth = DrumSynth(DrumAutoencoder(_trained_tiny(steps=20)), griffin_lim_iterations=2)
    return DrumPad(synth)


def test_a_move_plays_once_and_says_how_long_it_took(pad, monkeypatch):
    calls = []
    play = pad.synth.play
    monkeypatch.setattr(pad.synth, "play", lambda *a, **k: calls.append(1) or play(*a, **k))
    pad._on_tap(SimpleNamespace(x=1.25, y=-0.5))
    assert len(calls) == 1  # x and y change together: one decode
    assert (pad.x, pad.y) == (1.25, -0.5)
    assert pad._point_src.data["x"] == [1.25]
    assert "ms" in pad.status and "decode" in pad.status and "Griffin-Lim" in pad.status
    assert pad._player.object is not None and len(pad._player.object) == TINY.length
    assert len(pad._wave_src.data["t"]) > 0 and len(pad._spec_src.data["image"]) == 1
    coords = pad.synth.coordinates(pad.hit.code, pad.label)
    torch.testing.assert_close(coords[:2], torch.tensor([1.25, -0.5]), atol=1e-4, rtol=0)
    pad._on_tap(SimpleNamespace(x=1.25, y=-0.5))  # the same point again still plays
    assert len(calls) == 2
    pad._on_tap(SimpleNamespace(x=50.0, y=0.0))  # outside the pad: held at its edge
    assert pad.x == pad.span


def test_freezing_keeps_the_drawn_rest_and_unfreezing_zeroes_it(pad):
    pad.freeze = False
    pad.draw_rest()
    assert pad.freeze
    frozen = pad.synth.coordinates(pad.hit.code, pad.label)
    torch.testing.assert_close(frozen[3:], torch.tensor(pad.rest[3:]), atol=1e-4, rtol=0)
    pad.freeze = False
    plain = pad.synth.coordinates(pad.hit.code, pad.label)
    assert float(plain[3:].abs().max()) < 1e-4


def test_classes_change_the_scatter_and_the_variance_bars(pad):
    pad.drum = pad.synth.classes[2]
    n = int((pad.synth.latent_map.labels == 2).sum())
    assert len(pad._train_src.data["x"]) == n
    shares = pad._var_src.data["share"]
    assert len(shares) == TINY.latent and np.all(np.diff(shares) <= 1e-6)
    assert "PC 1" in pad._var_md.object and "%" in pad._var_md.object
    pad.x = 1.0
    played = []
    real = pad.synth.play
    pad.synth.play = lambda *a, **k: played.append(1) or real(*a, **k)
    try:
        name = pad.synth.classes[1]
        hit = pad.play_class(name)  # the selector, the pad and the bars follow the sound, which plays once
    finally:
        pad.synth.play = real
    assert len(played) == 1 and hit.audio.shape == (TINY.length,)
    assert pad.drum == name and (pad.x, pad.y, pad.fine, pad.freeze) == (0.0, 0.0, 0.0, False)
    assert name.replace("_", " ") in pad._var_md.object and "PC 1 = +0.00, PC 2 = +0.00" in pad.status


def test_the_span_bounds_the_sliders_and_the_pad(pad):
    pad.x = 2.5
    pad.span = 1.0
    assert pad.x == 1.0 and pad.param.x.bounds == (-1.0, 1.0)
    assert (pad._pad.x_range.start, pad._pad.x_range.end) == (-1.0, 1.0)
    pad.span = 3.0


def test_interpolation_blends_two_codes(pad):
    pad.drum = pad.synth.classes[0]
    assert pad.play_blend() is None and "Set both" in pad._status_md.object
    pad._on_tap(SimpleNamespace(x=-1.0, y=0.0))
    pad.set_end("A")
    pad._on_tap(SimpleNamespace(x=1.0, y=0.0))
    pad.set_end("B")
    assert pad._ends_src.data["name"] == ["A", "B"]
    pad.blend = 0.25
    coords = pad.synth.coordinates(pad.hit.code, pad.label)
    assert float(coords[0]) == pytest.approx(-0.5, abs=1e-4)
    assert "0.75 A + 0.25 B" in pad.status


def test_an_upload_lands_on_the_pad_and_freezes_its_rest(pad):
    clip = _hits(3, TINY.length + 5000, seed=4)[0][0].numpy()
    data = io.BytesIO()
    sf.write(data, np.concatenate([np.zeros(3000), 0.5 * clip]), TINY.sample_rate, format="WAV", subtype="FLOAT")
    pad._upload.filename = "mine.wav"
    pad._on_upload(SimpleNamespace(new=data.getvalue()))
    assert "lands at" in pad._upload_md.object and pad.freeze
    assert len(pad._upload_src.data["x"]) == 1
    code = pad.synth.encode(as_hit(np.concatenate([np.zeros(3000), 0.5 * clip]), TINY.length),
                            pad.label)  # fmt: skip
    torch.testing.assert_close(pad.synth.coordinates(code, pad.label)[3:], torch.tensor(pad.rest[3:]))
    stereo = io.BytesIO()
    sf.write(stereo, np.zeros((100, 2)), TINY.sample_rate, format="WAV")
    pad._on_upload(SimpleNamespace(new=stereo.getvalue()))
    assert "Not loaded" in pad._upload_md.object


def test_as_hit_trims_to_the_onset_and_normalises():
    clip = np.concatenate([np.zeros(1000), 0.3 * np.ones(50), np.zeros(20_000)])
    hit = as_hit(clip, 4096)
    assert hit.shape == (4096,) and np.abs(hit).max() == pytest.approx(0.99)
    assert 0 < int(np.argmax(hit > 0.5)) <= int(0.005 * 22_050)
    with pytest.raises(ValueError, match="silent"):
        as_hit(np.zeros(100), 4096)
