import time

import numpy as np
import pytest
import soundfile as sf
import torch

from explorer.langevin_view import LangevinExplorer
from sepmodels.metrics import si_sdr
from tests.conftest import song_like


def _wait(view, predicate, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        view.refresh()
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _view(tiny_priors, **params):
    params.setdefault("method", "constrained")
    return LangevinExplorer(tiny_priors, seconds=0.1, steps=4, levels=3, **params)


def test_start_pause_step_reset_through_the_component(tiny_priors):
    view = _view(tiny_priors)
    try:
        assert view.status == "Step 0 / 12 · ready: press Start"  # not "paused" before anything has run
        view.start()
        assert _wait(view, lambda: "finished" in view.status)
        assert view.status.startswith("Step 12 / 12 · sigma 0.01")
        assert all(p.object is not None for p in view._estimate_players)  # refreshed at the end
        assert len(view._hist_src.data["step"]) == 12
        assert view._strip_src.data["image"][0].shape[0] == 4
        assert len(view._est_srcs[0].data["t"]) > 0
        sdr = view.runner.history()[-1].si_sdr
        assert sdr is not None and len(sdr) == 4

        view.reset()
        assert view.status.startswith("Step 0 / 12")
        assert all(p.object is None for p in view._estimate_players)
        view.step()
        assert _wait(view, lambda: view.status.startswith("Step 1 / 12"))
        assert all(p.object is not None for p in view._estimate_players)
        view.step()
        assert _wait(view, lambda: view.status.startswith("Step 2 / 12"))
    finally:
        view.close()
    assert not view.runner.alive


def test_settings_and_new_mix_reset_the_run(tiny_priors):
    view = _view(tiny_priors)
    try:
        view.step()
        assert _wait(view, lambda: view.runner.latest is not None)
        before = view.mixture.clone()
        view.new_mix_button.clicks += 1
        assert view.seed == 1 and not torch.equal(view.mixture, before)
        assert view.runner.latest is None
        view.method = "annealed"  # a method brings its own ladder
        assert (view.sigma_max, view.levels, view.steps) == (1.0, 10, 100)
        view.method = "constrained"
        view.levels, view.steps = 3, 2
        assert view.status.startswith("Step 0 / 6")
        view.step()
        assert _wait(view, lambda: view.runner.latest is not None)
        last = view.runner.latest
        assert last.mix_error < 1e-5  # the constrained sampler keeps the mix exact
        view.sigma_min = 5.0  # above sigma_max: refused with a message, nothing runs
        view.start()
        assert "cannot start" in view.message and not view.runner.running
    finally:
        view.close()


def test_upload_replaces_the_mix_and_hides_the_truth(tiny_priors, tmp_path):
    view = _view(tiny_priors)
    try:
        t = np.arange(22_050) / 44_100
        sf.write(tmp_path / "up.wav", np.stack([0.5 * np.sin(2 * np.pi * 330 * t)] * 2, axis=1), 44_100)
        view.upload.filename = "up.wav"
        view.upload.value = (tmp_path / "up.wav").read_bytes()
        assert view.truth is None and view.mixture.shape[0] >= 7350
        assert "averaged to mono" in view.message and "resampled" in view.message
        assert all(p.object is None for p in view._truth_players)
        view.step()
        assert _wait(view, lambda: view.runner.latest is not None)
        assert view.runner.latest.si_sdr is None

        view.upload.filename = "bad.wav"
        view.upload.value = b"not audio at all"
        assert view.message.startswith("upload refused: bad.wav is not a readable audio file")
    finally:
        view.close()


def test_an_upload_of_music_says_the_toy_priors_are_wrong_for_it_until_the_next_mix(tiny_priors, tmp_path):
    view = _view(tiny_priors)
    try:
        sf.write(tmp_path / "song.wav", song_like(), 14_700)  # notes that start and stop
        view.upload.filename = "song.wav"
        view.upload.value = (tmp_path / "song.wav").read_bytes()
        assert "four steady oscillators" in view.message and "--priors stems" in view.message
        view.reset()  # the note stays while this clip is loaded
        assert "four steady oscillators" in view.message
        view.seed += 1  # a toy mix again: nothing to say
        assert "steady oscillators" not in view.message
    finally:
        view.close()


def _tiny_score_priors(tmp_path):
    from sepmodels.nn.score import ScoreConfig
    from sepmodels.priors import PriorSet
    from sepmodels.train import TrainConfig, Trainer

    cfg = TrainConfig(steps=1, batch_size=2, length=64, checkpoint_every=1)
    Trainer(tmp_path, ScoreConfig.preset("tiny"), cfg, progress=False).run()
    return PriorSet.load(tmp_path / "priors.pt")


def test_score_priors_run_without_a_likelihood_strip(tmp_path):
    view = _view(_tiny_score_priors(tmp_path))
    try:
        assert not view._strip_fig.visible and not view._lp_fig.visible
        assert view.likelihood_source == ""
        view.start()
        assert _wait(view, lambda: "finished" in view.status)
        assert len(view._hist_src.data["step"]) == 12
        assert view._lp_src.data["step"] == []
        view.refresh()
        assert not view._strip_fig.visible and view._verdict.object.startswith("Final: mean SI-SDR")
        floors = [f.location for f in view._floors]  # the mix itself as every estimate: its own SI-SDR
        assert floors == pytest.approx([float(si_sdr(view.mixture, t)) for t in view.truth], abs=1e-4)
        zoom = view._zoom_srcs[0].data
        assert len(zoom["t"]) == len(zoom["truth"]) == len(zoom["est"]) > 100
    finally:
        view.close()


def test_score_priors_with_a_flow_judge_draw_its_likelihood_and_say_so(tmp_path, tiny_priors):
    view = _view(_tiny_score_priors(tmp_path), judge=tiny_priors, judge_every=5)
    try:
        assert view._lp_fig.visible and "flow priors" in view._strip_fig.title.text
        assert not view._strip_fig.visible  # no placeholder strip before the first judged likelihood
        view.start()
        assert _wait(view, lambda: "finished" in view.status)
        view.refresh()
        assert view._strip_fig.visible
        assert view._lp_src.data["step"] == [5, 10, 12]  # every 5th step and the last
        assert all(np.isfinite(view._lp_src.data[f"lp{k}"]).all() for k in range(4))
        assert view._strip_src.data["image"][0].shape[0] == 4
        assert "flow priors" in view._strip_fig.title.text and "step 12" in view._strip_fig.title.text
    finally:
        view.close()


def test_a_judge_must_be_flow_priors_over_the_same_sources(tmp_path, tiny_priors):
    import pytest

    score = _tiny_score_priors(tmp_path)
    with pytest.raises(ValueError, match="flow priors over sin, square, saw, triangle"):
        _view(score, judge=score)
    view = _view(tiny_priors, judge=tiny_priors)  # flow priors need no judge: their own density is used
    try:
        assert view.judge is None and view.likelihood_source == "its prior"
    finally:
        view.close()


def test_choosing_the_exact_prior_and_the_residual_sweep_shows_every_pitch_right(tiny_priors):
    from sepmodels.nn.exact import ExactToyPriors

    exact = ExactToyPriors()
    view = LangevinExplorer(tiny_priors, choices={"flow (tiny)": tiny_priors, "exact": lambda: exact},
                            seconds=0.2, method="constrained", steps=2, levels=2)  # fmt: skip
    try:
        assert view.prior == "flow (tiny)" and "not started" in view._pitch.object
        view.prior = "exact"
        assert view.priors is exact and view.likelihood_source == "its prior"
        view.method = "residual"
        view.sigma_max, view.levels, view.steps = 20.0, 15, 2
        view.start()
        assert _wait(view, lambda: "finished" in view.status, timeout=120)
        assert "4 of 4 within 50 cents" in view._pitch.object and "WRONG" not in view._pitch.object
        assert view._lp_src.data["step"]  # the exact prior judged the sweep's iterates
    finally:
        view.close()


def test_harmonic_priors_bring_their_own_sweep_and_separate_an_off_key_mix(tiny_priors):
    from sepmodels.priors import load_priors

    harmonic = load_priors("harmonic")
    view = LangevinExplorer(tiny_priors, choices={"flow (tiny)": tiny_priors, "harmonic": lambda: harmonic},
                            seconds=0.25, method="constrained", steps=2, levels=2)  # fmt: skip
    try:
        view.prior = "harmonic"
        view.method = "residual"
        assert (view.levels, view.steps) == (10, 2) and view.config().init == "pursuit"  # the priors' own
        view.notes = "continuous"
        assert "continuous notes" in view._label and " c (" in view._pitch.object  # cents off the nearest key
        view.start()
        assert _wait(view, lambda: "finished" in view.status, timeout=180)
        assert "4 of 4 within 50 cents" in view._pitch.object
    finally:
        view.close()


def test_a_ladder_above_the_priors_training_range_is_said_before_start(tiny_priors):
    view = LangevinExplorer(tiny_priors, seconds=0.1, method="residual", levels=3, steps=1)  # from sigma 45
    try:
        hi = float(tiny_priors.ladder.sigma_max)
        assert view.sigma_max == 45 and hi < 45
        assert f"the ladder starts at sigma 45, above the {hi:g} these priors were trained on" in view.message
        view.sigma_max = hi
        assert view.message == ""
        view.sigma_max = 45.0  # a diverged run, as the runner reports it
        view.runner._error = "the run diverged at step 3 (sigma 15): the estimates are no longer finite numbers"
        view.refresh()
        assert view.message.startswith("sampler stopped: the run diverged at step 3")
        assert f"set Sigma max to {hi:g}" in view.message
    finally:
        view.close()


def test_the_likelihood_scale_spans_a_nat_and_ends_at_a_perfect_fit(tiny_priors):
    import math

    from explorer.langevin_view import perfect_fit

    assert perfect_fit(0.01) == pytest.approx(3.686, abs=1e-3)  # -log(0.01 sqrt(2 pi))
    assert perfect_fit(1.0) == pytest.approx(-0.5 * math.log(2 * math.pi))
    view = _view(tiny_priors)
    try:
        view.start()
        assert _wait(view, lambda: "finished" in view.status)
        low, high = view._strip_mapper.low, view._strip_mapper.high
        assert high - low >= 1.0  # never the full colour scale over a few thousandths of a nat
        assert "a perfect fit scores 3.69" in view._strip_fig.title.text  # the last step is at sigma 0.01
        bound = view._lp_src.data["bound"]
        assert bound and bound[-1] == pytest.approx(perfect_fit(0.01))
    finally:
        view.close()


def test_the_residual_sweep_says_why_no_restart_ran(tiny_priors):
    from sepmodels.priors import GaussianPriors

    priors = GaussianPriors(torch.zeros(4), torch.full((4,), 0.3), tiny_priors.names)
    view = LangevinExplorer(priors, seconds=0.1, method="residual", levels=4, steps=2)
    try:
        view.start()
        assert _wait(view, lambda: "finished" in view.status)
        assert "The first chain explained the mix in 8 steps, so no restart ran" in view._verdict.object
        assert view.status.startswith("Step 8 / 8")  # the steps that ran, not the most a run may take (68)
    finally:
        view.close()


def test_the_residual_sweep_says_that_restarts_ran_and_why(tiny_priors):
    from tests.test_langevin import _Stubborn

    class Never(_Stubborn):  # denoises every source to silence: the mix is never explained
        names, sample_rate, device = tiny_priors.names, tiny_priors.sample_rate, torch.device("cpu")
        has_likelihood = False

        def __len__(self):
            return len(self.names)

        def valid_length(self, length):
            return length

    view = LangevinExplorer(Never(), seconds=0.1, method="residual", levels=2, steps=1)
    try:
        view.start()
        assert _wait(view, lambda: "finished" in view.status)
        assert "3 chains ran (a chain that ends with an RMS mix error above 2 % of the mix's RMS" in (
            view._verdict.object
        )
    finally:
        view.close()


def test_the_amortised_posterior_shows_its_pass_then_the_sweeps_from_it(tiny_priors):
    from sepmodels.inference.amortised import load_posterior
    from sepmodels.priors import load_priors

    harmonic, posterior = load_priors("harmonic"), load_posterior("amortised")
    view = LangevinExplorer(harmonic, posterior=lambda: posterior, seconds=1.0, notes="continuous", seed=3)
    try:
        assert "amortised" in view.param.method.objects
        view.method = "amortised"
        assert (view.levels, view.steps) == (3, 1)  # three sweeps after the pass, one per level
        assert "Step 1 is the amortised posterior's one pass" in view.message
        view.levels = 1
        view.start()
        assert _wait(view, lambda: "finished" in view.status, timeout=120)
        records = view.runner.history()
        assert records[0].step == 1 and records[-1].step == view.runner.latest.total == 2  # the pass, one sweep
        assert sum(records[0].si_sdr) / 4 > 15  # the pass alone separates
        assert "4 of 4 within 50 cents" in view._pitch.object
    finally:
        view.close()
    plain = LangevinExplorer(tiny_priors, seconds=0.1)
    try:
        assert "amortised" not in plain.param.method.objects  # only offered with a posterior
    finally:
        plain.close()
