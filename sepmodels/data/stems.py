"""Realistic multi-instrument stems without internet: random but musical MIDI parts rendered by FluidSynth.

Each track draws a tempo, a key, a mode and a four-chord progression, then writes four parts in musdb18's
stem names: ``drums`` (kick, snare, hi-hats, an occasional fill), ``bass`` (chord roots and fifths),
``other`` (chords on a keyboard, guitar or strings) and ``vocals`` (a lead melody on a voice-like
instrument, in phrases with rests). Every part goes through FluidSynth with a General-MIDI soundfont into the
musdb18-HQ layout that :mod:`sepmodels.data.musdb` reads::

    OUT/train/track_000/{mixture,drums,bass,other,vocals}.wav   (44.1 kHz stereo; mixture = sum of stems)
    OUT/test/track_004/...

Everything is seeded: the same seed gives the same MIDI, and FluidSynth renders it the same way.

Needs Debian's ``fluidsynth`` and a soundfont: ``apt-get install fluidsynth timgm6mb-soundfont`` (6 MB) or
``fluid-soundfont-gm`` (140 MB, better sounding).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import torch

from sepmodels.fileio import atomic_path

STEMS = ("drums", "bass", "other", "vocals")
SPLITS = ("train", "valid", "test")
RATE = 44_100
SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
)
APT_HINT = "apt-get install fluidsynth timgm6mb-soundfont"
_TICKS = 480  # per beat
_MAJOR, _MINOR = (0, 2, 4, 5, 7, 9, 11), (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (0, 3, 0, 4))  # scale degrees
_OTHER = (0, 4, 5, 16, 24, 25, 48, 49)  # pianos, organ, guitars, strings (General MIDI programs)
_VOICES = (52, 53, 54, 85)  # choir aahs, voice oohs, synth voice, lead (voice)


class StemsError(RuntimeError):
    """Stems cannot be made here (no FluidSynth, no soundfont, a render failed); one line for the user."""


def find_soundfont(path: str | Path | None = None) -> Path:
    """The soundfont to use: ``path``, else the first General-MIDI soundfont Debian installs."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise StemsError(f"soundfont {p} does not exist")
        return p
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise StemsError(f"no General-MIDI soundfont found in /usr/share/sounds/sf2; install one: {APT_HINT}")


def fluidsynth_path() -> str:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise StemsError(f"FluidSynth is not installed; install it: {APT_HINT}")
    return exe


class _Part:
    """One instrument's notes as (start beat, length in beats, pitch, velocity)."""

    def __init__(self, program: int, drums: bool = False) -> None:
        self.program, self.drums = program, drums
        self.notes: list[tuple[float, float, int, int]] = []

    def add(self, start: float, length: float, pitch: int, velocity: int) -> None:
        self.notes.append((start, length, int(pitch), int(max(1, min(127, velocity)))))

    def midi(self, bpm: float) -> mido.MidiFile:
        channel = 9 if self.drums else 0
        events = []
        for start, length, pitch, velocity in self.notes:
            events.append((round(start * _TICKS), 1, pitch, velocity))
            events.append((round((start + length) * _TICKS), 0, pitch, 0))
        events.sort(key=lambda e: (e[0], e[1]))  # note-offs before note-ons at the same tick
        track = mido.MidiTrack()
        track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=0))
        if not self.drums:
            track.append(mido.Message("program_change", program=self.program, channel=channel, time=0))
        now = 0
        for tick, on, pitch, velocity in events:
            kind = "note_on" if on else "note_off"
            track.append(mido.Message(kind, note=pitch, velocity=velocity, channel=channel, time=tick - now))
            now = tick
        song = mido.MidiFile(ticks_per_beat=_TICKS)
        song.tracks.append(track)
        return song


def compose(seed: int, seconds: float) -> tuple[float, dict[str, _Part]]:
    """Tempo and the four parts of one track, long enough to cover ``seconds``."""
    rng = random.Random(seed)
    bpm = rng.uniform(80, 140)
    root = 40 + rng.randrange(12)  # E2 .. D#3, the bass's octave
    scale = rng.choice((_MAJOR, _MINOR))
    progression = rng.choice(_PROGRESSIONS)
    bars = int(seconds * bpm / 60 / 4) + 2

    def degree(d: int, octave: int = 0) -> int:
        return root + 12 * (octave + d // 7) + scale[d % 7]

    drums, bass = _Part(0, drums=True), _Part(rng.choice((33, 34, 38)))
    other, vocals = _Part(rng.choice(_OTHER)), _Part(rng.choice(_VOICES))
    swing = rng.random() < 0.3
    for bar in range(bars):
        t0 = 4.0 * bar
        chord = progression[bar % 4]
        fill = bar % 4 == 3 and rng.random() < 0.5
        for beat in range(4):  # drums: kick on 1 and 3, snare on 2 and 4, eighth hi-hats
            if beat in (0, 2) or (beat == 3 and rng.random() < 0.2):
                drums.add(t0 + beat, 0.25, 36, rng.randint(95, 120))
            if beat in (1, 3):
                drums.add(t0 + beat, 0.25, 38, rng.randint(90, 115))
            for half in (0.0, 0.5):
                if not (fill and beat >= 2):
                    off = 0.08 if swing and half else 0.0
                    drums.add(t0 + beat + half + off, 0.2, 46 if rng.random() < 0.1 else 42, rng.randint(55, 85))
        if fill:
            for k in range(8):
                drums.add(t0 + 2 + k * 0.25, 0.2, rng.choice((45, 47, 48, 38)), rng.randint(80, 115))
        for beat in range(4):  # bass: roots, a fifth now and then, eighth pickups
            pitch = degree(chord) + (7 if beat == 2 and rng.random() < 0.4 else 0)
            bass.add(t0 + beat, 0.9, pitch, rng.randint(85, 105))
            if rng.random() < 0.25:
                bass.add(t0 + beat + 0.5, 0.45, degree(chord), rng.randint(70, 90))
        pattern = rng.choice(("whole", "halves", "quarters"))  # other: the chord, voiced around middle C
        step = {"whole": 4.0, "halves": 2.0, "quarters": 1.0}[pattern]
        for k in range(int(4 / step)):
            for third in (0, 2, 4):
                other.add(t0 + k * step, step * 0.95, degree(chord + third, octave=2), rng.randint(60, 80))
    beat, end = 0.0, 4.0 * bars  # vocals: phrases of scale steps around the chord tones, with rests
    pitch = 4 + rng.randrange(5)
    while beat < end:
        if rng.random() < 0.2:
            beat += rng.choice((1.0, 2.0))
            continue
        length = rng.choice((0.5, 0.5, 1.0, 1.0, 1.5, 2.0))
        pitch = max(0, min(13, pitch + rng.choice((-2, -1, -1, 0, 1, 1, 2))))
        vocals.add(beat, length * 0.95, degree(pitch, octave=2), rng.randint(75, 100))
        beat += length
    return bpm, {"drums": drums, "bass": bass, "other": other, "vocals": vocals}


def fluidsynth_render(
    song: mido.MidiFile, soundfont: Path, workdir: Path, rate: int = RATE, timeout: float = 600
) -> np.ndarray:
    """``song`` through FluidSynth (no reverb, no chorus): ``[frames, 2]`` float32 at ``rate``."""
    mid, wav = workdir / "song.mid", workdir / "song.wav"
    song.save(str(mid))
    cmd = [fluidsynth_path(), "-ni", "-q", "-g", "0.6", "-R", "0", "-C", "0", "-r", str(rate),
           "-T", "wav", "-F", str(wav), str(soundfont), str(mid)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not wav.exists():
        raise StemsError(f"FluidSynth failed ({done.returncode}): {(done.stderr or done.stdout).strip()[:200]}")
    audio, wrote = sf.read(wav, dtype="float32", always_2d=True)
    if wrote != rate:
        raise StemsError(f"FluidSynth wrote {wrote} Hz, expected {rate}")
    return audio


def render(part: _Part, bpm: float, seconds: float, soundfont: Path, workdir: Path) -> np.ndarray:
    """One part through FluidSynth: ``[frames, 2]`` float32 at 44.1 kHz, exactly ``seconds`` long."""
    audio = fluidsynth_render(part.midi(bpm), soundfont, workdir)
    frames = int(seconds * RATE)
    audio = audio[:frames]
    if audio.shape[0] < frames:
        audio = np.pad(audio, ((0, frames - audio.shape[0]), (0, 0)))
    return audio


def make_stems(out: str | Path, tracks: int, seconds: float, seed: int = 0, test_fraction: float = 0.2,
               soundfont: str | Path | None = None,
               progress: Callable[[int, int], None] = lambda _i, _n: None,
               split: str | None = None) -> list[Path]:  # fmt: skip
    """Write ``tracks`` tracks of ``seconds`` into ``out`` (musdb18-HQ layout); returns their folders.

    The last ``round(tracks * test_fraction)`` tracks (at least one when ``tracks > 1``) go to ``test/``,
    unless ``split`` (``train``, ``valid`` or ``test``) names the one folder all of them go to.
    Each file is written atomically; a track folder appears only once all its files are complete.
    """
    if tracks < 1 or seconds <= 0:
        raise ValueError(f"need at least one track of positive length, got {tracks} x {seconds} s")
    if split not in (None, *SPLITS):
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    font = find_soundfont(soundfont)
    fluidsynth_path()
    n_test = min(tracks - 1, max(1 if tracks > 1 else 0, round(tracks * test_fraction)))
    out = Path(out)
    folders = []
    for i in range(tracks):
        folder = out / (split or ("test" if i >= tracks - n_test else "train")) / f"track_{i:03d}"
        bpm, parts = compose(seed * 100_003 + i, seconds)
        with tempfile.TemporaryDirectory() as tmp:
            stems = {name: render(parts[name], bpm, seconds, font, Path(tmp)) for name in STEMS}
            staging = Path(tmp) / "track"
            staging.mkdir()
            mixture = sum(stems.values())
            peak = float(np.abs(mixture).max())
            gain = 0.9 / peak if peak > 0.9 else 1.0  # keep the mixture unclipped; stems scale with it
            for name, audio in (*stems.items(), ("mixture", mixture)):
                sf.write(staging / f"{name}.wav", audio * gain, RATE, subtype="FLOAT")
            folder.parent.mkdir(parents=True, exist_ok=True)
            if folder.exists():
                shutil.rmtree(folder)
            shutil.move(str(staging), folder)
        folders.append(folder)
        progress(i + 1, tracks)
    with atomic_path((out / split if split else out) / "README.txt") as tmp_readme:
        tmp_readme.write_text(
            f"{tracks} synthetic tracks of {seconds:g} s made by `sepmodels make-stems` (seed {seed}), {font}.\n"
            "musdb18-HQ layout: <split>/<track>/{mixture,drums,bass,other,vocals}.wav, 44.1 kHz stereo.\n"
        )
    return folders


# ---- reading stems, and the stems benchmark ---------------------------------------------------------------

_LAYOUT = "ROOT/<split>/<track>/{drums,bass,other,vocals}.wav (what make-stems writes, or musdb18-HQ)"


def track_folders(root: str | Path, split: str) -> list[Path]:
    """The track folders of ``root/split``, sorted; a root or split that holds none is one line naming the
    layout expected."""
    root = Path(root)
    if not root.is_dir():
        raise StemsError(f"{root} is not a folder; expected {_LAYOUT}")
    folder = root / split
    if not folder.is_dir():
        found = ", ".join(sorted(p.name for p in root.iterdir() if p.is_dir())) or "no subfolders"
        raise StemsError(f"{root} has no {split}/ folder (found {found}); expected {_LAYOUT}")
    tracks = sorted(p for p in folder.iterdir() if p.is_dir())
    if not tracks:
        raise StemsError(f"{folder} holds no track folders; expected {_LAYOUT}")
    return tracks


def read_stems(folder: str | Path, sample_rate: int) -> torch.Tensor:
    """One track's four stems as mono float32 ``[4, T]`` at ``sample_rate`` (channels averaged, resampled
    with torchaudio); a missing or unreadable stem, or stems of unequal length, is one line."""
    import torchaudio.functional as AF

    folder = Path(folder)
    missing = [f"{n}.wav" for n in STEMS if not (folder / f"{n}.wav").is_file()]
    if missing:
        raise StemsError(f"track {folder} lacks {', '.join(missing)}; expected {_LAYOUT}")
    stems, rates = [], set()
    for name in STEMS:
        try:
            audio, rate = sf.read(folder / f"{name}.wav", dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise StemsError(f"{folder / name}.wav is not readable audio ({str(err).strip()[:120]})") from None
        stems.append(torch.from_numpy(np.ascontiguousarray(audio.mean(axis=1))))
        rates.add(rate)
    lengths = {s.shape[0] for s in stems}
    if len(lengths) > 1 or len(rates) > 1:
        raise StemsError(f"the stems of {folder} differ in length or rate ({sorted(lengths)} samples)")
    mono = torch.stack(stems)
    rate = rates.pop()
    if rate != sample_rate:
        mono = AF.resample(mono, int(rate), int(sample_rate))
    return mono.contiguous()


# Where the benchmark's benches render it unless told (1.3 GB of float WAV).
BENCHMARK_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sepmodels" / "stems-bench"


@dataclass(frozen=True)
class StemsBenchmark:
    """What the stems benchmark renders and measures (README, "Music you can measure").

    Three splits, each of its own seed, so nothing is ever tuned on the clips that are measured: ``train``
    (solo stems that priors and dictionaries learn from), ``valid`` (where settings are chosen) and ``test``
    (only measured). Two conditions: every split rendered with ``train_font`` (the timbres the models learned),
    and ``valid`` and ``test`` again with ``other_font`` (the same compositions, timbres never heard).
    A clip is ``clip_seconds`` of a track from ``offset`` seconds on, the four stems mono at ``sample_rate``,
    the mixture their sum.
    """

    train: tuple[int, int, float] = (1, 16, 30.0)  # (seed, tracks, seconds)
    valid: tuple[int, int, float] = (2, 4, 11.0)
    test: tuple[int, int, float] = (3, 8, 11.0)
    train_font: str = "FluidR3_GM.sf2"
    other_font: str = "TimGM6mb.sf2"
    offset: float = 1.0
    clip_seconds: float = 10.0
    sample_rate: int = 14_700

    def conditions(self) -> dict[str, str]:
        """Condition name -> soundfont file name; the first is the training condition."""
        return {Path(f).stem.lower(): f for f in (self.train_font, self.other_font)}

    def split(self, name: str) -> tuple[int, int, float]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {name!r}")
        return getattr(self, name)


def render_benchmark(root: str | Path, bench: StemsBenchmark = StemsBenchmark(),
                     fonts_dir: str | Path = "/usr/share/sounds/sf2",
                     say: Callable[[str], None] = lambda _line: None) -> dict[str, Path]:  # fmt: skip
    """Render the benchmark into ``root/<condition>/<split>/`` (musdb18-HQ layout), skipping every split that
    is already there with the same description; returns condition -> its root."""
    out = {}
    for i, (condition, font) in enumerate(bench.conditions().items()):
        font_path = find_soundfont(Path(fonts_dir) / font)
        out[condition] = Path(root) / condition
        for split in SPLITS if i == 0 else ("valid", "test"):
            seed, tracks, seconds = bench.split(split)
            readme = out[condition] / split / "README.txt"
            want = f"{tracks} synthetic tracks of {seconds:g} s made by `sepmodels make-stems` (seed {seed})"
            if readme.is_file() and readme.read_text().startswith(want):
                continue
            say(f"rendering {condition}/{split}: {tracks} tracks of {seconds:g} s (seed {seed}, {font})")
            make_stems(out[condition], tracks, seconds, seed, soundfont=font_path, split=split)
    return out


def benchmark_clips(root: str | Path, split: str = "test", bench: StemsBenchmark = StemsBenchmark(),
                    limit: int | None = None) -> list[tuple[str, torch.Tensor]]:  # fmt: skip
    """The clips of ``root/split``: ``(track name, stems [4, L])`` cut by :func:`cut_clip`."""
    folders = track_folders(root, split)[:limit]
    return [(f.name, cut_clip(read_stems(f, bench.sample_rate), bench, f"track {f}")) for f in folders]


def cut_clip(stems: torch.Tensor, bench: StemsBenchmark, where: str) -> torch.Tensor:
    """A track's benchmark clip: ``bench.clip_seconds`` of ``stems [N, T]`` (at ``bench.sample_rate``) from
    ``bench.offset`` on; a track too short for that is one line naming ``where``."""
    start = round(bench.offset * bench.sample_rate)
    length = round(bench.clip_seconds * bench.sample_rate)
    if stems.shape[-1] < start + length:
        have = stems.shape[-1] / bench.sample_rate
        raise StemsError(f"{where} is {have:.2f} s long; a clip needs {bench.offset:g} + {bench.clip_seconds:g} s")
    return stems[:, start : start + length].contiguous()


def solo_audio(root: str | Path, sample_rate: int, split: str = "train",
               limit: int | None = None) -> dict[str, torch.Tensor]:  # fmt: skip
    """Each stem's solo audio over the tracks of ``root/split`` (the first ``limit``), end to end: name ->
    ``[T]``. What priors and dictionaries learn from; no mixture is read."""
    tracks = [read_stems(f, sample_rate) for f in track_folders(root, split)[:limit]]
    return {name: torch.cat([t[i] for t in tracks]) for i, name in enumerate(STEMS)}
