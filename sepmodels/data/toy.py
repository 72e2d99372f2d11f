"""Toy oscillator sources (the thesis's first dataset, made exact).

Four sources, in this order: ``sin``, ``square``, ``saw``, ``triangle``. Waveform conventions follow
``scipy.signal``: the sawtooth rises from -1 to 1 over a period, the square is +1 for the first half of a
period and -1 for the second, the triangle is a sawtooth of width 0.5 (rising over the first half).

Each source of a clip draws its own frequency (one of the 88 piano keys, uniformly; A4 = key 49 = 440 Hz),
phase (uniform in [0, 2 pi)) and amplitude (uniform in [0.8, 1.0]). The mix is the mean of the sources.

That is the on-key toy (variant ``keys``, the default everywhere). :class:`ToyOptions` makes the notes richer,
each option seeded with the rest of the clip's draws:

- ``pitch="continuous"``: the key is drawn uniformly over the real interval [1, 88] (log-uniform frequency
  from 27.5 to 4186 Hz), so almost no note sits on a key;
- ``vibrato_cents``: a sinusoidal vibrato of depth uniform in [0, vibrato_cents] cents (peak deviation), rate
  uniform in ``vibrato_hz``, phase uniform;
- ``glide_cents``: a glide at a rate uniform in [-glide_cents, glide_cents] cents per second;
- ``decay``: an exponential amplitude envelope ``exp(-d t)`` with ``d`` uniform in [``decay[0]``, ``decay[1]``]
  per second (the amplitude drawn as before is the envelope's start).

With vibrato or a glide, the phase is the running sum of the instantaneous frequency over the samples (in
float64), starting at the drawn phase. Named variants (:data:`VARIANTS`): ``keys``, ``continuous`` and
``moving`` (continuous pitch, vibrato up to 30 cents at 4 to 6 Hz, decays from 0.5 to 3 per second).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import torch

SOURCES: tuple[str, ...] = ("sin", "square", "saw", "triangle")
SAMPLE_RATE = 14_700
# Seeds of the test set live in their own range so that no training stream seed can reproduce them.
_TEST_SEED_OFFSET = 1_000_000_007


def key_frequency(key: torch.Tensor) -> torch.Tensor:
    """Frequency in Hz of piano key numbers 1..88 (A4 = key 49 = 440 Hz)."""
    return 440.0 * torch.pow(2.0, (key.to(torch.float64) - 49.0) / 12.0)


def oscillator(kind: str, phase: torch.Tensor) -> torch.Tensor:
    """One waveform of amplitude 1 evaluated at ``phase`` (radians, any shape)."""
    cycle = torch.remainder(phase, 2 * math.pi) / (2 * math.pi)  # position in the period, [0, 1)
    if kind == "sin":
        return torch.sin(phase)
    if kind == "square":
        return torch.where(cycle < 0.5, 1.0, -1.0).to(phase.dtype)
    if kind == "saw":
        return 2.0 * cycle - 1.0
    if kind == "triangle":
        return torch.where(cycle < 0.5, 4.0 * cycle - 1.0, 3.0 - 4.0 * cycle)
    raise ValueError(f"unknown oscillator {kind!r}; expected one of {SOURCES}")


@dataclass(frozen=True)
class ToyOptions:
    """How rich the toy's notes are (see the module docstring); the default is the on-key toy."""

    pitch: str = "keys"  # "keys" or "continuous"
    vibrato_cents: float = 0.0  # largest vibrato depth (peak deviation, cents)
    vibrato_hz: tuple[float, float] = (4.0, 6.0)  # range of the vibrato's rate
    glide_cents: float = 0.0  # largest glide rate, cents per second
    decay: tuple[float, float] = (0.0, 0.0)  # range of the envelope's decay rate, per second

    def __post_init__(self) -> None:
        if self.pitch not in ("keys", "continuous"):
            raise ValueError(f"pitch must be 'keys' or 'continuous', got {self.pitch!r}")
        lo, hi = self.vibrato_hz
        if self.vibrato_cents < 0 or self.glide_cents < 0 or not 0 < lo <= hi:
            raise ValueError("vibrato_cents and glide_cents must be >= 0 and vibrato_hz a range of positive rates")
        if not 0 <= self.decay[0] <= self.decay[1]:
            raise ValueError(f"decay must be a range 0 <= low <= high, got {self.decay}")

    @property
    def moves(self) -> bool:
        """Whether a note's pitch or amplitude changes over the clip."""
        return self.vibrato_cents > 0 or self.glide_cents > 0 or self.decay[1] > 0


VARIANTS: dict[str, ToyOptions] = {
    "keys": ToyOptions(),
    "continuous": ToyOptions(pitch="continuous"),
    "moving": ToyOptions(pitch="continuous", vibrato_cents=30.0, decay=(0.5, 3.0)),
}


def toy_options(variant: str | ToyOptions | None) -> ToyOptions:
    """The options a variant name (:data:`VARIANTS`) stands for; options pass through, None is ``keys``."""
    if variant is None:
        return VARIANTS["keys"]
    if isinstance(variant, ToyOptions):
        return variant
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown toy variant {variant!r}; choose one of {', '.join(VARIANTS)}") from None


@dataclass(frozen=True)
class ToyClipParams:
    """Random parameters of a batch of toy clips; each field is ``[B, N]`` (N = number of sources).

    ``key`` is an integer key on the on-key toy and a real number in [1, 88] with continuous pitch. The motion
    fields are None when the notes do not move.
    """

    key: torch.Tensor  # piano key, 1..88
    phase: torch.Tensor  # radians
    amplitude: torch.Tensor  # linear gain at the start
    vibrato_cents: torch.Tensor | None = None  # peak deviation
    vibrato_hz: torch.Tensor | None = None
    vibrato_phase: torch.Tensor | None = None  # radians
    glide_cents: torch.Tensor | None = None  # cents per second
    decay: torch.Tensor | None = None  # per second

    @property
    def frequency(self) -> torch.Tensor:
        """The note's frequency (Hz) before vibrato and glide."""
        return key_frequency(self.key)

    def pitch_track(self, length: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Instantaneous frequency (Hz) of every source at every sample, ``[B, N, length]`` float64."""
        t = torch.arange(length, dtype=torch.float64) / sample_rate
        cents = torch.zeros(*self.key.shape, length, dtype=torch.float64)
        if self.vibrato_cents is not None:
            cents = cents + self.vibrato_cents[..., None] * torch.sin(
                2 * math.pi * self.vibrato_hz[..., None] * t + self.vibrato_phase[..., None]
            )
            cents = cents + self.glide_cents[..., None] * t
        return self.frequency[..., None] * torch.pow(2.0, cents / 1200)

    def envelope(self, length: int, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
        """Amplitude of every source at every sample, ``[B, N, length]`` float64."""
        t = torch.arange(length, dtype=torch.float64) / sample_rate
        decay = self.decay if self.decay is not None else torch.zeros_like(self.amplitude)
        return self.amplitude[..., None] * torch.exp(-decay[..., None] * t)


def draw_params(
    batch: int,
    generator: torch.Generator,
    n_sources: int = len(SOURCES),
    options: str | ToyOptions | None = None,
) -> ToyClipParams:
    """Draw key, phase and amplitude (and the options' motion) for ``batch`` clips of ``n_sources`` sources.

    The on-key toy draws exactly what it always drew, so its seeds give the same clips as before.
    """
    opt = toy_options(options)
    shape = (batch, n_sources)
    if opt.pitch == "keys":
        key = torch.randint(1, 89, shape, generator=generator)
    else:
        key = 1.0 + 87.0 * torch.rand(shape, generator=generator, dtype=torch.float64)
    phase = torch.rand(shape, generator=generator, dtype=torch.float64) * 2 * math.pi
    amplitude = 0.8 + 0.2 * torch.rand(shape, generator=generator, dtype=torch.float64)
    if not opt.moves:
        return ToyClipParams(key=key, phase=phase, amplitude=amplitude)

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(shape, generator=generator, dtype=torch.float64)

    return ToyClipParams(
        key=key,
        phase=phase,
        amplitude=amplitude,
        vibrato_cents=uniform(0.0, opt.vibrato_cents),
        vibrato_hz=uniform(*opt.vibrato_hz),
        vibrato_phase=uniform(0.0, 2 * math.pi),
        glide_cents=uniform(-opt.glide_cents, opt.glide_cents),
        decay=uniform(*opt.decay),
    )


def key_name(key: int) -> str:
    """Note name of piano key ``key`` (1..88), e.g. 49 -> ``A4``."""
    names = ("A", "A#", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")
    return f"{names[(key - 1) % 12]}{(key + 8) // 12}"


def dominant_hz(x: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The strongest frequency (Hz) of each clip ``[..., T]`` (float64 ``[...]``).

    Every toy wave's strongest partial is its fundamental, so on toy sources and their estimates this is the
    pitch (a moving note's: its strongest, near the mean). The spectrum is zero-padded to at least 2 s so that
    neighbouring low keys fall in separate bins.
    """
    T = x.shape[-1]
    n = max(T, 2 * sample_rate)
    window = torch.hann_window(T, dtype=torch.float64)
    power = torch.fft.rfft(x.to(torch.float64) * window, n).abs()
    return power.argmax(-1).to(torch.float64) * sample_rate / n


def hz_to_key(hz: torch.Tensor) -> torch.Tensor:
    """Piano key numbers (real, A4 = 49) of frequencies ``hz``."""
    return 49 + 12 * torch.log2(torch.as_tensor(hz, dtype=torch.float64).clamp_min(1.0) / 440.0)


def dominant_key(x: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The piano key (1..88) nearest the strongest frequency of each clip ``[..., T]`` (long tensor ``[...]``);
    see :func:`dominant_hz`."""
    return hz_to_key(dominant_hz(x, sample_rate)).round().clamp(1, 88).long()


def render(
    params: ToyClipParams, length: int, sample_rate: int = SAMPLE_RATE, sources: tuple[str, ...] = SOURCES
) -> torch.Tensor:
    """Render clips from their parameters.

    Returns:
        float32 tensor ``[B, N, length]`` of sources in [-1, 1].
    """
    if length < 1:
        raise ValueError(f"length must be a positive number of samples, got {length}")
    t = torch.arange(length, dtype=torch.float64) / sample_rate  # seconds
    # Phase in float64: float32 loses the phase of high notes after a few seconds.
    if params.vibrato_cents is None:
        phase = 2 * math.pi * params.frequency[..., None] * t + params.phase[..., None]
        envelope = params.amplitude[..., None]
    else:  # the running sum of the instantaneous frequency, from the drawn phase at the first sample
        hz = params.pitch_track(length, sample_rate)
        phase = params.phase[..., None] + 2 * math.pi / sample_rate * (hz.cumsum(-1) - hz)
        envelope = params.envelope(length, sample_rate)
    waves = torch.stack([oscillator(kind, phase[:, k]) for k, kind in enumerate(sources)], dim=1)
    return (envelope * waves).to(torch.float32)


def toy_batch(
    batch: int,
    length: int,
    generator: torch.Generator,
    sample_rate: int = SAMPLE_RATE,
    options: str | ToyOptions | None = None,
) -> torch.Tensor:
    """A batch of fresh toy clips, ``[B, 4, length]`` float32 (``options``: a variant, default on-key)."""
    return render(draw_params(batch, generator, options=options), length, sample_rate)


def toy_stream(
    batch: int,
    length: int,
    seed: int = 0,
    sample_rate: int = SAMPLE_RATE,
    options: str | ToyOptions | None = None,
) -> Iterator[torch.Tensor]:
    """Endless, seeded stream of training batches ``[B, 4, length]``."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield toy_batch(batch, length, generator, sample_rate, options)


def toy_test_set(
    n: int, length: int, seed: int = 0, sample_rate: int = SAMPLE_RATE, options: str | ToyOptions | None = None
) -> torch.Tensor:
    """A fixed test set ``[n, 4, length]``, disjoint in seed from every training stream."""
    generator = torch.Generator().manual_seed(_TEST_SEED_OFFSET + seed)
    return toy_batch(n, length, generator, sample_rate, options)


def toy_test_params(n: int, seed: int = 0, options: str | ToyOptions | None = None) -> ToyClipParams:
    """The parameters of :func:`toy_test_set`'s clips (their pitches, for a benchmark's pitch figures)."""
    generator = torch.Generator().manual_seed(_TEST_SEED_OFFSET + seed)
    return draw_params(n, generator, options=options)
