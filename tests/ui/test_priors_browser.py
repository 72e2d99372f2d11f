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
