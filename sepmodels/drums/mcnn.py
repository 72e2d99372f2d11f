"""A multi-head convolutional network (MCNN) that turns the log-mel of a drum hit back into its waveform.

After Arık, Jun & Diamos (2019) as the Neural Drum Machine adapts it to mel spectrograms. Each of ``heads``
heads is a stack of 1-D transposed convolutions (stride 2, ELU after each), from the ``n_mels`` bands at the
frame rate up to ``channels[-1]`` channels at the sample rate (eight layers double 64 frames into 16 384
samples, the hop of 256), and a pointwise convolution down to one channel. Every head's waveform is
multiplied by a trainable scalar, the heads are summed, and a scaled softsign ``scale * x / (1 + |x|)``
(trainable scale, 1 at the start) keeps the result in about (-1, 1).

The transposed convolutions are computed in their sub-pixel form (:class:`Upsample`), and the heads run as
one grouped convolution per layer (``groups=heads``): the same independent stacks, in one call each instead
of ``heads``. Each layer's even and odd output samples take ``kernel / 2`` taps centred on the input sample
they fall on, so frame ``t`` reaches samples ``t * hop - (kernel / 2 - 1) (hop - 1)`` to
``t * hop + (kernel / 2) (hop - 1)``: around ``t * hop``, where :class:`~.mel.LogMel`'s centred STFT put it
(half a hop more to the right than to the left; ±1 500 samples or more at the default, past the Hann
window's ±512).

Input: the log-mel divided by ``log(1 / floor)``, a fixed rescaling that puts silence (the floor) at -1 and
a mel magnitude of 1 at 0 (a full-scale hit's loudest bands reach about +1). No statistics are learned, so
there is nothing to prepare.

The loss is the paper's: spectral convergence of the linear STFT magnitude (Frobenius norm of the error
over the target's) plus ``mel_weight`` times the mean absolute difference of ``log(mel + floor)``, both
through :class:`~.mel.LogMel`; the phase terms of the original MCNN are dropped, as the paper does. The
paper's padding mask (and its bias-free convolutions) is left out: it was trained to cut what the network
leaks into the zero-padded end of a short clip. Our hits are one-shots that ring out (or are cut with a
fade) and are zero-padded only after that, and the log-mel term, whose floor sits about 90 dB under a hit,
already punishes sound where the target is silent.

Shapes: log-mel ``[B, n_mels, frames]``; audio ``[B, frames * hop]`` (``length`` samples at
``sample_rate`` Hz for a whole hit).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sepmodels.checkpoint import load_model_file, save_checkpoint
from sepmodels.drums.mel import LogMel, MelConfig
from sepmodels.metrics import spectral_convergence
from sepmodels.nn.contract import ModelKind, TrainBatch


@dataclass(frozen=True)
class MCNNConfig(MelConfig):
    """Size of an :class:`MCNN` and its loss weights, after its spectrograms' :class:`MelConfig` fields."""

    # Two heads, not the paper's eight: the cost of the full-rate layers grows with the heads, and the default
    # must invert a hit in a few ms and train in minutes on two CPU cores.
    heads: int = 2
    channels: tuple[int, ...] = (32, 32, 16, 16, 8, 8, 4, 4)  # per head, after each stride-2 layer: 2^8 = hop
    kernel: int = 10  # of each transposed convolution: 2 more than a multiple of 4 (see Upsample)
    sc_weight: float = 1.0  # spectral convergence
    # mean |log-mel difference| in nats: it falls much faster than the spectral convergence, which a larger
    # weight holds back
    mel_weight: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))  # a checkpoint gives a list
        mel = self.mel
        if self.heads < 1:
            raise ValueError(f"heads must be at least 1, got {self.heads}")
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive, one per layer, got {self.channels}")
        if 2 ** len(self.channels) != mel.hop:
            raise ValueError(
                f"the {len(self.channels)} stride-2 layers upsample by {2 ** len(self.channels)}, not the hop "
                f"({mel.hop}): give log2(hop) channels"
            )
        if self.kernel < 2 or self.kernel % 4 != 2:
            raise ValueError(f"kernel must be 2 more than a multiple of 4 (2, 6, 10, 14, ...), got {self.kernel}")
        if self.sc_weight < 0 or self.mel_weight < 0 or self.sc_weight + self.mel_weight == 0:
            raise ValueError(
                f"sc_weight and mel_weight must be non-negative, not both zero, got {self.sc_weight}, "
                f"{self.mel_weight}"
            )


MCNN_PRESETS: dict[str, MCNNConfig] = {
    "default": MCNNConfig(),
    # the tiny CWAE's spectrograms (a 512-point FFT, 32 bands), so the two play together in tests and notebooks
    "tiny": MCNNConfig(n_fft=512, n_mels=32, heads=1, channels=(8, 8, 4, 4, 4, 4, 2, 2), kernel=6),
}


class Upsample(nn.Module):
    """A stride-2 transposed convolution ``[B, c_in, L] -> [B, c_out, 2 L]`` in its sub-pixel form.

    One ``Conv1d`` of ``kernel / 2`` taps gives the even and the odd output samples of every channel, which
    are interleaved; a bias per output channel follows. This is exactly ``nn.ConvTranspose1d(c_in, c_out,
    kernel, stride=2, padding=kernel / 2 - 1, groups=groups)`` (tested), reparametrised: PyTorch's grouped
    transposed convolution took about 3 times longer on two CPU cores at these widths (a few channels per
    group).
    ``kernel / 2`` must be odd, so that each output sample's taps are centred on the input sample it falls on.

    Arguments:
        c_in, c_out: channels in and out (all groups together).
        kernel: the transposed convolution's kernel length, 2 more than a multiple of 4.
        groups: independent blocks of channels (the heads).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, groups: int = 1) -> None:
        super().__init__()
        taps = kernel // 2
        self.conv = nn.Conv1d(c_in, 2 * c_out, taps, padding=taps // 2, groups=groups, bias=False)
        # He's initialisation: PyTorch's default shrinks the signal about twofold a layer, 2^-8 over a head
        nn.init.kaiming_normal_(self.conv.weight, nonlinearity="relu")
        self.bias = nn.Parameter(torch.zeros(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases = self.conv(x)  # [B, 2 c_out, L]: channel 2o gives output o's even samples, 2o + 1 its odd ones
        B, C2, L = phases.shape
        out = phases.view(B, C2 // 2, 2, L).transpose(2, 3).reshape(B, C2 // 2, 2 * L)
        return out + self.bias[:, None]


class MCNN(nn.Module):
    """Multi-head convolutional mel-to-waveform inverter (see the module docstring). ``groups`` must be 1 (mono
    hits); it is the registry's signature ``model_class(groups, config)``.

    Example:
        >>> model = MCNN(1, MCNN_PRESETS["tiny"])
        >>> log_mel = model.mel(torch.randn(3, 16_384))  # [3, 32, 64]: 32 bands, hop 256
        >>> tuple(model.invert(log_mel).shape)
        (3, 16384)

    References:
        Arık, Jun & Diamos, "Fast spectrogram inversion using multi-head convolutional neural networks",
        IEEE Signal Processing Letters 26(1), 2019.
    """

    kind: ClassVar[str] = "mcnn"

    def __init__(self, groups: int, config: MCNNConfig) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError(f"an MCNN inverts one mono signal, got {groups} groups")
        self.groups, self.config = groups, config
        self.mel = LogMel(config.mel)
        H, k = config.heads, config.kernel
        layers: list[nn.Module] = []
        width = config.n_mels
        for i, out in enumerate(config.channels):
            # the first layer reads the shared input, so each head's slice of it is that head's own first layer
            layers += [Upsample(width if i == 0 else H * width, H * out, k, groups=1 if i == 0 else H), nn.ELU()]
            width = out
        layers.append(nn.Conv1d(H * width, H, 1, groups=H))
        self.heads = nn.Sequential(*layers)
        # the heads' waveforms start about unit-rms: summed at 0.1 / H each, the first output is about as loud as
        # a hit rather than pinned to the softsign's ends
        self.head_weight = nn.Parameter(torch.full((H,), 0.1 / H))
        self.scale = nn.Parameter(torch.ones(()))
        self._last: dict[str, torch.Tensor] = {}

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Audio ``[B, frames * hop]`` for ``log_mel [B, n_mels, frames]``."""
        if log_mel.dim() != 3 or log_mel.shape[1] != self.config.n_mels:
            raise ValueError(f"expected log-mel [B, {self.config.n_mels}, frames], got {tuple(log_mel.shape)}")
        x = log_mel / math.log(1 / self.config.floor)  # silence at -1
        waves = self.heads(x)  # [B, H, frames * hop]: one waveform per head
        summed = torch.einsum("bht,h->bt", waves, self.head_weight)
        return self.scale * F.softsign(summed)

    @torch.no_grad()
    def invert(self, log_mel: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` without gradients."""
        return self(log_mel)

    def spectral_losses(self, estimate: torch.Tensor, magnitude: torch.Tensor,
                        log_mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Batch means of (spectral convergence, mean absolute log-mel difference in nats) of ``estimate
        [B, length]`` against a hit's STFT ``magnitude`` and ``log_mel``; noted for :meth:`train_stats`."""
        estimated = self.mel.magnitude(estimate)
        convergence = spectral_convergence(estimated, magnitude).mean()
        distance = (self.mel.from_magnitude(estimated) - log_mel).abs().mean()
        self._last = {"spectral_convergence": convergence.detach(), "log_mel_l1": distance.detach()}
        return convergence, distance

    def train_stats(self) -> dict[str, float]:
        """The last batch's spectral convergence and log-mel L1 (nats), for the training log."""
        return {name: float(value) for name, value in self._last.items()}

    def valid_length(self, length: int) -> int:
        """The shortest audio the model gives that covers ``length`` samples: whole hops."""
        return -(-length // self.config.hop) * self.config.hop


class DrumInverter:
    """A trained :class:`MCNN` with its metadata, as training writes it and the drum machine loads it.

    Arguments:
        model: the MCNN.
        meta: training metadata (steps, data, the training's energy), stored in the checkpoint.
    """

    CLASS = "MCNN"

    def __init__(self, model: MCNN, meta: dict[str, Any] | None = None) -> None:
        self.model, self.meta = model, dict(meta or {})  # training saves it mid-run: its mode is left alone

    @property
    def config(self) -> MCNNConfig:
        return self.model.config

    @property
    def sample_rate(self) -> int:
        return self.model.config.sample_rate

    def invert(self, log_mel: torch.Tensor) -> torch.Tensor:
        """Audio ``[..., frames * hop]`` for log-mel ``[..., n_mels, frames]`` (on the model's device)."""
        lead = log_mel.shape[:-2]
        device = self.model.head_weight.device
        audio = self.model.invert(log_mel.reshape(-1, *log_mel.shape[-2:]).to(device))
        return audio.reshape(*lead, audio.shape[-1])

    def payload(self) -> dict[str, Any]:
        return {
            "class": self.CLASS,
            "config": self.config.to_dict(),
            "state_dict": self.model.state_dict(),
            "sources": ["hit"],
            "sample_rate": self.sample_rate,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu") -> DrumInverter:
        """Load an MCNN checkpoint (``train --model mcnn``), or the shipped one when ``path`` is None; a file of
        another kind raises :class:`CheckpointError` in one line."""
        where = default_inverter_path() if path is None else Path(path)

        def build(ckpt: dict[str, Any]) -> MCNN:
            model = MCNN(1, MCNNConfig(**ckpt["config"]))
            model.load_state_dict(ckpt["state_dict"])
            return model

        model, ckpt = load_model_file(where, cls.CLASS, "an MCNN (train --model mcnn)", build)
        return cls(model.to(device).eval(), ckpt.get("meta"))


def default_inverter_path() -> Path:
    """The shipped MCNN of drum hits."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "drums_mcnn.pt"


def _mcnn_loss(model: Any, batch: TrainBatch) -> torch.Tensor:
    inner = getattr(model, "module", model)  # a DDP or compiled wrapper: the MCNN's LogMel and losses
    audio = batch.clean[:, 0]  # [B, length]
    with torch.no_grad():
        magnitude = inner.mel.magnitude(audio)
        log_mel = inner.mel.from_magnitude(magnitude)
    convergence, distance = inner.spectral_losses(model(log_mel), magnitude, log_mel)
    return batch.options.sc_weight * convergence + batch.options.mel_weight * distance


KIND = ModelKind(
    name="mcnn",
    model_class=MCNN,
    config_class=MCNNConfig,
    presets=MCNN_PRESETS,
    objective="spectral convergence + log-mel L1",
    loss=_mcnn_loss,
    nats=False,
    role="codec",
    data=("drums",),
    product=lambda model, _names, _rate, meta: DrumInverter(model, meta),
    stats=("spectral_convergence", "log_mel_l1"),
    summary="a multi-head convolutional mel-to-waveform inverter for drum hits (--data drums)",
)

__all__ = ["KIND", "MCNN", "MCNN_PRESETS", "DrumInverter", "MCNNConfig", "Upsample", "default_inverter_path"]
