"""Experiments on trained priors: the thesis's tests of the priors, done with the Jacobian, and separation.

Clips are scored at a noise level sigma as the priors define it: a clean clip plus ``sigma * eps``.

The studies (``sepmodels study ...``) run on a :class:`~sepmodels.data.testsets.TestData` (toy unless told)
and each return a frozen dataclass of tensors, tuples and numbers (:class:`CrossResult`, :class:`NoiseResult`,
:class:`ProbeResult`, :class:`SampleResult`, :class:`DenoiseResult`) that :func:`save_study` writes, as a plain
dict, with what was studied (which priors, which data, when), to a file that loads with ``weights_only=True``;
:func:`load_study` gives it back as a :class:`StudyRecord`, which the priors app reads:

- ``cross``: every source's test clips under every prior, at several noise levels (thesis Fig. 15).
- ``noise``: noise conditioning two ways: the thesis's chain of fine-tuned plain flows, and one
  noise-conditional prior conditioned at the same levels; test log-likelihood against the noise added to
  the data (Fig. 16) and the cross-likelihood at each level (Fig. 17).
- ``probes``: constant inputs 0 and 1 and Gaussian noise of growing sigma (Table 2, Fig. 18).
- ``samples``: draws from each prior (Fig. 14).
- ``denoise``: one Tweedie denoising step (each prior's posterior mean of a clean clip plus noise of level
  sigma) at noise levels from 0.01 to 30, scored by SI-SDR, beside the exact toy prior's on toy data: how
  far a prior is from the true posterior mean (a quadrature: the ceiling as far as its phase grid is fine),
  at the levels where separation assigns pitches.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import torch

from sepmodels.checkpoint import safe_load
from sepmodels.data import toy
from sepmodels.data.testsets import TOY, TestData, test_data_from
from sepmodels.fileio import atomic_path
from sepmodels.metrics import si_sdr
from sepmodels.priors import Prior

STUDY_FORMAT = "sepmodels-study"
STUDY_VERSION = 1
STUDIES = ("cross", "noise", "probes", "samples", "denoise")
# The thesis fine-tuned at 5 geometric noise levels between 0 and 1 (its figures name 0.027, 0.077, 0.359).
NOISE_LEVELS = (0.01, 0.0316, 0.1, 0.316, 1.0)
# Noise added to test data and the sigmas of the noise probes: 1e-3 .. 1, geometric.
TEST_NOISE = tuple(round(10 ** (-3 + 0.5 * i), 6) for i in range(7))
# Denoising levels: from the priors' smallest to where the residual sweep's ladder starts (about 30 to 45).
DENOISE_SIGMAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


class StudyError(ValueError):
    """A study that cannot run or a results file that cannot be read; one line for the user."""


@dataclass(frozen=True)
class CrossLikelihood:
    """Mean log-likelihood (nats per sample) of every source's clips under every prior.

    Attributes:
        sources: the data's source names (rows); ``priors`` the priors' names (columns).
        values: ``[n_sources, n_priors, n_clips]`` per-clip means.
        sigma: noise level the clips were scored at.
    """

    sources: tuple[str, ...]
    priors: tuple[str, ...]
    values: torch.Tensor
    sigma: float

    @property
    def mean(self) -> torch.Tensor:
        return self.values.mean(dim=2)

    @property
    def median(self) -> torch.Tensor:
        return self.values.median(dim=2).values

    def own_first(self) -> torch.Tensor:
        """Per source, the fraction of clips whose own prior gives the highest likelihood: ``[n_sources]``."""
        own = torch.tensor([self.priors.index(s) for s in self.sources])
        best = self.values.argmax(dim=1)  # [n_sources, n_clips]
        return (best == own[:, None]).double().mean(dim=1)

    def table(self) -> str:
        """A plain-text table of the means with the own-prior-first rate."""
        corner = "data / prior"
        head = f"{corner:<14}" + "".join(f"{p:>11}" for p in self.priors) + f"{'own first':>11}"
        rows = [head]
        for i, s in enumerate(self.sources):
            cells = "".join(f"{float(v):>11.3f}" for v in self.mean[i])
            rows.append(f"{s:<14}{cells}{100 * float(self.own_first()[i]):>10.0f}%")
        return "\n".join(rows)


# -- what the studies return ----------------------------------------------------------------------------------
class _Saved:
    """A result written as a plain dict (tuples as lists, nested results as dicts, ``None`` fields left out), so
    that files load with ``weights_only=True`` and the files written before these classes still read."""

    _NESTED: ClassVar[dict[str, type[_Saved]]] = {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if v is None:
                continue
            out[f.name] = v.to_dict() if isinstance(v, _Saved) else list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Any:
        """The result of a results file's ``results`` dict; a missing or unknown key raises ``KeyError`` or
        ``TypeError``."""
        kw = {k: cls._NESTED[k].from_dict(v) if k in cls._NESTED else tuple(v) if isinstance(v, list) else v
              for k, v in d.items()}  # fmt: skip
        return cls(**kw)


@dataclass(frozen=True)
class CrossResult(_Saved):
    """The cross-likelihood at several noise levels (``sepmodels study cross``).

    Attributes:
        sigmas: the noise levels (of the clips and the priors' conditioning).
        sources: the data's source names (rows); ``priors`` the priors' names (columns).
        values: ``[levels, sources, priors, clips]``, each clip's mean log-likelihood, nats per sample.
    """

    sigmas: tuple[float, ...]
    sources: tuple[str, ...]
    priors: tuple[str, ...]
    values: torch.Tensor

    def at(self, i: int) -> CrossLikelihood:
        """The cross-likelihood at level ``sigmas[i]``."""
        return CrossLikelihood(self.sources, self.priors, self.values[i], self.sigmas[i])


@dataclass(frozen=True)
class ConditionedFlows(_Saved):
    """Side (b) of the noise study: the noise-conditional priors conditioned at each level.

    Attributes:
        own: ``[levels, test_noise, sources]``, each source's clips plus test noise under its own prior.
        cross: ``[levels, sources, priors]``, the mean cross-likelihood at each level (data and prior).
    """

    own: torch.Tensor
    cross: torch.Tensor


@dataclass(frozen=True)
class FinetunedFlows(_Saved):
    """Side (a) of the noise study: a plain flow, then a chain of fine-tunes, one per level.

    Attributes:
        labels: each model's legend, the plain base flow first (``levels + 1`` models).
        own: ``[models, test_noise, sources]``; ``cross`` ``[models, sources, priors]``, as in
            :class:`ConditionedFlows`.
        base_steps, finetune_steps: training steps of the base flow and of each fine-tune.
    """

    labels: tuple[str, ...]
    own: torch.Tensor
    cross: torch.Tensor
    base_steps: int
    finetune_steps: int


@dataclass(frozen=True)
class NoiseResult(_Saved):
    """Noise conditioning two ways (``sepmodels study noise``); nats per sample throughout.

    Attributes:
        levels: the noise levels of the models; ``test_noise`` the noise added to the test clips.
        sources, priors: names of the rows and columns of ``cross``.
        conditional: the noise-conditional priors (b).
        finetuned: the thesis's fine-tuned flows (a), or None when they were not trained.
    """

    _NESTED: ClassVar[dict[str, type[_Saved]]] = {"conditional": ConditionedFlows, "finetuned": FinetunedFlows}

    levels: tuple[float, ...]
    test_noise: tuple[float, ...]
    sources: tuple[str, ...]
    priors: tuple[str, ...]
    conditional: ConditionedFlows
    finetuned: FinetunedFlows | None = None


@dataclass(frozen=True)
class ProbeResult(_Saved):
    """Constant inputs and Gaussian noise under every prior (``sepmodels study probes``), nats per sample.

    Attributes:
        conditionings: the levels the priors were conditioned at.
        values: the constant inputs (0 and 1).
        noise_sigmas: standard deviations of the noise inputs.
        priors: the priors' names.
        constants: ``[conditionings, values, priors]``; ``noise`` ``[conditionings, noise_sigmas, priors]``.
    """

    conditionings: tuple[float, ...]
    values: tuple[float, ...]
    noise_sigmas: tuple[float, ...]
    priors: tuple[str, ...]
    constants: torch.Tensor
    noise: torch.Tensor


@dataclass(frozen=True)
class SampleResult(_Saved):
    """Draws from every prior (``sepmodels study samples``).

    Attributes:
        samples: ``[n, priors, T]``, float32.
        sigma: the noise level drawn at; ``sample_rate`` in Hz.
    """

    samples: torch.Tensor
    sigma: float
    priors: tuple[str, ...]
    sample_rate: int


@dataclass(frozen=True)
class DenoiseResult(_Saved):
    """One denoising step per noise level (``sepmodels study denoise``); SI-SDR in dB.

    Attributes:
        sigmas: the noise levels; ``sources``, ``priors`` the names; ``sample_rate`` Hz.
        noisy, denoised: ``[sigmas, sources, n]``, the noisy input's and each prior's posterior mean's.
        clean, noise: clip 0 of every source and its unit noise, ``[N, T]`` (the input is ``clean + sigma *
            noise``); ``audio [sigmas, N, T]`` the posterior means of it, float16.
        interfered: ``[sigmas, N (own), N (added), n]`` with another source's clip added (diagonal NaN); None
            in files written before it existed.
        exact, exact_audio, exact_interfered: the same for the exact toy prior, or None (not toy data, or the
            studied priors are the exact ones).
    """

    sigmas: tuple[float, ...]
    sources: tuple[str, ...]
    priors: tuple[str, ...]
    sample_rate: int
    noisy: torch.Tensor
    denoised: torch.Tensor
    clean: torch.Tensor
    noise: torch.Tensor
    audio: torch.Tensor
    interfered: torch.Tensor | None = None
    exact: torch.Tensor | None = None
    exact_audio: torch.Tensor | None = None
    exact_interfered: torch.Tensor | None = None

    @property
    def has_exact(self) -> bool:
        return self.exact is not None


StudyResult = CrossResult | NoiseResult | ProbeResult | SampleResult | DenoiseResult
RESULT_TYPES: dict[str, type[_Saved]] = {"cross": CrossResult, "noise": NoiseResult, "probes": ProbeResult,
                                         "samples": SampleResult, "denoise": DenoiseResult}  # fmt: skip


@dataclass(frozen=True)
class StudyRecord:
    """A loaded results file: which study, of which priors, on which data, when, and its typed results.

    Attributes:
        study: the study's name (one of :data:`STUDIES`).
        priors: what :func:`describe_priors` said about the priors (path, kind, config, sources, ...).
        data: the test data's description (its ``name``, ``split``, musdb's ``root``) with the clips' ``seed``,
            ``n``, ``length`` (samples) and ``sample_rate`` (Hz).
        created: when the file was written, ISO 8601 (UTC).
        results: the study's result.
    """

    study: str
    priors: dict[str, Any]
    data: dict[str, Any]
    created: str
    results: StudyResult

    @property
    def test_data(self) -> TestData:
        """The test data the study ran on, to redraw its clips."""
        return test_data_from(self.data)


def study_clips(n: int, length: int, sigma: float, seed: int = 0, data: TestData = TOY) -> torch.Tensor:
    """The noisy test clips the studies score, ``[n, sources, length]``: ``data``'s clips plus ``sigma * eps``.

    The same ``(n, length, seed, data)`` gives the same clips and the same unit noise at every sigma, so an
    app can rebuild exactly the clip behind a number of a results file.
    """
    clean = data.clean(n, length, seed)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed + 1))
    return clean + sigma * noise


def cross_likelihood(
    priors: Prior,
    n: int = 32,
    length: int = 4096,
    sigma: float | None = None,
    seed: int = 0,
    batch: int = 8,
    data: TestData = TOY,
) -> CrossLikelihood:
    """Score ``n`` test clips of every source of ``data`` under every prior at ``sigma``."""
    sigma = priors.default_sigma if sigma is None else sigma
    noisy = study_clips(n, length, sigma, seed, data)
    values = torch.empty(len(data.sources), len(priors), n)
    for k in range(len(data.sources)):
        for start in range(0, n, batch):
            clips = noisy[start : start + batch, k]
            values[k, :, start : start + batch] = priors.cross_log_prob(clips, sigma).mean(dim=2).T
    return CrossLikelihood(data.sources, priors.names, values, float(sigma))


# -- the studies ------------------------------------------------------------------------------------------------
def _need_likelihood(priors: Prior, study: str) -> None:
    if not priors.has_likelihood:
        raise StudyError(f"the {study} study needs log-likelihoods; these are score priors (pass flow priors)")


def cross_study(
    priors: Prior,
    sigmas: tuple[float, ...] | None = None,
    n: int = 16,
    length: int = 4096,
    seed: int = 0,
    data: TestData = TOY,
) -> CrossResult:
    """Cross-likelihood at every noise level in ``sigmas`` (the priors' own level for plain flows); means and
    medians over the clips are taken by the reader."""
    _need_likelihood(priors, "cross")
    if sigmas is None:
        sigmas = NOISE_LEVELS if priors.noise_conditional else (priors.default_sigma,)
    values = torch.stack([cross_likelihood(priors, n, length, s, seed, data=data).values for s in sigmas])
    return CrossResult(tuple(float(s) for s in sigmas), data.sources, tuple(priors.names), values)


def own_likelihood(priors: Prior, sigma: float | None, test_noise: tuple[float, ...], n: int, length: int,
                   seed: int = 0, data: TestData = TOY) -> torch.Tensor:  # fmt: skip
    """Mean log-likelihood of each source's test clips plus noise ``test_noise[j]`` under its own prior,
    the prior conditioned at ``sigma``: ``[len(test_noise), sources]``, nats per sample."""
    rows = []
    for s in test_noise:
        x = study_clips(n, length, s, seed, data).to(priors.device)
        with torch.no_grad():
            rows.append(priors.log_prob(x, sigma).mean(dim=(0, 2)).cpu())
    return torch.stack(rows)


def noise_study(
    priors: Prior,
    levels: tuple[float, ...] = NOISE_LEVELS,
    test_noise: tuple[float, ...] = TEST_NOISE,
    n: int = 8,
    length: int = 4096,
    seed: int = 0,
    finetune_steps: int = 100,
    base_steps: int = 300,
    base_sigma: float = 1e-3,
    batch_size: int = 8,
    work_dir: str | os.PathLike[str] | None = None,
    progress: bool = False,
    log: Callable[[str], None] = lambda _msg: None,
    data: TestData = TOY,
) -> NoiseResult:
    """Noise conditioning two ways, on the same test clips and levels of ``data``, whose training split
    trains the fine-tuned flows.

    (a) The thesis's: a plain flow of the priors' size is trained at (almost) no noise (``base_sigma``, a
    dequantisation) for ``base_steps``, then fine-tuned ``finetune_steps`` at each level, low to high, each
    fine-tune starting from the previous one. ``finetune_steps = 0`` skips (a).
    (b) Ours: the given noise-conditional priors, conditioned at each level.

    For each model (:class:`ConditionedFlows`, :class:`FinetunedFlows`): ``own [test_noise, sources]``, each
    source's log-likelihood under its own prior against the noise added to the data (Fig. 16), and ``cross
    [sources, priors]`` at the model's level (Fig. 17).
    """
    _need_likelihood(priors, "noise")
    if not priors.noise_conditional:
        raise StudyError("the noise study needs noise-conditional flow priors for its side (b); these are plain")
    from sepmodels.train import TrainConfig, Trainer  # training is only needed here

    cross = lambda p, s: cross_likelihood(p, n, length, s, seed, data=data).mean  # noqa: E731
    log("noise study (b): the noise-conditional priors at each level")
    conditional = ConditionedFlows(
        own=torch.stack([own_likelihood(priors, s, test_noise, n, length, seed, data) for s in levels]),
        cross=torch.stack([cross(priors, s) for s in levels]),
    )
    result = NoiseResult(tuple(float(v) for v in levels), tuple(float(v) for v in test_noise), data.sources,
                         tuple(priors.names), conditional)  # fmt: skip
    if finetune_steps <= 0:
        return result
    if priors.kind == "exact":
        raise StudyError("the noise study's side (a) fine-tunes a flow of the priors' size, and the exact prior "
                         "has none: pass --finetune-steps 0")  # fmt: skip
    plain = replace(priors.config, noise_conditional=False)
    base_cfg = TrainConfig(steps=base_steps, batch_size=batch_size, sigma_min=base_sigma, seed=seed,
                           **data.train_options())  # fmt: skip
    own, crosses, labels = [], [], []
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        log(f"noise study (a): training the plain flow at sigma {base_sigma:g} for {base_steps} steps")
        device = str(priors.device)
        model = Trainer(Path(tmp) / "base", plain, base_cfg, device=device, progress=progress).run()
        own.append(own_likelihood(model, None, test_noise, n, length, seed, data))
        crosses.append(cross(model, base_sigma))
        labels.append(f"plain, sigma {base_sigma:g}")
        for i, level in enumerate(levels):
            log(f"noise study (a): fine-tuning at sigma {level:g} for {finetune_steps} steps")
            cfg = replace(base_cfg, steps=finetune_steps, sigma_min=level, sigma_max=max(1.0, level),
                          lr=base_cfg.lr * 0.5, seed=seed + 1 + i)  # fmt: skip
            model = Trainer(
                Path(tmp) / f"level{i}", plain, cfg, device=device, progress=progress, init=model
            ).run()
            own.append(own_likelihood(model, None, test_noise, n, length, seed, data))
            crosses.append(cross(model, level))
            labels.append(f"fine-tuned at {level:g}")
    finetuned = FinetunedFlows(tuple(labels), torch.stack(own), torch.stack(crosses), base_steps, finetune_steps)
    return replace(result, finetuned=finetuned)


def probe_study(
    priors: Prior,
    conditionings: tuple[float, ...] | None = None,
    noise_sigmas: tuple[float, ...] = TEST_NOISE,
    n: int = 4,
    length: int = 4096,
    seed: int = 0,
) -> ProbeResult:
    """Constant inputs 0 and 1 and pure Gaussian noise of growing sigma under every prior; a noise-conditional
    prior is probed at each level in ``conditionings`` (a plain one once)."""
    _need_likelihood(priors, "probes")
    if conditionings is None:
        conditionings = NOISE_LEVELS if priors.noise_conditional else (priors.default_sigma,)
    P, T = len(priors), priors.valid_length(length)
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, P, T, generator=g)
    constants, noises = [], []
    with torch.no_grad():
        for c in conditionings:
            x = torch.stack([torch.zeros(P, T), torch.ones(P, T)]).to(priors.device)
            constants.append(priors.log_prob(x, c).mean(dim=2).cpu())
            noises.append(torch.stack([priors.log_prob((s * noise).to(priors.device), c).mean(dim=(0, 2)).cpu()
                                       for s in noise_sigmas]))  # fmt: skip
    return ProbeResult(tuple(float(c) for c in conditionings), (0.0, 1.0), tuple(float(s) for s in noise_sigmas),
                       tuple(priors.names), torch.stack(constants), torch.stack(noises))  # fmt: skip


def sample_study(priors: Prior, n: int = 3, seconds: float = 1.0, sigma: float | None = None,
                 seed: int = 0) -> SampleResult:  # fmt: skip
    """``n`` draws from every prior, ``samples [n, priors, T]``, at noise level ``sigma``."""
    T = priors.valid_length(max(1, int(seconds * priors.sample_rate)))
    sigma = priors.default_sigma if sigma is None else sigma
    with torch.no_grad():
        x = priors.sample(n, T, sigma, generator=torch.Generator().manual_seed(seed)).cpu()
    if not torch.isfinite(x).all():
        raise StudyError("a prior drew non-finite samples; these priors are broken at this noise level")
    return SampleResult(x.float(), float(sigma), tuple(priors.names), priors.sample_rate)


def _denoised(priors: Prior, noisy: torch.Tensor, sigma: float, batch: int) -> torch.Tensor:
    """Each source's posterior mean under its own prior, ``[n, N, T] -> [n, N, T]`` on the CPU, in batches."""
    out = [priors.denoise(noisy[i : i + batch].to(priors.device), sigma).detach().float().cpu()
           for i in range(0, len(noisy), batch)]  # fmt: skip
    return torch.cat(out)


def _interfered(priors: Prior, clean: torch.Tensor, noise: torch.Tensor, sigma: float, batch: int) -> torch.Tensor:
    """SI-SDR of each prior's posterior mean of its clip plus another source's clip plus noise, against its own
    clip: ``[N (own), N (added), n]``, NaN where the two are the same source."""
    n, N, _ = clean.shape
    out = torch.full((N, N, n), float("nan"))
    for shift in range(1, N):
        other = clean.roll(shift, dims=1)  # other[:, k] is source k - shift
        est = _denoised(priors, clean + other + sigma * noise, sigma, batch)
        for k in range(N):
            out[k, (k - shift) % N] = si_sdr(est[:, k], clean[:, k])
    return out


def denoise_study(priors: Prior, n: int = 8, length: int = toy.SAMPLE_RATE, seed: int = 0,
                  sigmas: tuple[float, ...] = DENOISE_SIGMAS, data: TestData = TOY,
                  reference: bool = True, batch: int = 4, progress: bool = False) -> DenoiseResult:  # fmt: skip
    """One denoising step per noise level: SI-SDR (dB) of each test clip plus ``sigma * eps`` (``noisy``) and of
    each prior's posterior mean of it (``denoised``), ``[sigmas, sources, n]``; on toy data also the exact
    toy prior's posterior mean (``exact``), the best any prior can do.

    ``interfered [sigmas, N, N, n]``: the same with another source's clip added, ``clean_k + clean_j + sigma *
    eps``, scored against ``clean_k`` (diagonal NaN): whether a prior leaves a foreign source alone, which is what
    lets a separation sweep explain away (``exact_interfered`` likewise). Denoising a solo clip cannot show it.

    For listening, clip 0 of every source is kept: ``clean [N, T]``, its unit noise ``noise [N, T]`` (the noisy
    input at level sigma is ``clean + sigma * noise``) and the posterior means ``audio [sigmas, N, T]`` (and
    ``exact_audio``), float16.
    """
    from tqdm.auto import tqdm

    from sepmodels.nn.exact import ExactToyPriors

    length = priors.valid_length(length)
    clean = data.clean(n, length, seed)
    noise = study_clips(n, length, 1.0, seed, data) - clean  # the studies' unit noise for these clips
    exact = None
    if reference and data.name == "toy" and getattr(priors, "kind", None) != "exact":
        if priors.sample_rate != toy.SAMPLE_RATE or tuple(priors.names) != toy.SOURCES:
            raise StudyError("the exact reference is for the toy sources at the toy rate; pass reference=False")
        exact = ExactToyPriors()
        try:
            exact.valid_length(length)
        except ValueError as err:
            raise StudyError(f"the exact reference cannot take these clips: {err}") from None
    rows: dict[str, list[torch.Tensor]] = {"noisy": [], "denoised": [], "exact": [], "interfered": [],
                                           "exact_interfered": []}  # fmt: skip
    audio, exact_audio = [], []
    for sigma in tqdm(sigmas, desc="denoise", unit="sigma", disable=not progress):
        noisy = clean + sigma * noise
        rows["noisy"].append(si_sdr(noisy, clean).T)
        est = _denoised(priors, noisy, sigma, batch)
        if not torch.isfinite(est).all():
            raise StudyError(f"the priors' posterior mean at sigma {sigma:g} is not finite")
        rows["denoised"].append(si_sdr(est, clean).T)
        audio.append(est[0].half())
        rows["interfered"].append(_interfered(priors, clean, noise, sigma, batch))
        if exact is not None:
            ref = _denoised(exact, noisy, sigma, batch)
            rows["exact"].append(si_sdr(ref, clean).T)
            exact_audio.append(ref[0].half())
            rows["exact_interfered"].append(_interfered(exact, clean, noise, sigma, batch))
    results = DenoiseResult(
        sigmas=tuple(float(s) for s in sigmas), sources=data.sources, priors=tuple(priors.names),
        sample_rate=priors.sample_rate, noisy=torch.stack(rows["noisy"]), denoised=torch.stack(rows["denoised"]),
        clean=clean[0].clone(), noise=noise[0].clone(), audio=torch.stack(audio),
        interfered=torch.stack(rows["interfered"]),
    )  # fmt: skip
    if exact is None:
        return results
    return replace(results, exact=torch.stack(rows["exact"]), exact_audio=torch.stack(exact_audio),
                   exact_interfered=torch.stack(rows["exact_interfered"]))  # fmt: skip


# -- results files ----------------------------------------------------------------------------------------------
def describe_priors(priors: Prior, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What a results file says about the priors it studied."""
    return {
        "path": str(path) if path else "shipped default",
        "kind": priors.kind,
        **priors.describe(),
        "sources": list(priors.names),
        "sample_rate": priors.sample_rate,
        "step": priors.meta.get("step"),
        "trained": priors.meta.get("saved"),
    }


def save_study(path: str | os.PathLike[str], study: str, results: StudyResult, priors: dict[str, Any],
               data: dict[str, Any]) -> None:  # fmt: skip
    """Write one study's results with what was studied (priors, data) and when, atomically."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; expected one of {STUDIES}")
    if not isinstance(results, RESULT_TYPES[study]):
        raise TypeError(f"the {study} study's results are a {RESULT_TYPES[study].__name__}, got "
                        f"{type(results).__name__}")  # fmt: skip
    payload = {"format": STUDY_FORMAT, "version": STUDY_VERSION, "study": study,
               "created": datetime.now(UTC).isoformat(timespec="seconds"), "priors": priors, "data": data,
               "results": results.to_dict()}  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_study(path: str | os.PathLike[str]) -> StudyRecord:
    """Read a results file of :func:`save_study`; anything else raises :class:`StudyError` (one line)."""
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"{p}: no such results file")
    study = safe_load(p, StudyError, "results file")
    if not isinstance(study, dict) or study.get("format") != STUDY_FORMAT:
        raise StudyError(f"{p} is not a sepmodels results file (no '{STUDY_FORMAT}' header)")
    if study.get("version") != STUDY_VERSION or study.get("study") not in STUDIES:
        raise StudyError(f"{p} is a results file this sepmodels cannot read (version {study.get('version')})")
    name = study["study"]
    try:
        results = RESULT_TYPES[name].from_dict(study["results"])
        return StudyRecord(name, dict(study["priors"]), dict(study["data"]), str(study["created"]), results)
    except (KeyError, TypeError, ValueError) as err:
        raise StudyError(f"{p} is a {name} results file with unexpected contents ({err!r})") from None


def run_study(
    name: str, priors: Prior, n: int | None = None, seconds: float | None = None, seed: int = 0,
    data: TestData = TOY, **options: Any,
) -> tuple[StudyResult, dict[str, Any]]:  # fmt: skip
    """Run study ``name`` on the test clips of ``data``; returns ``(results, data description)``, the description
    with the clips' ``seed``, ``n``, ``length`` and ``sample_rate``."""
    study = {"cross": cross_study, "noise": noise_study, "probes": probe_study, "samples": sample_study,
             "denoise": denoise_study}[name]  # fmt: skip
    kw = {k: v.default for k, v in inspect.signature(study).parameters.items() if v.default is not v.empty}
    kw.update(seed=seed, **options)
    if "data" in kw:
        kw["data"] = data
    if tuple(priors.names) != data.sources and name != "samples":
        raise StudyError(f"these priors are for {', '.join(priors.names)}; the test data has "
                         f"{', '.join(data.sources)}")  # fmt: skip
    if n is not None:
        kw["n"] = n
    if seconds is not None and name == "samples":
        kw["seconds"] = seconds
    elif seconds is not None:
        kw["length"] = priors.valid_length(max(1, int(seconds * priors.sample_rate)))
    results = study(priors, **kw)
    length = kw.get("length") or priors.valid_length(int(kw["seconds"] * priors.sample_rate))
    description = data.describe()
    description.update(seed=seed, n=kw["n"], length=length, sample_rate=priors.sample_rate)
    return results, description
