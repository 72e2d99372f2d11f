"""The priors app in a real browser: the heatmap answers a click with its clip; the tabs show their players."""

import re

import pytest

from explorer.priors_view import PriorsExplorer, load_studies
from sepmodels.studies import describe_priors, run_study, save_study
from tests.ui.browser import needs_chromium, open_page, serve, wait_for

pytestmark = [pytest.mark.ui, needs_chromium]


@pytest.fixture(scope="module")
def page(tiny_priors, tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    for name in ("cross", "samples"):
        results, data = run_study(name, tiny_priors, n=2, seconds=0.02)
        save_study(folder / f"{name}.pt", name, results, describe_priors(tiny_priors), data)
    studies, _ = load_studies(folder)
    with (
        serve("priors", lambda: PriorsExplorer(tiny_priors, studies)) as url,
        open_page(url, viewport={"width": 1400, "height": 1000}) as page,
    ):
        yield page


def test_clicking_a_heatmap_cell_opens_its_clip(page):
    first = page.get_by_text(re.compile(r"sin clip 0 under the sin prior")).first
    first.wait_for(timeout=30_000)
    canvas = page.locator("canvas").first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    # The plot area sits left of the colour bar; its centre is an off-diagonal cell of the 4 x 4 map.
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
    changed = page.get_by_text(re.compile(r"(square|saw) clip 0 under the (square|saw) prior"))
    assert wait_for(lambda: changed.count() > 0), "a click on the heatmap did not open another cell"
    assert page.locator("audio[src]").count() >= 1


def test_samples_tab_has_a_player_per_prior(page):
    page.get_by_text("Samples", exact=True).first.click()
    assert wait_for(lambda: page.locator("audio[src]").count() >= 1 + 4)


def _overlap(a, b) -> bool:
    return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] \
        and b["y"] < a["y"] + a["height"]  # fmt: skip


_INK = """el => {  // where the text itself is drawn, overflow included (an element's box can be narrower)
  const range = document.createRange();
  range.selectNodeContents(el);
  const b = range.getBoundingClientRect();
  return {x: b.x, y: b.y, width: b.width, height: b.height};
}"""


def test_an_upload_is_shown_with_its_notice_and_no_text_over_another(page, tmp_path):
    import numpy as np
    import soundfile as sf

    # another rate and stereo, and a long name: the notice says what was done to it, in lines longer than the
    # controls' column
    path = tmp_path / "a long upload recorded on a phone at the back of a concert hall.wav"
    t = np.arange(3 * 22_050) / 22_050
    sf.write(path, np.stack([0.3 * np.sin(2 * np.pi * 330 * t)] * 2, axis=1), 22_050)
    page.get_by_text("Your clip", exact=True).first.click()
    page.locator("input[type=file]").first.set_input_files(str(path))
    showing = page.get_by_text(re.compile(r"Showing:.*concert hall\.wav"))
    assert wait_for(lambda: showing.count() > 0), "the upload was not shown"
    notice = page.get_by_text(re.compile(r"resampled|downmixed|mono")).first
    means = page.get_by_text(re.compile(r"Mean nats/sample")).first
    notice.wait_for(timeout=30_000)
    means.wait_for(timeout=30_000)
    texts = {name: where.evaluate(_INK) for name, where in (("notice", notice), ("means", means),
                                                            ("showing", showing.first))}  # fmt: skip
    plots = {f"plot {i}": c.bounding_box() for i, c in enumerate(page.locator("canvas").all()) if c.is_visible()}
    assert len(plots) >= 2  # the clip and its likelihood strip (Bokeh layers several canvases in one plot)
    names = list(texts)
    clashes = [(a, b) for i, a in enumerate(names) for b in names[i + 1 :] if _overlap(texts[a], texts[b])]
    clashes += [(a, b) for a in texts for b in plots if _overlap(texts[a], plots[b])]
    assert not clashes, clashes


def test_the_music_tab_scores_a_songs_clip_under_each_stems_prior(monkeypatch, tmp_path):
    """The served app: the Music tab, built when opened, shows the stems priors' studies, and "Your clip" says
    which stem's prior finds which moment most likely and reads the clip against the held-out ranges."""
    import importlib.util
    from pathlib import Path

    import soundfile as sf

    from tests.conftest import song_like

    for name in ("SEPMODELS_PRIORS", "SEPMODELS_STUDIES", "SEPMODELS_STEMS"):
        monkeypatch.delenv(name, raising=False)
    import explorer.music_view

    monkeypatch.setattr(explorer.music_view, "example_clips", lambda: {})  # no render: the upload path
    spec = importlib.util.spec_from_file_location("priors_app", Path(__file__).resolve().parents[2] / "apps" /
                                                  "priors.py")  # fmt: skip
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sf.write(tmp_path / "song.wav", song_like(), 14_700)
    with serve("priors", module.build) as url, open_page(url, viewport={"width": 1500, "height": 2400}) as page:
        page.get_by_text("Music: stems priors", exact=True).first.click()
        study = page.get_by_text(re.compile(r"cross study of flow priors .*stems_flow\.pt"))
        assert wait_for(lambda: study.count() > 0, timeout=60), "the music tab's cross-likelihood did not show"
        page.get_by_text("Your clip", exact=True).last.click()
        upload = page.get_by_text(re.compile("upload a song's clip"))
        assert wait_for(lambda: upload.count() > 0, timeout=30)
        page.locator("input[type=file]").last.set_input_files(str(tmp_path / "song.wav"))
        likely = page.get_by_text(re.compile(r"Most likely over time: .* of the clip"))
        assert wait_for(lambda: likely.count() > 0, timeout=60), "no prior named per moment"
        reading = page.get_by_text(re.compile(r"held-out clips of its own source"))
        assert reading.count() > 0 and page.locator("audio[src]").count() >= 1
