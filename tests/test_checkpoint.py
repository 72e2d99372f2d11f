import pickle

import numpy as np
import pytest
import soundfile as sf
import torch

from sepmodels.checkpoint import CheckpointError, default_priors_path, load_checkpoint, save_checkpoint
from sepmodels.priors import PriorSet


class Foreign:
    def __reduce__(self):
        return (print, ("this ran code",))


def test_priors_round_trip(tiny_priors, tmp_path):
    tiny_priors.save(tmp_path / "p.pt")
    loaded = PriorSet.load(tmp_path / "p.pt")
    assert loaded.names == tiny_priors.names and loaded.sample_rate == tiny_priors.sample_rate
    assert loaded.ladder == tiny_priors.ladder
    x = torch.randn(2, 4, 64)
    torch.testing.assert_close(loaded.log_prob(x, 0.1), tiny_priors.log_prob(x, 0.1))
    assert all(bool(m.initialized) for m in loaded.model.modules() if hasattr(m, "initialized"))
    assert [p.name for p in tmp_path.iterdir()] == ["p.pt"]  # atomic: no temporary left


def test_shipped_default_exists_and_loads():
    priors = PriorSet.load()
    assert default_priors_path().exists()
    assert priors.names == ("sin", "square", "saw", "triangle")
    assert priors.config.noise_conditional
    assert default_priors_path().stat().st_size < 8_000_000


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_bytes(b"\x00garbage" * 50), "not a readable checkpoint"),
        (lambda p: p.write_bytes(b""), "not a readable checkpoint"),
        (lambda p: p.write_text("hello world, not a checkpoint\n"), "not a readable checkpoint"),  # KeyError
        (lambda p: sf.write(p, np.zeros(1000, dtype=np.float32), 14_700, format="WAV"), "not a readable"),
        (lambda p: torch.save({"weights": torch.zeros(3)}, p), "not a sepmodels checkpoint"),
        (lambda p: torch.save([1, 2, 3], p), "not a sepmodels checkpoint"),
        (lambda p: p.write_bytes(pickle.dumps(Foreign())), "not a readable checkpoint"),
        (lambda p: torch.save({"format": "sepmodels-checkpoint", "version": 1, "x": Foreign()}, p), "unsafe"),
        (lambda p: torch.save({"format": "sepmodels-checkpoint", "version": 99}, p), "version 99"),
    ],
)
def test_bad_checkpoints_raise_one_clear_error(tmp_path, write, message, capsys):
    path = tmp_path / "bad.pt"
    write(path)
    with pytest.raises(CheckpointError, match=message) as info:
        PriorSet.load(path)
    assert "\n" not in str(info.value)
    assert "this ran code" not in capsys.readouterr().out


def test_truncated_and_mismatched_checkpoints(tiny_priors, tmp_path):
    good = tmp_path / "good.pt"
    tiny_priors.save(good)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        PriorSet.load(cut)
    payload = load_checkpoint(good)
    payload["config"]["width"] = 7
    save_checkpoint(tmp_path / "odd.pt", {k: v for k, v in payload.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match="does not match its own description"):
        PriorSet.load(tmp_path / "odd.pt")
    payload["class"] = "SomethingElse"
    save_checkpoint(tmp_path / "other.pt", {k: v for k, v in payload.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match="not a set of flow or score priors"):
        PriorSet.load(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        PriorSet.load(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        PriorSet.load(tmp_path)


def test_cross_log_prob_pads_and_crops(tiny_priors):
    clips = torch.rand(3, 50) * 2 - 1  # 50 is not a multiple of the hop
    m = tiny_priors.cross_log_prob(clips, 0.1)
    assert m.shape == (3, 4, 50) and torch.isfinite(m).all()
    with pytest.raises(ValueError, match=r"clips \[B, T\]"):
        tiny_priors.cross_log_prob(torch.zeros(2, 4, 8))
