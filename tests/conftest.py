import pytest
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
