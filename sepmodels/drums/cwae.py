"""A conditional Wasserstein autoencoder (CWAE) over log-mel spectrograms of drum hits.

After the Neural Drum Machine paper: an encoder maps a hit's log-mel spectrogram (:mod:`.mel`, ``[128, 64]``),
standardised per element, and its class to a latent code ``z`` (64 numbers); a decoder maps ``z`` and the
class back. Both are strided 2-D convolutions, each followed by *conditional* batch normalisation (the scale
and shift of each channel are looked up by class; Perez et al., 2017) and a ReLU, with fully connected layers
between the convolutions and the code. The decoder mirrors the encoder with transposed convolutions.

The loss is the squared error of the standardised spectrogram plus ``beta`` times the mean over classes of
``MMD^2(q_c(z), N(0, I))``: each class's codes are pulled toward its *own* standard Gaussian (one MMD over
all classes would let the classes share the space however they like, and a class could not be sampled on
its own). The MMD is the unbiased U-statistic with an inverse multiquadratic kernel ``C / (C + |x - y|^2)``
summed over the scales ``C = 2 d s`` of Tolstikhin et al. (2017) (:func:`mmd2`). Each class needs enough
codes per batch for the estimate, so batches are balanced (:meth:`sepmodels.data.drums.DrumsData.batch`).

After training, :meth:`CWAE.fit_latent_map` encodes training hits and keeps, per class, a principal component
analysis of its codes and a sample of them (:class:`LatentMap`): the app's XY pad moves along the first two
components, its fine slider along the third.

Shapes: audio ``[B, length]``; spectrograms ``[B, n_mels, frames]``; codes ``[B, latent]``; labels ``[B]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sepmodels.checkpoint import CheckpointError, load_model_file, save_checkpoint
from sepmodels.drums.mel import LogMel, MelConfig
from sepmodels.nn.contract import ModelKind, TrainBatch

IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def mmd2(x: torch.Tensor, y: torch.Tensor, scales: tuple[float, ...] = IMQ_SCALES) -> torch.Tensor:
    """Unbiased estimate of the squared maximum mean discrepancy between the samples ``x [n, d]`` and
    ``y [m, d]`` (n, m >= 2), inverse multiquadratic kernel summed over ``C = 2 d s`` for ``s`` in ``scales``.
    Its expectation is zero when both come from one distribution; it can be slightly negative.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> same = mmd2(torch.randn(200, 8, generator=g), torch.randn(200, 8, generator=g))
        >>> shifted = mmd2(torch.randn(200, 8, generator=g) + 1, torch.randn(200, 8, generator=g))
        >>> abs(float(same)) < 0.05 < float(shifted)
        True
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"expected samples [n, d] and [m, d], got {tuple(x.shape)} and {tuple(y.shape)}")
    n, m, d = x.shape[0], y.shape[0], x.shape[1]
    if n < 2 or m < 2:
        raise ValueError(f"the MMD estimate needs at least 2 samples on each side, got {n} and {m}")
    xx, yy, xy = torch.cdist(x, x).square(), torch.cdist(y, y).square(), torch.cdist(x, y).square()
    total = x.new_zeros(())
    for s in scales:
        c = 2.0 * d * s
        kxx, kyy, kxy = c / (c + xx), c / (c + yy), c / (c + xy)
        total = total + (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
        total = total + (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
        total = total - 2 * kxy.mean()
    return total


def class_mmd2(z: torch.Tensor, labels: torch.Tensor, classes: int, generator: torch.Generator | None = None
               ) -> torch.Tensor:  # fmt: skip
    """Mean over the classes present (with at least 2 codes) of ``MMD^2(codes of the class, N(0, I))``, the
    Gaussian side drawn afresh (as many draws as codes) from ``generator``."""
    terms = []
    for c in range(classes):
        zc = z[labels == c]
        if zc.shape[0] < 2:
            continue
        prior = torch.randn(zc.shape, generator=generator, device="cpu").to(zc)
        terms.append(mmd2(zc, prior))
    if not terms:
        raise ValueError("no class has the 2 codes an MMD estimate needs: use balanced batches")
    return torch.stack(terms).mean()


@dataclass(frozen=True)
class CWAEConfig(MelConfig):
    """Size of a :class:`CWAE`: its spectrograms' :class:`~sepmodels.drums.mel.MelConfig` fields, then these."""

    classes: int = 11
    latent: int = 64
    channels: tuple[int, ...] = (8, 16, 32, 64)  # one stride-2 convolution each: mels and frames / 2
    hidden: int = 256  # the fully connected layer between the convolutions and the code
    beta: float = 4.0  # weight of the per-class MMD

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "channels", tuple(int(c) for c in self.channels))  # a checkpoint gives a list
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive, got {self.channels}")
        step = 2 ** len(self.channels)
        if self.n_mels % step or self.frames % step:
            raise ValueError(
                f"n_mels ({self.n_mels}) and frames ({self.frames}) must be multiples of 2^stages = {step}"
            )
        for name in ("classes", "latent", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.beta < 0:
            raise ValueError(f"beta must be non-negative, got {self.beta}")


CWAE_PRESETS: dict[str, CWAEConfig] = {
    "default": CWAEConfig(),
    # 32 mels x 64 frames, a 512-point FFT
    "tiny": CWAEConfig(n_fft=512, n_mels=32, channels=(4, 8), hidden=16, latent=8),
}


class ConditionalBatchNorm(nn.Module):
    """Batch normalisation whose per-channel scale and shift are looked up by class (2-D feature maps).

    At initialisation every class has scale 1 and shift 0: plain batch normalisation.
    """

    def __init__(self, channels: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=False)
        self.scale = nn.Embedding(classes, channels)
        self.shift = nn.Embedding(classes, channels)
        nn.init.ones_(self.scale.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.norm(x) * self.scale(labels)[:, :, None, None] + self.shift(labels)[:, :, None, None]


class _Stage(nn.Module):
    """A stride-2 convolution (or transposed convolution), conditional batch norm, ReLU."""

    def __init__(self, inp: int, out: int, classes: int, up: bool) -> None:
        super().__init__()
        conv = nn.ConvTranspose2d if up else nn.Conv2d
        self.conv = conv(inp, out, 4, stride=2, padding=1)
        self.norm = ConditionalBatchNorm(out, classes)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x), labels))


@dataclass
class LatentMap:
    """Per-class principal components of training codes, and a sample of those codes, for the XY pad.

    Attributes:
        mean: each class's mean code ``[C, d]``.
        components: each class's principal directions, rows by falling variance ``[C, d, d]``.
        variance: the variance along each direction ``[C, d]`` (explained variance: divide by its sum).
        codes: a sample of training codes ``[N, d]`` with their classes ``labels [N]``.
    """

    mean: torch.Tensor
    components: torch.Tensor
    variance: torch.Tensor
    codes: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def fit(cls, codes: torch.Tensor, labels: torch.Tensor, classes: int, keep: int = 200,
            generator: torch.Generator | None = None) -> LatentMap:  # fmt: skip
        """PCA of each class's ``codes`` (at least 2 per class); ``keep`` codes per class are kept at random."""
        means, comps, variances, kept, kept_labels = [], [], [], [], []
        for c in range(classes):
            zc = codes[labels == c].double()
            if zc.shape[0] < 2:
                raise ValueError(f"class {c} has {zc.shape[0]} codes; its PCA needs at least 2")
            mean = zc.mean(dim=0)
            _, s, vh = torch.linalg.svd(zc - mean, full_matrices=True)
            var = torch.zeros(codes.shape[1], dtype=torch.float64)
            var[: s.numel()] = s.square() / (zc.shape[0] - 1)
            means.append(mean.float())
            comps.append(vh.float())
            variances.append(var.float())
            pick = torch.randperm(zc.shape[0], generator=generator)[:keep]
            kept.append(zc[pick].float())
            kept_labels.append(torch.full((pick.numel(),), c, dtype=torch.long))
        return cls(torch.stack(means), torch.stack(comps), torch.stack(variances), torch.cat(kept),
                   torch.cat(kept_labels))  # fmt: skip

    def explained(self, c: int) -> torch.Tensor:
        """The fraction of class ``c``'s variance along each principal direction ``[d]``."""
        return self.variance[c] / self.variance[c].sum().clamp_min(1e-12)

    def project(self, z: torch.Tensor, c: int) -> torch.Tensor:
        """Codes ``[..., d]`` in class ``c``'s principal coordinates, in standard deviations ``[..., d]``."""
        return (z - self.mean[c]) @ self.components[c].T / self.variance[c].sqrt().clamp_min(1e-6)

    def code(self, coords: torch.Tensor, c: int) -> torch.Tensor:
        """Inverse of :meth:`project`: principal coordinates in standard deviations ``[..., d]`` to codes."""
        return self.mean[c] + (coords * self.variance[c].sqrt()) @ self.components[c]

    def state(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in ("mean", "components", "variance", "codes", "labels")}


class CWAE(nn.Module):
    """Conditional Wasserstein autoencoder (see the module docstring). ``groups`` must be 1 (the registry's
    signature ``model_class(groups, config)``).

    Example:
        >>> model = CWAE(1, CWAE_PRESETS["tiny"]).eval()
        >>> labels = torch.tensor([0, 3])
        >>> z = model.encode(model.spectrogram(torch.randn(2, 16384)), labels)
        >>> tuple(z.shape), tuple(model.decode(z, labels).shape)
        ((2, 8), (2, 32, 64))
    """

    kind: ClassVar[str] = "cwae"

    def __init__(self, groups: int, config: CWAEConfig) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError(f"a CWAE models one kind of signal (drum hits), got {groups} groups")
        self.groups, self.config = groups, config
        mel = config.mel
        self.logmel = LogMel(mel)
        shape = (mel.n_mels, mel.frames)
        self.register_buffer("mean", torch.zeros(shape))  # per-element standardisation, learned by prepare
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("fitted", torch.tensor(False))
        c, k = config.channels, config.classes
        self.down = nn.ModuleList(_Stage(i, o, k, up=False) for i, o in zip((1, *c[:-1]), c, strict=True))
        step = 2 ** len(c)
        self.bottom = (c[-1], mel.n_mels // step, mel.frames // step)
        flat = c[-1] * self.bottom[1] * self.bottom[2]
        self.to_code = nn.Sequential(
            nn.Linear(flat, config.hidden), nn.ReLU(), nn.Linear(config.hidden, config.latent)
        )
        self.label_embedding = nn.Embedding(k, config.latent)  # the decoder's conditioning vector, beside z
        self.from_code = nn.Sequential(
            nn.Linear(2 * config.latent, config.hidden), nn.ReLU(), nn.Linear(config.hidden, flat), nn.ReLU()
        )
        outs = (*reversed(c[:-1]), c[0])
        self.up = nn.ModuleList(_Stage(i, o, k, up=True) for i, o in zip(reversed(c), outs, strict=True))
        self.out = nn.Conv2d(c[0], 1, 3, padding=1)
        self.latent_map: LatentMap | None = None
        self._last: dict[str, float] = {}

    # -- spectrograms --------------------------------------------------------------------------------------
    def spectrogram(self, audio: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, n_mels, frames]`` of hits ``[B, length]`` (not standardised)."""
        return self.logmel(audio)

    def _check(self, log_mel: torch.Tensor, labels: torch.Tensor) -> None:
        mel = self.config.mel
        if log_mel.dim() != 3 or tuple(log_mel.shape[1:]) != (mel.n_mels, mel.frames):
            raise ValueError(f"expected log-mels [B, {mel.n_mels}, {mel.frames}], got {tuple(log_mel.shape)}")
        self._check_labels(labels, log_mel.shape[0])

    def _check_labels(self, labels: torch.Tensor, batch: int) -> None:
        if labels.shape != (batch,) or labels.dtype != torch.long:
            raise ValueError(f"expected {batch} long class labels, got {labels.dtype} {tuple(labels.shape)}")
        if batch and (labels.min() < 0 or labels.max() >= self.config.classes):
            raise ValueError(f"class labels must be in 0..{self.config.classes - 1}")

    # -- codes ---------------------------------------------------------------------------------------------
    def encode(self, log_mel: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The code ``[B, latent]`` of ``log_mel [B, n_mels, frames]`` of class ``labels [B]``."""
        self._check(log_mel, labels)
        h = ((log_mel - self.mean) / self.std)[:, None]
        for stage in self.down:
            h = stage(h, labels)
        return self.to_code(h.flatten(1))

    def decode(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Log-mel ``[B, n_mels, frames]`` of codes ``z [B, latent]`` of class ``labels [B]``."""
        if z.dim() != 2 or z.shape[1] != self.config.latent:
            raise ValueError(f"expected codes [B, {self.config.latent}], got {tuple(z.shape)}")
        self._check_labels(labels, z.shape[0])
        return self._decode_standardised(z, labels) * self.std + self.mean

    def _decode_standardised(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.from_code(torch.cat([z, self.label_embedding(labels)], dim=1)).view(-1, *self.bottom)
        for stage in self.up:
            h = stage(h, labels)
        return self.out(h)[:, 0]

    # -- training ------------------------------------------------------------------------------------------
    def forward(self, audio: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Training pass over hits ``[B, length]`` of classes ``labels [B]``: (the standardised spectrogram's
        squared error per element, the mean per-class MMD^2 to N(0, I))."""
        log_mel = self.spectrogram(audio)
        z = self.encode(log_mel, labels)
        recon = self._decode_standardised(z, labels)
        target = (log_mel - self.mean) / self.std
        error = F.mse_loss(recon, target)
        mmd = class_mmd2(z, labels, self.config.classes, generator)
        if self.training:
            self._last = {"reconstruction": float(error.detach()), "mmd": float(mmd.detach())}
        return error, mmd

    def train_stats(self) -> dict[str, float]:
        """The last batch's two loss terms, for the training log."""
        return dict(self._last)

    @torch.no_grad()
    def prepare(self, clips: torch.Tensor) -> None:
        """Learn the per-element standardisation from training hits ``[N, length]``."""
        spec = self.spectrogram(clips)
        self.mean.copy_(spec.mean(dim=0))
        self.std.copy_(spec.std(dim=0).clamp_min(1e-3))
        self.fitted.fill_(True)

    @torch.no_grad()
    def fit_latent_map(self, clips: torch.Tensor, labels: torch.Tensor, keep: int = 200,
                       generator: torch.Generator | None = None, batch: int = 256) -> LatentMap:  # fmt: skip
        """Encode training hits ``[N, length]`` (eval mode) and fit the per-class :class:`LatentMap`."""
        was = self.training
        self.eval()
        try:
            codes = torch.cat([
                self.encode(self.spectrogram(clips[i : i + batch]), labels[i : i + batch])
                for i in range(0, clips.shape[0], batch)
            ])  # fmt: skip
        finally:
            self.train(was)
        self.latent_map = LatentMap.fit(codes.cpu(), labels.cpu(), self.config.classes, keep, generator)
        return self.latent_map

    def valid_length(self, length: int) -> int:
        return length


class DrumAutoencoder:
    """A trained :class:`CWAE`, its latent map and metadata, as training writes it and the drums app loads it.

    Arguments:
        model: the CWAE.
        meta: training metadata (steps, data, the training's energy, the class names).
    """

    CLASS = "CWAE"

    def __init__(self, model: CWAE, meta: dict[str, Any] | None = None) -> None:
        self.model, self.meta = model, dict(meta or {})

    @property
    def config(self) -> CWAEConfig:
        return self.model.config

    @property
    def latent_map(self) -> LatentMap | None:
        return self.model.latent_map

    @property
    def classes(self) -> list[str]:
        """The class names, in label order."""
        from sepmodels.data.drums import CLASSES

        names = self.meta.get("classes", list(CLASSES))
        if len(names) != self.config.classes:
            return [f"class {i}" for i in range(self.config.classes)]
        return list(names)

    def payload(self) -> dict[str, Any]:
        m = self.model.latent_map
        return {
            "class": self.CLASS,
            "config": self.config.to_dict(),
            "state_dict": self.model.state_dict(),
            "latent_map": None if m is None else m.state(),
            "sources": ["drum"],
            "sample_rate": self.config.sample_rate,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None, device: str | torch.device = "cpu"
             ) -> DrumAutoencoder:  # fmt: skip
        """Load a CWAE checkpoint (``train --model cwae``), or the shipped one when ``path`` is None; a file of
        another kind, or one saved before its latent map was fitted, raises :class:`CheckpointError` in one
        line."""
        where = default_autoencoder_path() if path is None else Path(path)

        def build(ckpt: dict[str, Any]) -> CWAE:
            model = CWAE(1, CWAEConfig(**ckpt["config"]))
            model.load_state_dict(ckpt["state_dict"])
            if ckpt.get("latent_map") is not None:
                model.latent_map = LatentMap(**ckpt["latent_map"])
            return model

        model, ckpt = load_model_file(where, cls.CLASS, "a drum CWAE (train --model cwae)", build)
        if not bool(model.fitted):
            raise CheckpointError(f"{where} was saved before its standardisation was learned")
        if model.latent_map is None:
            raise CheckpointError(f"{where} was saved mid-training, before its latent map was fitted")
        return cls(model.to(device).eval(), ckpt.get("meta"))


def default_autoencoder_path() -> Path:
    """The shipped drum CWAE."""
    return Path(__file__).resolve().parent.parent / "checkpoints" / "drums_cwae.pt"


def _cwae_loss(model: Any, batch: TrainBatch) -> torch.Tensor:
    if batch.labels is None:
        raise ValueError("a CWAE trains on labelled drum hits (--data drums)")
    error, mmd = model(batch.clean[:, 0], batch.labels, batch.generator)
    return error + batch.options.beta * mmd


def _prepare(model: CWAE, data: Any, generator: torch.Generator) -> None:
    clips, _ = data.sample(len(data.CLASSES) * 64, generator)
    model.prepare(clips)


def _finish(model: CWAE, data: Any, generator: torch.Generator) -> None:
    model.fit_latent_map(data.clips.float() / 32768.0, data.labels, generator=generator)


def _product(model: CWAE, _names: Any, _rate: int, meta: dict[str, Any]) -> DrumAutoencoder:
    from sepmodels.data.drums import CLASSES

    return DrumAutoencoder(model, dict(meta, classes=list(CLASSES)))


KIND = ModelKind(
    name="cwae",
    model_class=CWAE,
    config_class=CWAEConfig,
    presets=CWAE_PRESETS,
    objective="log-mel reconstruction + beta * per-class MMD to N(0, I)",
    loss=_cwae_loss,
    nats=False,
    role="codec",
    data=("drums",),
    prepare=_prepare,
    finish=_finish,
    product=_product,
    stats=("reconstruction", "mmd"),
    summary="a conditional Wasserstein autoencoder over drum hits, for the drum pad (--data drums)",
)

__all__ = [
    "CWAE",
    "CWAE_PRESETS",
    "KIND",
    "CWAEConfig",
    "ConditionalBatchNorm",
    "DrumAutoencoder",
    "LatentMap",
    "class_mmd2",
    "default_autoencoder_path",
    "mmd2",
]
