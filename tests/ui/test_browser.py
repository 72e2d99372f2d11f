"""Real browser tests: Debian's chromium driven by Playwright against an in-process Panel server."""

import re
import time

import pytest

from explorer.langevin_view import LangevinExplorer
from tests.ui.browser import needs_chromium, open_page, serve, wait_for

pytestmark = [pytest.mark.ui, needs_chromium]


@pytest.fixture(scope="module")
def served(tiny_priors):
    def session():
        # a long run, so that Pause lands mid-run even when the page is slow
        view = LangevinExplorer(tiny_priors, seconds=0.25, method="constrained", steps=400, levels=3)
        view.attach()
        return view

    with serve("langevin", session) as url:
        yield url


@pytest.fixture(scope="module")
def page(served):
    with open_page(served) as page:
        yield page


def _status(page) -> str:
    return page.get_by_text(re.compile(r"Step \d+ / \d+")).first.inner_text().strip()


def _step(page) -> int:
    text = page.get_by_text(re.compile(r"Step \d+ / \d+")).first.inner_text()
    return int(re.search(r"Step (\d+) /", text).group(1))


def test_start_pause_step_and_audio(page):
    page.get_by_text(re.compile(r"Step 0 / 1200")).first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Start", exact=True).click()
    assert wait_for(lambda: _step(page) >= 3), "steps did not advance after Start"
    page.get_by_role("button", name="Pause", exact=True).click()
    # Under load the server may take a while to handle the click: wait until the page says it paused.
    assert wait_for(lambda: "paused" in _status(page)), f"never paused: {_status(page)}"
    time.sleep(1.0)
    paused_at = _step(page)
    time.sleep(1.0)
    assert _step(page) == paused_at, "steps advanced while paused"
    page.get_by_role("button", name="Step", exact=True).click()
    assert wait_for(lambda: _step(page) == paused_at + 1), f"Step did not advance exactly one: {_step(page)}"
    assert wait_for(lambda: page.locator("audio[src]").count() >= 1 + 4 + 4)  # mix, estimates, truths
