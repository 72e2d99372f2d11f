"""The prepared accelerator session (bench/gpu_session.sh), end to end on the CPU at its tiny size, so that it
cannot rot while no accelerator is available."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sepmodels.priors import PriorSet

ROOT = Path(__file__).resolve().parents[1]


def _session(out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)  # the script must find the source tree by itself, as on the GPU machine
    return subprocess.run(["bash", str(ROOT / "bench" / "gpu_session.sh"), str(out), "--size", "tiny",
                           "--device", "cpu", *extra], capture_output=True, text=True, env=env, cwd="/",
                          timeout=300)  # fmt: skip


def test_the_session_trains_measures_and_writes_what_comes_back(tmp_path):
    result = _session(tmp_path, "--budget", "60", "--train-steps", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["gpu_session.json", "session.log", "toy_score_gpu.pt", "train_log.csv"]
    assert all(p.stat().st_size < 16 * 2**20 for p in tmp_path.iterdir())  # what that machine can send back
    report = json.loads((tmp_path / "gpu_session.json").read_text())
    assert report["size"] == "tiny" and report["torch"]
    assert [(r["kind"], r["config"]) for r in report["throughput"]] == [("flow", "tiny"), ("score", "tiny")]
    assert all(r["samples_per_s"] > 0 for r in report["throughput"])
    t = report["training"]
    assert t["steps_planned"] == t["steps_done"] == 3 and not t["stopped_early"] and t["config"] == "tiny"
    assert report["denoise"]["sigmas"] == [1.0] and len(report["denoise"]["exact"]) == 1
    priors = PriorSet.load(tmp_path / "toy_score_gpu.pt")
    assert priors.kind == "score" and priors.meta["step"] == 3
    assert "optimizer" not in __import__("torch").load(tmp_path / "toy_score_gpu.pt", weights_only=True)


def test_the_budget_stops_training_and_keeps_a_usable_checkpoint(tmp_path):
    result = _session(tmp_path, "--budget", "15", "--train-steps", "1000000")
    assert result.returncode == 0, result.stdout + result.stderr
    t = json.loads((tmp_path / "gpu_session.json").read_text())["training"]
    assert t["stopped_early"] and 1 <= t["steps_done"] < 1_000_000
    assert PriorSet.load(tmp_path / "toy_score_gpu.pt").meta["step"] == t["steps_done"]


@pytest.mark.parametrize("args", [["--budget", "0"], ["--config", "huge"]])
def test_bad_options_are_refused_before_any_work(tmp_path, args):
    result = _session(tmp_path, *args)
    assert result.returncode == 2 and not (tmp_path / "gpu_session.json").exists()
