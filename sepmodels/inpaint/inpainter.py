"""A trained notes VQ-VAE with its codemap priors: analyse a clip, edit its codemap, hear the result.

:class:`CodemapPriors` is what ``sepmodels fit-codes`` writes beside a VQ-VAE checkpoint: the codemap priors
fitted on the training notes' codemaps (naive Bayes over time, frequency and both, the masked transformer,
the uniform floor), the codebook's usage over the training set, and each prior's inpainting accuracy on the
held-out notes. :class:`Inpainter` joins the two for the app, the notebook and the command line:

- :meth:`Inpainter.analyse`: a clip's spectrogram, codemap and reconstruction;
- edits of a codemap inside a mask: :meth:`~Inpainter.inpaint` (a prior resamples it),
  :meth:`~Inpainter.replace` (another clip's codes there), :meth:`~Inpainter.erase` (the silence code); the
  paper's channel ablation is ``keep_channels`` of :meth:`~Inpainter.decode`;
- :meth:`Inpainter.decode` and :meth:`Inpainter.listen`: spectrogram and audio, each timed
  (:attr:`Inpainter.timings`, milliseconds) so the app can say where the time goes.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from sepmodels.checkpoint import CheckpointError, first_line, load_checkpoint, save_checkpoint
from sepmodels.energy import EnergyMeter
from sepmodels.inpaint.codes import (
    CodePrior,
    NaiveBayesCodes,
    TransformerCodes,
    UniformCodes,
    inpainting_accuracy,
    perplexity,
    prior_from_state,
    random_box_masks,
)
from sepmodels.inpaint.spectrogram import magnitude
from sepmodels.inpaint.vqvae import NoteCodec
from sepmodels.metrics import spectral_convergence

# The masked transformer's size: small enough to train in minutes and fill a box in well under a second on
# two CPU cores. On 64 x 32 codemaps there, dim 32 on 32 x 32 windows takes 2.4 s a training step and 0.5 s a
# 16 x 8 box; on 16 x 16 windows 0.14 s and about 50 ms.
TRANSFORMER: dict[str, Any] = {"dim": 32, "layers": 2, "heads": 4, "window": (16, 16), "rounds": 6}


def default_codes_path() -> Path:
    """The shipped codemap priors of the shipped VQ-VAE."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "notes_codes.pt"


@dataclass
class CodemapPriors:
    """Codemap priors fitted for one VQ-VAE, with the codebook's usage and the priors' accuracy.

    Attributes:
        priors: by name (the first is the default).
        usage: how often each code occurs in the training codemaps, ``[K]``.
        accuracy: each prior's fraction of masked cells recovered on held-out codemaps (temperature 0).
        meta: where they came from (the VQ-VAE's step, the notes, the energy of fitting).
    """

    priors: dict[str, CodePrior]
    usage: torch.Tensor
    accuracy: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    CLASS = "CodemapPriors"

    @property
    def perplexity(self) -> float:
        """``exp(entropy)`` of the codes' usage over the training codemaps: how many codes are in real use."""
        return perplexity(self.usage)

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, {
            "class": self.CLASS, "priors": {name: prior.state() for name, prior in self.priors.items()},
            "usage": self.usage, "accuracy": dict(self.accuracy), "meta": dict(self.meta),
        })  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> CodemapPriors:
        where = default_codes_path() if path is None else Path(path)
        ckpt = load_checkpoint(where)
        if ckpt.get("class") != cls.CLASS:
            raise CheckpointError(
                f"{where} holds a {ckpt.get('class')!r}, not codemap priors (sepmodels fit-codes)"
            )
        try:
            priors = {name: prior_from_state(state) for name, state in ckpt["priors"].items()}
            return cls(priors, ckpt["usage"], dict(ckpt.get("accuracy", {})), dict(ckpt.get("meta", {})))
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            first = first_line(err)
            raise CheckpointError(f"{where} does not match its own description ({first[:120]})") from None


def codemaps_of(codec: NoteCodec, clips: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """The codemaps ``[N, h, w]`` of clips ``[N, T]``."""
    model = codec.model
    device = model.standardize.mean.device
    with torch.no_grad():
        maps = [
            model.encode(model.spectrogram(clips[i : i + batch].to(device))).cpu()
            for i in range(0, len(clips), batch)
        ]
    return torch.cat(maps)


def fit_codemap_priors(
    codec: NoteCodec,
    train: torch.Tensor,
    test: torch.Tensor,
    transformer_steps: int = 1500,
    seed: int = 0,
    progress: bool = False,
    say: Callable[[str], None] = lambda _line: None,
    energy: str = "codecarbon",
    transformer: dict[str, Any] | None = None,
) -> CodemapPriors:
    """Fit every codemap prior on the codemaps of ``train`` clips ``[N, T]`` and score each on ``test`` clips
    (random boxes of 10 to 50 % of each axis, the same boxes for every prior; the learned priors at temperature
    0, the uniform floor by a draw). The energy of the fitting is measured like a training's (``energy``:
    ``codecarbon`` or ``estimate``); ``transformer`` overrides :data:`TRANSFORMER`, its size."""
    K = codec.config.codebook_size
    meter = EnergyMeter(use_codecarbon=energy == "codecarbon").start()
    say(f"encoding {len(train)} training and {len(test)} held-out notes")
    train_maps, test_maps = codemaps_of(codec, train), codemaps_of(codec, test)
    shape = tuple(train_maps.shape[1:])
    g = torch.Generator().manual_seed(seed)
    priors: dict[str, CodePrior] = {}
    for neighbours in ("time", "both", "freq"):  # the first is the app's default: the best of the three here
        prior = NaiveBayesCodes(K, neighbours=neighbours).fit(train_maps)
        priors[prior.name] = prior
    say(f"training the masked transformer ({transformer_steps} steps)")
    transformer = TransformerCodes(K, shape=shape, **(transformer or TRANSFORMER)).fit(
        train_maps, steps=transformer_steps, batch_size=16, generator=g, progress=progress
    )
    priors[transformer.name] = transformer
    uniform = UniformCodes(K).fit(train_maps)
    priors[uniform.name] = uniform
    masks = random_box_masks(len(test_maps), shape, torch.Generator().manual_seed(seed + 1))
    accuracy = {}
    for name, prior in priors.items():
        # The learned priors at their most probable code; the floor by a draw (its argmax is code 0 everywhere).
        temperature = 1.0 if isinstance(prior, UniformCodes) else 0.0
        accuracy[name] = inpainting_accuracy(
            prior, test_maps, masks, temperature, torch.Generator().manual_seed(seed)
        )
        say(f"{name}: {100 * accuracy[name]:.1f} % of masked cells recovered")
    energy = meter.read()
    meter.stop()
    usage = torch.bincount(train_maps.flatten(), minlength=K)
    meta = {"codec_step": codec.meta.get("step"), "train_notes": len(train), "test_notes": len(test),
            "shape": list(shape), "transformer_steps": transformer_steps, "seed": seed,
            "energy": asdict(energy)}  # fmt: skip
    return CodemapPriors(priors, usage, accuracy, meta)


def _lsd(log_mag: torch.Tensor, other: torch.Tensor, loud: torch.Tensor) -> torch.Tensor:
    """Log-spectral distance ``[B]`` in dB, averaged over the ``loud`` frames."""
    per_frame = ((20 * (log_mag - other) / math.log(10)) ** 2).mean(dim=1).sqrt()
    return (per_frame * loud).sum(1) / loud.sum(1)


@torch.no_grad()
def reconstruction_quality(codec: NoteCodec, clips: torch.Tensor, iterations: int = 16,
                           batch: int = 16) -> dict[str, float]:  # fmt: skip
    """How well the VQ-VAE reproduces clips ``[N, T]``, means over clips:

    - ``lsd_db``: log-spectral distance, the RMS over frequency of the dB difference of magnitudes, averaged
      over frames (frames more than 60 dB under the clip's loudest left out: silence is not scored);
    - ``spectral_convergence``: ``||S - S_hat|| / ||S||`` of the magnitudes;
    - ``si_sdr_gl`` (dB): SI-SDR of the reconstruction's audio by fast Griffin-Lim, beside ``si_sdr_gl_original``,
      Griffin-Lim of the original magnitudes (the best Griffin-Lim can do, its reference point), and
      ``si_sdr_phase``: the reconstruction's magnitudes with the original phase;
    - the reference point of the first two: ``lsd_db_average`` and ``spectral_convergence_average``, the same
      scores of the training set's average log-spectrum (the standardisation's mean) in every frame, a
      "reconstruction" that knows nothing of the clip.
    """
    from sepmodels.metrics import si_sdr

    model = codec.model.eval()
    cfg = model.config.stft
    sums: dict[str, float] = {}
    for i in range(0, len(clips), batch):
        audio = clips[i : i + batch]
        log_mag = model.spectrogram(audio)
        recon = model.decode(model.encode(log_mag), frames=log_mag.shape[-1])
        average = model.standardize.mean[None, :, None].expand_as(log_mag)
        mag = magnitude(log_mag, cfg)
        frame_db = 10 * torch.log10((mag**2).mean(dim=1) + 1e-20)  # [B, frames]
        loud = frame_db > frame_db.amax(dim=1, keepdim=True) - 60

        length = audio.shape[-1]
        scores = {
            "lsd_db": _lsd(log_mag, recon, loud),
            "lsd_db_average": _lsd(log_mag, average, loud),
            "spectral_convergence": spectral_convergence(magnitude(recon, cfg), mag),
            "spectral_convergence_average": spectral_convergence(magnitude(average, cfg), mag),
            "si_sdr_gl": si_sdr(model.audio(recon, length, iterations=iterations), audio),
            "si_sdr_gl_original": si_sdr(model.audio(log_mag, length, iterations=iterations), audio),
            "si_sdr_phase": si_sdr(model.audio(recon, length, phase_of=audio), audio),
        }
        for name, value in scores.items():
            sums[name] = sums.get(name, 0.0) + float(value.sum())
    return {name: total / len(clips) for name, total in sums.items()}


@dataclass
class Analysis:
    """One clip seen by the VQ-VAE: audio ``[T]``, log-magnitude ``[F, frames]``, codemap ``[h, w]`` and the
    reconstruction's log-magnitude ``[F, frames]``."""

    audio: torch.Tensor
    log_mag: torch.Tensor
    codes: torch.Tensor
    recon: torch.Tensor


class Inpainter:
    """A notes VQ-VAE and its codemap priors (see the module docstring).

    Arguments:
        codec: the VQ-VAE.
        codes: its codemap priors.
        iterations: Griffin-Lim iterations for :meth:`listen`.
    """

    def __init__(self, codec: NoteCodec, codes: CodemapPriors, iterations: int = 16) -> None:
        self.codec, self.codes, self.iterations = codec, codes, iterations
        self.model = codec.model.eval()
        self.silence = self.model.silence_code()
        self.timings: dict[str, float] = {}

    @classmethod
    def load(cls, codec_path: str | os.PathLike[str] | None = None,
             codes_path: str | os.PathLike[str] | None = None) -> Inpainter:  # fmt: skip
        """The VQ-VAE and codemap priors at these paths (the shipped ones where None)."""
        codec = NoteCodec.load(codec_path)
        codes = CodemapPriors.load(codes_path)
        K = codec.config.codebook_size
        if any(prior.codebook_size != K for prior in codes.priors.values()):
            raise CheckpointError(
                f"the codemap priors are not for this VQ-VAE's {K} codes; run sepmodels fit-codes"
            )
        return cls(codec, codes)

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    @property
    def prior_names(self) -> list[str]:
        return list(self.codes.priors)

    def _timed(self, name: str, work: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = work()
        self.timings[name] = 1000 * (time.perf_counter() - start)
        return out

    # -- geometry -----------------------------------------------------------------------------------------
    def row_hz(self, row: int) -> float:
        """The lowest frequency (Hz) a codemap row covers."""
        cfg = self.model.config
        return row * cfg.downsample * cfg.sample_rate / cfg.n_fft

    def column_seconds(self, column: int) -> float:
        """The start time (s) of a codemap column."""
        cfg = self.model.config
        return column * cfg.downsample * cfg.hop / cfg.sample_rate

    # -- analysis and edits -------------------------------------------------------------------------------
    @torch.no_grad()
    def analyse(self, audio: torch.Tensor) -> Analysis:
        """Spectrogram, codemap and reconstruction of a mono clip ``[T]`` at :attr:`sample_rate`."""
        if audio.dim() != 1:
            raise ValueError(f"expected a mono clip [T], got {tuple(audio.shape)}")
        log_mag = self.model.spectrogram(audio[None])
        codes = self.model.encode(log_mag)
        recon = self.model.decode(codes, frames=log_mag.shape[-1])
        return Analysis(audio, log_mag[0], codes[0], recon[0])

    def inpaint(self, codes: torch.Tensor, mask: torch.Tensor, prior: str, temperature: float = 1.0,
                seed: int = 0) -> torch.Tensor:  # fmt: skip
        """``codes [h, w]`` with the cells of ``mask`` resampled by the prior called ``prior``."""
        if prior not in self.codes.priors:
            raise ValueError(f"unknown codemap prior {prior!r}; choose one of {', '.join(self.codes.priors)}")
        g = torch.Generator().manual_seed(seed)
        chosen = self.codes.priors[prior]
        width = getattr(chosen, "shape", (0, codes.shape[1]))[1]  # the transformer knows one map width
        if width == codes.shape[1]:
            return self._timed("resample", lambda: chosen.sample(codes, mask, temperature, g))
        return self._timed("resample", lambda: self._sample_in_window(chosen, codes, mask, temperature, g, width))

    def _sample_in_window(self, prior: CodePrior, codes: torch.Tensor, mask: torch.Tensor, temperature: float,
                          generator: torch.Generator, width: int) -> torch.Tensor:  # fmt: skip
        """Sample with a prior trained on maps ``width`` columns wide: a shorter map is padded with silence
        (notes end in it), a longer one is cut to the ``width`` columns around the box."""
        have = codes.shape[1]
        if have < width:
            pad = torch.full((codes.shape[0], width - have), self.silence, dtype=codes.dtype)
            wide_mask = torch.cat([mask, torch.zeros_like(pad, dtype=torch.bool)], dim=1)
            return prior.sample(torch.cat([codes, pad], dim=1), wide_mask, temperature, generator)[:, :have]
        cols = mask.any(dim=0).nonzero()[:, 0]
        if len(cols) == 0:
            return codes.clone()
        lo, hi = int(cols.min()), int(cols.max()) + 1
        if hi - lo > width:
            raise ValueError(
                f"the box spans {hi - lo} columns; this prior sees {width} at most: draw a narrower box"
            )
        start = min(max((lo + hi - width) // 2, 0), have - width)
        out = codes.clone()
        window = slice(start, start + width)
        out[:, window] = prior.sample(codes[:, window], mask[:, window], temperature, generator)
        return out

    @staticmethod
    def replace(codes: torch.Tensor, other: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``codes`` with ``other``'s codes in the cells of ``mask`` (the same rows and columns; ``other`` is
        padded with its last column or cropped to fit)."""
        if other.shape[0] != codes.shape[0]:
            raise ValueError(f"the codemaps have {codes.shape[0]} and {other.shape[0]} rows")
        width = codes.shape[1]
        if other.shape[1] < width:
            other = torch.cat([other, other[:, -1:].expand(-1, width - other.shape[1])], dim=1)
        return torch.where(mask, other[:, :width], codes)

    def erase(self, codes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``codes`` with the silence code in the cells of ``mask``."""
        return codes.masked_fill(mask, self.silence)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, frames: int, keep_channels: list[int] | None = None) -> torch.Tensor:
        """Log-magnitude ``[F, frames]`` of a codemap ``[h, w]``."""
        return self._timed("decode", lambda: self.model.decode(codes[None], frames, keep_channels)[0])

    @torch.no_grad()
    def listen(self, log_mag: torch.Tensor, length: int, phase_of: torch.Tensor | None = None) -> torch.Tensor:
        """Audio ``[length]``: the original clip's phase when ``phase_of`` is given, else fast Griffin-Lim."""
        phase = None if phase_of is None else phase_of[None]
        return self._timed("audio", lambda: self.model.audio(log_mag[None], length, phase, self.iterations)[0])


__all__ = [
    "Analysis",
    "CodemapPriors",
    "Inpainter",
    "codemaps_of",
    "default_codes_path",
    "fit_codemap_priors",
    "reconstruction_quality",
]
