"""The drum synthesizer: a point of the XY pad to a drum hit, timed.

A :class:`DrumSynth` holds a trained :class:`~sepmodels.drums.cwae.DrumAutoencoder` and, optionally, a learned
inverter (:class:`~sepmodels.drums.mcnn.DrumInverter`). A :class:`PadPoint` names a class and the first three
principal coordinates of that class's codes in standard deviations (x, y on the pad, the fine slider for the
third); every other principal coordinate is zero (the plane through the class's mean, the paper's choice)
unless ``rest`` holds them (the app's "freeze the other dimensions": the remaining coordinates of a hit you
encoded or drew). :meth:`DrumSynth.play` decodes the code to a log-mel spectrogram and inverts it to audio,
and reports how long each part took.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from sepmodels.drums.cwae import DrumAutoencoder, LatentMap

INVERTERS = ("mcnn", "griffin-lim")


@dataclass(frozen=True)
class PadPoint:
    """A class and its first three principal coordinates (standard deviations); ``rest`` the others, or None
    for zeros."""

    label: int
    x: float = 0.0
    y: float = 0.0
    fine: float = 0.0
    rest: tuple[float, ...] | None = None


@dataclass
class Hit:
    """A synthesized hit: its code, spectrogram, audio and the time each part took (milliseconds)."""

    code: torch.Tensor  # [latent]
    log_mel: torch.Tensor  # [n_mels, frames]
    audio: np.ndarray  # [length] float32
    decode_ms: float
    invert_ms: float
    inverter: str
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def total_ms(self) -> float:
        return self.decode_ms + self.invert_ms


class DrumSynth:
    """Pad points to drum hits (see the module docstring).

    Arguments:
        autoencoder: the trained CWAE with its latent map.
        inverter: a learned mel-to-audio inverter for the same mel settings, or None for Griffin-Lim only.
        griffin_lim_iterations: iterations of Griffin-Lim (8: within 0.02 of 16's spectral convergence, in
            half the time; ``bench/drums.py``).
        default: the inverter :meth:`play` uses unless told: ``"griffin-lim"`` (the shipped MCNN is faster but
            further from the true spectrogram; ``bench/drums.py``) or ``"mcnn"``.
    """

    def __init__(self, autoencoder: DrumAutoencoder, inverter=None, griffin_lim_iterations: int = 8,
                 default: str = "griffin-lim") -> None:  # fmt: skip
        if default not in INVERTERS:
            raise ValueError(f"default must be one of {', '.join(INVERTERS)}, got {default!r}")
        if default == "mcnn" and inverter is None:
            raise ValueError("the MCNN cannot be the default inverter without an MCNN")
        if autoencoder.latent_map is None:
            raise ValueError("the autoencoder has no latent map: it was saved before training finished")
        if inverter is not None and inverter.config.mel != autoencoder.config.mel:
            raise ValueError(
                f"the inverter is for {inverter.config.mel}, the autoencoder's spectrograms are "
                f"{autoencoder.config.mel}"
            )
        self.autoencoder, self.inverter = autoencoder, inverter
        self.model = autoencoder.model.eval()
        self.griffin_lim_iterations = griffin_lim_iterations
        self.default = default

    @property
    def latent_map(self) -> LatentMap:
        return self.autoencoder.latent_map  # type: ignore[return-value]

    @property
    def classes(self) -> list[str]:
        return self.autoencoder.classes

    @property
    def sample_rate(self) -> int:
        return self.autoencoder.config.sample_rate

    @property
    def inverters(self) -> list[str]:
        """The inverters at hand, the default first."""
        if self.inverter is None:
            return ["griffin-lim"]
        return [self.default, *(name for name in INVERTERS if name != self.default)]

    def label(self, name: str | int) -> int:
        if isinstance(name, int):
            if not 0 <= name < len(self.classes):
                raise ValueError(f"class {name} is out of range 0..{len(self.classes) - 1}")
            return name
        try:
            return self.classes.index(name)
        except ValueError:
            raise ValueError(f"unknown class {name!r}; choose one of {', '.join(self.classes)}") from None

    # -- codes -----------------------------------------------------------------------------------------------
    def code(self, point: PadPoint) -> torch.Tensor:
        """The latent code ``[latent]`` of a pad point."""
        d = self.autoencoder.config.latent
        coords = torch.zeros(d)
        if point.rest is not None:
            if len(point.rest) != d:
                raise ValueError(f"rest must hold {d} principal coordinates, got {len(point.rest)}")
            coords = torch.tensor(point.rest, dtype=torch.float32)
        coords[: min(3, d)] = torch.tensor([point.x, point.y, point.fine][: min(3, d)])
        return self.latent_map.code(coords, self.label(point.label))

    def coordinates(self, code: torch.Tensor, label: int) -> torch.Tensor:
        """A code's principal coordinates ``[latent]`` in class ``label``'s standard deviations."""
        return self.latent_map.project(code, self.label(label))

    @torch.no_grad()
    def encode(self, audio: np.ndarray | torch.Tensor, label: int) -> torch.Tensor:
        """The code ``[latent]`` of a hit ``[length]`` (as the data set makes them: from its onset, peak 1)."""
        x = torch.as_tensor(np.asarray(audio, dtype=np.float32))[None]
        return self.model.encode(self.model.spectrogram(x), torch.tensor([self.label(label)]))[0]

    def random_rest(self, generator: torch.Generator) -> tuple[float, ...]:
        """A draw of every principal coordinate from the standard Gaussian (the CWAE's prior per class)."""
        return tuple(torch.randn(self.autoencoder.config.latent, generator=generator).tolist())

    # -- sound -----------------------------------------------------------------------------------------------
    @torch.no_grad()
    def play(self, point: PadPoint | None = None, code: torch.Tensor | None = None, label: int | None = None,
             inverter: str | None = None) -> Hit:  # fmt: skip
        """Decode a pad point (or ``code`` of class ``label``) and invert it; ``inverter`` is ``"mcnn"`` or
        ``"griffin-lim"`` (default: :attr:`default`)."""
        if (point is None) == (code is None):
            raise ValueError("give a pad point or a code, not both")
        inverter = inverter or self.inverters[0]
        if inverter not in self.inverters:
            raise ValueError(f"inverter {inverter!r} is not available; choose one of {', '.join(self.inverters)}")
        if point is not None:
            label, code = point.label, self.code(point)
        if label is None:
            raise ValueError("a code needs its class label")
        started = time.perf_counter()
        log_mel = self.model.decode(code[None], torch.tensor([self.label(label)]))
        decoded = time.perf_counter()
        if inverter == "mcnn":
            audio = self.inverter.invert(log_mel)[0]
        else:
            audio = self.model.logmel.griffin_lim(log_mel, iterations=self.griffin_lim_iterations)[0]
        done = time.perf_counter()
        return Hit(code, log_mel[0], audio.numpy().astype(np.float32), (decoded - started) * 1e3,
                   (done - decoded) * 1e3, inverter)  # fmt: skip


def load_synth(autoencoder: str | None = None, inverter: str | None = None, default: str = "griffin-lim"
               ) -> DrumSynth:  # fmt: skip
    """The shipped synthesizer, or the given checkpoints (``inverter="none"``: Griffin-Lim only)."""
    from sepmodels.drums.mcnn import DrumInverter

    ae = DrumAutoencoder.load(autoencoder)
    inv = None if inverter == "none" else DrumInverter.load(inverter)
    return DrumSynth(ae, inv, default=default if inv is not None else "griffin-lim")


__all__ = ["INVERTERS", "DrumSynth", "Hit", "PadPoint", "load_synth"]
