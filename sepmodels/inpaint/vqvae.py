"""A VQ-VAE over log-magnitude spectrograms: a note becomes a small grid of discrete codes (a codemap).

The encoder maps a standardised log-magnitude spectrogram ``[B, 1, F, frames]`` (:mod:`.spectrogram`) through
strided 2-D convolutions and residual blocks to ``[B, D, F / 8, frames / 8]``; each of those vectors is
replaced by its nearest codebook entry, and the decoder mirrors the encoder back to a spectrogram. For a 4 s
note at the default settings the codemap is 64 frequency rows by 32 time columns (each code covers 125 Hz by
128 ms), with 256 codes.

The quantizer is ``vector-quantize-pytorch``'s, with the three remedies the paper names and its own model
lacked in practice: the codebook initialised from the first batch (k-means over it), updated by exponential
moving averages rather than by gradients, and dead codes (EMA usage below ``dead_code``) restarted from
vectors of the current batch. The model counts those restarts and the batch's code perplexity for the
training log (:meth:`VQVAE.train_stats`).

The loss is the squared error of the standardised log-magnitude plus ``commitment`` times the encoder's
commitment loss. Standardisation per frequency row (learned from the training set before training, in the
model's buffers) replaces the raw linear power the paper's code regressed, whose squared error is dominated
by a few loud low bins.

Shapes: audio ``[B, T]`` at ``sample_rate``; spectrograms ``[B, F, frames]``; codemaps ``[B, F/8, ceil(frames/8)]``
(frames are padded with silence to a multiple of 8 and cropped after decoding).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from vector_quantize_pytorch import VectorQuantize

from sepmodels.checkpoint import CheckpointError, load_model_file, save_checkpoint
from sepmodels.inpaint.codes import perplexity
from sepmodels.inpaint.spectrogram import Standardizer, STFTConfig, griffin_lim, log_magnitude, with_phase
from sepmodels.nn.contract import ModelKind, TrainBatch


@dataclass(frozen=True)
class VQVAEConfig:
    """Size of a :class:`VQVAE`; see the module docstring."""

    n_fft: int = 1024
    hop: int = 256
    sample_rate: int = 16_000
    channels: tuple[int, ...] = (16, 32, 64)  # one strided stage each: frequency and time / 2 per stage
    res_blocks: int = 2  # residual blocks at the codemap's resolution, in the encoder and the decoder
    code_dim: int = 64
    codebook_size: int = 256
    commitment: float = 0.25
    decay: float = 0.95  # EMA decay of the codebook (and of the usage that decides restarts, within ~50 steps)
    dead_code: float = 2.0  # a code whose EMA usage (vectors per batch) falls below this is restarted

    def __post_init__(self) -> None:
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))  # a checkpoint gives a list
        STFTConfig(self.n_fft, self.hop)
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive, got {self.channels}")
        if (self.n_fft // 2) % self.downsample:
            raise ValueError(f"n_fft / 2 = {self.n_fft // 2} must be a multiple of 2^stages = {self.downsample}")
        for name in ("code_dim", "codebook_size", "sample_rate"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0 < self.decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {self.decay}")

    @property
    def downsample(self) -> int:
        return 2 ** len(self.channels)

    @property
    def stft(self) -> STFTConfig:
        return STFTConfig(self.n_fft, self.hop)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


VQVAE_PRESETS: dict[str, VQVAEConfig] = {
    "default": VQVAEConfig(),
    # a 4 s note: 128 bins x 501 frames, a 16 x 63 codemap
    "tiny": VQVAEConfig(n_fft=256, hop=128, channels=(4, 8, 8), res_blocks=1, code_dim=8, codebook_size=16),
}


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class VQVAE(nn.Module):
    """Spectrogram VQ-VAE (see the module docstring). ``groups`` must be 1 (mono notes); it is the registry's
    signature ``model_class(groups, config)``.

    Example:
        >>> model = VQVAE(1, VQVAE_PRESETS["tiny"]).eval()
        >>> codes = model.encode(model.spectrogram(torch.randn(2, 2048)))  # 17 frames, padded to 24
        >>> tuple(codes.shape), model.decode(codes, frames=17).shape[-2:]
        ((2, 16, 3), torch.Size([128, 17]))
    """

    kind: ClassVar[str] = "vqvae"

    def __init__(self, groups: int, config: VQVAEConfig) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError(f"a VQ-VAE models one mono signal, got {groups} groups")
        self.groups, self.config = groups, config
        c = config.channels
        self.standardize = Standardizer(config.stft.bins)
        down: list[nn.Module] = []
        width = 1
        for out in c:
            down += [nn.Conv2d(width, out, 4, stride=2, padding=1), nn.ReLU()]
            width = out
        self.encoder = nn.Sequential(
            *down,
            *[_Residual(width) for _ in range(config.res_blocks)],
            nn.ReLU(),
            nn.Conv2d(width, config.code_dim, 1),
        )
        self.quantizer = VectorQuantize(
            dim=config.code_dim, codebook_size=config.codebook_size, decay=config.decay, kmeans_init=True,
            threshold_ema_dead_code=config.dead_code, commitment_weight=1.0, accept_image_fmap=True,
        )  # fmt: skip
        up: list[nn.Module] = [nn.Conv2d(config.code_dim, width, 3, padding=1)]
        up += [_Residual(width) for _ in range(config.res_blocks)]
        for out in [*reversed(c[:-1]), c[0]]:
            up += [nn.ReLU(), nn.ConvTranspose2d(width, out, 4, stride=2, padding=1)]
            width = out
        up += [nn.ReLU(), nn.Conv2d(width, 1, 3, padding=1)]
        self.decoder = nn.Sequential(*up)
        self._restarts = 0
        self._last: dict[str, float] = {}

    # -- spectrograms -------------------------------------------------------------------------------------
    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-magnitude spectrogram ``[..., F, frames]`` of ``audio [..., T]`` (not standardised)."""
        return log_magnitude(audio, self.config.stft)

    def audio(self, log_mag: torch.Tensor, length: int, phase_of: torch.Tensor | None = None,
              iterations: int = 32) -> torch.Tensor:  # fmt: skip
        """Audio ``[..., length]`` from ``log_mag``: with the phase of ``phase_of`` (audio) if given, else by
        fast Griffin-Lim with ``iterations`` iterations."""
        if phase_of is not None:
            return with_phase(log_mag, phase_of, self.config.stft)
        return griffin_lim(log_mag, self.config.stft, length, iterations)

    def _padded(self, log_mag: torch.Tensor) -> torch.Tensor:
        """Standardised ``[B, 1, F, frames']`` with frames padded by silence to a multiple of the downsampling."""
        frames = log_mag.shape[-1]
        extra = -frames % self.config.downsample
        if extra:
            silence = math.log(self.config.stft.floor)
            log_mag = F.pad(log_mag, (0, extra), value=silence)
        return self.standardize(log_mag)[:, None]

    # -- codes --------------------------------------------------------------------------------------------
    def encode_latent(self, log_mag: torch.Tensor) -> torch.Tensor:
        """The encoder's continuous output ``[B, D, h, w]`` for ``log_mag [B, F, frames]``."""
        if log_mag.dim() != 3 or log_mag.shape[1] != self.config.stft.bins:
            raise ValueError(
                f"expected spectrograms [B, {self.config.stft.bins}, frames], got {tuple(log_mag.shape)}"
            )
        return self.encoder(self._padded(log_mag))

    def encode(self, log_mag: torch.Tensor) -> torch.Tensor:
        """The codemap ``[B, h, w]`` (long) of ``log_mag [B, F, frames]``."""
        with torch.no_grad():
            _, codes, _ = self.quantizer(self.encode_latent(log_mag))
        return codes

    def vectors(self, codes: torch.Tensor, keep_channels: list[int] | None = None) -> torch.Tensor:
        """Codebook vectors ``[B, D, h, w]`` of ``codes [B, h, w]``; ``keep_channels`` zeroes every other latent
        channel (the paper's channel ablation)."""
        if codes.dim() != 3:
            raise ValueError(f"expected codemaps [B, h, w], got {tuple(codes.shape)}")
        if codes.min() < 0 or codes.max() >= self.config.codebook_size:
            raise ValueError(f"codes must be in 0..{self.config.codebook_size - 1}")
        z = self.quantizer.get_output_from_indices(codes)  # [B, D, h, w]: the quantizer takes image maps
        if keep_channels is not None:
            bad = [c for c in keep_channels if not 0 <= c < self.config.code_dim]
            if bad or not keep_channels:
                raise ValueError(f"keep_channels must be a non-empty list in 0..{self.config.code_dim - 1}")
            kept = torch.zeros(self.config.code_dim, dtype=torch.bool, device=z.device)
            kept[list(keep_channels)] = True
            z = z * kept[None, :, None, None]
        return z

    def decode_latent(self, z: torch.Tensor, frames: int | None = None) -> torch.Tensor:
        """Log-magnitude ``[B, F, frames]`` from latent vectors ``[B, D, h, w]`` (cropped to ``frames``)."""
        out = self.standardize.inverse(self.decoder(z)[:, 0])
        return out if frames is None else out[..., :frames]

    def decode(self, codes: torch.Tensor, frames: int | None = None,
               keep_channels: list[int] | None = None) -> torch.Tensor:  # fmt: skip
        """Log-magnitude spectrogram ``[B, F, frames]`` of a codemap ``[B, h, w]``."""
        return self.decode_latent(self.vectors(codes, keep_channels), frames)

    def silence_code(self) -> int:
        """The code of silence: the one the encoder gives a silent clip most often."""
        frames = 4 * self.config.downsample
        silent = torch.full((1, self.config.stft.bins, frames), math.log(self.config.stft.floor))
        silent = silent.to(self.standardize.mean.device)
        return int(torch.mode(self.encode(silent).flatten()).values)

    # -- training -----------------------------------------------------------------------------------------
    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass over clips ``[B, T]``: (reconstruction error per element of the standardised
        spectrogram, commitment loss, codes ``[B, h, w]``)."""
        target = self._padded(self.spectrogram(audio))
        z = self.encoder(target)
        quantized, codes, commit = self.quantizer(z)
        recon = self.decoder(quantized)
        if self.training:
            self._note(codes)
        return F.mse_loss(recon, target), commit.sum(), codes

    @torch.no_grad()
    def _note(self, codes: torch.Tensor) -> None:
        # A restarted code's EMA usage is set to exactly the threshold in this step; any other code's is an
        # average that does not land on it.
        reset = float(self.quantizer._codebook.reset_cluster_size)
        self._restarts += int((self.quantizer._codebook.cluster_size == reset).sum())
        counts = torch.bincount(codes.flatten(), minlength=self.config.codebook_size)
        self._last = {"perplexity": perplexity(counts), "codes_used": float((counts > 0).sum())}

    def train_stats(self) -> dict[str, float]:
        """Codebook health for the training log: the last batch's code perplexity and codes used, and the
        restarts since the previous call."""
        stats = dict(self._last, restarts=float(self._restarts))
        self._restarts = 0
        return stats

    @torch.no_grad()
    def prepare(self, clips: torch.Tensor) -> None:
        """Learn the per-frequency standardisation from training clips ``[N, T]``."""
        self.standardize.fit(self.spectrogram(clips))

    def valid_length(self, length: int) -> int:
        return length


class NoteCodec:
    """A trained :class:`VQVAE` with its metadata, as training writes it and the inpainting app loads it.

    Arguments:
        model: the VQ-VAE.
        meta: training metadata (steps, data, the training's energy), stored in the checkpoint.
    """

    CLASS = "VQVAE"

    def __init__(self, model: VQVAE, meta: dict[str, Any] | None = None) -> None:
        self.model, self.meta = model, dict(meta or {})  # training saves it mid-run: its mode is left alone

    @property
    def config(self) -> VQVAEConfig:
        return self.model.config

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    def payload(self) -> dict[str, Any]:
        return {
            "class": self.CLASS,
            "config": self.config.to_dict(),
            "state_dict": self.model.state_dict(),
            "sources": ["note"],
            "sample_rate": self.sample_rate,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> NoteCodec:
        """Load a VQ-VAE checkpoint (``train --model vqvae``), or the shipped one when ``path`` is None; a file
        of another kind raises :class:`CheckpointError` in one line."""
        where = default_codec_path() if path is None else Path(path)

        def build(ckpt: dict[str, Any]) -> VQVAE:
            model = VQVAE(1, VQVAEConfig(**ckpt["config"]))
            model.load_state_dict(ckpt["state_dict"])
            return model

        model, ckpt = load_model_file(where, cls.CLASS, "a VQ-VAE (train --model vqvae)", build)
        if not bool(model.standardize.fitted):
            raise CheckpointError(f"{where} was saved before its standardisation was learned")
        return cls(model.to(device).eval(), ckpt.get("meta"))


def default_codec_path() -> Path:
    """The shipped VQ-VAE of notes."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "notes_vqvae.pt"


def _vqvae_loss(model: Any, batch: TrainBatch) -> torch.Tensor:
    recon, commit, _ = model(batch.clean[:, 0])
    return recon + batch.options.commitment * commit


def _prepare(model: VQVAE, data: Any, generator: torch.Generator) -> None:
    model.prepare(data.sample(256, generator))


KIND = ModelKind(
    name="vqvae",
    model_class=VQVAE,
    config_class=VQVAEConfig,
    presets=VQVAE_PRESETS,
    objective="spectrogram reconstruction + commitment",
    loss=_vqvae_loss,
    nats=False,
    role="codec",
    data=("notes",),
    prepare=_prepare,
    product=lambda model, _names, _rate, meta: NoteCodec(model, meta),
    stats=("perplexity", "codes_used", "restarts"),
    summary="a VQ-VAE over note spectrograms, for codemap inpainting (--data notes)",
)

__all__ = ["KIND", "VQVAE", "VQVAE_PRESETS", "NoteCodec", "VQVAEConfig", "default_codec_path"]
