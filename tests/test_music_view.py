"""The music view: a song's clip separated by a method, scored between the floor and the ceiling, drawn and
playable; uploads without truth; a silent stem left out."""

import io
import math

import numpy as np
import soundfile as sf
import torch

from explorer.music_view import ORACLE, MusicExplorer
from sepmodels.data.stems import STEMS

RATE = 14_700


def _stems(seconds: float = 1.0, silent: int | None = None) -> torch.Tensor:
    t = torch.arange(int(seconds * RATE)) / RATE
    parts = [0.2 * torch.sin(2 * math.pi * f * t) for f in (80.0, 220.0, 1000.0, 3000.0)]
    if silent is not None:
        parts[silent] = torch.zeros_like(t)
    return torch.stack(parts)


def _quarter(mixture: torch.Tensor) -> torch.Tensor:
    return mixture.expand(len(STEMS), -1) / len(STEMS)  # a method that learned nothing: a quarter of the mix


def test_a_clip_is_separated_and_placed_between_the_floor_and_the_ceiling():
    view = MusicExplorer({"tones": _stems()}, {"a quarter of the mix": _quarter})
    assert view.clip == "tones" and view.estimates.shape == (4, RATE)
    gain = view.scores["si_sdri"]
    assert torch.allclose(gain, torch.zeros(4), atol=1e-3)  # a scaled mix scores the floor exactly
    assert "of the way from the floor" in view._verdict.object and "oracle ratio mask" in view._verdict.object
    assert len(view._bar_src.data["value"]) == 4 and len(view._ceiling_src.data["value"]) == 4
    assert all(c > 10 for c in view._ceiling_src.data["value"])  # disjoint tones: the ceiling is high
    view.method = ORACLE
    assert "100 % of the way" in view._verdict.object
    assert view._mix_fig.x_range.end == 1.0 and len(view._mix_src.data["image"]) == 1
    assert all(view._players[f"{s} truth"].object is not None for s in STEMS)
    view.zoom = 0.5
    t = view._wave_src["bass"].data["t"]
    assert abs(t[0] - 0.5) < 1e-3 and t[-1] - t[0] > 0.05  # the 60 ms window moved to the zoom point


def test_a_silent_stem_is_left_out_and_said_so():
    view = MusicExplorer({"no vocals": _stems(silent=3)}, {"quarter": _quarter})
    assert view._bar_src.data["stem"] == ["drums", "bass", "other"]
    assert "vocals silent (left out)" in view._verdict.object


def test_an_upload_has_no_truth_and_no_oracle(tmp_path):
    view = MusicExplorer({"tones": _stems()}, {"quarter": _quarter})
    buf = io.BytesIO()
    sf.write(buf, np.asarray(_stems(1.5).sum(0)), RATE, format="WAV")
    view._upload.filename = "song.wav"
    view._upload.value = buf.getvalue()
    assert view.clip == "song.wav (upload)" and view.truth() is None
    assert "No true stems" in view._verdict.object and view._bar_src.data["stem"] == []
    assert "as steady as a toy mix" in view.message  # steady tones: the music models' note
    view.method = ORACLE
    assert "needs the true stems" in view.status
    view._upload.filename = "short.wav"
    buf = io.BytesIO()
    sf.write(buf, np.zeros(100) + 0.1, RATE, format="WAV")
    view._upload.value = buf.getvalue()
    assert view.message.startswith("upload refused")


def test_the_view_builds_with_no_clips():
    view = MusicExplorer({}, {"quarter": _quarter})
    assert view.clip is None and view.estimates is None
    view.__panel__()


def test_the_dictionaries_diagnosis_names_a_stem_another_dictionary_explains_better():
    from sepmodels.nmf import NMFConfig, StemDictionaries

    stems = _stems(2.0)
    # dictionaries learned from solo tones, the "other" one from the vocals' tone: it cannot explain its own
    solo = {name: stems[k] for k, name in enumerate(STEMS)}
    solo["other"] = stems[3]
    dicts = StemDictionaries.fit(solo, NMFConfig(atoms=2, fit_iter=50, mix_iter=50), RATE)
    view = MusicExplorer({"tones": stems}, {"quarter": _quarter}, dictionaries=dicts)
    view.diagnose()
    assert view._cross_panel.visible and view.cross.shape == (4, 4)
    own = view.cross.diagonal()
    assert own[0] < view.cross[0, 1:].min()  # drums explained best by its own dictionary
    assert "other: **the" in view._cross_md.object and "explains it better than its own" in view._cross_md.object
    view.clip = "tones"  # same clip: nothing changes; another clip hides the old diagnosis
    view.clips["again"] = stems
    view.param.clip.objects = list(view.clips)
    view.clip = "again"
    assert not view._cross_panel.visible


def _gaussian_sweep(steps: int = 4, var: float = 0.02):
    from sepmodels.inference.separator import make_separator
    from sepmodels.priors import GaussianPriors

    priors = GaussianPriors(torch.zeros(4), torch.full((4,), var), names=STEMS, sample_rate=RATE)
    return make_separator("residual", priors, sigma_max=0.1, sigma_min=0.01, levels=steps, steps=1, chains=1,
                          mix="sum", mask_power=1.0)  # fmt: skip


def test_a_sweep_is_watched_step_by_step_and_ends_as_separate_does():
    sweep = _gaussian_sweep()
    view = MusicExplorer({"tones": _stems()}, {"quarter": _quarter, "gaussian sweep": sweep})
    assert not view._curve_panel.visible  # an instant method has no steps to draw
    view.method = "gaussian sweep"
    assert view._curve_panel.visible and "starting (4 steps at most)" in view.status
    view.wait(60)
    data = view._curve_src.data
    assert list(data["step"]) == [1, 2, 3, 4]  # one point per step, each stem's output and raw sources
    assert all(len(data[f"{c} {s}"]) == 4 for c in ("out", "raw") for s in STEMS)
    assert "separated in 4 steps" in view.status and "before the masks" in view._verdict.object
    # the watched run returns what separate returns: the mix through ratio masks of the sweep's sources
    expected = sweep.separate(view.mixture())
    assert torch.allclose(view.estimates, expected.float(), atol=1e-5)
    assert torch.allclose(view.estimates.sum(0), view.mixture(), atol=1e-4)  # masks add up to the mix
    # the curve's last point is the figure the bars show; every stem's ceiling is drawn where the bars put it
    assert np.allclose([data[f"out {s}"][-1] for s in STEMS], view._bar_src.data["value"], atol=1e-4)
    for s, c in zip(STEMS, view._ceiling_src.data["value"], strict=True):
        assert view._ceilings[s].visible and abs(view._ceilings[s].location - c) < 1e-4
    assert all(view._players[f"{s} estimate"].object is not None for s in STEMS)
    view.close()


def test_a_sweep_can_be_stopped_and_says_how_fast_it_goes(monkeypatch):
    import time as clock

    sweep = _gaussian_sweep(steps=40)
    slow = sweep.iterates

    def paced(*args, **kwargs):  # a step every 20 ms: the run outlives the checks below
        for it in slow(*args, **kwargs):
            clock.sleep(0.02)
            yield it

    monkeypatch.setattr(sweep, "iterates", paced)
    view = MusicExplorer({"tones": _stems()}, {"gaussian sweep": sweep})
    deadline = clock.time() + 30
    while len(view._sweep["trace"]) < 5 and clock.time() < deadline:
        clock.sleep(0.01)
    view.refresh()
    assert "of 40 · " in view.status and "steps/s · about" in view.status and "s left" in view.status
    view.stop()
    assert "stopped by you at" in view.status and view.estimates is not None
    shown = len(view._curve_src.data["step"])
    assert 5 <= shown < 40 and view._stop_button.disabled
    clock.sleep(0.1)
    view.refresh()
    assert len(view._curve_src.data["step"]) == shown  # nothing moves once stopped
    view.close()


def test_a_sweep_on_an_upload_runs_without_curves_and_says_there_is_nothing_to_score():
    view = MusicExplorer({"tones": _stems()}, {"quarter": _quarter, "gaussian sweep": _gaussian_sweep()})
    buf = io.BytesIO()
    sf.write(buf, np.asarray(_stems(1.0).sum(0)), RATE, format="WAV")
    view._upload.filename = "song.wav"
    view._upload.value = buf.getvalue()
    view.method = "gaussian sweep"
    view.wait(60)
    assert not view._curve_panel.visible  # no truth: no scores to draw over the steps
    assert "separated in 4 steps" in view.status and "No true stems" in view._verdict.object
    assert all(view._players[f"{s} estimate"].object is not None for s in STEMS)
    view.close()
