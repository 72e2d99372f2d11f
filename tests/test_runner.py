import time

import pytest
import torch

from explorer.runner import SamplerRunner
from sepmodels.inference.langevin import LangevinConfig, langevin
from sepmodels.priors import GaussianPriors

PRIORS = GaussianPriors(torch.tensor([0.0, 0.0]), torch.tensor([1.0, 1.0]))


def _make(steps=50, levels=2):
    mixture = torch.zeros(16, dtype=torch.float64)
    cfg = LangevinConfig(method="constrained", steps=steps, levels=levels)
    return lambda: langevin(mixture, PRIORS, cfg)


def _wait(predicate, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def runner():
    r = SamplerRunner(_make())
    yield r
    r.close()


def test_step_advances_exactly_one(runner):
    assert runner.latest is None
    runner.step()
    assert _wait(lambda: runner.latest is not None)
    time.sleep(0.1)
    assert runner.latest.step == 1 and len(runner.history()) == 1 and not runner.running


def test_start_runs_to_the_end_and_records_every_step(runner):
    runner.start()
    assert _wait(lambda: runner.finished)
    assert runner.latest.step == 100 and [r.step for r in runner.history()] == list(range(1, 101))
    runner.start()  # a finished run does not restart
    assert not runner.running


def test_pause_stops_and_reset_forgets():
    slow = GaussianPriors(torch.zeros(2), torch.ones(2))
    original = slow.log_prob_and_score

    def slow_score(x, sigma):
        time.sleep(0.01)
        return original(x, sigma)

    slow.log_prob_and_score = slow_score
    mixture = torch.zeros(8, dtype=torch.float64)
    r = SamplerRunner(lambda: langevin(mixture, slow, LangevinConfig(method="constrained", steps=500)))
    try:
        r.start()
        assert _wait(lambda: r.latest is not None and r.latest.step > 3)
        r.pause()
        time.sleep(0.05)
        frozen = r.latest.step
        time.sleep(0.2)
        assert r.latest.step == frozen and not r.running
        r.reset()
        assert r.latest is None and r.history() == []
        r.step()
        assert _wait(lambda: r.latest is not None)
        assert r.latest.step == 1
    finally:
        r.close()
    assert not r.alive


def test_a_failing_sampler_reports_instead_of_dying():
    def broken():
        raise RuntimeError("boom")
        yield  # pragma: no cover

    r = SamplerRunner(broken)
    try:
        r.start()
        assert _wait(lambda: r.error is not None)
        assert "boom" in r.error and not r.running and r.alive
    finally:
        r.close()


def test_a_run_whose_estimates_stop_being_finite_is_stopped_with_a_sentence():
    from sepmodels.inference.langevin import Iterate

    def diverging():
        for k in range(1, 200):
            value = float("nan") if k >= 3 else 0.1 * k
            yield Iterate(k, 199, 0, 45.0 / k, torch.full((2, 8), value), None, 0.0, None)

    runner = SamplerRunner(diverging)
    try:
        runner.start()
        assert _wait(lambda: runner.error is not None)
        assert runner.error == "the run diverged at step 3 (sigma 15): the estimates are no longer finite numbers"
        assert runner.finished and not runner.running
        assert runner.latest.step == 2 and len(runner.history()) == 2  # the last finite iterate stays on show
        runner.start()  # a finished run does not start again
        time.sleep(0.1)
        assert not runner.running and runner.latest.step == 2
    finally:
        runner.close()
