"""The Langevin app on music in a real browser: an upload of music is told the toy priors cannot model it, and
the Music tab, built when first opened, separates a clip and places it between the floor and the ceiling, and
the stems priors' sweep is watched step by step (time left while it runs, a verdict and players at its end)."""

import importlib.util
import re
from pathlib import Path

import pytest
import soundfile as sf

from tests.conftest import song_like
from tests.ui.browser import needs_chromium, open_page, serve, wait_for

pytestmark = [pytest.mark.ui, needs_chromium]
ROOT = Path(__file__).resolve().parents[2]


def _build():
    spec = importlib.util.spec_from_file_location("langevin_app", ROOT / "apps" / "langevin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def test_music_is_told_the_toy_priors_and_the_music_tab_separates_it(monkeypatch, tmp_path):
    for name in ("SEPMODELS_PRIORS", "SEPMODELS_STEMS", "SEPMODELS_JUDGE"):
        monkeypatch.delenv(name, raising=False)
    sf.write(tmp_path / "song.wav", song_like(), 14_700)  # notes that start and stop: not a toy mix
    with serve("langevin", _build) as url, open_page(url, viewport={"width": 1500, "height": 2400}) as page:
        page.get_by_text(re.compile("ready: press Start")).first.wait_for(timeout=60_000)
        page.locator("input[type=file]").first.set_input_files(str(tmp_path / "song.wav"))
        wrong = page.get_by_text(re.compile("the toy priors model four (steady )?oscillators"))
        assert wait_for(lambda: wrong.count() > 0, timeout=30), "no wrong-priors sentence before Start"
        page.get_by_text("Music: stems", exact=True).first.click()
        done = page.get_by_text(re.compile(r"Mean SI-SDR improvement|No clips here"))
        assert wait_for(lambda: done.count() > 0, timeout=60), "the Music tab did not build"
        if page.get_by_text(re.compile("No clips here")).count():
            pytest.skip("no FluidSynth here to render a clip")
        verdict = page.get_by_text(re.compile(r"of the way from the floor")).first.inner_text()
        share = int(re.search(r"(-?\d+) % of the way", verdict).group(1))
        assert 0 < share < 100  # the shipped NMF baseline: above the mix, below the oracle mask
        assert page.locator("audio[src]").count() >= 9  # the mix, four estimates, four truths
        select = page.locator("select").filter(has_text="NMF baseline").first
        options = select.locator("option").all_inner_texts()
        sweep = next(o for o in options if o.startswith("score priors per stem"))
        select.select_option(label=sweep)
        running = page.get_by_text(re.compile(r"step \d+ of 6 · [\d.]+ steps/s · about \d+ s left"))
        assert wait_for(lambda: running.count() > 0, timeout=60), "no steps/s and time left while the sweep runs"
        end = page.get_by_text(re.compile(r"separated in 6 steps"))
        assert wait_for(lambda: end.count() > 0, timeout=120), "the sweep did not finish"
        verdict = page.get_by_text(re.compile(r"before the masks")).first.inner_text()
        assert 0 < int(re.search(r"(-?\d+) % of the way", verdict).group(1)) < 100
        assert page.get_by_text(re.compile("Dashed in a stem's colour: its ceiling")).count() == 1
        assert page.locator("audio[src]").count() >= 9  # the sweep's estimates are playable
