"""What the browser tests share: serve Panel apps in-process, drive Debian's chromium with Playwright."""

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import panel as pn
import pytest

CHROMIUM = Path("/usr/bin/chromium")
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="needs Debian's chromium (apt-get install chromium)"
)
_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-quic", "--no-first-run",
         "--disable-component-update", "--disable-sync"]  # fmt: skip


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(name: str, session: Callable[[], object]) -> Iterator[str]:
    """Serve ``session`` (one new view per browser session) at a free port; yields the page's URL."""
    port = free_port()
    server = pn.serve({name: session}, port=port, address="127.0.0.1", threaded=True, show=False, start=True,
                      websocket_origin=[f"127.0.0.1:{port}"])  # fmt: skip
    time.sleep(1.0)
    try:
        yield f"http://127.0.0.1:{port}/{name}"
    finally:
        server.stop()


@contextlib.contextmanager
def open_page(url: str, **page_options) -> Iterator[object]:
    """A chromium page at ``url``, loaded until the network is idle."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=_ARGS)
        try:
            page = browser.new_page(**page_options)
            page.goto(url, wait_until="networkidle", timeout=60_000)
            yield page
        finally:
            browser.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False
