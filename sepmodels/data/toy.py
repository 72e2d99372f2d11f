"""Toy oscillator sources (the thesis's first dataset, made exact).

Four sources, in this order: ``sin``, ``square``, ``saw``, ``triangle``. Waveform conventions follow
``scipy.signal``: the sawtooth rises from -1 to 1 over a period, the square is +1 for the first half of a
period and -1 for the second, the triangle is a sawtooth of width 0.5 (rising over the first half).

Each source of a clip draws its own frequency (one of the 88 piano keys, uniformly; A4 = key 49 = 440 Hz),
phase (uniform in [0, 2 pi)) and amplitude (uniform in [0.8, 1.0]). The mix is the mean of the sources.
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
class ToyClipParams:
    """Random parameters of a batch of toy clips; each field is ``[B, N]`` (N = number of sources)."""

    key: torch.Tensor  # piano key, 1..88
    phase: torch.Tensor  # radians
    amplitude: torch.Tensor  # linear gain

    @property
    def frequency(self) -> torch.Tensor:
        return key_frequency(self.key)


def draw_params(batch: int, generator: torch.Generator, n_sources: int = len(SOURCES)) -> ToyClipParams:
    """Draw key, phase and amplitude for ``batch`` clips of ``n_sources`` sources each."""
    key = torch.randint(1, 89, (batch, n_sources), generator=generator)
    phase = torch.rand(batch, n_sources, generator=generator, dtype=torch.float64) * 2 * math.pi
    amplitude = 0.8 + 0.2 * torch.rand(batch, n_sources, generator=generator, dtype=torch.float64)
    return ToyClipParams(key=key, phase=phase, amplitude=amplitude)


def key_name(key: int) -> str:
    """Note name of piano key ``key`` (1..88), e.g. 49 -> ``A4``."""
    names = ("A", "A#", "B", "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#")
    return f"{names[(key - 1) % 12]}{(key + 8) // 12}"


def dominant_key(x: torch.Tensor, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """The piano key (1..88) nearest the strongest frequency of each clip ``[..., T]`` (long tensor ``[...]``).

    Every toy wave's strongest partial is its fundamental, so on toy sources and their estimates this is the
    pitch. The spectrum is zero-padded to at least 2 s so that neighbouring low keys fall in separate bins.
    """
    T = x.shape[-1]
    n = max(T, 2 * sample_rate)
    window = torch.hann_window(T, dtype=torch.float64)
    power = torch.fft.rfft(x.to(torch.float64) * window, n).abs()
    hz = power.argmax(-1).to(torch.float64) * sample_rate / n
    key = 49 + 12 * torch.log2(hz.clamp_min(1.0) / 440.0)
    return key.round().clamp(1, 88).long()


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
    phase = 2 * math.pi * params.frequency[..., None] * t + params.phase[..., None]
    waves = torch.stack([oscillator(kind, phase[:, k]) for k, kind in enumerate(sources)], dim=1)
    return (params.amplitude[..., None] * waves).to(torch.float32)


def toy_batch(batch: int, length: int, generator: torch.Generator, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A batch of fresh toy clips, ``[B, 4, length]`` float32."""
    return render(draw_params(batch, generator), length, sample_rate)


def toy_stream(batch: int, length: int, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> Iterator[torch.Tensor]:
    """Endless, seeded stream of training batches ``[B, 4, length]``."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield toy_batch(batch, length, generator, sample_rate)


def toy_test_set(n: int, length: int, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """A fixed test set ``[n, 4, length]``, disjoint in seed from every training stream."""
    generator = torch.Generator().manual_seed(_TEST_SEED_OFFSET + seed)
    return toy_batch(n, length, generator, sample_rate)
