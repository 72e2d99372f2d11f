"""Real browser tests: Debian's chromium driven by Playwright against an in-process Panel server."""

import re
import socket
import time
from pathlib import Path

import panel as pn
import pytest

from explorer.langevin_view import LangevinExplorer

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
def served(tiny_priors):
    def session():
        view = LangevinExplorer(tiny_priors, seconds=0.25, steps=40, levels=3)
        view.attach()
        return view

    port = _free_port()
    server = pn.serve(
        {"langevin": session},
        port=port,
        address="127.0.0.1",
        threaded=True,
        show=False,
        start=True,
        websocket_origin=[f"127.0.0.1:{port}"],
    )
    time.sleep(1.0)
    yield f"http://127.0.0.1:{port}/langevin"
    server.stop()


@pytest.fixture(scope="module")
def page(served):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-quic",
                "--no-first-run",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        page = browser.new_page()
        page.goto(served, wait_until="networkidle", timeout=60_000)
        yield page
        browser.close()


def _step(page) -> int:
    text = page.get_by_text(re.compile(r"Step \d+ / \d+")).first.inner_text()
    return int(re.search(r"Step (\d+) /", text).group(1))


def _wait_for(predicate, timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_start_pause_step_and_audio(page):
    page.get_by_text(re.compile(r"Step 0 / 120")).first.wait_for(timeout=30_000)
    page.get_by_role("button", name="Start", exact=True).click()
    assert _wait_for(lambda: _step(page) >= 3), "steps did not advance after Start"
    page.get_by_role("button", name="Pause", exact=True).click()
    time.sleep(1.0)
    paused_at = _step(page)
    time.sleep(1.0)
    assert _step(page) == paused_at, "steps advanced while paused"
    page.get_by_role("button", name="Step", exact=True).click()
    assert _wait_for(lambda: _step(page) == paused_at + 1), f"Step did not advance exactly one: {_step(page)}"
    assert _wait_for(lambda: page.locator("audio[src]").count() >= 1 + 4 + 4)  # mix, estimates, truths
