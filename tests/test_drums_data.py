"""The drum one-shots: rendered by FluidSynth, split by kit, balanced, deduplicated, seeded; DrumsData."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sepmodels.cli import main
from sepmodels.data.drums import (
    _PRE,
    CENTS,
    CLASSES,
    GM_KITS,
    GM_NOTES,
    LENGTH,
    RATE,
    SPLITS,
    DrumsData,
    Hit,
    Kit,
    drum_kits,
    make_drums,
    process,
    score,
    write_synthetic_drums,
)
from sepmodels.data.stems import SOUNDFONTS

FONTS = [f for f in SOUNDFONTS[:2] if Path(f).is_file()]  # FluidR3_GM and TimGM6mb, where installed
TIMGM = "/usr/share/sounds/sf2/TimGM6mb.sf2"
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not FONTS,
    reason="needs FluidSynth and a GM soundfont (apt-get install fluidsynth timgm6mb-soundfont)",
)
needs_timgm = pytest.mark.skipif(
    not Path(TIMGM).is_file(), reason="needs TimGM6mb (apt-get install timgm6mb-soundfont)"
)


def one_line(err: BaseException | str) -> bool:
    return "\n" not in str(err).strip()


def run(argv: list[str]) -> int:
    """The command's exit status, also where argparse exits."""
    try:
        return main(argv)
    except SystemExit as stop:
        return int(stop.code)


def test_every_kit_plays_the_same_seeded_score_of_notes_of_each_class():
    hits = score(6, seed=0)
    assert hits == score(6, seed=0) and hits != score(6, seed=1)
    assert [h for h in score(9, seed=0) if h.index < 6] == hits  # hit j does not depend on per_class
    assert [h.label for h in hits] == [label for label in range(len(CLASSES)) for _ in range(6)]
    assert all(len({h.cents for h in hits if h.label == label}) == 6 for label in range(len(CLASSES)))
    for h in hits:
        assert h.note in GM_NOTES[CLASSES[h.label]] and 50 <= h.velocity <= 127 and abs(h.cents) <= CENTS + 1


def test_a_hit_is_tuned_started_at_its_onset_normalised_and_faded_where_cut():
    t = np.arange(33_075) / RATE
    raw = np.where(t >= 0.1, 0.3 * np.sin(2 * np.pi * 1000 * t), 0.0)  # starts at 0.1 s, rings past LENGTH
    up = process(raw, Hit(0, 0, 36, 100, 100.0)).astype(float)
    assert up.shape == (LENGTH,) and abs(np.abs(up).max() / 32767 - 0.99) < 1e-3
    onset = int(np.argmax(np.abs(up) > 0.05 * np.abs(up).max()))
    assert _PRE - 2 <= onset <= _PRE + 2 and np.abs(up[: onset - 4]).max() < 0.01 * 32767
    assert up[-1] == 0 and np.abs(up[-5:]).max() < 0.03 * 32767 < np.abs(up[-500:-400]).max()  # faded out
    crossings = np.count_nonzero(np.diff(np.signbit(up[200 : RATE // 2 + 200])))  # in half a second
    assert abs(crossings - 1000 * 2 ** (100 / 1200)) < 3  # 100 cents up: 1059 Hz
    later = np.concatenate([np.zeros(37), raw[:-37]])  # FluidSynth starts a note on a 64-sample block
    np.testing.assert_array_equal(process(later, Hit(0, 0, 36, 100, 100.0)), up)  # the same hit, even tuned
    short = np.where((t >= 0.01) & (t < 0.2), np.sin(2 * np.pi * 300 * t), 0.0)
    assert np.all(process(short, Hit(0, 0, 36, 100, 0.0))[LENGTH // 2 :] == 0)  # zero-padded


def test_the_brush_and_orchestra_kits_leave_out_the_classes_they_have_no_sound_for():
    brush, orchestra, standard = (Kit(Path("x.sf2"), preset, "") for preset in (40, 48, 0))
    assert not brush.plays("clap") and brush.plays("snare")
    assert not any(orchestra.plays(c) for c in ("tom", "open_hat", "closed_hat")) and orchestra.plays("kick")
    assert all(standard.plays(c) for c in CLASSES)


@needs_timgm
def test_drum_kits_are_read_from_the_soundfont_and_other_files_are_refused(tmp_path):
    kits = drum_kits(TIMGM)
    assert set(GM_KITS) <= set(kits) and kits[0] == "Standard"
    (tmp_path / "x.sf2").write_bytes(b"RIFF\0\0\0\0WAVEfmt ")
    with pytest.raises(ValueError, match="not a SoundFont") as err:
        drum_kits(tmp_path / "x.sf2")
    assert one_line(err.value)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """Two kits (Standard, TR-808) of each soundfont here, 2 hits per class and kit, one kit in test."""
    out = tmp_path_factory.mktemp("drums") / "a"
    make_drums(out, per_class=2, test_kits=1, seed=0, soundfonts=FONTS, presets=(0, 25))
    return out


def _wav(folder: Path, name: str) -> np.ndarray:
    x, rate = sf.read(folder / f"{name}.wav", dtype="int16", always_2d=True)
    assert rate == RATE and x.shape == (LENGTH, 1)
    return x[:, 0].astype(float)


@needs_fluidsynth
def test_make_drums_splits_by_kit_balances_classes_and_normalises_hits(rendered):
    meta = {s: json.loads((rendered / s / "examples.json").read_text()) for s in SPLITS}
    kits = {s: {e["kit"] for e in m.values()} for s, m in meta.items()}
    assert len(kits["test"]) == 1 and kits["train"] and not kits["train"] & kits["test"]
    for split, entries in meta.items():
        counts = [sum(e["label"] == label for e in entries.values()) for label in range(len(CLASSES))]
        assert counts[0] > 0 and len(set(counts)) == 1, (split, counts)
        assert sorted(p.stem for p in (rendered / split).glob("*.wav")) == sorted(entries)
        for name, e in entries.items():
            assert (
                CLASSES[e["label"]] == e["class"] and e["note"] in GM_NOTES[e["class"]] and e["preset"] in (0, 25)
            )
            x = _wav(rendered / split, name)
            peak = np.abs(x).max()
            assert abs(peak / 32767 - 0.99) < 2e-3
            assert int(np.argmax(np.abs(x) > 0.05 * peak)) <= _PRE + 1  # starts at its onset, less 2 ms
    readme = (rendered / "README.txt").read_text()
    assert "seed 0" in readme and f"train: {len(meta['train'])} hits" in readme


@needs_fluidsynth
def test_no_hit_is_kept_twice_and_the_shared_ones_are_counted(rendered):
    names = [(s, n) for s in SPLITS for n in json.loads((rendered / s / "examples.json").read_text())]
    x = np.stack([_wav(rendered / s, n) for s, n in names])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    gram = x @ x.T
    np.fill_diagonal(gram, 0)
    assert gram.max() < 0.999
    duplicates = int(re.search(r"(\d+) near-copies", (rendered / "README.txt").read_text())[1])
    assert duplicates > 0  # the two kits of a soundfont share their congas, shakers, ...


@needs_fluidsynth
def test_the_same_seed_renders_the_same_files(rendered, tmp_path):
    make_drums(tmp_path, per_class=2, test_kits=1, seed=0, soundfonts=FONTS, presets=(0, 25))
    for split in SPLITS:
        assert (tmp_path / split / "examples.json").read_text() == (rendered / split / "examples.json").read_text()
        for wav in (rendered / split).glob("*.wav"):
            assert (tmp_path / split / wav.name).read_bytes() == wav.read_bytes()


@needs_fluidsynth
def test_drums_data_loads_a_rendered_split(rendered):
    data = DrumsData(rendered, "test")
    assert data.clips.dtype == torch.int16 and data.clips.shape == (len(data), LENGTH)
    assert data.labels.tolist() == [data.examples[n]["label"] for n in data.names]
    assert len(set(data.class_counts())) == 1


def test_make_drums_refuses_bad_arguments_in_one_line(tmp_path):
    with pytest.raises(ValueError, match="per_class") as err:
        make_drums(tmp_path, per_class=0)
    assert one_line(err.value)
    with pytest.raises(ValueError, match="unknown soundfont") as err:
        make_drums(tmp_path, soundfonts=[tmp_path / "missing.sf2"])
    assert one_line(err.value)


@needs_fluidsynth
def test_make_drums_needs_a_train_kit(tmp_path):
    with pytest.raises(ValueError, match="test_kits") as err:
        make_drums(tmp_path, test_kits=2, soundfonts=FONTS[:1], presets=(0, 8))
    assert one_line(err.value)


def test_batches_are_balanced_whole_hits_in_class_order(drums_root):
    data = DrumsData(drums_root, "train")
    assert data.class_counts() == [6] * len(CLASSES) and len(data) == 6 * len(CLASSES)
    g = torch.Generator().manual_seed(0)
    clips, labels = data.batch(2 * len(CLASSES), LENGTH, g)
    assert clips.shape == (2 * len(CLASSES), 1, LENGTH) and clips.dtype == torch.float32
    assert labels.tolist() == [label for label in range(len(CLASSES)) for _ in range(2)]
    for clip, label in zip(clips[:, 0], labels, strict=True):  # each clip is a hit of its label's class
        assert any(torch.equal(clip, hit) for hit in data.by_class(int(label)))
    clips, labels = data.sample(len(CLASSES), torch.Generator().manual_seed(1))
    assert clips.shape == (len(CLASSES), LENGTH) and labels.tolist() == list(range(len(CLASSES)))
    assert torch.equal(data.by_class("snap"), data.by_class(CLASSES.index("snap")))
    assert data.hit(0).abs().max() <= 1 and torch.equal(data.hit(0), data.clips[0].float() / 32768)
    again = DrumsData(drums_root, "train").batch(2 * len(CLASSES), LENGTH, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], data.batch(2 * len(CLASSES), LENGTH, torch.Generator().manual_seed(0))[0])


def test_drums_data_errors_are_one_line(drums_root, tmp_path):
    data = DrumsData(drums_root, "test")
    g = torch.Generator().manual_seed(0)
    for bad in ((len(CLASSES) + 1, LENGTH), (0, LENGTH), (len(CLASSES), LENGTH // 2)):
        with pytest.raises(ValueError) as err:
            data.batch(*bad, g)
        assert one_line(err.value)
    with pytest.raises(FileNotFoundError, match="sepmodels make-drums --out") as err:
        DrumsData(tmp_path, "train")
    assert one_line(err.value)
    with pytest.raises(ValueError, match="split") as err:
        DrumsData(drums_root, "valid")
    partial = write_synthetic_drums(tmp_path / "partial", {"train": 2}, classes=CLASSES[:3])
    with pytest.raises(ValueError, match="no ") as err:
        DrumsData(partial).batch(len(CLASSES), LENGTH, g)
    assert one_line(err.value)
    sf.write(tmp_path / "partial" / "train" / "kick_synthetic-train-000.wav", np.zeros(100), 16_000)
    with pytest.raises(ValueError, match="expected 22050 Hz mono") as err:
        DrumsData(partial)
    assert one_line(err.value)


@needs_timgm
@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs FluidSynth (apt-get install fluidsynth)")
def test_make_drums_command_writes_the_set_and_refuses_bad_values(tmp_path, capsys):
    args = ["make-drums", "--out", str(tmp_path / "d"), "--soundfont", TIMGM, "--quiet"]
    assert main([*args, "--per-class", "2", "--test-kits", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("wrote") and "per class" in out
    assert len(DrumsData(tmp_path / "d", "train")) > 0
    for bad in (
        ["--per-class", "0"],
        ["--test-kits", "8"],
        ["--soundfont", str(tmp_path / "no.sf2")],
        ["--seed", "-1"],
        ["--per-class", "1", "--test-kits", "2"],  # one shaker hit, the same in every kit: test or train lacks it
    ):
        assert run([*args, *bad]) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err, err
