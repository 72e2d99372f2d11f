"""An NSynth-like set of single notes without internet, rendered by FluidSynth from a General-MIDI soundfont.

NSynth (Engel et al., 2017) holds 4 s notes at 16 kHz: a note held for 3 s and released for 1 s, over
instruments, MIDI pitches and five velocities, with metadata (instrument family, pitch, velocity) and a
train/valid/test split by instrument. This renders the same kind of set from General-MIDI programs standing
for NSynth's instrument families (:data:`FAMILIES`)::

    OUT/{train,valid,test}/examples.json            NSynth-style metadata, one entry per note
    OUT/{train,valid,test}/<note_str>.wav           mono 16-bit PCM, 16 kHz, 4 s
    (note_str: <family>_<program>-<pitch>-<velocity>, e.g. guitar_024-060-100)

Each instrument (program) goes to one split: per family, a seeded shuffle puts one program in ``test``, one in
``valid`` and the rest in ``train`` (families with fewer programs fill ``train`` first). Notes a program
renders silent (out of its range) are left out and counted in the README. Every program's notes go through
one FluidSynth call (notes 5 s apart, sliced into 4 s), so a set of a few thousand notes takes minutes.

Needs Debian's ``fluidsynth`` and a soundfont (see :mod:`sepmodels.data.stems`).
"""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import torch

from sepmodels.data.audio import read_split
from sepmodels.data.stems import find_soundfont, fluidsynth_path, fluidsynth_render
from sepmodels.fileio import atomic_path

RATE = 16_000
SECONDS = 4.0  # a note's length in the set
HOLD = 3.0  # seconds from note-on to note-off
_SPACING = 5.0  # seconds between notes in one render: the release never reaches the next note
VELOCITIES = (25, 50, 75, 100, 127)
SPLITS = ("train", "valid", "test")
_SILENT = 1e-4  # peak below which a rendered note counts as silent (out of the program's range)

# NSynth's instrument families and the General-MIDI programs (0-based) that stand for them.
FAMILIES: dict[str, tuple[int, ...]] = {
    "keyboard": (0, 1, 2, 4, 5, 6),
    "mallet": (8, 9, 11, 12, 13),
    "organ": (16, 17, 19, 20),
    "guitar": (24, 25, 26, 27),
    "bass": (32, 33, 34, 38),
    "string": (40, 41, 42, 48),
    "brass": (56, 57, 58, 61),
    "reed": (64, 65, 68, 71),
    "flute": (72, 73, 75, 79),
    "synth_lead": (80, 81, 82, 84),
    "vocal": (52, 53, 54, 85),
}


def split_programs(families: Sequence[str], seed: int = 0) -> dict[int, tuple[str, str]]:
    """Each program's ``(family, split)``: per family, seeded, one program to test, one to valid, the rest to
    train (a family of one or two programs keeps train first)."""
    rng = random.Random(seed)
    out: dict[int, tuple[str, str]] = {}
    for family in families:
        programs = list(FAMILIES[family])
        rng.shuffle(programs)
        order = ["train", "test", "valid"] + ["train"] * len(programs)
        for program, split in zip(programs, order, strict=False):
            out[program] = (family, split)
    return out


_CHANNELS = [c for c in range(16) if c != 9]  # General MIDI keeps channel 10 (index 9) for drums


def _midi(notes: Sequence[tuple[int, int, int]]) -> mido.MidiFile:
    """One note every ``_SPACING`` seconds, each ``(program, pitch, velocity)``; up to 15 programs, one
    channel each."""
    ticks, tempo = 480, 500_000  # 120 bpm: 960 ticks per second
    per_second = ticks * 1_000_000 / tempo
    programs = list(dict.fromkeys(program for program, _, _ in notes))
    if len(programs) > len(_CHANNELS):
        raise ValueError(f"one render takes at most {len(_CHANNELS)} programs, got {len(programs)}")
    channel = {program: _CHANNELS[i] for i, program in enumerate(programs)}
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    for program in programs:
        track.append(mido.Message("program_change", program=program, channel=channel[program], time=0))
    now = 0
    for i, (program, pitch, velocity) in enumerate(notes):
        on, off = round(i * _SPACING * per_second), round((i * _SPACING + HOLD) * per_second)
        c = channel[program]
        track.append(mido.Message("note_on", note=pitch, velocity=velocity, channel=c, time=on - now))
        track.append(mido.Message("note_off", note=pitch, velocity=0, channel=c, time=off - on))
        now = off
    song = mido.MidiFile(ticks_per_beat=ticks)
    song.tracks.append(track)
    return song


def render_notes(notes: Sequence[tuple[int, int, int]], soundfont: Path, workdir: Path) -> np.ndarray:
    """``(program, pitch, velocity)`` notes (up to 15 programs) in one FluidSynth call: ``[len(notes), 4 s]``."""
    mono = fluidsynth_render(_midi(notes), soundfont, workdir, RATE, timeout=1800).mean(axis=1)
    length, step = int(SECONDS * RATE), int(_SPACING * RATE)
    mono = np.pad(mono, (0, max(0, step * len(notes) - mono.shape[0])))
    return np.stack([mono[i * step : i * step + length] for i in range(len(notes))])


def render_program(program: int, notes: Sequence[tuple[int, int]], soundfont: Path, workdir: Path) -> np.ndarray:
    """``notes`` ((pitch, velocity) pairs) on one program in one FluidSynth call: ``[len(notes), 4 s]``."""
    return render_notes([(program, pitch, velocity) for pitch, velocity in notes], soundfont, workdir)


def make_notes(
    out: str | Path,
    families: Sequence[str] = tuple(FAMILIES),
    pitches: Sequence[int] = tuple(range(36, 85, 2)),
    velocities: Sequence[int] = VELOCITIES,
    seed: int = 0,
    soundfont: str | Path | None = None,
    progress: Callable[[int, int], None] = lambda _i, _n: None,
) -> dict[str, int]:
    """Render the set into ``out`` (see the module docstring); returns the number of notes per split."""
    unknown = [f for f in families if f not in FAMILIES]
    if unknown or not families:
        raise ValueError(f"unknown families {unknown or '(none given)'}; choose from {', '.join(FAMILIES)}")
    if not pitches or not all(0 <= p <= 127 for p in pitches):
        raise ValueError("pitches must be MIDI numbers 0..127")
    if not velocities or not all(1 <= v <= 127 for v in velocities):
        raise ValueError("velocities must be 1..127")
    font = find_soundfont(soundfont)
    fluidsynth_path()
    assignment = split_programs(families, seed)
    notes = [(p, v) for p in pitches for v in velocities]
    meta: dict[str, dict[str, dict]] = {s: {} for s in SPLITS}
    silent = 0
    out = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (program, (family, split)) in enumerate(sorted(assignment.items())):
            clips = render_program(program, notes, font, Path(tmp))
            folder = out / split
            folder.mkdir(parents=True, exist_ok=True)
            for (pitch, velocity), clip in zip(notes, clips, strict=True):
                if float(np.abs(clip).max()) < _SILENT:
                    silent += 1
                    continue
                name = f"{family}_{program:03d}-{pitch:03d}-{velocity:03d}"
                with atomic_path(folder / f"{name}.wav") as tmp_wav:
                    sf.write(tmp_wav, np.clip(clip, -1, 1), RATE, subtype="PCM_16", format="WAV")
                meta[split][name] = {
                    "note_str": name, "instrument_family_str": family, "instrument_str": f"{family}_{program:03d}",
                    "program": program, "pitch": pitch, "velocity": velocity, "sample_rate": RATE,
                    "seconds": SECONDS, "hold_seconds": HOLD,
                }  # fmt: skip
            progress(i + 1, len(assignment))
    counts = {}
    for split, entries in meta.items():
        if entries:
            with atomic_path(out / split / "examples.json") as tmp_json:
                tmp_json.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
        counts[split] = len(entries)
    with atomic_path(out / "README.txt") as tmp_readme:
        tmp_readme.write_text(
            f"NSynth-like notes made by `sepmodels make-notes` (seed {seed}) with {font}: "
            f"{', '.join(f'{n} {s}' for s, n in counts.items())} notes of {SECONDS:g} s at {RATE} Hz "
            f"(held {HOLD:g} s); {silent} silent notes (out of a program's range) left out.\n"
        )
    return counts


class NotesData:
    """One split of a :func:`make_notes` set in memory, for training: 16-bit samples, drawn at random.

    Arguments:
        root: the folder ``make-notes`` wrote.
        split: ``train``, ``valid`` or ``test``.
    """

    SOURCES = ("note",)
    RATE = RATE

    def __init__(self, root: str | Path, split: str = "train") -> None:
        length = int(SECONDS * RATE)
        self.examples, self.names, self.clips = read_split(
            root, split, SPLITS, "make-notes", "notes", RATE, length
        )

    def __len__(self) -> int:
        return self.clips.shape[0]

    def note(self, i: int) -> torch.Tensor:
        """Note ``i`` (in name order) as float samples ``[T]``."""
        return self.clips[i].float() / 32768.0

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` whole notes drawn at random, ``[n, T]``."""
        return self.clips[torch.randint(len(self), (n,), generator=generator)].float() / 32768.0

    def batch(self, batch_size: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """Random crops of ``length`` samples from random notes, ``[B, 1, length]`` (the trainer's shape)."""
        total = self.clips.shape[1]
        if length > total:
            raise ValueError(f"crops of {length} samples are longer than the notes ({total})")
        rows = torch.randint(len(self), (batch_size,), generator=generator)
        starts = torch.randint(total - length + 1, (batch_size,), generator=generator)
        crops = torch.stack(
            [self.clips[r, s : s + length] for r, s in zip(rows.tolist(), starts.tolist(), strict=True)]
        )
        return crops.float()[:, None] / 32768.0


__all__ = [
    "FAMILIES",
    "RATE",
    "SPLITS",
    "VELOCITIES",
    "NotesData",
    "make_notes",
    "render_program",
    "split_programs",
]
