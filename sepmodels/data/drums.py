"""Labelled drum one-shots without internet, rendered by FluidSynth from the drum kits of General-MIDI soundfonts.

The Neural Drum Machine (Aouameur, Esling and Hadjeres, 2019) trains a conditional Wasserstein autoencoder on
one-shots of 11 classes at 22 050 Hz, peak-normalised and zero-padded to one length. This renders the same
kind of set from the General-MIDI percussion notes standing for each class (:data:`GM_NOTES`), played on the
eight GM drum kits (bank 128: Standard, Room, Power, Electronic, TR-808, Jazz, Brush, Orchestra) of every
soundfont given (by default every one Debian installs)::

    OUT/{train,test}/examples.json       one entry per hit: class, label, kit, soundfont, preset, note, ...
    OUT/{train,test}/<name>.wav          mono 16-bit PCM, 22 050 Hz, LENGTH samples
    OUT/README.txt                       counts, kits per split, what was left out, the seed
    (name: <class>_<kit>-<index>, e.g. snare_TimGM6mb-032-007; kit: <soundfont>-<preset>)

Every kit plays the same seeded score: per class, ``per_class`` hits, hit ``j`` drawing a note of the class,
a velocity in 50..127 and a tuning of up to ±100 cents (no two hits of a class share a tuning while
``per_class`` is at most 116). A kit's hits go through one FluidSynth call (1.5 s apart, sliced). The tuning
resamples the rendered hit (polyphase, ``scipy.signal.resample_poly``, the ratio to 1/1000); then the hit is
trimmed to 2 ms before its onset (its first sample above 5 % of its peak), peak-normalised to 0.99 and cut
(with a 10 ms fade-out) or zero-padded to :data:`LENGTH`.

Train and test are split by kit: ``test_kits`` whole kits, seeded, go to test. Soundfonts reuse samples
across their kits (congas, bongos, tambourine and shakers are the same in nearly every kit of a soundfont),
and velocity mostly changes only the loudness, which the normalisation takes away. So, per class, hits whose
processed audio correlates above 0.999 (directly or through others) count as one, kept once: the same score
makes a kit reusing another's sample render the very same hits. A hit shared by train and test kits is kept
in one split only, so no test hit duplicates a train hit; a seeded draw sends enough of them to test for each
class to get its share of the test kits (the test hits of such a class are other tunings of samples that
train also has). Hits that render silent are left out, and the larger classes are cut back (evenly over their
kits) so that every class has as many hits as the smallest in each split. The README counts all of it.

Two GS kits break the GM layout, and their hits of those classes are not played: the Brush kit has a brush
slap on the clap's note (39); the Orchestra kit has timpani on the toms' and hi-hats' notes (41-50) in
FluidR3_GM, and copies of other kits' toms and hi-hats in TimGM6mb. Brush snares (38, 40) are a brush tap and
a brush swirl, kept as snares.

Neither soundfont has a finger snap (General MIDI has none; GS and GM2 put one on note 26, which renders
silent in both, as does 25), so "snap" stands in as sticks (31) and side stick (37): short, unpitched wooden
clicks centred near 2-4.5 kHz. Claves (75) ring at a fixed 2.2 kHz, high Q (27) is a 150-270 Hz blip and slap
(28) a long noise burst much like the claps.

Needs Debian's ``fluidsynth`` and a soundfont (see :mod:`sepmodels.data.stems`).
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import mido
import numpy as np
import soundfile as sf
import torch
from scipy.signal import resample_poly

from sepmodels.data.audio import read_split
from sepmodels.data.stems import SOUNDFONTS, StemsError, fluidsynth_path, fluidsynth_render
from sepmodels.fileio import atomic_path

RATE = 22_050
LENGTH = 16_384  # samples per hit, 0.743 s
CLASSES = (
    "kick",
    "clap",
    "snare",
    "open_hat",
    "closed_hat",
    "tambourine",
    "conga",
    "bongo",
    "shaker",
    "snap",
    "tom",
)
SPLITS = ("train", "test")
GM_KITS = (0, 8, 16, 24, 25, 32, 40, 48)  # bank-128 presets: Standard, Room, Power, Electronic, TR-808, Jazz, ...

# The General-MIDI percussion notes standing for each class (label order is CLASSES').
GM_NOTES: dict[str, tuple[int, ...]] = {
    "kick": (35, 36),  # acoustic bass drum, bass drum 1
    "clap": (39,),  # hand clap
    "snare": (38, 40),  # acoustic snare, electric snare
    "open_hat": (46,),
    "closed_hat": (42, 44),  # closed hi-hat, pedal hi-hat
    "tambourine": (54,),
    "conga": (62, 63, 64),  # mute high, open high, low conga
    "bongo": (60, 61),  # high, low bongo
    "shaker": (69, 70, 82),  # cabasa, maracas, shaker (GM2; both soundfonts have it)
    "snap": (31, 37),  # sticks, side stick: no finger snap in either soundfont (see the module docstring)
    "tom": (41, 43, 45, 47, 48, 50),  # low floor tom .. high tom
}

VELOCITIES = (50, 127)  # the range a hit's velocity is drawn from, inclusive
CENTS = 100.0  # a hit's tuning is drawn from -CENTS..CENTS
PEAK = 0.99  # every hit is normalised to this peak
_SPACING = 1.5  # seconds between hits in one render: more than a hit's LENGTH at the lowest tuning
_HOLD = 1.0  # seconds from note-on to note-off
_STOP = 1.2  # seconds from note-on to All Sound Off: open hi-hats ring on past the spacing, into the next hit
_SILENT = 1e-4  # peak below which a rendered hit counts as silent
_ONSET = 0.05  # a hit starts at its first sample above this fraction of its peak ...
_PRE = round(0.002 * RATE)  # ... less 2 ms
_FADE = round(0.010 * RATE)  # fade-out where a hit is cut
_SAME = 0.999  # hits correlating above this are one hit
# Classes a GM kit has no sound of its own for, by preset: the GS Brush set puts a brush slap on the clap's note,
# the GS Orchestra set timpani on the toms' notes (FluidR3_GM on the hi-hats' too; TimGM6mb copies other kits').
_LACKS: dict[int, tuple[str, ...]] = {40: ("clap",), 48: ("open_hat", "closed_hat", "tom")}
_TUNING_BASE = 1000  # resampling ratios are 1000/down, down = 944..1059: steps of about 1.7 cents


@dataclass(frozen=True)
class Kit:
    """One drum kit: a bank-128 preset of a soundfont."""

    soundfont: Path
    preset: int
    title: str  # the preset's name in the soundfont, e.g. "Jazz"

    @property
    def name(self) -> str:
        """``<soundfont stem>-<preset>``, e.g. ``TimGM6mb-032``: unique among the kits of a set."""
        return f"{self.soundfont.stem}-{self.preset:03d}"

    def plays(self, drum_class: str) -> bool:
        """Whether the kit has a sound of its own for ``drum_class`` on the class's notes (see ``_LACKS``)."""
        return drum_class not in _LACKS.get(self.preset, ())


@dataclass(frozen=True)
class Hit:
    """One hit of the score every kit plays: hit ``index`` of ``label``'s class."""

    label: int
    index: int
    note: int
    velocity: int
    cents: float  # the tuning applied (the resampling ratio's, to 0.01 cent)

    @property
    def down(self) -> int:
        """The resampling ratio is ``_TUNING_BASE / down``: up in pitch is shorter."""
        return round(_TUNING_BASE * 2 ** (self.cents / 1200))


def drum_kits(soundfont: str | Path) -> dict[int, str]:
    """The drum kits a SoundFont 2 file holds: bank-128 preset numbers and their names, from its preset headers."""
    path = Path(soundfont)
    with path.open("rb") as f:
        riff, _, form = struct.unpack("<4sI4s", f.read(12).ljust(12, b"\0"))
        if riff != b"RIFF" or form != b"sfbk":
            raise ValueError(f"{path} is not a SoundFont 2 file")
        while len(head := f.read(8)) == 8:
            tag, size = struct.unpack("<4sI", head)
            if tag == b"LIST":
                f.read(4)  # the list's type: its chunks follow, walked one by one
                continue
            if tag == b"phdr":
                data = f.read(size)
                kits = {}
                for at in range(0, len(data) - 38, 38):  # 38-byte records, the last one a terminator
                    name, preset, bank = struct.unpack_from("<20sHH", data, at)
                    if bank == 128:
                        kits[preset] = name.split(b"\0")[0].decode("latin-1").strip()
                return kits
            f.seek(size + size % 2, 1)
    raise ValueError(f"{path} has no preset headers: not a usable SoundFont 2 file")


def find_kits(soundfonts: Sequence[str | Path] | None = None, presets: Sequence[int] = GM_KITS) -> list[Kit]:
    """The kits to render: ``presets`` of each soundfont that has them (default: every one Debian installs)."""
    if soundfonts is None:
        soundfonts = [p for p in SOUNDFONTS if Path(p).is_file()]
        if not soundfonts:
            raise StemsError("no General-MIDI soundfont found in /usr/share/sounds/sf2; install one: "
                             "apt-get install fluidsynth timgm6mb-soundfont")  # fmt: skip
    fonts: dict[Path, Path] = {}
    for given in soundfonts:
        path = Path(given)
        if not path.is_file():
            raise ValueError(f"unknown soundfont file {path}: it does not exist")
        fonts.setdefault(path.resolve(), path)  # Debian's default-GM.sf2 is a link to one of the others
    stems = [path.stem for path in fonts.values()]
    if len(set(stems)) < len(stems):
        raise ValueError(f"two soundfonts share a file name ({', '.join(stems)}): kits would share names")
    kits = []
    for path in fonts.values():
        names = drum_kits(path)
        kits += [Kit(path, preset, names[preset]) for preset in sorted(set(presets)) if preset in names]
    if not kits:
        raise ValueError(f"none of the soundfonts has drum kits (bank 128) at presets {list(presets)}")
    return kits


def score(per_class: int, seed: int = 0) -> list[Hit]:
    """The hits every kit plays, class by class: per class, seeded, ``per_class`` draws of (note, velocity,
    tuning). A class's tunings go through the 116 resampling ratios in a random order before any comes back,
    and hit ``j`` of a class is the same for any ``per_class`` above ``j``."""
    downs = np.arange(round(_TUNING_BASE * 2 ** (-CENTS / 1200)), round(_TUNING_BASE * 2 ** (CENTS / 1200)) + 1)
    hits = []
    for label, name in enumerate(CLASSES):
        rng = np.random.default_rng((seed, 0, label))
        tunings = rng.permutation(downs)
        for j in range(per_class):
            note = int(rng.choice(GM_NOTES[name]))
            velocity = int(rng.integers(VELOCITIES[0], VELOCITIES[1] + 1))
            cents = 1200 * math.log2(tunings[j % len(tunings)] / _TUNING_BASE)
            hits.append(Hit(label, j, note, velocity, round(cents, 2)))
    return hits


def _midi(preset: int, hits: Sequence[Hit]) -> mido.MidiFile:
    """The hits on channel 10 (index 9) with ``preset``'s kit, one every ``_SPACING`` seconds, each silenced
    after ``_STOP`` seconds."""
    ticks, tempo = 480, 500_000  # 120 bpm: 960 ticks per second
    per_second = ticks * 1_000_000 / tempo
    track = mido.MidiTrack()
    track.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    track.append(mido.Message("program_change", program=preset, channel=9, time=0))
    now = 0
    for i, hit in enumerate(hits):
        on, off, stop = (round((i * _SPACING + t) * per_second) for t in (0.0, _HOLD, _STOP))
        track.append(mido.Message("note_on", note=hit.note, velocity=hit.velocity, channel=9, time=on - now))
        track.append(mido.Message("note_off", note=hit.note, velocity=0, channel=9, time=off - on))
        track.append(mido.Message("control_change", control=120, value=0, channel=9, time=stop - off))
        now = stop
    song = mido.MidiFile(ticks_per_beat=ticks)
    song.tracks.append(track)
    return song


def render_kit(kit: Kit, hits: Sequence[Hit], workdir: Path) -> np.ndarray:
    """``hits`` on ``kit`` in one FluidSynth call, untuned and unprocessed: ``[len(hits), 1.5 s]`` float32."""
    mono = fluidsynth_render(_midi(kit.preset, hits), kit.soundfont, workdir, RATE, timeout=1800).mean(axis=1)
    step = round(_SPACING * RATE)
    mono = np.pad(mono, (0, max(0, step * len(hits) - mono.shape[0])))
    return mono[: step * len(hits)].reshape(len(hits), step)


def process(raw: np.ndarray, hit: Hit) -> np.ndarray:
    """A rendered hit as it goes in the set: tuned, started at its onset, normalised to ``PEAK``, ``LENGTH``
    samples (cut with a fade-out, or zero-padded); int16."""
    # Renders of one sound start a whole number of samples apart (FluidSynth starts notes on 64-sample blocks):
    # aligned first, they are resampled alike and stay copies of each other.
    x = _from_onset(raw, 2 * _PRE)
    if hit.down != _TUNING_BASE:  # only what LENGTH needs, and a margin for the filter
        x = resample_poly(x[: LENGTH * hit.down // _TUNING_BASE + 4 * _PRE], _TUNING_BASE, hit.down)
    return np.round(as_hit(x) * 32767).astype(np.int16)


def as_hit(x: np.ndarray, length: int = LENGTH) -> np.ndarray:
    """Any clip as the set's hits are: from just before its onset, normalised to ``PEAK``, ``length`` samples
    (cut with a fade-out, or zero-padded); float32. A silent clip is a ValueError."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    if not x.size or not float(np.abs(x).max()) > 0:
        raise ValueError("the clip is silent: no onset to start a hit at")
    x = _from_onset(x, _PRE)[:length].copy()
    x = x * (PEAK / float(np.abs(x).max()))
    if x.shape[0] == length:  # cut: whatever still sounds fades out
        x[-_FADE:] *= np.linspace(1.0, 0.0, _FADE)
    return np.pad(x, (0, length - x.shape[0])).astype(np.float32)


def _from_onset(x: np.ndarray, before: int) -> np.ndarray:
    """``x`` from ``before`` samples ahead of its onset, its first sample above ``_ONSET`` times its peak."""
    onset = int(np.argmax(np.abs(x) > _ONSET * np.abs(x).max()))
    return x[max(0, onset - before) :]


def _same_groups(clips: np.ndarray) -> list[list[int]]:
    """The rows of ``clips`` ``[n, LENGTH]`` grouped into near-copies: rows correlating above ``_SAME``, directly
    or through other rows, share a group."""
    x = clips.astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    parent = list(range(len(x)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in np.argwhere(np.triu(x @ x.T, 1) > _SAME):
        parent[root(int(j))] = root(int(i))
    groups: dict[int, list[int]] = {}
    for i in range(len(x)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def make_drums(
    out: str | Path,
    per_class: int = 116,
    test_kits: int = 3,
    seed: int = 0,
    soundfonts: Sequence[str | Path] | None = None,
    progress: Callable[[int, int], None] = lambda _i, _n: None,
    presets: Sequence[int] = GM_KITS,
) -> dict[str, int]:
    """Render the set into ``out`` (see the module docstring); returns the number of hits per split.

    ``progress(i, n)`` is called after each of the ``n`` kits is rendered.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, got {per_class}")
    if seed < 0:
        raise ValueError(f"seed must be 0 or more, got {seed}")
    kits = find_kits(soundfonts, presets)
    if not 1 <= test_kits < len(kits):
        raise ValueError(
            f"test_kits must be 1..{len(kits) - 1} (leaving a train kit of {len(kits)}), got {test_kits}"
        )
    fluidsynth_path()
    hits = score(per_class, seed)
    split_of = ["train"] * len(kits)
    for k in np.random.default_rng((seed, 1)).permutation(len(kits))[:test_kits]:
        split_of[k] = "test"

    played = np.array([[kit.plays(CLASSES[hit.label]) for hit in hits] for kit in kits])
    clips = np.zeros((len(kits), len(hits), LENGTH), dtype=np.int16)
    silent = np.zeros((len(kits), len(hits)), dtype=bool)
    with tempfile.TemporaryDirectory() as tmp:
        for k, kit in enumerate(kits):
            rows = np.flatnonzero(played[k])
            for h, raw in zip(rows, render_kit(kit, [hits[h] for h in rows], Path(tmp)), strict=True):
                silent[k, h] = float(np.abs(raw).max()) < _SILENT
                if not silent[k, h]:
                    clips[k, h] = process(raw, hits[h])
            progress(k + 1, len(kits))

    kept, duplicates = _keep_once(hits, clips, played & ~silent, split_of, test_kits / len(kits), seed)
    for split in SPLITS:
        empty = [name for name, chosen in zip(CLASSES, kept[split], strict=True) if not chosen]
        if empty:
            raise ValueError(
                f"no {', '.join(empty)} hits left for {split} with seed {seed} and {test_kits} test kits: the "
                "classes cannot be balanced; choose another seed or number of test kits"
            )
    left_out = {
        "silent": int(silent.sum()),
        "lacking": int((~played).sum()),
        "duplicates": duplicates,
        "balance": 0,
    }
    meta: dict[str, dict[str, dict]] = {s: {} for s in SPLITS}
    for split in SPLITS:
        count = min(len(chosen) for chosen in kept[split])  # every class as large as the smallest
        for label, chosen in enumerate(kept[split]):
            left_out["balance"] += len(chosen) - count
            for k, h in _spread(chosen, count, np.random.default_rng((seed, 3, label, SPLITS.index(split)))):
                kit, hit = kits[k], hits[h]
                name = f"{CLASSES[label]}_{kit.name}-{hit.index:03d}"
                with atomic_path(Path(out) / split / f"{name}.wav") as tmp_wav:
                    sf.write(tmp_wav, clips[k, h], RATE, subtype="PCM_16", format="WAV")
                meta[split][name] = {
                    "name": name, "class": CLASSES[label], "label": label, "kit": kit.name, "kit_title": kit.title,
                    "soundfont": kit.soundfont.name, "preset": kit.preset, "note": hit.note,
                    "velocity": hit.velocity, "cents": hit.cents, "sample_rate": RATE, "length": LENGTH,
                }  # fmt: skip
    for split, entries in meta.items():
        with atomic_path(Path(out) / split / "examples.json") as tmp_json:
            tmp_json.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    distinct = {split: [len(chosen) for chosen in kept[split]] for split in SPLITS}
    _readme(Path(out), kits, split_of, meta, distinct, left_out, per_class, seed)
    return {split: len(entries) for split, entries in meta.items()}


def _keep_once(hits: Sequence[Hit], clips: np.ndarray, usable: np.ndarray, split_of: Sequence[str], share: float,
               seed: int) -> tuple[dict[str, list[list[tuple[int, int]]]], int]:  # fmt: skip
    """Each distinct hit once, in one split: per split and class, the (kit, hit) pairs kept; and the number of
    near-copies left out. A hit that train and test kits share goes to test often enough (seeded) for the class
    to have ``share`` of its distinct hits there, if it can."""
    kept: dict[str, list[list[tuple[int, int]]]] = {split: [] for split in SPLITS}
    duplicates = 0
    for label in range(len(CLASSES)):
        pairs = [(k, h) for h, hit in enumerate(hits) if hit.label == label for k in range(len(split_of))
                 if usable[k, h]]  # fmt: skip
        only: dict[str, list[list[tuple[int, int]]]] = {split: [] for split in SPLITS}
        mixed = []
        for group in _same_groups(np.stack([clips[k, h] for k, h in pairs])) if pairs else []:
            duplicates += len(group) - 1
            members = [pairs[i] for i in group]
            splits = {split_of[k] for k, _ in members}
            (mixed if len(splits) == 2 else only[splits.pop()]).append(members)
        mixed = [mixed[i] for i in np.random.default_rng((seed, 2, label)).permutation(len(mixed))]
        to_test = round(share * (len(only["train"]) + len(only["test"]) + len(mixed))) - len(only["test"])
        lowest, highest = int(not only["test"]), len(mixed) - int(not only["train"])  # one each, if there are two
        to_test = max(0, min(len(mixed), highest, max(lowest, to_test)))
        for split, groups in (
            ("train", only["train"] + mixed[to_test:]),
            ("test", only["test"] + mixed[:to_test]),
        ):
            kept[split].append(
                [next(pair for pair in members if split_of[pair[0]] == split) for members in groups]
            )
    return kept, duplicates


def _spread(chosen: list[tuple[int, int]], count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` of the (kit, hit) pairs ``chosen``, drawn from the kits in turn so that every kit keeps hits."""
    by_kit: dict[int, list[tuple[int, int]]] = {}
    for i in rng.permutation(len(chosen)):
        by_kit.setdefault(chosen[i][0], []).append(chosen[i])
    turns: list[tuple[int, int]] = []
    for rank in range(max((len(pairs) for pairs in by_kit.values()), default=0)):
        turns += [pairs[rank] for pairs in by_kit.values() if rank < len(pairs)]
    return sorted(turns[:count])


def _readme(
    out: Path,
    kits: Sequence[Kit],
    split_of: Sequence[str],
    meta: dict[str, dict[str, dict]],
    distinct: dict[str, list[int]],
    left_out: dict[str, int],
    per_class: int,
    seed: int,
) -> None:
    lines = [
        f"Drum one-shots made by `sepmodels make-drums` (seed {seed}, {per_class} hits per class and kit): "
        f"{len(CLASSES)} classes, mono 16-bit PCM, {RATE} Hz, {LENGTH} samples, peak {PEAK}.",
        "Soundfonts: " + ", ".join(sorted({str(kit.soundfont) for kit in kits})) + ".",
        "",
    ]
    for split in SPLITS:
        entries = meta[split].values()
        per = [sum(e["label"] == label for e in entries) for label in range(len(CLASSES))]
        chosen = [f"{kit.name} ({kit.title})" for kit, where in zip(kits, split_of, strict=True) if where == split]
        lines += [
            f"{split}: {len(entries)} hits, " + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, per, strict=True)),
            f"  kits: {', '.join(chosen)}",
            "  distinct hits before balancing: "
            + ", ".join(f"{c} {n}" for c, n in zip(CLASSES, distinct[split], strict=True)),
        ]
    lines += [
        "",
        "Left out:",
        f"  {left_out['lacking']} hits of classes a kit has no sound of its own for, not played (Brush kits: a "
        "brush slap on the clap's note; Orchestra kits: timpani, or copies, on the toms' and hi-hats' notes)",
        f"  {left_out['silent']} hits that rendered silent",
        f"  {left_out['duplicates']} near-copies (correlation above {_SAME}; kits reuse samples): kept once, "
        "never in both splits",
        f"  {left_out['balance']} hits to balance the classes",
        "",
        'No finger snap in these soundfonts: "snap" is sticks (note 31) and side stick (note 37).',
    ]
    with atomic_path(out / "README.txt") as tmp_readme:
        tmp_readme.write_text("\n".join(lines) + "\n")


def synthetic_drum_hit(label: int, generator: torch.Generator) -> torch.Tensor:
    """A SYNTHETIC stand-in, no drum at all (for tests, and where FluidSynth is missing): a decaying sine plus
    noise whose pitch, noise share and decay depend on the class ``label``, with a random detune and decay; 2 ms
    of silence, then the onset; peak 0.99, ``[LENGTH]`` at 22 050 Hz, the shape of a make-drums hit."""
    jitter = 1 + 0.1 * (torch.rand(2, generator=generator) - 0.5)
    t = torch.arange(LENGTH - 44) / RATE
    tone = torch.sin(2 * math.pi * 60 * 1.4**label * jitter[0] * t)
    noise = torch.randn(t.shape[0], generator=generator)
    share = label / (len(CLASSES) - 1)
    hit = ((1 - share) * tone + share * noise) * torch.exp(-t / (0.03 * (1 + label % 4) * jitter[1]))
    return torch.cat([torch.zeros(44), 0.99 * hit / hit.abs().max()])


def write_synthetic_drums(root: str | Path, per_split: dict[str, int],
                          classes: Sequence[str] | None = None) -> Path:  # fmt: skip
    """A make-drums-shaped folder of :func:`synthetic_drum_hit` hits: ``per_split[split]`` per class of
    ``classes`` (default: all), in train/ and test/, with examples.json and README.txt."""
    root = Path(root)
    generator = torch.Generator().manual_seed(0)
    for split, count in per_split.items():
        folder = root / split
        folder.mkdir(parents=True)
        meta = {}
        for label, name in enumerate(CLASSES):
            if classes is not None and name not in classes:
                continue
            for i in range(count):
                hit_name = f"{name}_synthetic-{split}-{i:03d}"
                sf.write(folder / f"{hit_name}.wav", synthetic_drum_hit(label, generator).numpy(), RATE,
                         subtype="PCM_16")  # fmt: skip
                meta[hit_name] = {"name": hit_name, "class": name, "label": label, "kit": f"synthetic-{split}",
                                  "kit_title": "synthetic", "soundfont": "none", "preset": 0, "note": 0,
                                  "velocity": 100, "cents": 0.0, "sample_rate": RATE}  # fmt: skip
        (folder / "examples.json").write_text(json.dumps(meta))
    (root / "README.txt").write_text(
        "SYNTHETIC stand-ins (sepmodels.data.drums.write_synthetic_drums), not drums.\n"
    )
    return root


class DrumsData:
    """One split of a :func:`make_drums` set in memory, for training: 16-bit hits with class labels.

    Arguments:
        root: the folder ``make-drums`` wrote.
        split: ``train`` or ``test``.

    ``clips`` is ``[N, LENGTH]`` int16, ``labels`` ``[N]`` long (indices into :data:`CLASSES`), both in name
    order. Batches and samples are balanced: as many hits of every class, in class order.
    """

    SOURCES = ("drum",)
    RATE = RATE
    CLASSES = CLASSES

    def __init__(self, root: str | Path, split: str = "train") -> None:
        self.examples, self.names, self.clips = read_split(root, split, SPLITS, "make-drums", "hits", RATE, LENGTH)
        self.labels = torch.tensor([int(self.examples[name]["label"]) for name in self.names])  # [N]
        if not all(0 <= label < len(CLASSES) for label in self.labels.tolist()):
            raise ValueError(f"{Path(root) / split / 'examples.json'} has labels outside 0..{len(CLASSES) - 1}")
        self._rows = [torch.nonzero(self.labels == label)[:, 0] for label in range(len(CLASSES))]

    def __len__(self) -> int:
        return self.clips.shape[0]

    def hit(self, i: int) -> torch.Tensor:
        """Hit ``i`` (in name order) as float samples ``[LENGTH]``."""
        return self.clips[i].float() / 32768.0

    def class_counts(self) -> list[int]:
        """The number of hits of each class, in class order."""
        return [len(rows) for rows in self._rows]

    def by_class(self, c: int | str) -> torch.Tensor:
        """The hits of class ``c`` (a label or a name) as float samples ``[n, LENGTH]``."""
        label = CLASSES.index(c) if isinstance(c, str) and c in CLASSES else c
        if not isinstance(label, int) or not 0 <= label < len(CLASSES):
            raise ValueError(
                f"no class {c!r}; choose a label 0..{len(CLASSES) - 1} or one of {', '.join(CLASSES)}"
            )
        return self.clips[self._rows[label]].float() / 32768.0

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``n // len(CLASSES)`` random hits of each class, in class order: ``([n, LENGTH], [n])``."""
        if n < 1 or n % len(CLASSES):
            raise ValueError(f"a balanced draw takes a positive multiple of {len(CLASSES)} hits, got {n}")
        empty = [name for name, rows in zip(CLASSES, self._rows, strict=True) if not len(rows)]
        if empty:
            raise ValueError(f"no {', '.join(empty)} hits in this split: cannot balance a draw")
        per = n // len(CLASSES)
        rows = torch.cat([rows[torch.randint(len(rows), (per,), generator=generator)] for rows in self._rows])
        return self.clips[rows].float() / 32768.0, self.labels[rows]

    def batch(self, batch_size: int, length: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A balanced batch of whole hits: ``([B, 1, LENGTH], [B])`` (the trainer's shape), in class order."""
        if length != LENGTH:
            raise ValueError(f"drum hits are {LENGTH} samples long; batches take whole hits, not {length}")
        clips, labels = self.sample(batch_size, generator)
        return clips[:, None], labels


__all__ = [
    "CLASSES",
    "GM_KITS",
    "GM_NOTES",
    "LENGTH",
    "RATE",
    "SPLITS",
    "DrumsData",
    "Hit",
    "Kit",
    "as_hit",
    "drum_kits",
    "find_kits",
    "make_drums",
    "process",
    "render_kit",
    "score",
    "synthetic_drum_hit",
    "write_synthetic_drums",
]
