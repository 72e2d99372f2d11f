"""The NSynth-like notes: rendered by FluidSynth, split by instrument, reproducible, with metadata."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from sepmodels.cli import main
from sepmodels.data.notes import FAMILIES, RATE, split_programs

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None, reason="needs FluidSynth (apt-get install fluidsynth timgm6mb-soundfont)"
)


def test_every_program_goes_to_one_split_and_each_split_gets_instruments():
    assignment = split_programs(list(FAMILIES), seed=0)
    assert sorted(assignment) == sorted(p for ps in FAMILIES.values() for p in ps)  # each program once
    for family in FAMILIES:
        splits = [split for fam, split in assignment.values() if fam == family]
        assert sorted(set(splits)) == ["test", "train", "valid"]
    assert split_programs(list(FAMILIES), seed=0) == assignment
    assert split_programs(list(FAMILIES), seed=1) != assignment


@needs_fluidsynth
def test_make_notes_renders_a_reproducible_nsynth_like_set(tmp_path, capsys):
    args = ["--families", "guitar", "--pitches", "60", "64", "--pitch-step", "4", "--velocities", "50", "127",
            "--quiet"]  # fmt: skip
    for out in ("a", "b"):
        assert main(["make-notes", "--out", str(tmp_path / out), *args]) == 0
    assert "wrote 16 notes" in capsys.readouterr().out  # 4 guitar programs x 2 pitches x 2 velocities
    meta = {s: json.loads((tmp_path / "a" / s / "examples.json").read_text()) for s in ("train", "valid", "test")}
    instruments = {s: {e["instrument_str"] for e in m.values()} for s, m in meta.items()}
    assert all(instruments.values()) and not (instruments["train"] & instruments["test"])
    name, entry = next(iter(meta["test"].items()))
    assert (
        entry["instrument_family_str"] == "guitar"
        and entry["pitch"] in (60, 64)
        and entry["velocity"] in (50, 127)
    )
    x, rate = sf.read(tmp_path / "a" / "test" / f"{name}.wav")
    y, _ = sf.read(tmp_path / "b" / "test" / f"{name}.wav")
    assert rate == RATE and x.shape == (4 * RATE,) and np.abs(x).max() > 0.01
    np.testing.assert_array_equal(x, y)
    held, released = np.sqrt((x[: 2 * RATE] ** 2).mean()), np.sqrt((x[int(3.5 * RATE) :] ** 2).mean())
    assert released < held  # held 3 s, then released


def test_make_notes_refuses_bad_values_in_one_line(tmp_path, capsys):
    for bad in (["--families", "kazoo"], ["--pitches", "90", "10"], ["--velocities", "0"]):
        assert main(["make-notes", "--out", str(tmp_path / "o"), *bad]) != 0
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "error" in err
