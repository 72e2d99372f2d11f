"""Frame priors: one variational autoencoder per stem over the shapes of its magnitude spectrum's frames.

NMF's dictionary per stem (:mod:`sepmodels.nmf`) lets a stem be any nonnegative sum of its atoms, so a
dictionary learned on a melody explains a chord as well, by adding three of its atoms: on the stems benchmark
the vocals dictionary takes "other"'s chords (README, ``bench/stems_cross.py``). A frame prior is a
generative model of the frames a stem produces, and nothing else: each frame's magnitude spectrum ``v`` is a
gain times a shape, ``v = g * softmax(decoder(z))`` (the shape a distribution over the frequency bins), with
``z`` a point of a small latent space under a standard normal prior. It is learned on that stem's solo audio
alone by the ELBO of a variational autoencoder (:class:`FrameVAE`): ``E_q[log p(s | z)] - beta KL(q(z | s) ||
N(0, I))`` with ``s = v / sum(v)`` read as a multinomial over the bins, so the expected log-likelihood is the
KL divergence of ``s`` from the decoded shape (up to a constant): the divergence NMF fits, per frame. The solo
audio is learned as it is and pitch-shifted by one and two semitones either way (:func:`pitch_shifted`): eight
minutes of notes per stem leave the prior's notion of an instrument tied to the notes it heard, and on the
benchmark's validation split the shifted copies raised the separation by about 2 dB in both conditions (README).

**Separation** (:meth:`FramePriors.spectrograms`): every stem's latent ``z`` and log-gain per frame are fitted
to the mix's magnitude ``X`` together, minimising

    KL(X || sum_k g_k softmax(decoder_k(z_k))) / sum(X) + prior / 2 * mean |z|^2 + smooth / 2 * mean |dz/dt|^2

(the first term NMF's KL divergence, normalised so the weights do not depend on the clip's loudness; the
second the latents' prior; the third ties a stem's consecutive frames together) by Adam from the NMF
baseline's answer (each stem's part of it encoded by that stem's encoder), then the stems' modelled
magnitudes become ratio masks of the mix's STFT (:func:`~sepmodels.spectral.mask_mixture`). The ELBO's KL
weight and the fit's two weights are chosen on the stems benchmark's validation split (``bench/stems_frames.py``);
the steps, the learning rate and the mask power are the defaults.

**An amortised start** (:class:`FrameEncoder`, :func:`train_frame_encoder`): a convolutional network over the
mix's log-magnitude frames reads every stem's latent and log-gain in every frame in one pass. It is trained on
*mixtures* alone (no stem) by the fit's own objective (:meth:`FramePriors.objective`), the VAEs frozen: an
amortised MAP estimate. Frame priors that carry one start their fit from its answer instead of NMF's, with
fewer steps. The shipped priors carry one, with 100 steps (``bench/amortised_music.py --model frames --ship``:
one pass is above KL-NMF on the stems benchmark, and 100 steps from it do what 300 from NMF's answer did, in
about a third of the time).

Example:
    >>> solo = {name: torch.randn(2 * 14_700) for name in ("a", "b")}
    >>> priors = train_frame_priors(solo, 14_700, FrameConfig.tiny(), steps=2, progress=False)
    >>> FramePriorSeparator(priors).separate(torch.randn(14_700)).shape
    torch.Size([2, 14700])
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

import torch
import torchaudio.functional as AF
from torch import nn
from tqdm.auto import tqdm

from sepmodels.checkpoint import load_model_file, save_checkpoint
from sepmodels.nmf import StemDictionaries
from sepmodels.spectral import STFTConfig, mask_mixture, stft

CLASS = "FramePriors"
SHIPPED = "stems_frames.pt"
EPS = 1e-9  # added to magnitudes under a log
Latents = tuple[torch.Tensor, torch.Tensor]  # latents [N, frames, latent] and log-gains [N, frames]
LOUD = 1e-3  # a training frame counts when its magnitude sum is above this share of the loudest frame's
# semitones the solo audio is learned at (with against without the copies on valid: README)
SHIFTS = (-2.0, -1.0, 0.0, 1.0, 2.0)
MAX_SHIFT = 12.0


@dataclass(frozen=True)
class FrameConfig:
    """A frame prior's sizes and its separation settings.

    Arguments:
        latent: dimensions of z.
        hidden: width of the encoder's and decoder's two hidden layers.
        beta: weight of the KL term of the ELBO in training (below 1: sharper shapes, a less regular latent).
        prior: weight of the latents' Gaussian prior in the fit to a mix.
        smooth: weight of the squared change of a stem's latent from one frame to the next in that fit.
        fit_steps, fit_lr: Adam's steps and learning rate in that fit.
        power: the mask's exponent on each stem's modelled magnitude (1: ratio mask, 2: Wiener filter).
        n_fft, hop: the STFT (:class:`~sepmodels.spectral.STFTConfig`).
    """

    latent: int = 16
    hidden: int = 128
    beta: float = 0.1
    prior: float = 0.03
    smooth: float = 1.0
    fit_steps: int = 300
    fit_lr: float = 0.05
    power: float = 1.0
    n_fft: int = 2048
    hop: int = 512

    def __post_init__(self) -> None:
        rules = {"latent": self.latent >= 1, "hidden": self.hidden >= 1, "fit_steps": self.fit_steps >= 0,
                 "fit_lr": self.fit_lr > 0, "power": self.power > 0, "beta": self.beta >= 0,
                 "prior": self.prior >= 0, "smooth": self.smooth >= 0}  # fmt: skip
        bad = [name for name, ok in rules.items() if not ok]
        if bad:
            raise ValueError(f"FrameConfig: {bad[0]} = {getattr(self, bad[0])} is out of range (latent, hidden "
                             f">= 1; fit_steps >= 0; fit_lr, power > 0; beta, prior, smooth >= 0)")  # fmt: skip

    @property
    def stft(self) -> STFTConfig:
        return STFTConfig(self.n_fft, self.hop)

    @classmethod
    def tiny(cls) -> FrameConfig:
        """A test size: 4 latents, 16 hidden units, a 256-point STFT."""
        return cls(latent=4, hidden=16, fit_steps=30, n_fft=256, hop=64)


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                         nn.Linear(hidden, outputs))  # fmt: skip


class FrameVAE(nn.Module):
    """One stem's frame prior: an encoder from a frame's log shape to the mean and log-variance of ``q(z | s)``,
    and a decoder from ``z`` to the shape's logits over the ``bins`` frequency bins (two hidden layers each)."""

    def __init__(self, bins: int, config: FrameConfig) -> None:
        super().__init__()
        h, d = config.hidden, config.latent
        self.latent = d
        self.encoder = _mlp(bins, h, 2 * d)
        self.decoder = _mlp(d, h, bins)

    @staticmethod
    def shape_of(v: torch.Tensor) -> torch.Tensor:
        """Frames' magnitudes ``[..., bins]`` over their sums: their shapes."""
        return v / v.sum(-1, keepdim=True).clamp_min(EPS)

    def encode(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance ``[..., latent]`` of ``q(z | s)`` for frames' magnitudes ``v [..., bins]``."""
        # the log shape floored a million times below a flat frame's bins; the log-variance kept where exp is tame
        mean, log_var = self.encoder(torch.log(self.shape_of(v) + 1e-6)).chunk(2, -1)
        return mean, log_var.clamp(-12.0, 6.0)

    @staticmethod
    def draw(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
        """A draw of ``q(z | s) = N(mean, exp(log_var))``, differentiable in both (the reparameterisation)."""
        return mean + torch.randn_like(mean) * (0.5 * log_var).exp()

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The shapes ``[..., bins]`` (each sums to 1) of latents ``z [..., latent]``."""
        return torch.softmax(self.decoder(z), -1)

    def negative_elbo(
        self, v: torch.Tensor, beta: float, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per frame of ``v [B, bins]``: the reconstruction term ``KL(s || decoded shape)`` (nats, one draw of
        ``z`` from q, or its mean when ``sample`` is False), the KL of q from the prior, and their ELBO's negative
        ``reconstruction + beta * KL``."""
        s = self.shape_of(v)
        mean, log_var = self.encode(v)
        z = self.draw(mean, log_var) if sample else mean
        shape = self.decode(z)
        reconstruction = (s * (torch.log(s + EPS) - torch.log(shape + EPS))).sum(-1)
        kl = 0.5 * (mean.square() + log_var.exp() - 1 - log_var).sum(-1)
        return reconstruction, kl, reconstruction + beta * kl


class FrameEncoder(nn.Module):
    """The amortised start: log-magnitude frames ``[B, bins, frames]`` -> every stem's latents
    ``[B, N, frames, latent]`` and log-gains ``[B, N, frames]``. A 1x1 convolution, ``layers`` residual
    convolutions of width 5 along time, and a 1x1 convolution out; the input is relative to the clip's mean
    magnitude and the log-gains to each mix frame's own log magnitude sum (level in, level out)."""

    def __init__(self, bins: int, stems: int, latent: int, channels: int = 256, layers: int = 3) -> None:
        super().__init__()
        if min(bins, stems, latent, channels) < 1 or layers < 0:
            raise ValueError(f"a frame encoder needs positive sizes, got {bins}, {stems}, {latent}, {channels}, "
                             f"{layers} layers")  # fmt: skip
        self.sizes = {"bins": bins, "stems": stems, "latent": latent, "channels": channels, "layers": layers}
        self.inp = nn.Conv1d(bins, channels, 1)
        self.blocks = nn.ModuleList(nn.Conv1d(channels, channels, 5, padding=2) for _ in range(layers))
        self.out = nn.Conv1d(channels, stems * (latent + 1), 1)

    def forward(self, mag: torch.Tensor) -> Latents:
        scale = mag.mean((1, 2), keepdim=True).clamp_min(EPS)
        h = self.inp(torch.log1p(mag / scale))
        for conv in self.blocks:
            h = h + torch.nn.functional.gelu(conv(h))
        B, frames = mag.shape[0], mag.shape[-1]
        stems, latent = self.sizes["stems"], self.sizes["latent"]
        o = self.out(h).reshape(B, stems, latent + 1, frames)
        level = torch.log(mag.sum(1) + EPS)[:, None]  # [B, 1, frames]
        return o[:, :, :latent].transpose(2, 3), level + o[:, :, latent]


class FramePriors:
    """A frame prior per stem (:class:`FrameVAE`), the NMF dictionaries whose answer a fit starts from, and
    optionally an encoder whose one-pass answer it starts from instead (:class:`FrameEncoder`).

    Arguments:
        names: the stems, in order.
        vaes: one :class:`FrameVAE` per stem.
        config: sizes and separation settings.
        sample_rate: Hz.
        start: NMF dictionaries of the same stems and STFT (None: a fit starts from every latent at 0 and the
            mix's magnitude shared equally).
        meta: provenance (training audio, minutes, the validation figures that chose the settings).
        encoder: an amortised start (:class:`FrameEncoder`): where given, a fit starts from its answer, not
            from the NMF dictionaries'.
    """

    def __init__(self, names: tuple[str, ...], vaes: nn.ModuleList, config: FrameConfig, sample_rate: int,
                 start: StemDictionaries | None = None, meta: dict[str, Any] | None = None,
                 encoder: FrameEncoder | None = None) -> None:  # fmt: skip
        if len(vaes) != len(names) or not all(isinstance(v, FrameVAE) for v in vaes):
            raise ValueError(f"{len(vaes)} frame VAEs do not fit {len(names)} stems")
        sizes = {(v.latent, v.decoder[-1].out_features) for v in vaes}
        if sizes != {(config.latent, config.stft.bins)}:
            raise ValueError(f"frame VAEs of (latent, bins) {sorted(sizes)} do not fit the config's "
                             f"({config.latent}, {config.stft.bins})")  # fmt: skip
        if start is not None and (start.names != tuple(names) or start.config.stft != config.stft):
            raise ValueError("the start's NMF dictionaries must have the same stems and STFT as the frame priors")
        self.names, self.vaes, self.config = tuple(names), vaes.eval().requires_grad_(False), config
        fits = {"bins": config.stft.bins, "stems": len(names), "latent": config.latent}
        if encoder is not None and any(encoder.sizes[k] != v for k, v in fits.items()):
            raise ValueError(f"a frame encoder of {encoder.sizes} does not fit {len(names)} stems, "
                             f"{config.stft.bins} bins and {config.latent} latents")  # fmt: skip
        self.sample_rate, self.start, self.meta = int(sample_rate), start, dict(meta or {})
        self.encoder = None if encoder is None else encoder.eval().requires_grad_(False)

    def __len__(self) -> int:
        return len(self.names)

    def with_settings(self, **settings: Any) -> FramePriors:
        """The same priors with other separation settings: ``prior``, ``smooth``, ``fit_steps``, ``fit_lr``,
        ``power`` (the networks' sizes and STFT are theirs)."""
        return self.with_encoder(self.encoder, **settings)

    def with_encoder(self, encoder: FrameEncoder | None, **settings: Any) -> FramePriors:
        """The same priors with ``encoder`` as their start (None: NMF's answer again) and other separation
        settings (:meth:`with_settings`; e.g. fewer ``fit_steps`` from the encoder's answer)."""
        other = set(settings) - {"prior", "smooth", "fit_steps", "fit_lr", "power"}
        if other:
            raise ValueError(f"{sorted(other)} are not separation settings of frame priors")
        return FramePriors(self.names, self.vaes, replace(self.config, **settings), self.sample_rate, self.start,
                           self.meta, encoder)  # fmt: skip

    def starting_point(self, mixture: torch.Tensor, X: torch.Tensor,
                       parts: torch.Tensor | None = None) -> Latents:  # fmt: skip
        """Latents ``[N, frames, latent]`` and log-gains ``[N, frames]`` a fit to ``mixture [T]`` (its STFT
        ``X [F, frames]``) starts from: the :attr:`encoder`'s answer where there is one; else each stem's part of
        the NMF answer, encoded by its VAE's encoder; without dictionaries, zero latents and the mix shared
        equally. ``parts [N, F, frames]``: the NMF answer when the caller has it (then it is used)."""
        M = X.abs().float()
        N, frames = len(self), M.shape[-1]
        if self.encoder is not None and parts is None:
            with torch.no_grad():
                z, gain = self.encoder(M[None])
            return z[0], gain[0]
        if self.start is None and parts is None:
            share = torch.log(M.sum(0) / N + EPS)
            return torch.zeros(N, frames, self.config.latent), share.expand(N, frames).clone()
        parts = (self.start.spectrograms(mixture, X) if parts is None else parts).float()  # [N, F, frames]
        with torch.no_grad():
            z = torch.stack([vae.encode(parts[k].T.clamp_min(EPS))[0] for k, vae in enumerate(self.vaes)])
        return z, torch.log(parts.sum(1) + EPS)

    def fit(self, mixture: torch.Tensor, X: torch.Tensor | None = None, start: Latents | None = None) -> Latents:
        """Every stem's latents ``[N, frames, latent]`` and log-gains ``[N, frames]`` fitted to ``mixture [T]``
        (the objective of the module docstring); ``X`` the mix's STFT when the caller has it, ``start`` latents
        and log-gains to start from (default :meth:`starting_point`)."""
        c = self.config
        X = stft(mixture.float(), c.stft) if X is None else X
        M = X.abs().float().T  # [frames, F]
        z, gain = start if start is not None else self.starting_point(mixture, X)
        want = (len(self), M.shape[0])
        if tuple(z.shape) != (*want, c.latent) or tuple(gain.shape) != want:
            raise ValueError(f"a start of latents {tuple(z.shape)} and log-gains {tuple(gain.shape)} does not fit "
                             f"{want[0]} stems, {want[1]} frames and {c.latent} latents")  # fmt: skip
        z, gain = z.detach().clone().requires_grad_(True), gain.detach().clone().requires_grad_(True)
        optimiser = torch.optim.Adam([z, gain], lr=c.fit_lr)
        with torch.enable_grad():
            for _ in range(c.fit_steps):
                loss = self.objective(M.T, z, gain)
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        return z.detach(), gain.detach()

    def objective(self, M: torch.Tensor, z: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """The fit's objective (the module docstring) for a mix's magnitude ``M [F, frames]`` at latents
        ``z [N, frames, latent]`` and log-gains ``[N, frames]``: the KL divergence less its terms in ``M`` alone
        (which move nothing), over ``sum(M)``, plus the latents' prior and smoothness terms."""
        c = self.config
        fit = self.magnitudes(z, gain).sum(0) + EPS
        count = z.shape[0] * z.shape[1]
        loss = (fit - M * torch.log(fit)).sum() / M.sum().clamp_min(EPS)
        loss = loss + c.prior / 2 * z.square().sum() / count
        if c.smooth and z.shape[1] > 1:
            loss = loss + c.smooth / 2 * z.diff(dim=1).square().sum() / count
        return loss

    def magnitudes(self, z: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """The stems' magnitudes ``[N, F, frames]`` of latents ``z [N, frames, latent]`` and log-gains
        ``gain [N, frames]``."""
        shapes = torch.stack([vae.decode(z[k]) for k, vae in enumerate(self.vaes)])  # [N, frames, F]
        return (gain.exp()[..., None] * shapes).transpose(1, 2)

    def spectrograms(
        self, mixture: torch.Tensor, X: torch.Tensor | None = None, start: Latents | None = None
    ) -> torch.Tensor:
        """Each stem's modelled magnitude ``[N, F, frames]`` of ``mixture [T]``: :meth:`fit`, decoded."""
        with torch.no_grad():
            return self.magnitudes(*self.fit(mixture, X, start)).contiguous()

    # -- files ----------------------------------------------------------------------------------------------
    def payload(self) -> dict[str, Any]:
        return {"class": CLASS, "config": asdict(self.config), "names": list(self.names),
                "sample_rate": self.sample_rate, "bins": self.config.stft.bins,
                "state_dict": {k: v.half() for k, v in self.vaes.state_dict().items()},
                "start": None if self.start is None else self.start.payload(), "meta": self.meta,
                "encoder": None if self.encoder is None else {
                    "sizes": self.encoder.sizes,
                    "state_dict": {k: v.half() for k, v in self.encoder.state_dict().items()}}}  # fmt: skip

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> FramePriors:
        """Read frame priors written by :meth:`save` (the shipped ones when ``path`` is None)."""
        where = Path(path) if path is not None else shipped_path()

        def build(ckpt: dict[str, Any]) -> FramePriors:
            config = FrameConfig(**ckpt["config"])
            if int(ckpt["bins"]) != config.stft.bins:
                raise ValueError(f"{ckpt['bins']} bins do not fit an STFT of {config.n_fft}")
            vaes = nn.ModuleList(FrameVAE(config.stft.bins, config) for _ in ckpt["names"])
            vaes.load_state_dict({k: v.float() for k, v in ckpt["state_dict"].items()})
            start = None if ckpt["start"] is None else StemDictionaries.from_payload(ckpt["start"])
            encoder = None
            if ckpt.get("encoder") is not None:
                encoder = FrameEncoder(**ckpt["encoder"]["sizes"])
                encoder.load_state_dict({k: v.float() for k, v in ckpt["encoder"]["state_dict"].items()})
            return cls(tuple(ckpt["names"]), vaes, config, int(ckpt["sample_rate"]), start, ckpt.get("meta"),
                       encoder)  # fmt: skip

        priors, _ = load_model_file(where, CLASS, "frame priors (python bench/stems_frames.py)", build)
        return priors


def _frames(audio: torch.Tensor, config: STFTConfig) -> torch.Tensor:
    """The magnitude frames ``[frames, F]`` of ``audio [T]`` that are not silent."""
    v = stft(audio.float(), config).abs().T
    sums = v.sum(1)
    return v[sums > LOUD * sums.max().clamp_min(EPS)]


def pitch_shifted(audio: torch.Tensor, semitones: float) -> torch.Tensor:
    """``audio [T]`` played ``semitones`` higher (lower when negative) by resampling, as a tape played faster:
    pitch, spectral envelope and tempo move together, and the result is shorter (longer) by the same ratio. The
    ratio is a fraction of denominator at most 1000: within 0.02 cents of the exact one for whole and quarter
    tones, within a cent for any shift (a shift under about a cent may come out as none)."""
    if not math.isfinite(semitones) or abs(semitones) > MAX_SHIFT:
        raise ValueError(f"a pitch shift must be finite and within +-{MAX_SHIFT:g} semitones, got {semitones}")
    if semitones == 0:
        return audio
    ratio = Fraction(2 ** (-semitones / 12)).limit_denominator(1000)  # new samples per old sample
    return AF.resample(audio, ratio.denominator, ratio.numerator)


def train_frame_priors(solo: dict[str, torch.Tensor], sample_rate: int, config: FrameConfig = FrameConfig(),
                       steps: int = 4000, batch: int = 256, lr: float = 1e-3, seed: int = 0,
                       start: StemDictionaries | None = None, shifts: tuple[float, ...] = SHIFTS,
                       progress: bool = True) -> FramePriors:  # fmt: skip
    """Learn each stem's frame prior from its own solo audio ``solo[name]: [T]`` by the ELBO (silent frames left
    out; Adam, ``steps`` steps of ``batch`` frames drawn at random). No mixture and no other stem is read.
    ``start``: NMF dictionaries that fits to a mix start from (learned on the same solo audio). ``shifts``: the
    solo audio is learned at each of these pitch shifts in semitones (:func:`pitch_shifted`; ``(0,)``: as it
    is), so a prior learned from a few minutes of notes also knows its instrument a tone or two away. Every
    copy's frames are held in memory at once (float32, ``n_fft / 2 + 1`` bins each: about 1 GB for five copies
    of eight minutes per stem at the default STFT). The file's meta records the shifts; its ``frames`` per stem
    count every copy's, its ``seconds`` the audio as given."""
    if steps < 1 or batch < 1 or lr <= 0:
        raise ValueError(f"need steps >= 1, batch >= 1 and lr > 0, got {steps}, {batch}, {lr}")
    shifts = tuple(float(x) for x in shifts)
    if not shifts or not all(math.isfinite(x) and abs(x) <= MAX_SHIFT for x in shifts):
        raise ValueError(f"shifts must be one or more semitones within +-{MAX_SHIFT:g}, got {shifts}")
    if start is not None and (start.names != tuple(solo) or start.config.stft != config.stft):
        raise ValueError("the start's NMF dictionaries must have the same stems and STFT as the frame priors")
    for name, audio in solo.items():
        if audio.dim() != 1 or not bool(torch.isfinite(audio).all()):
            raise ValueError(f"{name}: solo audio must be mono [T] and finite, got shape {tuple(audio.shape)}")
    frames_of = {name: torch.cat([_frames(pitch_shifted(audio.float(), x), config.stft) for x in shifts])
                 for name, audio in solo.items()}  # fmt: skip
    for name, frames in frames_of.items():
        if frames.shape[0] < 2:
            raise ValueError(f"{name}: {frames.shape[0]} non-silent frames are too few to learn a frame prior")
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.default_generator.manual_seed(seed)  # the CPU's alone: training runs there
        priors = _train(solo, frames_of, sample_rate, config, steps, batch, lr, seed, start, progress)
    priors.meta["shifts"] = list(shifts)
    return priors


def _train(solo: dict[str, torch.Tensor], frames_of: dict[str, torch.Tensor], sample_rate: int,
           config: FrameConfig, steps: int, batch: int, lr: float, seed: int, start: StemDictionaries | None,
           progress: bool) -> FramePriors:  # fmt: skip
    began = time.perf_counter()
    vaes, log = nn.ModuleList(), {}
    for name, audio in solo.items():
        frames = frames_of[name]
        vae = FrameVAE(config.stft.bins, config)
        optimiser = torch.optim.Adam(vae.parameters(), lr=lr)
        bar = tqdm(range(steps), desc=f"frame prior: {name}", unit="step", disable=not progress)
        for step in bar:
            pick = torch.randint(0, frames.shape[0], (batch,))
            reconstruction, kl, loss = vae.negative_elbo(frames[pick], config.beta)
            optimiser.zero_grad()
            loss.mean().backward()
            optimiser.step()
            if step % 100 == 0:
                bar.set_postfix(reconstruction=f"{reconstruction.mean().item():.3f}", kl=f"{kl.mean().item():.2f}")
        vae.half().float()  # the weights at half precision, as the file keeps them: what is measured is shipped
        with torch.no_grad():
            reconstruction, kl, _ = vae.negative_elbo(frames, config.beta, sample=False)
        log[name] = {"frames": int(frames.shape[0]), "seconds": round(audio.shape[-1] / sample_rate, 1),
                     "reconstruction_nats": round(float(reconstruction.mean()), 4),
                     "kl_nats": round(float(kl.mean()), 3)}  # fmt: skip
        vaes.append(vae)
    meta = {"training": log, "steps": steps, "batch": batch, "lr": lr, "seed": seed,
            "train_minutes": round((time.perf_counter() - began) / 60, 2)}  # fmt: skip
    return FramePriors(tuple(solo), vaes, config, sample_rate, start, meta)


def train_frame_encoder(priors: FramePriors, mixtures: list[torch.Tensor], steps: int = 1500,
                        seconds: float = 3.0, batch: int = 8, lr: float = 3e-4, seed: int = 0, channels: int = 256,
                        layers: int = 3, progress: bool = True) -> tuple[FrameEncoder, list[float]]:  # fmt: skip
    """A :class:`FrameEncoder` for ``priors`` trained on random crops of ``seconds`` of ``mixtures`` (each a mono
    ``[T]``; no stem is read) to minimise the fit's objective (:meth:`FramePriors.objective`) at its answer, the
    VAEs frozen; with the objective of every step. The weights end at half precision, as a file keeps them."""
    if steps < 1 or batch < 1 or lr <= 0 or seconds <= 0:
        raise ValueError(f"need steps >= 1, batch >= 1, lr > 0 and seconds > 0, got {steps}, {batch}, {lr}, "
                         f"{seconds}")  # fmt: skip
    if not mixtures:
        raise ValueError("no mixtures to train a frame encoder on")
    c = priors.config
    length = int(seconds * priors.sample_rate)
    c.stft.check_length(length)
    for i, m in enumerate(mixtures):
        if m.dim() != 1 or m.shape[-1] <= length or not bool(torch.isfinite(m).all()):
            raise ValueError(f"mixture {i}: must be mono [T], finite and longer than {seconds:g} s, got shape "
                             f"{tuple(m.shape)}")  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        encoder = FrameEncoder(c.stft.bins, len(priors), c.latent, channels, layers)
    optimiser = torch.optim.Adam(encoder.parameters(), lr=lr)
    losses: list[float] = []
    bar = tqdm(range(steps), desc="frame encoder", unit="step", disable=not progress)
    for _ in bar:
        crops = []
        for _ in range(batch):
            m = mixtures[int(torch.randint(0, len(mixtures), (1,), generator=g))]
            start = int(torch.randint(0, m.shape[-1] - length, (1,), generator=g))
            crops.append(m[start : start + length].float())
        M = stft(torch.stack(crops), c.stft).abs()  # [B, bins, frames]
        z, gain = encoder(M)
        loss = torch.stack([priors.objective(M[b], z[b], gain[b]) for b in range(batch)]).mean()
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
        optimiser.step()
        losses.append(loss.item())
        bar.set_postfix(objective=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")
    encoder.half().float()
    return encoder.eval().requires_grad_(False), losses


class FramePriorSeparator:
    """Separation with :class:`FramePriors`: the fit to the mix, then soft masks (a
    :class:`~sepmodels.inference.separator.Separator` whose mix is the sum of the stems, as music's is)."""

    max_steps = 0
    mix = "sum"

    def __init__(self, priors: FramePriors) -> None:
        self.model = priors  # not .priors: the command line reads a separator's .priors as a sampler's
        self.names, self.sample_rate = priors.names, priors.sample_rate

    def describe(self) -> str:
        m = self.model
        c = m.config
        start = ("its encoder's answer" if m.encoder is not None else "the NMF answer" if m.start is not None
                 else "zero latents")  # fmt: skip
        return (f"frame priors (a VAE per stem, {c.latent} latents), fitted to the mix from {start} in "
                f"{c.fit_steps} steps, mask power {c.power:g}")  # fmt: skip

    def valid_length(self, length: int) -> int:
        self.model.config.stft.check_length(length)
        return length

    def separate(self, mixture: torch.Tensor, truth: torch.Tensor | None = None) -> torch.Tensor:
        if mixture.dim() != 1:
            raise ValueError(f"mixture must be mono [T], got shape {tuple(mixture.shape)}")
        if not bool(torch.isfinite(mixture).all()):
            raise ValueError("the mixture holds NaN or infinite samples")
        c = self.model.config
        self.valid_length(mixture.shape[-1])
        X = stft(mixture.float(), c.stft)
        return mask_mixture(mixture.float(), self.model.spectrograms(mixture, X), c.stft, c.power, X)


def shipped_path() -> Path:
    """The frame priors shipped with the package (``python bench/stems_frames.py`` trains them, then
    ``python bench/amortised_music.py --model frames --ship`` adds the encoder they start from)."""
    return Path(str(resources.files("sepmodels") / "checkpoints" / SHIPPED))


__all__ = [
    "FrameConfig",
    "FrameEncoder",
    "FramePriorSeparator",
    "FramePriors",
    "FrameVAE",
    "pitch_shifted",
    "shipped_path",
    "train_frame_encoder",
    "train_frame_priors",
]
