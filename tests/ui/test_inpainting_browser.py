"""The inpainting app in a real browser: a box dragged on the codemap edits those codes; the tabs draw."""

import re

import pytest

from explorer.inpaint_view import InpaintExplorer, read_training_log
from sepmodels.inpaint.inpainter import Inpainter
from tests.conftest import synthetic_note
from tests.ui.browser import needs_chromium, open_page, serve, wait_for

pytestmark = [pytest.mark.ui, needs_chromium]


@pytest.fixture(scope="module")
def page(tiny_inpainter_paths):
    codec, codes, log = tiny_inpainter_paths
    inpainter = Inpainter.load(codec, codes)
    notes = {"low note": synthetic_note(196.0), "high note": synthetic_note(523.0)}
    with (
        serve("inpainting", lambda: InpaintExplorer(inpainter, notes, read_training_log(log))) as url,
        open_page(url, viewport={"width": 1500, "height": 1400}) as page,
    ):
        yield page


def _box_size(page) -> int:
    text = page.get_by_text(re.compile(r"codes in the box changed")).first.inner_text()
    return int(re.search(r"of (\d+) codes in the box", text).group(1))


def test_dragging_a_box_on_the_codemap_edits_its_codes(page):
    page.get_by_text(re.compile(r"codes in the box changed")).first.wait_for(timeout=60_000)
    before = _box_size(page)
    assert page.locator("audio[src]").count() >= 3  # original, reconstruction, edited
    plots = [c.bounding_box() for c in page.locator("canvas").all()]
    plots = [b for b in plots if b and b["width"] > 200 and b["height"] > 150]
    top = min(b["y"] for b in plots)
    box = max((b for b in plots if abs(b["y"] - top) < 5), key=lambda b: b["x"])  # top row, right: the codemap
    x0, y0 = box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.2
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x0 + box["width"] * 0.15, y0 + box["height"] * 0.15, steps=8)
    page.mouse.move(x0 + box["width"] * 0.3, y0 + box["height"] * 0.3, steps=8)
    page.mouse.up()
    assert wait_for(lambda: _box_size(page) != before, timeout=30), "dragging a box did not change the box"


def test_the_codebook_and_training_tabs_draw(page):
    page.get_by_text("Codebook", exact=True).first.click()
    assert wait_for(lambda: page.get_by_text(re.compile(r"codes\*\*|perplexity of")).count() > 0)
    page.get_by_text("Training", exact=True).first.click()
    assert wait_for(lambda: page.get_by_text(re.compile(r"This VQ-VAE's training drew")).count() > 0)
