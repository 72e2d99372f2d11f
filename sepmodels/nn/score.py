"""A noise-conditional score network: the gradient of log p_sigma from one forward pass (the NCSN route).

Trained by denoising score matching: for ``x_noisy = x + sigma * eps`` the network predicts ``eps``, and the
score of the noisy density is ``-eps_hat / sigma`` (Vincent, 2011; Song & Ermon, 2019). Unlike a flow it gives
no likelihood, only its gradient, which is all a Langevin sampler needs, at the price of one forward pass
instead of a forward and a backward pass through a flow.

Shapes: clips ``[B, G, T]``; the network folds ``fold`` consecutive samples into channels first
(``[B, G, fold, T / fold]``), which makes it ``fold`` times cheaper and its receptive field ``fold`` times
longer, as the flows' squeezes do.

Two architectures (``ScoreConfig.arch``):

- ``"wavenet"``: a grouped non-causal WaveNet over time (optionally with a whole-clip context path).
- ``"spectral"``: a network over the whole clip's spectrum (:class:`SpectralDenoiser`). A steady pitch is a
  property of the whole clip; in the clip's Fourier transform it is a comb of narrow peaks whose height over
  the noise grows with the clip's length, which a matched filter exploits and a network over a window of
  time cannot. The network sees each frequency bin's signal-to-noise ratio and that of the bins at 1/4 to 5
  times its frequency (where a harmonic's fundamental and overtones lie), and outputs a gain per bin: the
  denoised clip is the inverse transform of the gained spectrum. It still answers as a score network (the
  predicted noise ``(x - denoised) / sigma``), so every sampler, trainer and checkpoint takes it unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from sepmodels.nn.contract import ModelKind, TrainBatch
from sepmodels.nn.pitch import PitchDenoiser
from sepmodels.nn.wavenet import WaveNet, group_slices, sigma_features


@dataclass(frozen=True)
class ScoreConfig:
    """Size of a :class:`ScoreNet`."""

    fold: int = 4  # samples folded into channels
    layers: int = 10  # gated layers; dilations 1, 2, 4, ...
    width: int = 32
    kernel: int = 3
    cycle: int = 100
    cond_features: int = 8
    global_context: bool = False  # see WaveNet: time-averaged features bias every gate
    arch: str = "wavenet"  # "spectral": a network over the whole clip's spectrum; "pitch": one pitch per clip
    sample_rate: int = 14_700  # the rate the pitch grid of arch "pitch" assumes

    def __post_init__(self) -> None:
        if self.arch not in ("wavenet", "spectral", "pitch"):
            raise ValueError(f"arch must be 'wavenet', 'spectral' or 'pitch', got {self.arch!r}")
        if self.arch != "wavenet" and self.fold != 1:
            raise ValueError(f"a {self.arch} score network takes whole clips: fold must be 1")

    @staticmethod
    def preset(name: str) -> ScoreConfig:
        try:
            return SCORE_PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown config {name!r}; choose one of {', '.join(SCORE_PRESETS)}") from None

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


SCORE_PRESETS: dict[str, ScoreConfig] = {
    # receptive field 4 * (1 + 2 * 1023) = 8188 samples
    "default": ScoreConfig(),
    # the same with a whole-clip context path in every layer
    "global": ScoreConfig(global_context=True),
    "tiny": ScoreConfig(fold=2, layers=2, width=4, cond_features=4),
    # over the whole clip's spectrum: dilations 1..128 bins, harmonic features, a whole-spectrum context
    "spectral": ScoreConfig(arch="spectral", fold=1, layers=8, width=24, global_context=True),
    "spectral_tiny": ScoreConfig(arch="spectral", fold=1, layers=2, width=4, cond_features=4),
    # One pitch per clip and its harmonic comb (sepmodels.nn.pitch): a few hundred parameters per source.
    "pitch": ScoreConfig(arch="pitch", fold=1),
}

# Frequency ratios whose bins' signal-to-noise ratios every bin sees besides its own.
HARMONIC_RATIOS = (0.25, 1 / 3, 0.5, 2.0, 3.0, 4.0, 5.0)


class SpectralDenoiser(nn.Module):
    """G denoisers over the whole clip's spectrum, in grouped convolutions: ``[B, G, T] -> [B, G, T]``.

    Input features per frequency bin: ``log(|X|^2 / (sigma^2 T))`` (the observed power over the white noise's
    expected power in that bin) at the bin and at ``HARMONIC_RATIOS`` times its frequency (linear
    interpolation; beyond Nyquist, "no power"). A stack of dilated convolutions over frequency, each biased by
    the noise level's features and (with ``global_context``) the spectrum-averaged activations, gives a logit
    added to the log power ratio, so the untrained network starts as a gain that passes the bins whose power
    is well above the noise's and mutes the others (a Wiener-like gain). The output is
    ``irfft(sigmoid(logit) * X)``.
    """

    def __init__(self, groups: int, config: ScoreConfig) -> None:
        super().__init__()
        self.groups, self.config = groups, config
        G, W, K = groups, config.width, config.kernel
        features = 1 + len(HARMONIC_RATIOS)
        self.inp = nn.Conv1d(G * features, G * W, 1, groups=G)
        self.cond = nn.Linear(config.cond_features, config.layers * G * W)
        self.convs = nn.ModuleList(
            nn.Conv1d(G * W, G * W, K, dilation=2**i, padding=2**i * (K - 1) // 2, groups=G)
            for i in range(config.layers)
        )
        self.mix = nn.ModuleList(nn.Conv1d(G * W, G * W, 1, groups=G) for _ in range(config.layers))
        self.glob = (
            nn.ModuleList(nn.Conv1d(G * W, G * W, 1, groups=G) for _ in range(config.layers))
            if config.global_context
            else None
        )
        self.out = nn.Conv1d(G * W, G, 1, groups=G)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias, -3.0)  # a bin passes once its power is some 20 times the noise's
        self._index: dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def receptive_field(self) -> float:
        return float("inf")  # every output sample depends on the whole clip

    def _harmonic_index(self, bins: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """For every ratio and bin: the lower neighbour's index, the interpolation weight, and whether the
        position lies inside the spectrum; ``[ratios, bins]`` each."""
        key = (bins, str(device))
        if key not in self._index:
            pos = torch.tensor(HARMONIC_RATIOS, dtype=torch.float64)[:, None] * torch.arange(
                bins, dtype=torch.float64
            )
            inside = pos <= bins - 1
            low = pos.floor().clamp(max=bins - 2).long()
            frac = (pos - low).clamp(0, 1)
            self._index[key] = (low.to(device), frac.float().to(device), inside.to(device))
        return self._index[key]

    def _conv(self, conv: nn.Conv1d, h: torch.Tensor, groups: list[int] | None) -> torch.Tensor:
        """A grouped convolution, or only the slices of ``groups`` of it (the same numbers, fewer of them)."""
        if groups is None:
            return conv(h)
        weight, bias = group_slices(conv.weight, conv.bias, self.groups, groups)
        return nn.functional.conv1d(
            h, weight, bias, padding=conv.padding, dilation=conv.dilation, groups=len(groups)
        )

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, groups: list[int] | None = None) -> torch.Tensor:
        """The denoised clips (each prior's estimate of its source), ``[B, G, T]``; ``sigma`` is ``[B]``. With
        ``groups``, ``x`` holds only those groups' clips, ``[B, len(groups), T]``, and only they are computed."""
        B, _, T = x.shape
        spec = torch.fft.rfft(x.float(), dim=-1)  # [B, G, F]
        bins = spec.shape[-1]
        noise_power = (sigma.float() ** 2 * T).view(B, 1, 1)
        log_snr = torch.log(spec.real**2 + spec.imag**2 + 1e-12) - torch.log(noise_power)
        feat = log_snr.clamp(-10.0, 30.0) / 10.0  # about -1..3
        low, frac, inside = self._harmonic_index(bins, x.device)
        lo = feat[..., low]  # [B, G, ratios, F]
        hi = feat[..., low + 1]
        stacked = torch.where(inside, lo + frac * (hi - lo), torch.full_like(lo, -1.0))
        h = torch.cat([feat[:, :, None], stacked], dim=2).reshape(B, -1, bins)  # group-major channels
        h = self._conv(self.inp, h, groups)
        cond = self.cond(sigma_features(sigma.float(), self.config.cond_features))
        cond = cond.view(B, self.config.layers, self.groups, -1)[
            :, :, groups if groups is not None else slice(None)
        ]
        cond = cond.flatten(2)[..., None]  # [B, layers, channels, 1]
        for i, (conv, mix) in enumerate(zip(self.convs, self.mix, strict=True)):
            a = self._conv(conv, h, groups) + cond[:, i]
            if self.glob is not None:
                a = a + self._conv(self.glob[i], h.mean(dim=-1, keepdim=True), groups)
            h = h + self._conv(mix, torch.nn.functional.gelu(a), groups)
        logit = self._conv(self.out, h, groups) + log_snr
        gain = torch.sigmoid(logit)
        return torch.fft.irfft(gain * spec, n=T, dim=-1).to(x.dtype)


class ScoreNet(nn.Module):
    """G independent noise-conditional score networks in one grouped WaveNet.

    Example:
        >>> net = ScoreNet(4, ScoreConfig.preset("tiny"))
        >>> net.score(torch.randn(2, 4, 64), 0.1).shape
        torch.Size([2, 4, 64])
    """

    kind = "score"
    has_likelihood = False  # the gradient of log p only
    noise_conditional = True

    def __init__(self, groups: int, config: ScoreConfig) -> None:
        super().__init__()
        self.groups, self.config = groups, config
        if config.arch == "spectral":
            self.net: nn.Module = SpectralDenoiser(groups, config)
        elif config.arch == "pitch":
            self.net = PitchDenoiser(groups, config, config.sample_rate)
        else:
            self.net = WaveNet(groups, config.fold, config.fold, config.width, config.layers, config.kernel,
                               config.cycle, causal=False, cond_dim=config.cond_features,
                               global_context=config.global_context)  # fmt: skip

    @property
    def hop(self) -> int:
        return self.config.fold

    def valid_length(self, length: int) -> int:
        return -(-length // self.hop) * self.hop

    def receptive_field(self) -> float:
        """Input samples one output sample can depend on (``inf`` with global context)."""
        return self.config.fold * self.net.receptive_field()

    def forward(
        self, x: torch.Tensor, sigma: torch.Tensor | float, groups: list[int] | None = None
    ) -> torch.Tensor:
        """Predicted noise ``eps_hat`` of ``x: [B, G, T]`` at noise level ``sigma`` (scalar or ``[B]``); with
        ``groups`` (WaveNet only), ``x`` holds only those priors' clips and only they are computed."""
        B, G, T = x.shape
        expected = self.groups if groups is None else len(groups)
        if expected != G:
            raise ValueError(f"expected {expected} groups (priors) in dim 1, got {G}")
        if groups is not None and self.config.arch != "wavenet":
            raise ValueError(f"only the WaveNet score network computes chosen groups, not {self.config.arch!r}")
        f = self.config.fold
        if T % f:
            raise ValueError(f"clip length must be a multiple of {f} samples, got {T}")
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.expand(B) if s.dim() == 0 else s
        if self.config.arch != "wavenet":  # whole-clip denoisers answer as score networks
            return (x - self.net(x, s)) / s.view(B, 1, 1)
        cond = sigma_features(s, self.config.cond_features)
        folded = x.view(B, G, T // f, f).transpose(2, 3)  # [B, G, fold, T/fold]: channel j = sample f*t + j
        out = self.net(folded, cond, groups)
        return out.transpose(2, 3).reshape(B, G, T)

    def denoise(
        self, x: torch.Tensor, sigma: torch.Tensor | float, sources: list[int] | None = None
    ) -> torch.Tensor:
        """Each prior's posterior mean of ``x: [B, G, T]`` at noise level sigma (Tweedie: ``x - sigma * eps_hat``).
        With ``sources``, only those are computed (the others are returned as ``x``)."""
        B = x.shape[0]
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.expand(B) if s.dim() == 0 else s
        if sources is None:
            return x - s.view(B, 1, 1) * self(x, s)
        groups = list(sources)
        out = x.clone()
        if self.config.arch == "wavenet":
            out[:, groups] = x[:, groups] - s.view(B, 1, 1) * self(x[:, groups], s, groups)
        elif self.config.arch == "spectral":
            out[:, groups] = self.net(x[:, groups], s, groups=groups)
        else:  # the pitch denoiser has no per-group path: all of it, the asked ones kept
            out[:, groups] = (x - s.view(B, 1, 1) * self(x, s))[:, groups]
        return out

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Estimated gradient of ``log p_sigma(x)``: ``-eps_hat / sigma``, ``[B, G, T]``."""
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
        s = s.view(-1, 1, 1) if s.dim() else s
        return -self(x, sigma) / s

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        raise TypeError("score priors give no likelihood; load flow priors for log-likelihoods")

    def log_prob_and_score(
        self, x: torch.Tensor, sigma: torch.Tensor | float | None = None
    ) -> tuple[None, torch.Tensor]:
        """No density, and the score from one forward pass: ``(None, [B, G, T])``."""
        with torch.no_grad():
            return None, self.score(x, sigma)

    @torch.no_grad()
    def sample(
        self,
        n: int,
        length: int,
        sigma: torch.Tensor | float | None = None,
        generator: torch.Generator | None = None,
        ladder: Sequence[float] = (),
        steps_per_level: int = 20,
        step_scale: float = 0.2,
    ) -> torch.Tensor:
        """``n`` draws ``[n, G, length]`` by annealed Langevin dynamics: from noise of the ``ladder``'s largest
        level down through its levels at or above ``sigma``, ``steps_per_level`` steps of size
        ``step_scale * level^2`` each (BASIS's rule)."""
        sigma = float(sigma)
        levels = [float(v) for v in ladder if float(v) >= sigma - 1e-12] or [sigma]
        device = next(self.parameters()).device
        draw = lambda: torch.randn(n, self.groups, length, generator=generator).to(device)  # noqa: E731
        x = draw() * levels[0]
        for level in levels:
            eta = step_scale * level**2
            for _ in range(steps_per_level):
                x = x + eta * self.score(x, level) + (2 * eta) ** 0.5 * draw()
        return x


def dsm_loss(predicted_noise: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Denoising score matching with sigma^2 weighting: the mean squared error of the predicted noise."""
    return (predicted_noise - noise).pow(2).mean()


def sdr_loss(denoised: torch.Tensor, clean: torch.Tensor, floor_db: float = 60.0) -> torch.Tensor:
    """Mean over clips and sources of the denoised clip's error in dB (``-SDR / 10``, floored at ``floor_db``
    of SDR): ``log10(|d - s|^2 / |s|^2 + 10^(-floor/10))``. A relative error weighs every noise level alike."""
    err = (denoised.float() - clean).pow(2).sum(-1) / clean.pow(2).sum(-1).clamp_min(1e-12)
    return torch.log10(err + 10 ** (-floor_db / 10)).mean()


def _score_loss(model: nn.Module, batch: TrainBatch) -> torch.Tensor:
    predicted = model(batch.noisy, batch.sigma)
    if batch.objective == "sdr":
        return sdr_loss(batch.noisy - batch.sigma[:, None, None] * predicted, batch.clean)
    return dsm_loss(predicted, batch.noise)


KIND = ModelKind(
    name="score",
    model_class=ScoreNet,
    config_class=ScoreConfig,
    presets=SCORE_PRESETS,
    objective="denoising score matching",
    loss=_score_loss,
    nats=False,
    summary="score priors (denoising score matching; no likelihood)",
)
