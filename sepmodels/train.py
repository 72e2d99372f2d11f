"""One training loop for every model kind of :mod:`sepmodels.registry`, on toy or musdb sources.

One step: a batch of clean clips ``[B, N, T]``, a noise level per clip drawn log-uniformly from the
ladder's range, ``x + sigma * eps``, and the kind's own loss on that batch (:class:`ModelKind`): minus the
log-likelihood in nats per sample for flows and autoregressive priors (every prior with equal weight; the
thesis's code under-weighted the log-determinant 4x: RESEARCH.md §2), denoising score matching for score
networks, minus the ELBO for a VAE posterior trained against frozen priors.

Adam with the thesis's schedule (the learning rate times 0.6 at five evenly spaced steps), gradient
clipping, a CSV log, atomic self-describing checkpoints that resume exactly, a NaN guard, and
DistributedDataParallel when started by ``torchrun``.
"""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from sepmodels.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sepmodels.data import toy
from sepmodels.devices import pick_device
from sepmodels.energy import EnergyMeter, EnergyReading
from sepmodels.inference.posterior import Demixer
from sepmodels.nn.contract import TrainBatch
from sepmodels.priors import NoiseLadder, Prior, PriorSet
from sepmodels.registry import kind_of_class, kind_of_config

log = logging.getLogger(__name__)

CHECKPOINT = "priors.pt"
LOG_FILE = "train_log.csv"
_LOG_FIELDS = ["step", "loss", "nats_per_sample", "lr", "grad_norm", "seconds"]
_ENERGY_FIELDS = ["energy_kwh", "power_w", "co2_kg", "co2_paper_kg"]


DATA = ("toy", "musdb", "notes", "drums")  # TrainConfig.data's choices


class TrainingError(RuntimeError):
    """Training cannot go on (NaN loss, a resume that does not fit); one line for the user."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the model's own :class:`FlowConfig`."""

    steps: int = 3000
    batch_size: int = 16  # clips per step (each clip carries all N sources)
    length: int = 2048  # samples per training crop
    lr: float = 1e-3
    lr_decay: float = 0.6  # the thesis: times 0.6 ...
    lr_decays: int = 5  # ... five times, evenly spaced
    grad_clip: float = 50.0
    sigma_max: float = 1.0
    sigma_min: float = 0.01  # also the minimum noise of every training clip
    levels: int = 10
    seed: int = 0
    data: str = "toy"  # "musdb", "notes" (make-notes output, the notes VQ-VAE) or "drums" (make-drums output)
    root: str | None = None  # the musdb, notes or drums folder
    mono: str = "left"  # musdb: the left channel (the thesis) or the mean
    precision: str = "fp32"  # or "bf16": the model's forward pass under autocast, the loss in fp32
    compile: bool = False  # torch.compile the model (pays on a GPU for long runs; slow to start)
    checkpoint_every: int = 250
    log_every: int = 10
    max_seconds: float | None = None  # a wall-clock budget: stop (and save) once training has run this long
    # score networks: "dsm" (denoising score matching, sigma^2-weighted) or "sdr" (the denoised clip's error in
    # dB, mean over clips and sources: every noise level weighs the same, the large ones included)
    objective: str = "dsm"
    # "codecarbon": measured (or CodeCarbon's estimate) energy and CO2 in the log; "estimate": a stated
    # per-core estimate without CodeCarbon (which takes seconds to start); see sepmodels.energy
    energy: str = "codecarbon"
    country: str = "FRA"  # the grid whose carbon intensity CodeCarbon applies

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "length", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds}")
        if self.data not in DATA:
            raise ValueError(f"data must be one of {', '.join(map(repr, DATA))}, got {self.data!r}")
        if self.energy not in ("codecarbon", "estimate"):
            raise ValueError(f"energy must be 'codecarbon' or 'estimate', got {self.energy!r}")
        if self.objective not in ("dsm", "sdr"):
            raise ValueError(f"objective must be 'dsm' or 'sdr', got {self.objective!r}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        if self.data != "toy" and not self.root:
            raise ValueError(f"{self.data} training needs the dataset's root folder")

    @property
    def ladder(self) -> NoiseLadder:
        return NoiseLadder(self.sigma_max, self.sigma_min, self.levels)


def read_log(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """The columns of a ``train_log.csv`` as float arrays (NaN where a row has no value)."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    return {k: np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]) for k in rows[0]}


def draw_sigma(batch: int, ladder: NoiseLadder, generator: torch.Generator) -> torch.Tensor:
    """Noise levels ``[B]`` log-uniform on ``[sigma_min, sigma_max]``: every ladder level and all between."""
    lo, hi = math.log(ladder.sigma_min), math.log(ladder.sigma_max)
    return torch.exp(lo + (hi - lo) * torch.rand(batch, generator=generator))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The thesis's step schedule: ``lr * decay ** k`` after the k-th of ``lr_decays`` even milestones."""
    k = min(cfg.lr_decays, step * (cfg.lr_decays + 1) // cfg.steps)
    return cfg.lr * cfg.lr_decay**k


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: torch.device) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class Trainer:
    """Trains a model of any registered kind into ``out_dir``; call :meth:`run`.

    Arguments:
        out_dir: folder for ``priors.pt`` and ``train_log.csv``.
        model_config: the config of a registered kind (:func:`sepmodels.registry.kind_of_config` finds the
            kind: its model class and loss); ignored on resume, where the checkpoint's own is used.
        train_config: schedule and data settings (its ``steps`` may be raised on resume).
        resume: continue from ``out_dir/priors.pt`` exactly where it stopped.
        device: torch device; CUDA when present if None.
        progress: show a tqdm bar.
        init: priors to start from (fine-tuning); their model must have the same class and config.
        priors: for a :class:`VAEConfig` (a VAE posterior), the frozen priors its ELBO uses: flow priors, or
            the learned wave priors (CPU only).
    """

    def __init__(
        self,
        out_dir: str | os.PathLike[str],
        model_config: Any,
        train_config: TrainConfig,
        resume: bool = False,
        device: str | None = None,
        progress: bool = True,
        init: PriorSet | None = None,
        priors: Prior | None = None,
    ) -> None:
        self.out = Path(out_dir)
        self.ckpt_path = self.out / CHECKPOINT
        self.stopped_early = False
        self.device = pick_device(device)
        self.dist = _init_distributed(self.device)
        if self.device.type == "cuda" and self.dist.world > 1:
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        if self.device.type == "cuda":  # TF32 matmuls and convolutions: free speed on Ampere and later
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.progress = progress and self.dist.main
        self.step = 0
        ckpt = self._resume_state() if resume else None
        if ckpt is not None:
            saved = TrainConfig(**ckpt["meta"]["train_config"])
            train_config = replace(saved, steps=max(train_config.steps, saved.steps))
            kind = kind_of_class(str(ckpt.get("class")))
            if kind is None:
                raise CheckpointError(f"--resume: {self.ckpt_path} holds a {ckpt.get('class')!r}, no model kind")
            model_config = kind.config_class(**ckpt["config"])
        self.cfg, self.model_config = train_config, model_config
        self.dataset = None
        self.names, self.sample_rate = toy.SOURCES, toy.SAMPLE_RATE
        if train_config.data == "musdb":
            from sepmodels.data import musdb

            self.dataset = musdb.MusdbData(musdb.MusdbConfig(train_config.root, mono=train_config.mono), "train")
            self.names, self.sample_rate = musdb.SOURCES, musdb.SAMPLE_RATE
        elif train_config.data == "notes":
            from sepmodels.data.notes import NotesData

            self.dataset = NotesData(train_config.root, "train")
            self.names, self.sample_rate = NotesData.SOURCES, NotesData.RATE
        elif train_config.data == "drums":
            from sepmodels.data.drums import DrumsData

            self.dataset = DrumsData(train_config.root, "train")
            self.names, self.sample_rate = DrumsData.SOURCES, DrumsData.RATE
        self.kind = kind_of_config(model_config)
        if train_config.data not in self.kind.data:
            raise TrainingError(
                f"{self.kind.name} models train on {' or '.join(self.kind.data)} data, not {train_config.data}"
            )
        if self.kind.role == "codec" and model_config.sample_rate != self.sample_rate:
            raise TrainingError(
                f"the model is for {model_config.sample_rate} Hz; {train_config.data} data is {self.sample_rate}"
            )
        self.frozen: Prior | None = None
        if self.kind.posterior:
            if priors is None or not priors.has_likelihood:
                raise TrainingError(
                    "a VAE posterior is trained against priors with a likelihood (flow or wave priors): pass "
                    "them (--priors)"
                )
            if tuple(priors.names) != self.names:
                raise TrainingError(
                    f"the priors are for {priors.names}, the {train_config.data} data has {self.names}"
                )
            try:
                self.frozen = priors.to(self.device).freeze()
            except ValueError as err:  # the quadrature priors (exact, wave) run on the CPU only
                raise TrainingError(f"{err}: train the VAE against them with --device cpu") from None
        torch.manual_seed(train_config.seed)
        self.model = self.kind.model_class(len(self.names), model_config).to(self.device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=train_config.lr)
        # Each rank reads its own stream; rank 0's is the single-process stream.
        self.data_gen = torch.Generator().manual_seed(train_config.seed + 7919 * self.dist.rank)
        self.noise_gen = torch.Generator().manual_seed(train_config.seed + 104_729 + 7919 * self.dist.rank)
        if ckpt is not None:
            self._restore(ckpt)
        elif init is not None:
            if init.kind != self.kind.name or init.config != model_config:
                raise TrainingError(
                    f"cannot fine-tune: the initial priors are {init.kind} {init.config}, not {self.kind.name} "
                    f"{model_config}"
                )
            self.model.load_state_dict(init.state_dict())
        self.fine_tune = init is not None and ckpt is None
        self.energy: EnergyReading | None = None  # the energy drawn so far (earlier runs of a resume included)
        self._energy_before = EnergyReading(0.0, 0.0, 0.0, 0.0, 0.0, "")
        if ckpt is not None and "energy" in ckpt["meta"]:
            saved_energy = dict(ckpt["meta"]["energy"])
            saved_energy.pop("method", None)
            self._energy_before = EnergyReading(**saved_energy, method="")

    # -- state ---------------------------------------------------------------------------------------------
    def _resume_state(self) -> dict[str, Any] | None:
        if not self.ckpt_path.exists():
            raise TrainingError(f"--resume: {self.ckpt_path} does not exist; start without --resume")
        ckpt = load_checkpoint(self.ckpt_path)
        if "optimizer" not in ckpt or "train_config" not in ckpt.get("meta", {}):
            raise TrainingError(f"--resume: {self.ckpt_path} holds no training state")
        return ckpt

    def _restore(self, ckpt: dict[str, Any]) -> None:
        try:
            self.model.load_state_dict(ckpt["state_dict"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            # A rank the checkpoint did not have (resuming on more processes) keeps its own fresh stream.
            if self.dist.rank < len(ckpt["rng"]):
                rng = ckpt["rng"][self.dist.rank]
                self.data_gen.set_state(rng["data"])
                self.noise_gen.set_state(rng["noise"])
                if "torch" in rng:
                    torch.set_rng_state(rng["torch"])
                if hasattr(self.dataset, "load_tracks") and "tracks" in rng:
                    self.dataset.load_tracks(rng["tracks"])
        except (KeyError, IndexError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{self.ckpt_path} cannot be resumed ({str(err).splitlines()[0][:120]})"
            ) from None
        self.step = int(ckpt["meta"]["step"])

    def priors(self) -> Any:
        """What is being trained, with its metadata: priors, a VAE posterior (a :class:`Demixer`) or a codec
        kind's product."""
        meta = {
            "step": self.step,
            "train_config": asdict(self.cfg),
            "world_size": self.dist.world,
            "saved": datetime.now(UTC).isoformat(timespec="seconds"),
            "data": self.cfg.data,
            "objective": self.kind.objective,
        }
        if self.energy is not None:
            meta["energy"] = asdict(self.energy)
        if self.kind.product is not None:
            return self.kind.product(self.model, self.names, self.sample_rate, meta)
        if self.kind.posterior:
            meta["priors"] = dict(self.frozen.meta, sources=list(self.frozen.names), kind=self.frozen.kind)
            return Demixer(self.model, self.names, self.sample_rate, meta)
        return PriorSet(self.model, self.names, self.sample_rate, self.cfg.ladder, meta)

    def save(self) -> None:
        """Write the checkpoint (rank 0); every rank's generator states go in it, so each resumes its own."""
        # The global stream too: the VQ-VAE's quantizer draws its restarted codes from it.
        mine = {
            "data": self.data_gen.get_state(),
            "noise": self.noise_gen.get_state(),
            "torch": torch.get_rng_state(),
        }
        if hasattr(self.dataset, "cached_tracks"):  # musdb: the tracks in memory decide the next crops
            mine["tracks"] = self.dataset.cached_tracks()
        states = [mine]
        if self.dist.world > 1:
            states = [None] * self.dist.world
            dist.all_gather_object(states, mine)
        if not self.dist.main:
            return
        payload = self.priors().payload()
        payload["optimizer"] = self.optimizer.state_dict()
        payload["rng"] = states
        save_checkpoint(self.ckpt_path, payload)

    # -- one step ------------------------------------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Clean clips ``[B, N, T]``, their noise levels ``[B]``, unit noise ``[B, N, T]`` and, for labelled
        data (drum hits), each clip's class ``[B]`` (else None), on the device."""
        labels = None
        if self.dataset is not None:
            clean = self.dataset.batch(self.cfg.batch_size, self.cfg.length, self.data_gen)
            if isinstance(clean, tuple):
                clean, labels = clean
                labels = labels.to(self.device)
        else:
            clean = toy.toy_batch(self.cfg.batch_size, self.cfg.length, self.data_gen)
        sigma = draw_sigma(self.cfg.batch_size, self.cfg.ladder, self.noise_gen)
        noise = torch.randn(clean.shape, generator=self.noise_gen)
        if self.kind.priors and not self.model.noise_conditional:
            sigma = torch.full_like(sigma, self.cfg.sigma_min)
        return clean.to(self.device), sigma.to(self.device), noise.to(self.device), labels

    def loss(self, model: torch.nn.Module) -> torch.Tensor:
        """One batch's loss (the kind's own: e.g. nats per sample for a flow, the noise's mean squared error for a
        score network)."""
        clean, sigma, noise, labels = self.batch()
        bf16 = self.cfg.precision == "bf16"
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = self._loss(model, clean, sigma, noise, labels)
        return loss.float()

    def _loss(self, model: torch.nn.Module, clean: torch.Tensor, sigma: torch.Tensor,
              noise: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        batch = TrainBatch(clean, sigma, noise, clean + sigma[:, None, None] * noise, self.noise_gen, self.frozen,
                           self.cfg.objective, self.model_config, labels)  # fmt: skip
        return self.kind.loss(model, batch)

    def run(self) -> PriorSet | Demixer:
        """Train to ``cfg.steps`` (or until ``cfg.max_seconds`` have passed, saving there); returns the trained
        priors (in eval mode). :attr:`stopped_early` says whether the time budget ended the run."""
        if self.cfg.max_seconds is not None and self.dist.world > 1:  # ranks would stop at different steps
            raise TrainingError("a time budget (max_seconds) is for single-process training")
        self.out.mkdir(parents=True, exist_ok=True)
        model: torch.nn.Module = self.model
        self.model.train()
        fresh = self.step == 0 and not self.fine_tune
        if fresh and self.kind.prepare is not None:  # statistics of the training set, before any step
            self.kind.prepare(self.model, self.dataset, self.data_gen)
        if fresh and self.kind.init_pass:
            with torch.no_grad():  # data-dependent init (ActNorm), before DDP copies rank 0's state everywhere
                self.loss(self.model)
        if self.dist.world > 1:
            model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if self.cfg.compile:
            model = torch.compile(model)
        writer, log_file = self._open_log()
        bar = tqdm(
            total=self.cfg.steps, initial=self.step, disable=not self.progress, unit="step", dynamic_ncols=True
        )
        started = time.perf_counter()
        meter = None
        if self.dist.main:
            meter = EnergyMeter(self.cfg.country, use_codecarbon=self.cfg.energy == "codecarbon").start()
        try:
            while self.step < self.cfg.steps:
                lr = lr_at(self.step, self.cfg)
                for group in self.optimizer.param_groups:
                    group["lr"] = lr
                loss = self.loss(model)
                if not torch.isfinite(loss):
                    raise TrainingError(
                        f"loss became {loss.item()} at step {self.step + 1}; the last good checkpoint "
                        f"({self.ckpt_path}, step {self._saved_step()}) was kept. Try a lower --lr."
                    )
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
                self.optimizer.step()
                self.step += 1
                bar.update(1)
                if self.step % self.cfg.log_every == 0 or self.step == self.cfg.steps:
                    value = loss.item()
                    # A flow's loss is minus its log-likelihood, a VAE's minus its ELBO; a score network's has
                    # no such reading.
                    nats = f"{-value:.6f}" if self.kind.nats else ""
                    bar.set_postfix(loss=f"{value:.3f}", nats_per_sample=nats[:6] or "-", lr=f"{lr:.1e}")
                    if writer is not None:
                        self._read_energy(meter)
                        stats = self.model.train_stats() if self.kind.stats else {}
                        writer.writerow(
                            [
                                self.step,
                                f"{value:.6f}",
                                nats,
                                f"{lr:.3e}",
                                f"{float(grad_norm):.4f}",
                                f"{time.perf_counter() - started:.2f}",
                                *(f"{stats[name]:.6g}" for name in self.kind.stats),
                                *(f"{getattr(self.energy, name):.6g}" for name in _ENERGY_FIELDS),
                            ]
                        )
                        log_file.flush()
                out_of_time = (
                    self.cfg.max_seconds is not None and time.perf_counter() - started >= self.cfg.max_seconds
                )
                last = self.step == self.cfg.steps or out_of_time
                if last and self.kind.finish is not None:  # e.g. the CWAE's latent map, from the trained model
                    self.kind.finish(self.model, self.dataset, torch.Generator().manual_seed(self.cfg.seed))
                if self.step % self.cfg.checkpoint_every == 0 or last:
                    self._read_energy(meter)
                    self.save()
                if out_of_time and self.step < self.cfg.steps:
                    self.stopped_early = True
                    break
        finally:
            bar.close()
            if log_file is not None:
                log_file.close()
            if meter is not None:
                meter.stop()
        if self.dist.world > 1:
            # No rank leaves before rank 0 has written the last checkpoint (the two-process test once failed
            # with SIGABRT in rank 1, which used to exit while rank 0 was still saving).
            dist.barrier()
        self.model.eval()
        return self.priors()

    def _read_energy(self, meter: EnergyMeter | None) -> None:
        """Bring :attr:`energy` up to date: this run's meter plus what earlier runs of a resume drew."""
        if meter is None:
            return
        now, before = meter.read(), self._energy_before
        self.energy = EnergyReading(
            before.seconds + now.seconds, before.energy_kwh + now.energy_kwh, now.power_w,
            before.co2_kg + now.co2_kg, before.co2_paper_kg + now.co2_paper_kg, now.method,
        )  # fmt: skip

    def _saved_step(self) -> int | str:
        if not self.ckpt_path.exists():
            return "none yet"
        return int(load_checkpoint(self.ckpt_path)["meta"]["step"])

    def _open_log(self) -> tuple[Any, Any]:
        if not self.dist.main:
            return None, None
        path = self.out / LOG_FILE
        rows: list[list[str]] = []
        if self.step > 0 and path.exists():
            with path.open(newline="") as f:  # keep only rows up to the resumed step
                rows = [r for r in list(csv.reader(f))[1:] if r and int(r[0]) <= self.step]
        f = path.open("w", newline="")
        writer = csv.writer(f)
        writer.writerow([*_LOG_FIELDS, *self.kind.stats, *_ENERGY_FIELDS])
        writer.writerows(rows)
        return writer, f
