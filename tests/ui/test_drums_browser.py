"""The drum machine in a real browser: a click on the pad plays the hit there; a class button plays its mean."""

import re

import pytest

from explorer.drums_view import DrumPad
from sepmodels.drums.cwae import DrumAutoencoder
from sepmodels.drums.synth import DrumSynth
from tests.test_cwae import _trained_tiny
from tests.ui.browser import audio_events, needs_chromium, open_page, serve, wait_for, watch_audio

pytestmark = [pytest.mark.ui, needs_chromium]


@pytest.fixture(scope="module")
def page():
    synth = DrumSynth(DrumAutoencoder(_trained_tiny(steps=20)), griffin_lim_iterations=4)
    with (
        serve("drums", lambda: DrumPad(synth)) as url,
        open_page(url, viewport={"width": 1500, "height": 1600}) as page,
    ):
        yield page


def _status(page) -> str:
    return page.get_by_text(re.compile(r"Move to audio ready")).first.inner_text()


def test_a_click_on_the_pad_plays_the_hit_there(page):
    page.get_by_text(re.compile(r"Move to audio ready")).first.wait_for(timeout=60_000)
    assert "PC 1 = +0.00, PC 2 = +0.00" in _status(page)
    player = page.locator("audio").first
    before = player.get_attribute("src")
    assert before  # the class's mean plays on open
    pads = [c.bounding_box() for c in page.locator("canvas").all()]
    pads = [b for b in pads if b and b["height"] > 300 and 300 < b["width"] < 600]
    pad = min(pads, key=lambda b: b["x"])  # the square plot on the left
    page.mouse.click(pad["x"] + pad["width"] * 0.8, pad["y"] + pad["height"] * 0.2)
    assert wait_for(lambda: "PC 1 = +0.00" not in _status(page), timeout=30), _status(page)
    x, y = (float(v) for v in re.search(r"PC 1 = ([+-][\d.]+), PC 2 = ([+-][\d.]+)", _status(page)).groups())
    assert x > 0.5 and y > 0.5  # right of and above the centre, as clicked
    assert wait_for(lambda: player.get_attribute("src") != before, timeout=30)  # a new sound in the player


def test_a_class_button_plays_its_mean_code(page):
    watch_audio(page, 0)  # the hit's player (the sample's comes after it)
    page.get_by_text("▶ class 2").first.click()
    assert wait_for(lambda: page.get_by_text(re.compile(r"class 2's mean code")).count() > 0, timeout=30)
    assert page.locator("select").first.input_value() == "class 2"  # the selector follows the sound
    page.wait_for_timeout(500)
    assert len(audio_events(page)[0]) == 1  # one sound, the one the views then show
