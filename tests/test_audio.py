import numpy as np
import pytest
import soundfile as sf
import torch

from sepmodels.data.audio import AudioError, load_audio, save_audio


def _bytes(path, data):
    path.write_bytes(data)
    return path


def _write(path, data, rate=14_700):
    sf.write(str(path), np.asarray(data, dtype=np.float32), rate, subtype="FLOAT")
    return path


def test_round_trip_is_exact(tmp_path):
    x = torch.sin(torch.arange(1000) / 10.0) * 0.5
    save_audio(tmp_path / "a.wav", x, 14_700)
    a = load_audio(tmp_path / "a.wav", 14_700)
    torch.testing.assert_close(a.samples, x)
    assert a.notes == []
    assert list(tmp_path.iterdir()) == [tmp_path / "a.wav"]  # no temporary file left behind


def test_stereo_and_other_rates_are_converted_and_announced(tmp_path):
    t = np.arange(44_100) / 44_100
    left = 0.5 * np.sin(2 * np.pi * 440 * t)
    path = _write(tmp_path / "s.wav", np.stack([left, left], axis=1), 44_100)
    a = load_audio(path, 14_700)
    assert a.samples.shape == (14_700,)
    assert any("2 channels" in n for n in a.notes) and any("resampled from 44100" in n for n in a.notes)
    spectrum = torch.fft.rfft(a.samples.double()).abs()
    assert int(spectrum.argmax()) == 440


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.wav", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _bytes(d / "empty.wav", b""), "is empty"),
        (lambda d: _bytes(d / "text.wav", b"hello, not audio"), "not a readable audio file"),
        (lambda d: _write(d / "nan.wav", [0.1, float("nan"), 0.2]), "NaN or infinite"),
        (lambda d: _write(d / "silent.wav", np.zeros(100)), "is silent"),
        (lambda d: _write(d / "loud.wav", [0.1, 2.5, 0.2]), r"outside \[-1, 1\]"),
        (lambda d: _write(d / "zero.wav", np.zeros((0,))), "no audio samples|is silent"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(AudioError, match=message) as info:
        load_audio(path, 14_700)
    assert "\n" not in str(info.value)


def test_long_files_are_refused(tmp_path):
    path = _write(tmp_path / "long.wav", np.full(3000, 0.1), 100)
    with pytest.raises(AudioError, match=r"30\.0 s long; the limit is 10 s"):
        load_audio(path, 100, max_seconds=10)
