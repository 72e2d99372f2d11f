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
