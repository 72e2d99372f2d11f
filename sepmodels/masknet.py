"""A small supervised mask network for music, after Open-Unmix: what a user would pick instead of priors.

Unlike every other model here it learns from mixtures *and* their stems (the training split's tracks), so it
is the stems benchmark's bound on what supervision buys on this data, not an unsupervised separator.

The recipe is Open-Unmix's at a CPU size: the mix's magnitude STFT, standardised per bin, goes through a
linear layer to ``hidden`` features per frame, a bidirectional LSTM over the frames with a skip connection,
and two linear layers back to one magnitude per stem and bin, each a nonnegative multiple of the mix's. The
loss is the mean squared error of the stems' magnitudes. Training mixes are Open-Unmix's augmentation: every
stem a random crop of a random training track at a random gain, so mixes are new at every step. The
estimates are soft masks of the mix's STFT (:func:`sepmodels.spectral.mask_mixture`).

Example:
    >>> net = MaskNet(MaskNetConfig.tiny(), names=("a", "b"))
    >>> net(torch.rand(3, MaskNetConfig.tiny().bins, 20)).shape
    torch.Size([3, 2, 129, 20])
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from sepmodels.checkpoint import load_model_file, save_checkpoint
from sepmodels.spectral import STFTConfig, mask_mixture, stft

CLASS = "MaskNet"
SHIPPED = "stems_masknet.pt"


@dataclass(frozen=True)
class MaskNetConfig:
    """Arguments:
    n_fft, hop: the STFT (:class:`~sepmodels.spectral.STFTConfig`).
    hidden: features per frame (the LSTM's output, both directions together).
    layers: LSTM layers.
    power: the mask's exponent on the predicted magnitudes (1: ratio mask, 2: Wiener filter).
    """

    n_fft: int = 2048
    hop: int = 512
    hidden: int = 128
    layers: int = 2
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.hidden < 2 or self.hidden % 2 or self.layers < 1 or self.power <= 0:
            raise ValueError(f"MaskNetConfig needs an even hidden >= 2, layers >= 1, power > 0; got {self}")

    @classmethod
    def tiny(cls) -> MaskNetConfig:
        return cls(n_fft=256, hop=64, hidden=16, layers=1)

    @property
    def stft(self) -> STFTConfig:
        return STFTConfig(self.n_fft, self.hop)

    @property
    def bins(self) -> int:
        return self.stft.bins


class MaskNet(nn.Module):
    """Mix magnitudes ``[B, F, frames]`` -> each stem's magnitude ``[B, N, F, frames]`` (nonnegative)."""

    def __init__(self, config: MaskNetConfig, names: tuple[str, ...]) -> None:
        super().__init__()
        self.config, self.names = config, tuple(names)
        F, H, N = config.bins, config.hidden, len(self.names)
        self.register_buffer("input_mean", torch.zeros(F))  # per-bin statistics of the training mixes
        self.register_buffer("input_scale", torch.ones(F))
        self.encode = nn.Sequential(nn.Linear(F, H, bias=False), nn.LayerNorm(H), nn.Tanh())
        self.lstm = nn.LSTM(H, H // 2, num_layers=config.layers, bidirectional=True, batch_first=True)
        self.decode = nn.Sequential(
            nn.Linear(2 * H, H, bias=False), nn.LayerNorm(H), nn.ReLU(), nn.Linear(H, N * F)
        )

    def forward(self, mag: torch.Tensor) -> torch.Tensor:
        B, F, frames = mag.shape
        x = ((mag.transpose(1, 2) - self.input_mean) * self.input_scale).clamp(-10, 10)  # [B, frames, F]
        h = self.encode(x)  # [B, frames, H]
        h = torch.cat([h, self.lstm(h)[0]], -1)  # the skip connection: [B, frames, 2H]
        gains = torch.relu(self.decode(h)).reshape(B, frames, len(self.names), F)
        return gains.permute(0, 2, 3, 1) * mag[:, None]  # [B, N, F, frames]


def _crops(tracks: list[torch.Tensor], batch: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Open-Unmix's augmentation: each stem from a random track, at a random place and gain: ``[B, N, L]``."""
    out = []
    for _ in range(batch * tracks[0].shape[0]):
        track = tracks[int(torch.randint(len(tracks), (1,), generator=generator))]
        start = int(torch.randint(track.shape[-1] - length + 1, (1,), generator=generator))
        gain = 0.25 + float(torch.rand((), generator=generator))
        out.append((start, track, gain))
    stems = [t[k % t.shape[0], s : s + length] * g for k, (s, t, g) in enumerate(out)]
    return torch.stack(stems).reshape(batch, tracks[0].shape[0], length)


class MaskNetSeparator:
    """Separation with a trained :class:`MaskNet` (a :class:`~sepmodels.inference.separator.Separator` whose
    mix is the stems' sum)."""

    max_steps = 0
    mix = "sum"

    def __init__(self, net: MaskNet, sample_rate: int, meta: dict[str, Any] | None = None) -> None:
        self.net = net.eval()
        self.names, self.sample_rate, self.meta = net.names, int(sample_rate), dict(meta or {})

    def describe(self) -> str:
        c = self.net.config
        return f"supervised mask network (hidden {c.hidden}, {c.layers} LSTM layers, mask power {c.power:g})"

    def valid_length(self, length: int) -> int:
        self.net.config.stft.check_length(length)
        return length

    @torch.no_grad()
    def separate(self, mixture: torch.Tensor, truth: torch.Tensor | None = None) -> torch.Tensor:
        if mixture.dim() != 1:
            raise ValueError(f"mixture must be mono [T], got shape {tuple(mixture.shape)}")
        config = self.net.config
        X = stft(mixture.float(), config.stft)
        mags = self.net(X.abs()[None])[0]
        return mask_mixture(mixture.float(), mags, config.stft, config.power, X)

    def with_power(self, power: float) -> MaskNetSeparator:
        """The same network with another mask power (chosen on validation)."""
        from dataclasses import replace

        net = MaskNet(replace(self.net.config, power=power), self.names)
        net.load_state_dict(self.net.state_dict())
        return MaskNetSeparator(net, self.sample_rate, self.meta)

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, {"class": CLASS, "config": asdict(self.net.config), "names": list(self.names),
                               "sample_rate": self.sample_rate, "state": self.net.state_dict(),
                               "meta": self.meta})  # fmt: skip

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> MaskNetSeparator:
        """Read a network written by :meth:`save` (the shipped one when ``path`` is None)."""
        where = Path(path) if path is not None else shipped_path()

        def build(ckpt: dict[str, Any]) -> MaskNetSeparator:
            net = MaskNet(MaskNetConfig(**ckpt["config"]), tuple(ckpt["names"]))
            net.load_state_dict(ckpt["state"])
            return cls(net, int(ckpt["sample_rate"]), ckpt.get("meta"))

        separator, _ = load_model_file(where, CLASS, "a supervised mask network (bench/stems.py)", build)
        return separator


def train_masknet(tracks: list[torch.Tensor], names: tuple[str, ...], sample_rate: int, config: MaskNetConfig,
                  steps: int, batch: int = 16, seconds: float = 3.0, lr: float = 1e-3, seed: int = 0,
                  validate: Callable[[MaskNetSeparator], float] | None = None, every: int = 500,
                  progress: bool = True) -> MaskNetSeparator:  # fmt: skip
    """Train on the stems ``tracks[i]: [N, T]`` (mixtures are their sums); with ``validate`` (a separator ->
    a figure, higher is better) every ``every`` steps, the best network seen is returned."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    length = round(seconds * sample_rate)
    if min(t.shape[-1] for t in tracks) < length:
        raise ValueError(f"every training track must hold {seconds:g} s")
    net = MaskNet(config, names)
    with torch.no_grad():  # per-bin input statistics from a few training mixes
        mags = stft(_crops(tracks, 64, length, generator).sum(1), config.stft).abs()  # [64, F, frames]
        net.input_mean.copy_(mags.mean((0, 2)))
        net.input_scale.copy_(1.0 / mags.std((0, 2)).clamp_min(1e-4))
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    best, best_figure, log = None, -float("inf"), []
    start = time.perf_counter()
    bar = tqdm(range(1, steps + 1), desc="mask network", unit="step", disable=not progress)
    for step in bar:
        stems = _crops(tracks, batch, length, generator)
        with torch.no_grad():
            S = stft(stems, config.stft).abs()  # [B, N, F, frames]
            X = stft(stems.sum(1), config.stft).abs()
        loss = (net.train()(X) - S).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        optimiser.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if validate is not None and (step % every == 0 or step == steps):
            figure = validate(MaskNetSeparator(net, sample_rate))
            log.append({"step": step, "loss": loss.item(), "valid": figure})
            if figure > best_figure:
                best_figure, best = figure, {k: v.clone() for k, v in net.state_dict().items()}
    if best is not None:
        net.load_state_dict(best)
    meta = {"steps": steps, "batch": batch, "seconds": seconds, "lr": lr, "seed": seed, "log": log,
            "minutes": round((time.perf_counter() - start) / 60, 2), "tracks": len(tracks)}  # fmt: skip
    return MaskNetSeparator(net, sample_rate, meta)


def shipped_path() -> Path:
    """The mask network shipped with the package (``python bench/stems.py`` trains it)."""
    return Path(str(resources.files("sepmodels") / "checkpoints" / SHIPPED))


__all__ = ["MaskNet", "MaskNetConfig", "MaskNetSeparator", "shipped_path", "train_masknet"]
