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
