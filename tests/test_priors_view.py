"""The priors app's components, driven through their params (no browser)."""

import io
import re

import numpy as np
import pytest
import soundfile as sf
import torch

from explorer.priors_view import (
    ClipView,
    CrossView,
    DenoiseView,
    NoiseView,
    PriorsExplorer,
    ProbeView,
    SamplesView,
    load_studies,
)
from sepmodels.data.testsets import TOY
from sepmodels.studies import describe_priors, run_study, save_study, study_clips


@pytest.fixture(scope="module")
def studies(tiny_priors, tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    for name, options in [("cross", {}), ("probes", {}), ("samples", {}),
                          ("noise", {"base_steps": 1, "finetune_steps": 1, "batch_size": 2}),
                          ("denoise", {"sigmas": (0.1, 1.0, 3.0)})]:  # fmt: skip
        results, data = run_study(name, tiny_priors, n=2, seconds=0.05, **options)
        save_study(folder / f"{name}.pt", name, results, describe_priors(tiny_priors), data)
    loaded, problems = load_studies(folder)
    assert problems == [] and sorted(loaded) == ["cross", "denoise", "noise", "probes", "samples"]
    return loaded


def test_cross_view_shows_the_study_and_opens_a_cell(tiny_priors, studies):
    view = CrossView(tiny_priors, studies["cross"])
    values = studies["cross"].results.values
    torch.testing.assert_close(view.values(), values[0].mean(dim=-1))
    labels = view._src.data["label"]
    assert len(labels) == 16 and labels[0] == f"{float(values[0, 0, 0].mean()):.3g}"
    view.param.update(level=view.sigmas[2], statistic="median")
    torch.testing.assert_close(view.values(), values[2].median(dim=-1).values)
    view.select("saw", "triangle")
    d = studies["cross"].data
    torch.testing.assert_close(view.clip_audio(), study_clips(d["n"], d["length"], view.sigmas[2])[0, 2])
    assert "saw clip 0 under the triangle prior" in view.summary
    assert view._player.object is not None and len(view._strip_src.data["y"]) > 0
    # The player gets 1 s: the scored clip first, then the same tone.
    listen, sr = view.listening_audio(), d["sample_rate"]
    assert listen.shape == (sr,)
    torch.testing.assert_close(listen[: d["length"]], view.clip_audio())
    clean = TOY.clean(d["n"], sr)[0, 2]
    assert float((listen - clean)[d["length"] :].std()) == pytest.approx(view.level, rel=0.2)
    # The mean in the summary is the study's number for that clip (same clip, same noise, same prior).
    mean = float(view.summary.split(": ")[1].split(" nats")[0])
    assert mean == pytest.approx(float(values[2, 2, 3, 0]), abs=1e-3)


def test_a_tap_on_a_cell_selects_it(tiny_priors, studies):
    view = CrossView(tiny_priors, studies["cross"])
    index = view._src.data["row"].index("square")
    index += view._src.data["col"][index:].index("sin")
    view._src.selected.indices = [index]
    assert (view.source, view.prior) == ("square", "sin")


def test_noise_view_draws_both_families(studies):
    view = NoiseView(studies["noise"])
    names = view.curve_names()
    assert [n[1] for n in names].count(True) == 5 and names[0][0].startswith("plain")
    assert len(view._curve_srcs) == len(names) == 11
    curves = view.curves()
    assert curves.shape == (11, 7)
    view.source = "saw"
    own = studies["noise"].results.conditional.own[:, :, 2]
    torch.testing.assert_close(view.curves()[6:], own)
    view.level = 3
    assert "0.316" in view._heat_b[0].title.text and "fine-tuned at 0.316" in view._heat_a[0].title.text
    (_, _, a), (_, _, b) = view._heat_a, view._heat_b
    assert (a.low, a.high) == (b.low, b.high)  # one colour scale for the two heatmaps compared
    rect = view._heat_b[0].renderers[0]
    assert rect.nonselection_glyph.fill_alpha == 1.0  # a click does not fade the other cells
    widget = view.__panel__().objects[3]
    assert list(widget.options) == [f"{s:g}" for s in studies["noise"].results.levels] and widget.value == 3


def test_probe_and_samples_views(studies):
    probes = ProbeView(studies["probes"])
    table = probes.table()
    assert table.shape == (10, 4) and table.index[1] == "input 1, prior at sigma 0.01"
    assert "would give 3.19 nats per sample" in probes.summary()  # -0.5 log(2 pi e 0.01^2), the reference
    probes.conditioning = 4
    assert probes._summary.object.startswith("**Priors at sigma 1.**")
    assert "1" in probes._fig.title.text and len(probes._srcs[0].data["y"]) == 7
    noise = probes._noise_table.object
    assert noise.shape == (7, 4)
    assert noise.iloc[6, 2] == pytest.approx(float(studies["probes"].results.noise[4, 6, 2]), abs=1e-3)
    samples = SamplesView(studies["samples"])
    samples.sample = 1
    x = studies["samples"].results.samples[1, 0]
    np.testing.assert_allclose(samples._srcs[0].data["y"][:5], x[:5].numpy(), rtol=1e-6)
    assert all(p.object is not None for p in samples.players)


def test_denoise_view_shows_curves_table_sentence_and_audio(studies):
    view = DenoiseView(studies["denoise"])
    assert view.sigma == 1.0  # the level nearest 1 by default
    table = view.table()
    assert list(table.index) == ["sin", "square", "saw", "triangle", "mean"]
    assert list(table.columns) == ["noisy input", "these priors", "exact prior", "gap to exact"]
    r = studies["denoise"].results
    assert table.loc["sin", "exact prior"] == pytest.approx(float(r.exact[1, 0].mean()), abs=0.05)
    assert "At sigma 1" in view.summary() and "exact toy prior" in view.summary()
    inter = view.interference_table()
    assert list(inter.index) == ["sin prior", "square prior", "saw prior", "triangle prior"]
    assert inter.loc["sin prior", "+ sin"] == "" and " / " in inter.loc["sin prior", "+ square"]
    view.sigma = 3.0
    assert all(mark.location == 3.0 for mark in view._marks)
    assert "At sigma 3" in view._summary.object
    assert all(p.object is not None for players in view.players for p in players.values())
    src = view._wave_srcs[0].data
    assert len(src["t"]) == len(src["clean"]) == len(src["est"]) == len(src["exact"]) > 10
    view.__panel__()


def test_clip_view_scores_toy_clips_and_uploads(tiny_priors):
    view = ClipView(tiny_priors, seconds=0.2)
    assert view.loglik.shape == (4, int(0.2 * tiny_priors.sample_rate))
    assert view._strip_src.data["image"][0].shape[0] == 4
    view.toy_source = "mix"
    assert view.label == "toy mix, seed 0" and view.showing == "**Showing:** toy mix, seed 0 (0.20 s)"
    buf = io.BytesIO()
    sf.write(buf, 0.3 * np.sin(np.arange(2000) / 5.0), tiny_priors.sample_rate, format="WAV")
    view.upload.filename = "tone.wav"
    view.upload.value = buf.getvalue()
    assert view.label == "tone.wav" and view.loglik.shape == (4, 2000)
    seconds = 2000 / tiny_priors.sample_rate  # the page says which clip is shown, whatever the toy widgets read
    assert view.showing == f"**Showing:** tone.wav ({seconds:.2f} s); the toy settings below apply when changed"
    view.player.time = 0.05  # playback moves: the playhead follows
    assert view.playhead == pytest.approx(0.05) and view._heads[0].location == pytest.approx(0.05)


def test_clip_view_refuses_bad_uploads_in_one_line(tiny_priors):
    view = ClipView(tiny_priors, seconds=0.2)
    view.upload.filename = "noise.wav"
    view.upload.value = b"RIFF....not audio"
    assert view.message.startswith("upload refused") and "\n" not in view.message
    assert view.label.startswith("toy")  # the previous clip stays


def test_whole_app_builds_with_and_without_results(tiny_priors, studies):
    app = PriorsExplorer(tiny_priors, studies)
    tabs = app.__panel__().objects[-1]
    assert len(tabs) == 6
    assert app.built == ("cross",) and tabs[0].objects and not tabs[3].objects  # only the open tab is built
    tabs.active = 3
    assert app.built == ("cross", "samples") and tabs[3].objects
    assert isinstance(app.view("samples"), SamplesView)
    empty = PriorsExplorer(tiny_priors, {}).__panel__().objects[-1]
    assert "sepmodels study cross" in empty[0][0].object
    with pytest.raises(KeyError, match="no view"):
        app.view("nonsense")


def test_the_shipped_denoise_study_is_the_default_wave_priors_and_says_so():
    from explorer.priors_view import _provenance, default_studies_dir

    loaded, problems = load_studies(str(default_studies_dir()))
    assert problems == []
    line = _provenance(loaded["denoise"])
    assert "waves priors" in line and "toy_waves.pt" in line and "step None" not in line


def test_the_header_says_whose_each_shipped_study_is():
    from apps.priors import study_list
    from explorer.priors_view import default_studies_dir, load_studies

    studies, _ = load_studies(str(default_studies_dir()))
    listed = study_list(studies, "flow")
    assert "denoise (of the waves priors)" in listed  # the shipped denoise study is the default wave priors'
    assert "cross," in listed and "cross (of" not in listed


def test_clip_view_reads_the_likelihood_against_each_priors_held_out_clips():
    from sepmodels.priors import load_priors

    view = ClipView(load_priors("waves"), seconds=0.2)  # toy sin, seed 0
    assert "Gain over a Gaussian of the clip's own loudness" in view._means.object
    assert "Like the sin prior's own clips" in view._means.object
    noise = 0.2 * torch.randn(2940, generator=torch.Generator().manual_seed(1))
    view.set_clip(noise, "hiss")
    assert "Out of distribution" in view._means.object and "does not make it a" in view._means.object


def _tones(seconds: float = 1.0) -> torch.Tensor:
    t = torch.arange(int(seconds * 14_700)) / 14_700
    return torch.stack([0.2 * torch.sin(2 * torch.pi * f * t) for f in (80.0, 220.0, 1000.0, 3000.0)])


def test_clip_view_on_the_stems_priors_scores_a_songs_mix_or_one_stem_and_names_each_moments_prior():
    from sepmodels.checkpoint import stems_priors_path
    from sepmodels.priors import load_priors

    priors = load_priors(stems_priors_path("flow"))
    view = ClipView(priors, examples=lambda: {"tones": _tones()})
    assert view.param.part.objects == ["mix", "drums", "bass", "other", "vocals"]
    assert view.example == "tones" and "tones: the mix" in view.showing
    bins = sum(len(src.data["left"]) for src in view._best_srcs.values())
    assert bins == 400  # every bin of the strip has its most likely prior, drawn in that prior's colour
    shares = [float(v) for v in re.findall(r"(\d+) %", view._means.object.split("Most likely over time:")[1])]
    assert abs(sum(shares) - 100) <= 2  # the shares, rounded, add up to the clip
    assert "held-out clips of its own source" in view._means.object  # the ranges the checkpoint carries
    view.part = "bass"
    assert "the bass stem alone" in view.showing and torch.equal(view.audio, _tones()[1])
    view.sigma = 0.03  # no held-out ranges at this level: the reading is left out, not made up
    assert "held-out" not in view._means.object


def test_the_priors_apps_music_tab_shows_the_stems_priors_studies(monkeypatch):
    import explorer.music_view
    from apps.priors import music_explorer

    monkeypatch.setattr(explorer.music_view, "example_clips", lambda: {"tones": _tones()})
    header, app = music_explorer()
    assert "stems priors" in header and app.problems == []
    assert set(app.studies) == {"cross", "noise", "probes", "samples", "denoise"}
    assert all("stems_flow.pt" in r.priors["path"] for r in app.studies.values())
    assert tuple(app.priors.names) == ("drums", "bass", "other", "vocals")
    denoise = app.view("denoise")
    assert denoise.sigma == 0.03  # where the noisy input scores nearest 0 dB
    assert "no exact reference" in denoise.summary()
    clip = app.view("clip")
    assert clip.example == "tones" and "Most likely over time" in clip._means.object


def test_a_music_study_whose_render_is_elsewhere_shows_its_heatmap_and_says_how_to_hear_its_clips(
    tiny_priors, studies, tmp_path, monkeypatch
):
    from dataclasses import replace

    from explorer.priors_view import stems_studies_dir

    monkeypatch.delenv("SEPMODELS_STEMS", raising=False)
    monkeypatch.setattr("sepmodels.data.stems.BENCHMARK_ROOT", tmp_path / "no-render")
    record, _ = load_studies(str(stems_studies_dir()))
    cross = record["cross"]
    cross = replace(cross, data={**cross.data, "root": str(tmp_path / "nowhere")})
    from sepmodels.checkpoint import stems_priors_path
    from sepmodels.priors import load_priors

    view = CrossView(load_priors(stems_priors_path("flow")), cross)
    assert view.values().shape == (4, 4)  # the heatmap is the study's own numbers
    assert "cannot be read here" in view._note.object and "bench/stems.py" in view._note.object
    assert view._player.object is None
    # the same render found through SEPMODELS_STEMS
    monkeypatch.setenv("SEPMODELS_STEMS", str(tmp_path / "renders"))
    (tmp_path / "renders" / "nowhere" / "test").mkdir(parents=True)
    from explorer.priors_view import study_data

    assert study_data(cross).root == str(tmp_path / "renders" / "nowhere")
