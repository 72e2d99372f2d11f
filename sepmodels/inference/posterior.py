"""Separation by an amortised posterior: the VAE demixer trained against frozen priors (thesis eq. 50-55).

For a mix ``m`` the encoders give ``q(s_k | m)``, a truncated normal on [-1, 1] per sample of each source.
Training maximises, on mixes alone (no source/mix pairs), the ELBO

    E_q[ log N(m; mix(s), gamma^2) ] + beta * sum_k E_q[ log p_sigma(s_k) - log q(s_k | m) ]

with the priors frozen, by Monte Carlo with reparameterised draws. Separation then takes the posterior means.
All terms are reported in nats per sample of the mix (divided by T).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from sepmodels import mixing
from sepmodels.checkpoint import CheckpointError, default_priors_path, first_line, load_checkpoint, save_checkpoint
from sepmodels.nn.contract import ModelKind, TrainBatch
from sepmodels.nn.vae import VAE_PRESETS, VAEConfig, VAEEncoder
from sepmodels.priors import Prior

DEFAULT_POSTERIOR = "toy_vae.pt"


def default_posterior_path():
    """The VAE posterior shipped beside the default priors (trained against them)."""
    return default_priors_path().parent / DEFAULT_POSTERIOR


@dataclass
class ELBO:
    """One batch's ELBO and its parts, nats per sample of the mix (means over the batch).

    ``mixing``: E_q log N(m; mix(s), gamma^2); ``prior``: sum_k E_q log p(s_k); ``entropy``: sum_k
    E_q[-log q(s_k|m)]; ``elbo = mixing + beta * (prior + entropy)``.
    """

    elbo: torch.Tensor
    mixing: torch.Tensor
    prior: torch.Tensor
    entropy: torch.Tensor

    @property
    def loss(self) -> torch.Tensor:
        return -self.elbo


def elbo(
    encoder: VAEEncoder,
    priors: Prior,
    mixture: torch.Tensor,
    mix: str = "mean",
    generator: torch.Generator | None = None,
    config: VAEConfig | None = None,
) -> ELBO:
    """The ELBO of ``mixture: [B, T]`` under ``encoder`` and the frozen ``priors`` (one draw per mix).

    ``config`` defaults to ``encoder.config`` (pass it when ``encoder`` is wrapped, e.g. by DDP).
    """
    cfg = config or encoder.config
    q = encoder(mixture)
    s = q.rsample(generator)  # [B, N, T]
    T = mixture.shape[-1]
    estimate = mixing.mix(s, mix)
    g2 = cfg.gamma**2
    fit = (-0.5 * (mixture - estimate).pow(2) / g2 - 0.5 * math.log(2 * math.pi * g2)).sum(-1) / T
    sigma = priors.default_sigma if cfg.prior_sigma is None else cfg.prior_sigma
    prior = priors.log_prob(s, sigma).sum(dim=(1, 2)) / T
    entropy = -q.log_prob(s).sum(dim=(1, 2)) / T
    total = fit + cfg.beta * (prior + entropy)
    return ELBO(total.mean(), fit.mean(), prior.mean(), entropy.mean())


class Demixer:
    """A trained VAE posterior with the names of its sources; :meth:`separate` gives posterior means.

    Arguments:
        encoder: the trained :class:`VAEEncoder`.
        names: source names in encoder order.
        sample_rate: rate of the priors it was trained against.
        meta: training metadata (which priors, steps, ...).
    """

    CLASS = "VAEEncoder"
    mix = "mean"  # trained on mixes that are the mean of the sources (the ELBO's default)

    def __init__(self, encoder: VAEEncoder, names: tuple[str, ...], sample_rate: int,
                 meta: dict[str, Any] | None = None) -> None:  # fmt: skip
        if encoder.groups != len(names):
            raise ValueError(f"encoder has {encoder.groups} groups but {len(names)} names were given")
        self.encoder, self.names, self.sample_rate = encoder, tuple(names), sample_rate
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return len(self.names)

    @property
    def device(self) -> torch.device:
        return next(self.encoder.parameters()).device

    @torch.no_grad()
    def separate(self, mixture: torch.Tensor, truth: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior means of the sources of ``mixture: [T]`` (any length): ``[N, T]`` on the CPU (the
        :class:`~sepmodels.inference.separator.Separator` contract; ``truth`` is not used)."""
        if mixture.dim() != 1:
            raise ValueError(f"mixture must be mono [T], got shape {tuple(mixture.shape)}")
        T = mixture.shape[-1]
        padded = torch.nn.functional.pad(mixture, (0, self.encoder.valid_length(T) - T))
        with torch.no_grad():
            return self.encoder(padded[None].to(self.device)).mean[0, :, :T].cpu()

    max_steps = 0  # one forward pass

    def describe(self) -> str:
        return "VAE posterior means"

    def valid_length(self, length: int) -> int:
        return self.encoder.valid_length(length)

    def payload(self) -> dict[str, Any]:
        return {
            "class": self.CLASS,
            "config": self.encoder.config.to_dict(),
            "state_dict": self.encoder.state_dict(),
            "sources": list(self.names),
            "sample_rate": self.sample_rate,
            "meta": self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        save_checkpoint(path, self.payload())

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any], where: str = "checkpoint") -> Demixer:
        if ckpt.get("class") != cls.CLASS:
            raise CheckpointError(
                f"{where} holds a {ckpt.get('class')!r}, not a VAE posterior (train --model vae)"
            )
        try:
            encoder = VAEEncoder(len(ckpt["sources"]), VAEConfig(**ckpt["config"]))
            encoder.load_state_dict(ckpt["state_dict"])
            names = tuple(str(n) for n in ckpt["sources"])
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            first = first_line(err)
            raise CheckpointError(f"{where} does not match its own description ({first[:120]})") from None
        encoder.eval().requires_grad_(False)
        return cls(encoder, names, int(ckpt["sample_rate"]), ckpt.get("meta"))

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str | torch.device = "cpu") -> Demixer:
        demixer = cls.from_checkpoint(load_checkpoint(path), str(path))
        demixer.encoder.to(device)
        return demixer


def _vae_loss(model: torch.nn.Module, batch: TrainBatch) -> torch.Tensor:
    # mixes only: the sources never reach the loss
    return elbo(model, batch.priors, mixing.mix(batch.clean), generator=batch.generator, config=batch.options).loss


KIND = ModelKind(
    name="vae",
    model_class=VAEEncoder,
    config_class=VAEConfig,
    presets=VAE_PRESETS,
    objective="ELBO",
    loss=_vae_loss,
    nats=True,
    role="posterior",
    summary="a VAE posterior trained on mixes against frozen flow or wave priors (--priors)",
)
