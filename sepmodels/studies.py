"""Experiments on trained priors: the thesis's tests of the priors, done with the Jacobian, and separation.

Clips are scored at a noise level sigma as the priors define it: a clean clip plus ``sigma * eps``.

The studies (``sepmodels study ...``) each return a plain dict of tensors, lists and numbers that
:func:`save_study` writes, with what was studied (which priors, which data, when), to a file that loads
with ``weights_only=True`` and that the priors app reads:

- ``cross``: every source's test clips under every prior, at several noise levels (thesis Fig. 15).
- ``noise``: noise conditioning two ways: the thesis's chain of fine-tuned plain flows, and one
  noise-conditional prior conditioned at the same levels; test log-likelihood against the noise added to
  the data (Fig. 16) and the cross-likelihood at each level (Fig. 17).
- ``probes``: constant inputs 0 and 1 and Gaussian noise of growing sigma (Table 2, Fig. 18).
- ``samples``: draws from each prior (Fig. 14).
- ``denoise``: one Tweedie denoising step (each prior's posterior mean of a clean clip plus noise of level
  sigma) at noise levels from 0.01 to 30, scored by SI-SDR, beside the exact toy prior's on toy data: how
  far a prior is from the best possible denoiser, at the levels where separation assigns pitches.
"""

from __future__ import annotations

import functools
import inspect
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from sepmodels.checkpoint import safe_load
from sepmodels.data import toy
from sepmodels.fileio import atomic_path
from sepmodels.metrics import si_sdr
from sepmodels.priors import PriorSet

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


def clean_clips(n: int, length: int, seed: int = 0, data: dict[str, Any] | None = None) -> torch.Tensor:
    """Clean test clips ``[n, sources, length]``: toy test clips, or (``data={"name": "musdb", "root": ...}``)
    aligned crops of the musdb test split. Read once per process: every noise level reuses them."""
    name = "toy" if data is None else data.get("name", "toy")
    return _clean_clips(n, length, seed, name, None if name == "toy" else str(data["root"])).clone()


@functools.lru_cache(maxsize=4)
def _clean_clips(n: int, length: int, seed: int, name: str, root: str | None) -> torch.Tensor:
    if name == "toy":
        return toy.toy_test_set(n, length, seed=seed)
    if name == "musdb":
        from sepmodels.data.musdb import MusdbConfig, MusdbData

        return MusdbData(MusdbConfig(root), "test").aligned(n, length, seed)
    raise ValueError(f"unknown data {name!r}; expected toy or musdb")


def data_sources(data: dict[str, Any] | None) -> tuple[str, ...]:
    """The source names of a data description."""
    if data is None or data.get("name", "toy") == "toy":
        return toy.SOURCES
    from sepmodels.data.musdb import SOURCES

    return SOURCES


def study_clips(
    n: int, length: int, sigma: float, seed: int = 0, data: dict[str, Any] | None = None
) -> torch.Tensor:
    """The noisy test clips the studies score, ``[n, sources, length]``: test clips plus ``sigma * eps``.

    The same ``(n, length, seed, data)`` gives the same clips and the same unit noise at every sigma, so an
    app can rebuild exactly the clip behind a number of a results file.
    """
    clean = clean_clips(n, length, seed, data)
    noise = torch.randn(clean.shape, generator=torch.Generator().manual_seed(seed + 1))
    return clean + sigma * noise


def toy_cross_likelihood(
    priors: PriorSet,
    n: int = 32,
    length: int = 4096,
    sigma: float | None = None,
    seed: int = 0,
    batch: int = 8,
    data: dict[str, Any] | None = None,
) -> CrossLikelihood:
    """Score ``n`` test clips of every source under every prior at ``sigma`` (toy clips unless ``data``)."""
    sigma = priors.default_sigma if sigma is None else sigma
    noisy = study_clips(n, length, sigma, seed, data)
    sources = data_sources(data)
    values = torch.empty(len(sources), len(priors), n)
    for k in range(len(sources)):
        for start in range(0, n, batch):
            clips = noisy[start : start + batch, k]
            values[k, :, start : start + batch] = priors.cross_log_prob(clips, sigma).mean(dim=2).T
    return CrossLikelihood(sources, priors.names, values, float(sigma))


# -- the studies ------------------------------------------------------------------------------------------------
def _need_likelihood(priors: PriorSet, study: str) -> None:
    if not priors.has_likelihood:
        raise StudyError(f"the {study} study needs log-likelihoods; these are score priors (pass flow priors)")


def cross_study(
    priors: PriorSet,
    sigmas: tuple[float, ...] | None = None,
    n: int = 16,
    length: int = 4096,
    seed: int = 0,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Cross-likelihood at every noise level in ``sigmas`` (the priors' own level for plain flows).

    Returns ``values [levels, sources, priors, clips]`` (nats per sample, each clip's mean), the
    ``sigmas``, and the names of sources and priors; means and medians are taken by the reader.
    """
    _need_likelihood(priors, "cross")
    if sigmas is None:
        sigmas = NOISE_LEVELS if priors.noise_conditional else (priors.default_sigma,)
    values = torch.stack([toy_cross_likelihood(priors, n, length, s, seed, data=data).values for s in sigmas])
    sources = list(data_sources(data))
    return {
        "sigmas": [float(s) for s in sigmas],
        "sources": sources,
        "priors": list(priors.names),
        "values": values,
    }


def own_likelihood(priors: PriorSet, sigma: float | None, test_noise: tuple[float, ...], n: int, length: int,
                   seed: int = 0, data: dict[str, Any] | None = None) -> torch.Tensor:  # fmt: skip
    """Mean log-likelihood of each source's test clips plus noise ``test_noise[j]`` under its own prior,
    the prior conditioned at ``sigma``: ``[len(test_noise), sources]``, nats per sample."""
    rows = []
    for s in test_noise:
        x = study_clips(n, length, s, seed, data).to(priors.device)
        with torch.no_grad():
            rows.append(priors.log_prob(x, sigma).mean(dim=(0, 2)).cpu())
    return torch.stack(rows)


def noise_study(
    priors: PriorSet,
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
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Noise conditioning two ways, on the same test clips and levels (toy data unless ``data``, whose
    training split then trains the fine-tuned flows).

    (a) The thesis's: a plain flow of the priors' size is trained at (almost) no noise (``base_sigma``, a
    dequantisation) for ``base_steps``, then fine-tuned ``finetune_steps`` at each level, low to high, each
    fine-tune starting from the previous one. ``finetune_steps = 0`` skips (a).
    (b) Ours: the given noise-conditional priors, conditioned at each level.

    For each model: ``own [test_noise, sources]``, each source's log-likelihood under its own prior against
    the noise added to the data (Fig. 16), and ``cross [sources, priors]`` at the model's level (Fig. 17).
    """
    _need_likelihood(priors, "noise")
    if not priors.noise_conditional:
        raise StudyError("the noise study needs noise-conditional flow priors for its side (b); these are plain")
    from sepmodels.train import TrainConfig, Trainer  # training is only needed here

    result: dict[str, Any] = {"levels": [float(v) for v in levels], "test_noise": [float(v) for v in test_noise],
                              "sources": list(data_sources(data)), "priors": list(priors.names)}  # fmt: skip
    cross = lambda p, s: toy_cross_likelihood(p, n, length, s, seed, data=data).mean  # noqa: E731
    log("noise study (b): the noise-conditional priors at each level")
    result["conditional"] = {
        "own": torch.stack([own_likelihood(priors, s, test_noise, n, length, seed, data) for s in levels]),
        "cross": torch.stack([cross(priors, s) for s in levels]),
    }
    if finetune_steps <= 0:
        return result
    if priors.kind == "exact":
        raise StudyError("the noise study's side (a) fine-tunes a flow of the priors' size, and the exact prior "
                         "has none: pass --finetune-steps 0")  # fmt: skip
    plain = replace(priors.config, noise_conditional=False)
    on = (
        {"data": "toy"}
        if data is None or data.get("name") == "toy"
        else {"data": "musdb", "root": str(data["root"])}
    )
    base_cfg = TrainConfig(steps=base_steps, batch_size=batch_size, sigma_min=base_sigma, seed=seed, **on)
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
    result["finetuned"] = {"labels": labels, "own": torch.stack(own), "cross": torch.stack(crosses),
                           "base_steps": base_steps, "finetune_steps": finetune_steps}  # fmt: skip
    return result


def probe_study(
    priors: PriorSet,
    conditionings: tuple[float, ...] | None = None,
    noise_sigmas: tuple[float, ...] = TEST_NOISE,
    n: int = 4,
    length: int = 4096,
    seed: int = 0,
) -> dict[str, Any]:
    """Constant inputs 0 and 1 and pure Gaussian noise of growing sigma under every prior.

    Returns ``constants [conditionings, 2, priors]`` and ``noise [conditionings, noise_sigmas, priors]``,
    nats per sample; a noise-conditional prior is probed at each level in ``conditionings`` (a plain one
    once).
    """
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
    return {"conditionings": [float(c) for c in conditionings], "values": [0.0, 1.0],
            "noise_sigmas": [float(s) for s in noise_sigmas], "priors": list(priors.names),
            "constants": torch.stack(constants), "noise": torch.stack(noises)}  # fmt: skip


def sample_study(priors: PriorSet, n: int = 3, seconds: float = 1.0, sigma: float | None = None,
                 seed: int = 0) -> dict[str, Any]:  # fmt: skip
    """``n`` draws from every prior, ``samples [n, priors, T]``, at noise level ``sigma``."""
    T = priors.valid_length(max(1, int(seconds * priors.sample_rate)))
    sigma = priors.default_sigma if sigma is None else sigma
    with torch.no_grad():
        x = priors.sample(n, T, sigma, generator=torch.Generator().manual_seed(seed)).cpu()
    if not torch.isfinite(x).all():
        raise StudyError("a prior drew non-finite samples; these priors are broken at this noise level")
    return {"samples": x.float(), "sigma": float(sigma), "priors": list(priors.names),
            "sample_rate": priors.sample_rate}  # fmt: skip


def _denoised(priors: Any, noisy: torch.Tensor, sigma: float, batch: int) -> torch.Tensor:
    """Each source's posterior mean under its own prior, ``[n, N, T] -> [n, N, T]`` on the CPU, in batches."""
    out = [priors.denoise(noisy[i : i + batch].to(priors.device), sigma).detach().float().cpu()
           for i in range(0, len(noisy), batch)]  # fmt: skip
    return torch.cat(out)


def _interfered(priors: Any, clean: torch.Tensor, noise: torch.Tensor, sigma: float, batch: int) -> torch.Tensor:
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


def denoise_study(priors: Any, n: int = 8, length: int = toy.SAMPLE_RATE, seed: int = 0,
                  sigmas: tuple[float, ...] = DENOISE_SIGMAS, data: dict[str, Any] | None = None,
                  reference: bool = True, batch: int = 4, progress: bool = False) -> dict[str, Any]:  # fmt: skip
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
    clean = clean_clips(n, length, seed, data)
    noise = study_clips(n, length, 1.0, seed, data) - clean  # the studies' unit noise for these clips
    exact = None
    if reference and data is None and getattr(priors, "kind", None) != "exact":
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
    results = {"sigmas": [float(s) for s in sigmas], "sources": list(data_sources(data)),
               "priors": list(priors.names), "sample_rate": priors.sample_rate,
               "noisy": torch.stack(rows["noisy"]), "denoised": torch.stack(rows["denoised"]),
               "clean": clean[0].clone(), "noise": noise[0].clone(), "audio": torch.stack(audio),
               "interfered": torch.stack(rows["interfered"])}  # fmt: skip
    if exact is not None:
        results.update(exact=torch.stack(rows["exact"]), exact_audio=torch.stack(exact_audio),
                       exact_interfered=torch.stack(rows["exact_interfered"]))  # fmt: skip
    return results


# -- results files ----------------------------------------------------------------------------------------------
def describe_priors(priors: PriorSet, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
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


def save_study(path: str | os.PathLike[str], study: str, results: dict[str, Any], priors: dict[str, Any],
               data: dict[str, Any]) -> None:  # fmt: skip
    """Write one study's results with what was studied (priors, data) and when, atomically."""
    if study not in STUDIES:
        raise ValueError(f"unknown study {study!r}; expected one of {STUDIES}")
    payload = {"format": STUDY_FORMAT, "version": STUDY_VERSION, "study": study,
               "created": datetime.now(UTC).isoformat(timespec="seconds"), "priors": priors, "data": data,
               "results": results}  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_study(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a results file of :func:`save_study`; anything else raises :class:`StudyError` (one line)."""
    p = Path(path)
    if not p.is_file():
        raise StudyError(f"{p}: no such results file")
    study = safe_load(p, StudyError, "results file")
    if not isinstance(study, dict) or study.get("format") != STUDY_FORMAT:
        raise StudyError(f"{p} is not a sepmodels results file (no '{STUDY_FORMAT}' header)")
    if study.get("version") != STUDY_VERSION or study.get("study") not in STUDIES:
        raise StudyError(f"{p} is a results file this sepmodels cannot read (version {study.get('version')})")
    return study


def run_study(
    name: str, priors: PriorSet, n: int | None = None, seconds: float | None = None, seed: int = 0,
    data: dict[str, Any] | None = None, **options: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Run study ``name`` on test data (toy, or ``data={"name": "musdb", "root": ...}``); returns ``(results,
    data description)``."""
    study = {"cross": cross_study, "noise": noise_study, "probes": probe_study, "samples": sample_study,
             "denoise": denoise_study}[name]  # fmt: skip
    kw = {k: v.default for k, v in inspect.signature(study).parameters.items() if v.default is not v.empty}
    kw.update(seed=seed, **options)
    if data is not None and "data" in kw:
        kw["data"] = data
    if tuple(priors.names) != data_sources(data) and name != "samples":
        raise StudyError(f"these priors are for {', '.join(priors.names)}; the test data has "
                         f"{', '.join(data_sources(data))}")  # fmt: skip
    if n is not None:
        kw["n"] = n
    if seconds is not None and name == "samples":
        kw["seconds"] = seconds
    elif seconds is not None:
        kw["length"] = priors.valid_length(max(1, int(seconds * priors.sample_rate)))
    results = study(priors, **kw)
    length = kw.get("length") or priors.valid_length(int(kw["seconds"] * priors.sample_rate))
    description = {"name": "toy", "split": "test"} if data is None else {"split": "test", **data}
    description.update(seed=seed, n=kw["n"], length=length, sample_rate=priors.sample_rate)
    return results, description
