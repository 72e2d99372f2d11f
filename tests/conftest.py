import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sepmodels.data import toy
from sepmodels.nn.flows import FlowConfig, FlowPrior
from sepmodels.priors import NoiseLadder, PriorSet


def make_tiny_priors(seed: int = 0) -> PriorSet:
    """Untrained but initialised tiny priors: fast, deterministic, every code path of a real set."""
    torch.manual_seed(seed)
    model = FlowPrior(len(toy.SOURCES), FlowConfig.preset("tiny")).train()
    with torch.no_grad():
        model(toy.toy_test_set(4, 256, seed=seed) + 0.05 * torch.randn(4, 4, 256), torch.full((4,), 0.05))
    return PriorSet(model.eval(), toy.SOURCES, toy.SAMPLE_RATE, NoiseLadder(), {"step": 0})


@pytest.fixture(autouse=True)
def _energy_estimate_only(request, monkeypatch):
    """Training in tests reads the stated energy estimate: CodeCarbon takes seconds to start, every time. Tests
    marked ``codecarbon`` (and commands run in a subprocess) use the real meter."""
    if request.node.get_closest_marker("codecarbon") is None:
        import sepmodels.train
        from sepmodels.energy import EnergyMeter

        def meter(country: str = "FRA", interval: float = 2.0, use_codecarbon: bool = True) -> EnergyMeter:
            return EnergyMeter(country, interval, use_codecarbon=False)

        monkeypatch.setattr(sepmodels.train, "EnergyMeter", meter)


def synthetic_note(f0: float, seconds: float = 4.0, rate: int = 16_000) -> torch.Tensor:
    """A decaying harmonic tone ``[T]``: a stand-in for a rendered note where FluidSynth is not needed."""
    t = torch.arange(int(seconds * rate)) / rate
    return sum(0.3 / k * torch.sin(2 * math.pi * k * f0 * t) for k in range(1, 5)) * torch.exp(-2 * t)


def song_like(rate: int = 14_700) -> np.ndarray:
    """1 s of three decaying notes that start and stop, with silence between: music, not a toy mix (whose
    four oscillators sound steadily through the clip)."""
    t = np.arange(rate) / rate
    song = np.zeros_like(t)
    for k, (f0, start) in enumerate(((220.0, 0.05), (330.0, 0.4), (262.0, 0.75))):
        on = (t >= start) & (t < start + 0.2)
        song[on] = 0.4 * np.sin(2 * np.pi * f0 * t[on]) * np.exp(-8 * (t[on] - start)) * (k + 1) / 3
    return song


@pytest.fixture(scope="session")
def notes_root(tmp_path_factory) -> Path:
    """A make-notes-shaped folder of synthetic 4 s notes (12 train, 2 valid, 3 test)."""
    root = tmp_path_factory.mktemp("notes")
    for split, pitches in {"train": range(48, 72, 2), "valid": [50, 57], "test": [61, 64, 67]}.items():
        folder = root / split
        folder.mkdir()
        meta = {}
        for p in pitches:
            name = f"keyboard_000-{p:03d}-100"
            sf.write(folder / f"{name}.wav", synthetic_note(440 * 2 ** ((p - 69) / 12)).numpy(), 16_000,
                     subtype="PCM_16")  # fmt: skip
            meta[name] = {"note_str": name, "pitch": p, "velocity": 100, "instrument_family_str": "keyboard"}
        (folder / "examples.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="session")
def drums_root(tmp_path_factory) -> Path:
    """A make-drums-shaped folder of SYNTHETIC hits (6 train and 2 test per class): class-dependent decaying
    sine and noise bursts, not drums; for tests that need the layout, not FluidSynth."""
    from sepmodels.data.drums import write_synthetic_drums

    return write_synthetic_drums(tmp_path_factory.mktemp("drums"), {"train": 6, "test": 2})


@pytest.fixture(scope="session")
def tiny_inpainter_paths(notes_root, tmp_path_factory) -> tuple[str, str, str]:
    """A tiny notes VQ-VAE trained for a few steps and its codemap priors: ``(codec, codes, train log)``."""
    from sepmodels.data.notes import NotesData
    from sepmodels.inpaint.inpainter import fit_codemap_priors
    from sepmodels.inpaint.vqvae import VQVAE_PRESETS
    from sepmodels.train import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("vqvae")
    cfg = TrainConfig(steps=20, batch_size=4, length=4096, lr=2e-3, data="notes", root=str(notes_root),
                      log_every=1, energy="estimate")  # fmt: skip
    codec = Trainer(out, VQVAE_PRESETS["tiny"], cfg, progress=False).run()
    train, test = NotesData(notes_root, "train"), NotesData(notes_root, "test")
    codes = fit_codemap_priors(codec, train.clips.float() / 32768, test.clips.float() / 32768,
                               transformer_steps=20, energy="estimate",
                               transformer={"dim": 16, "heads": 2, "window": (16, 16), "rounds": 3})  # fmt: skip
    codes.save(out / "codes.pt")
    return str(out / "priors.pt"), str(out / "codes.pt"), str(out / "train_log.csv")


@pytest.fixture(scope="session")
def tiny_priors() -> PriorSet:
    return make_tiny_priors()


@pytest.fixture(scope="session")
def tiny_priors_path(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("priors") / "tiny.pt"
    make_tiny_priors().save(path)
    return str(path)


# The slowest tests (about 10 s or more each on 2 cores): `pytest -m "not slow"` leaves them out for a quick
# loop; CI and the README's test command run everything.
_SLOW = (
    ".ipynb",  # the four notebooks
    "tests/ui/",  # real browsers
    "tests/test_apps.py",  # panel serve in a subprocess
    "test_distributed_training_with_gloo_on_two_processes",
    "test_compiled_training_matches_eager",
    "test_the_budget_stops_training_and_keeps_a_usable_checkpoint",
    "test_log_density_matches_brute_force_monte_carlo",
    "test_a_vae_posterior_trains_on_musdb_mixes",
    "test_module_entry_point_runs",
    "test_own_prior_ranks_first_for_at_least_95_percent_of_clips_at_sigma_001",
)


def pytest_collection_modifyitems(items):
    for item in items:
        if any(name in item.nodeid for name in _SLOW):
            item.add_marker(pytest.mark.slow)


def tone_stems(seconds: float, rate: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Four stems that own different parts of the spectrum: noise bursts, a low, a middle and a high tone
    (each note of a random pitch near its register, so training and test clips differ)."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    out = {}
    drums = np.zeros(n)
    for start in range(0, n - rate // 10, rate // 4):  # a 30 ms burst of high-passed noise every 250 ms
        burst = np.diff(rng.standard_normal(int(0.03 * rate) + 1))
        drums[start : start + burst.size] += 0.3 * burst * np.exp(-np.arange(burst.size) / (0.01 * rate))
    out["drums"] = drums
    for name, base in (("bass", 70.0), ("other", 440.0), ("vocals", 1500.0)):
        freq = np.repeat(base * 2 ** (rng.integers(0, 5, size=int(seconds * 2) + 1) / 12), rate // 2)[:n]
        out[name] = 0.2 * np.sin(2 * np.pi * np.cumsum(freq) / rate)
    return out


def write_tone_tracks(
    root: Path, split: str, count: int, seconds: float, rate: int = 44_100, seed: int = 0
) -> None:
    """Tracks of :func:`tone_stems` in the musdb18-HQ layout (stereo float WAV, the mixture peaking at 0.9)."""
    for i in range(count):
        folder = root / split / f"track_{i:03d}"
        folder.mkdir(parents=True)
        stems = tone_stems(seconds, rate, seed + i)
        gain = 0.9 / np.abs(sum(stems.values())).max()  # as make-stems: the mixture peaks at 0.9
        stems = {name: audio * gain for name, audio in stems.items()}
        for name, audio in stems.items():
            sf.write(folder / f"{name}.wav", np.stack([audio, audio], 1), rate, subtype="FLOAT")
        sf.write(folder / "mixture.wav", sum(np.stack([a, a], 1) for a in stems.values()), rate, subtype="FLOAT")


@pytest.fixture(scope="session")
def tones_root(tmp_path_factory) -> Path:
    """Two training tracks of 6 s and two test tracks of 3 s of :func:`tone_stems` (the music tests' data)."""
    root = tmp_path_factory.mktemp("tones")
    write_tone_tracks(root, "train", 2, 6.0, seed=0)
    write_tone_tracks(root, "test", 2, 3.0, seed=100)
    return root
