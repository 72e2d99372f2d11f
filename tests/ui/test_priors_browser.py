"""The priors app in a real browser: the heatmap answers a click with its clip; the tabs show their players."""

import re
import socket
import time
from pathlib import Path

import panel as pn
import pytest

from explorer.priors_view import PriorsExplorer, load_studies
from sepmodels.studies import describe_priors, run_study, save_study

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.ui,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tiny_priors, tmp_path_factory):
    folder = tmp_path_factory.mktemp("studies")
    for name in ("cross", "samples"):
        results, data = run_study(name, tiny_priors, n=2, seconds=0.02)
        save_study(folder / f"{name}.pt", name, results, describe_priors(tiny_priors), data)
    studies, _ = load_studies(folder)
    port = _free_port()
    server = pn.serve(
        {"priors": lambda: PriorsExplorer(tiny_priors, studies)},
        port=port,
        address="127.0.0.1",
        threaded=True,
        show=False,
        start=True,
        websocket_origin=[f"127.0.0.1:{port}"],
    )
    time.sleep(1.0)
    yield f"http://127.0.0.1:{port}/priors"
    server.stop()


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(served, wait_until="networkidle", timeout=60_000)
        yield page
        browser.close()


def _wait_for(predicate, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_clicking_a_heatmap_cell_opens_its_clip(page):
    first = page.get_by_text(re.compile(r"sin clip 0 under the sin prior")).first
    first.wait_for(timeout=30_000)
    canvas = page.locator("canvas").first
    canvas.wait_for(timeout=30_000)
    box = canvas.bounding_box()
    # The plot area sits left of the colour bar; its centre is an off-diagonal cell of the 4 x 4 map.
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.5)
    changed = page.get_by_text(re.compile(r"(square|saw) clip 0 under the (square|saw) prior"))
    assert _wait_for(lambda: changed.count() > 0), "a click on the heatmap did not open another cell"
    assert page.locator("audio[src]").count() >= 1


def test_samples_tab_has_a_player_per_prior(page):
    page.get_by_text("Samples", exact=True).first.click()
    assert _wait_for(lambda: page.locator("audio[src]").count() >= 1 + 4)
