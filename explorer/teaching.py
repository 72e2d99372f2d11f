"""Small computations behind the teaching notebooks, kept here so that the notebooks only call and draw.

- :func:`change_of_variables`: a 1-D flow ``x = f(z)`` of a standard normal, its density by the change of
  variables formula and a histogram of its samples, which must agree.
- :func:`coupling_walkthrough`: one squeeze and one affine coupling applied to a clip, with the log-
  determinant and the round trip.
- :func:`ELBOPart` / :func:`elbo_parts`: the ELBO of a VAE posterior on a mix, term by term.
- :func:`train_briefly`: a few steps of a VAE posterior at a given beta, for comparing betas.
- :func:`amortised_terms`: the amortised posterior's ELBO on a mix term by term, under the encoder's reading
  and with a source's pitch forced elsewhere; :func:`note_tracks`: the pitch tracks it decodes and the truth's.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass

import numpy as np
import torch

from sepmodels import mixing
from sepmodels.data import toy
from sepmodels.inference.posterior import Demixer, elbo
from sepmodels.nn.flows import AffineCoupling, Squeeze
from sepmodels.nn.vae import VAEConfig
from sepmodels.priors import PriorSet
from sepmodels.train import TrainConfig, Trainer


@dataclass
class ChangeOfVariables:
    """A 1-D flow ``x = shift + exp(log_scale) * (z + bend * tanh(z))``, ``z ~ N(0, 1)``.

    ``x``, ``density``: the curve of p(x) from the formula ``p(x) = p(z) / |dx/dz|``; ``edges``, ``histogram``:
    a normalised histogram of ``f(z)`` for sampled ``z``; ``integral``: the trapezoid integral of ``density``.
    """

    x: np.ndarray
    density: np.ndarray
    edges: np.ndarray
    histogram: np.ndarray
    integral: float


def change_of_variables(shift: float = 0.0, log_scale: float = 0.0, bend: float = 0.0, samples: int = 20_000,
                        seed: int = 0) -> ChangeOfVariables:  # fmt: skip
    """Density of ``x = f(z)`` two ways; ``bend > -1`` keeps f increasing, hence invertible."""
    if bend <= -1:
        raise ValueError(f"bend must be above -1 for f to be invertible, got {bend}")
    z = np.linspace(-6, 6, 2001)
    f = lambda v: shift + math.exp(log_scale) * (v + bend * np.tanh(v))  # noqa: E731
    dxdz = math.exp(log_scale) * (1 + bend * (1 - np.tanh(z) ** 2))
    p_z = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    x, density = f(z), p_z / dxdz
    draws = f(np.random.default_rng(seed).standard_normal(samples))
    hist, edges = np.histogram(draws, bins=80, density=True)
    return ChangeOfVariables(x, density, edges, hist, float(np.trapezoid(density, x)))


@dataclass
class CouplingWalkthrough:
    """A clip through ``Squeeze`` then one ``AffineCoupling``: shapes, the log-determinant per time step
    and the round-trip error."""

    squeezed: torch.Tensor  # [2, T/2]
    transformed: torch.Tensor  # [2, T/2]
    logdet: torch.Tensor  # [T/2]: log |det| of each step's 2 x 2 block
    round_trip_error: float


@torch.no_grad()
def coupling_walkthrough(clip: torch.Tensor, seed: int = 0) -> CouplingWalkthrough:
    """Squeeze ``clip: [T]`` to 2 channels and apply an affine coupling with random (not identity) weights."""
    torch.manual_seed(seed)
    squeeze, coupling = Squeeze(), AffineCoupling(1, 2, width=8, layers=3)
    for p in coupling.parameters():  # a fresh coupling is the identity; move it off so something happens
        p.add_(0.3 * torch.randn_like(p))
    x = clip.reshape(1, 1, 1, -1)
    s, _ = squeeze(x)
    y, logdet = coupling(s)
    back, _ = squeeze.inverse(coupling.inverse(y)[0])
    return CouplingWalkthrough(s[0, 0], y[0, 0], logdet[0, 0].sum(0), float((back - x).abs().max()))


@dataclass
class ELBOPart:
    """The ELBO of one mix, nats per sample: ``elbo = mixing + beta * (prior + entropy)``; ``kl`` is minus
    ``prior + entropy`` (the Monte Carlo KL from the posterior to the priors)."""

    beta: float
    elbo: float
    mixing: float
    prior: float
    entropy: float

    @property
    def kl(self) -> float:
        return -(self.prior + self.entropy)


@torch.no_grad()
def elbo_parts(demixer: Demixer, priors: PriorSet, mixture: torch.Tensor, draws: int = 8,
               seed: int = 0) -> ELBOPart:  # fmt: skip
    """Average the ELBO's terms over ``draws`` posterior samples for ``mixture: [T]``."""
    g = torch.Generator().manual_seed(seed)
    T = L = mixture.shape[-1]
    while demixer.encoder.valid_length(L) != L or priors.valid_length(L) != L:  # a length both accept
        L = priors.valid_length(demixer.encoder.valid_length(L))
    m = torch.nn.functional.pad(mixture, (0, L - T))[None]
    parts = [elbo(demixer.encoder, priors, m, generator=g) for _ in range(draws)]
    mean = lambda name: float(sum(float(getattr(p, name)) for p in parts) / draws)  # noqa: E731
    return ELBOPart(demixer.encoder.config.beta, mean("elbo"), mean("mixing"), mean("prior"), mean("entropy"))


def train_briefly(priors: PriorSet, beta: float, steps: int, config: str = "tiny", seed: int = 0,
                  progress: bool = True) -> Demixer:  # fmt: skip
    """Train a VAE posterior against ``priors`` for ``steps`` steps at ``beta`` (in a temporary folder)."""
    from dataclasses import replace

    cfg = replace(VAEConfig.preset(config), beta=beta)
    train = TrainConfig(steps=steps, batch_size=4, length=1024, seed=seed, checkpoint_every=max(steps, 1))
    with tempfile.TemporaryDirectory() as tmp:
        return Trainer(tmp, cfg, train, progress=progress, priors=priors).run()


def toy_mix(seconds: float, seed: int, sample_rate: int = toy.SAMPLE_RATE) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy mix ``[T]`` and its sources ``[4, T]`` from a seed; T is a multiple of 64, a length every
    shipped model accepts."""
    length = max(64, int(seconds * sample_rate) // 64 * 64)
    clips = toy.toy_batch(1, length, torch.Generator().manual_seed(seed), sample_rate)
    return mixing.mix(clips)[0], clips[0]


def toy_mix_with_params(
    seconds: float, seed: int, variant: str = "keys"
) -> tuple[torch.Tensor, torch.Tensor, toy.ToyClipParams]:
    """A toy mix ``[T]`` of ``variant``'s notes, its sources ``[4, T]`` and what was drawn for them."""
    length = max(64, int(seconds * toy.SAMPLE_RATE))
    params = toy.draw_params(1, torch.Generator().manual_seed(seed), options=variant)
    clips = toy.render(params, length)
    return mixing.mix(clips)[0], clips[0], params


def amortised_terms(posterior, mixture: torch.Tensor, cases: dict[str, dict[int, int]]) -> list[dict[str, object]]:
    """The amortised posterior's ELBO on ``mixture [T]`` and its terms (nats per sample,
    :func:`~sepmodels.inference.amortised.mix_elbo`), under the encoder's own categoricals and under each of
    ``cases`` (name -> {source: pitch bin}: those sources' whole mass put on that bin). Every case is summed over
    the same support, with the other sources held at the pass's reading."""
    from sepmodels.inference.amortised import mix_elbo, supports

    total = mixture.double() * len(posterior)
    with torch.no_grad():
        logits = posterior.encode(total[None])[0].double()
    extra: dict[int, list[int]] = {}
    for forced in cases.values():
        for k, b in forced.items():
            extra.setdefault(k, []).append(b)
    reading, support = supports(posterior, total, logits, extra)
    rows = []
    for name, forced in {"the encoder's reading": {}, **cases}.items():
        z = logits.clone()
        for k, b in forced.items():
            z[k] = -1e4
            z[k, b] = 0.0
        with torch.no_grad():
            parts = mix_elbo(posterior, total, z, reading, support)
        rows.append({"case": name, "ELBO": float(parts.elbo), "fit E_q log p(x|z)": float(parts.fit),
                     "prior E_q log p(z)": float(parts.prior), "entropy H(q)": float(parts.entropy)})  # fmt: skip
    return rows


def note_tracks(posterior, mixture: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The pitch track (Hz per sample) of each note the amortised posterior decodes from ``mixture [T]``, and its
    separated sources ``[N, T]``."""
    readings = posterior.readings(posterior.read(mixture))
    notes = posterior.decode_best(mixture.double() * len(posterior), readings)  # as separate() decodes
    rate = posterior.sample_rate
    return [n.pitch(rate) for n in notes], torch.stack([n.wave for n in notes]).float()
