"""One accelerator session, prepared in advance: better learned toy priors and GPU figures within a time budget.

    bash bench/gpu_session.sh OUT                               # on the GPU machine (about 8 minutes)
    python bench/gpu_session.py --out DIR --size tiny --budget 60 --device cpu   # the same logic, tiny, on a CPU

Phases, each inside its share of ``--budget`` seconds of wall time (the JSON is rewritten after each, so a run
cut short still returns what it has):

1. throughput: forward+backward samples/s of the flows (``thesis_toy``, ``thesis_musdb``) and the score
   networks (``default``, ``global``), fp32 (TF32 on a GPU) and bf16 autocast; the training configuration
   also compiled, which decides whether training compiles (only if it pays within the budget);
2. training: the learned toy score priors (``--config``, default ``global``, the shipped kind) at the batch,
   clip length and noise range of ``--size``, for as many steps as the measured speed fits in the time left,
   with a hard stop at the budget (``TrainConfig.max_seconds``) that saves where it stopped;
3. a quick check: one denoising step of the new priors at a few noise levels beside the exact toy prior's;
4. ``OUT/gpu_session.json`` (device, torch, wall times, throughput, steps, losses, denoising),
   ``OUT/toy_score_gpu.pt`` (exported priors, no optimizer state) and ``OUT/train_log.csv``.

A returned checkpoint replaces a shipped default only after ``bench/separation.py`` and ``bench/denoise.py``
here show it separates and denoises better (README, "A GPU session").
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from sepmodels.fileio import atomic_path
from sepmodels.nn.flows import FlowConfig, FlowPrior, nll
from sepmodels.nn.score import ScoreConfig, ScoreNet, dsm_loss
from sepmodels.train import TrainConfig, Trainer

# What each size trains and measures. "full" is for one H100/H200; "tiny" checks the logic on a CPU.
SIZES: dict[str, dict[str, Any]] = {
    "full": {"config": "global", "batch_size": 32, "length": 14_700, "sigma_max": 45.0, "levels": 20, "lr": 1e-3,
             "throughput": [("flow", "thesis_toy"), ("flow", "thesis_musdb"), ("score", "default"),
                            ("score", "global")],
             "throughput_batch": 4, "throughput_length": 16_384, "reps": 5,
             "denoise": {"n": 4, "length": 14_700, "sigmas": (0.3, 1.0, 3.0, 10.0)}},
    "tiny": {"config": "tiny", "batch_size": 2, "length": 256, "sigma_max": 45.0, "levels": 20, "lr": 1e-3,
             "throughput": [("flow", "tiny"), ("score", "tiny")],
             "throughput_batch": 1, "throughput_length": 512, "reps": 1,
             "denoise": {"n": 1, "length": 600, "sigmas": (1.0,)}},
}  # fmt: skip
RESERVE_S = 0.08  # of the budget, kept for the check, the export and the files
THROUGHPUT_SHARE = 0.22  # of the budget, at most, for the throughput phase


class Clock:
    """Wall time since the session started, against its budget."""

    def __init__(self, budget: float) -> None:
        self.budget, self.start = budget, time.perf_counter()

    def used(self) -> float:
        return time.perf_counter() - self.start

    def left(self) -> float:
        return self.budget - self.used()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(kind: str, config: str, batch: int, length: int, reps: int, device: torch.device, bf16: bool,
            compile_: bool = False) -> dict[str, Any]:  # fmt: skip
    """Forward+backward of 4 grouped priors on random clips: seconds per step and samples/s over all sources;
    ``first_s`` is the first step's time (compilation included when compiled)."""
    torch.manual_seed(0)
    if kind == "flow":
        model: torch.nn.Module = FlowPrior(4, FlowConfig.preset(config)).to(device).train()
    else:
        model = ScoreNet(4, ScoreConfig.preset(config)).to(device).train()
    length = model.valid_length(length)
    x = torch.rand(batch, 4, length, device=device) * 2 - 1
    sigma = torch.full((batch,), 0.1, device=device)
    if kind == "flow":
        with torch.no_grad():
            model(x, sigma)  # ActNorm initialisation, not timed
    step = torch.compile(model) if compile_ else model

    def once() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            if kind == "flow":
                z, logdet = step(x, sigma)
                loss = nll(z.float(), logdet.float())
            else:
                loss = dsm_loss(step(x, sigma).float(), x)
        loss.backward()

    started = time.perf_counter()
    once()
    _sync(device)
    first = time.perf_counter() - started
    once()  # a second warm-up step
    _sync(device)
    started = time.perf_counter()
    for _ in range(reps):
        once()
    _sync(device)
    seconds = (time.perf_counter() - started) / reps
    return {"kind": kind, "config": config, "parameters": sum(p.numel() for p in model.parameters()),
            "batch": batch, "length": length, "precision": "bf16" if bf16 else "fp32", "compiled": compile_,
            "first_s": round(first, 3), "seconds_per_step": round(seconds, 5),
            "samples_per_s": round(batch * 4 * length / seconds)}  # fmt: skip


def throughput(size: dict[str, Any], device: torch.device, clock: Clock, share: float, log) -> list[dict]:
    rows = []
    deadline = clock.used() + share
    for kind, config in size["throughput"]:
        for bf16 in (False, True) if device.type == "cuda" else (False,):
            if clock.used() >= deadline:
                log(f"throughput: out of its share of the budget; skipped {kind} {config} and the rest")
                return rows
            try:
                row = measure(kind, config, size["throughput_batch"], size["throughput_length"], size["reps"],
                              device, bf16)  # fmt: skip
            except torch.OutOfMemoryError:
                row = {"kind": kind, "config": config, "precision": "bf16" if bf16 else "fp32", "error": "OOM"}
                torch.cuda.empty_cache()
            rows.append(row)
            log(f"throughput: {row}")
    return rows


def _train_speed(trainer: Trainer, model: torch.nn.Module, reps: int) -> float:
    """Seconds per training step of ``model`` as the trainer runs it (data, forward, backward, optimizer)."""
    _sync(trainer.device)
    started = time.perf_counter()
    for _ in range(reps):
        loss = trainer.loss(model)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
    _sync(trainer.device)
    return (time.perf_counter() - started) / reps


def train(args, size: dict[str, Any], device: torch.device, clock: Clock, workdir: Path, log) -> dict[str, Any]:
    """Train the score priors for what the budget leaves; returns the figures and the trainer."""
    cfg = TrainConfig(steps=1, batch_size=size["batch_size"], length=size["length"], lr=size["lr"],
                      sigma_max=size["sigma_max"], levels=size["levels"], log_every=10, checkpoint_every=10**9,
                      precision="bf16" if device.type == "cuda" else "fp32")  # fmt: skip
    model_config = ScoreConfig.preset(args.config)
    probe = Trainer(workdir / "probe", model_config, cfg, device=str(device), progress=False)
    probe.loss(probe.model).backward()  # warm-up
    eager = _train_speed(probe, probe.model, 3)
    compiled, compile_s, use_compile = None, None, False
    window = clock.left() - RESERVE_S * clock.budget
    if device.type == "cuda" and not args.no_compile:
        started = time.perf_counter()
        model = torch.compile(probe.model)
        probe.loss(model).backward()  # compiles
        compile_s = time.perf_counter() - started
        compiled = _train_speed(probe, model, 3)
        window = clock.left() - RESERVE_S * clock.budget
        # compile again for the real run (its cache makes that cheaper): pays if it leaves more steps
        use_compile = (window - compile_s) / compiled > window / eager
    step_s = compiled if use_compile else eager
    steps = args.train_steps or max(1, int(0.95 * window / step_s))
    log(f"training: {step_s * 1000:.1f} ms per step ({'compiled' if use_compile else 'eager'}; eager "
        f"{eager * 1000:.1f} ms), {steps} steps in {window:.0f} s")  # fmt: skip
    del probe
    cfg = TrainConfig(**{**asdict(cfg), "steps": steps, "compile": use_compile, "max_seconds": max(1.0, window),
                         "checkpoint_every": max(1, steps // 4)})  # fmt: skip
    trainer = Trainer(workdir / "train", model_config, cfg, device=str(device), progress=args.progress)
    started = time.perf_counter()
    trainer.run()
    seconds = time.perf_counter() - started
    with (workdir / "train" / "train_log.csv").open() as f:
        losses = [float(r["loss"]) for r in csv.DictReader(f)]
    tail = losses[-10:] or [float("nan")]
    return {"trainer": trainer, "figures": {
        "config": args.config, "model_config": model_config.to_dict(), "train_config": asdict(cfg),
        "steps_planned": steps, "steps_done": trainer.step, "stopped_early": trainer.stopped_early,
        "seconds": round(seconds, 1), "steps_per_s": round(trainer.step / seconds, 2),
        "samples_per_s": round(trainer.step * cfg.batch_size * 4 * cfg.length / seconds),
        "eager_step_s": round(eager, 5), "compiled_step_s": None if compiled is None else round(compiled, 5),
        "compile_s": None if compile_s is None else round(compile_s, 1), "compiled": use_compile,
        "loss_first": losses[0] if losses else None, "loss_last10": sum(tail) / len(tail)}}  # fmt: skip


def denoise_check(priors, size: dict[str, Any]) -> dict[str, Any]:
    """One denoising step of the new priors beside the exact toy prior's: mean SI-SDR (dB) per sigma."""
    from sepmodels.studies import denoise_study

    d = size["denoise"]
    r = denoise_study(priors, n=d["n"], length=d["length"], sigmas=d["sigmas"])
    return {"sigmas": list(r.sigmas), "noisy": r.noisy.mean(dim=(1, 2)).tolist(),
            "denoised": r.denoised.mean(dim=(1, 2)).tolist(), "exact": r.exact.mean(dim=(1, 2)).tolist(),
            "per_source_denoised": r.denoised.mean(dim=2).tolist(), "sources": list(r.sources)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for what comes back")
    parser.add_argument("--budget", type=float, default=480.0, help="seconds of wall time in all (default: 480)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--config", help="score network preset to train (default: global; tiny for --size tiny)")
    parser.add_argument("--device", help="torch device (default: cuda when present, else cpu)")
    parser.add_argument("--train-steps", type=int, help="train this many steps (default: what the budget fits)")
    parser.add_argument("--no-compile", action="store_true", help="never torch.compile")
    parser.add_argument("--progress", action="store_true", help="a progress bar while training")
    args = parser.parse_args(argv)
    if not args.budget > 0:
        parser.error(f"--budget must be positive, got {args.budget}")
    size = SIZES[args.size]
    args.config = args.config or size["config"]
    try:
        ScoreConfig.preset(args.config)  # an unknown preset fails here, before any work
    except ValueError as err:
        parser.error(str(err))
    clock = Clock(args.budget)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "cuda": torch.version.cuda, "threads": torch.get_num_threads(),
        "size": args.size, "budget_s": args.budget, "phases": {},
    }  # fmt: skip

    def write() -> None:
        report["wall_s"] = round(clock.used(), 1)
        with atomic_path(args.out / "gpu_session.json") as tmp:
            tmp.write_text(json.dumps(report, indent=2) + "\n")

    def log(message: str) -> None:
        print(f"[{clock.used():6.1f} s] {message}", flush=True)

    write()
    started = clock.used()
    report["throughput"] = throughput(size, device, clock, THROUGHPUT_SHARE * args.budget, log)
    report["phases"]["throughput_s"] = round(clock.used() - started, 1)
    write()
    with tempfile.TemporaryDirectory() as work:
        started = clock.used()
        result = train(args, size, device, clock, Path(work), log)
        report["training"] = result["figures"]
        report["phases"]["training_s"] = round(clock.used() - started, 1)
        priors = result["trainer"].priors()
        priors.save(args.out / "toy_score_gpu.pt")  # exported: the model and its metadata, no optimizer state
        shutil.copyfile(Path(work) / "train" / "train_log.csv", args.out / "train_log.csv")
        write()
        log(f"training: {result['figures']['steps_done']} steps, loss {result['figures']['loss_last10']:.4f}")
    started = clock.used()
    try:
        report["denoise"] = denoise_check(priors, size)
        log(f"denoise: {report['denoise']}")
    except Exception as err:  # the checkpoint is saved; a failed check must not lose the figures
        report["denoise"] = {"error": f"{type(err).__name__}: {err}"}
    report["phases"]["denoise_s"] = round(clock.used() - started, 1)
    write()
    log(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
