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


_WATCH_AUDIO = """(index) => {
  const found = [];
  const walk = (root) => root.querySelectorAll('*').forEach((el) => {
    if (el.tagName === 'AUDIO') found.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  });
  walk(document);
  window.__audio = {src: [], playing: []};
  const player = found[index < 0 ? found.length + index : index];
  if (!player) return found.length;
  new MutationObserver(() => window.__audio.src.push(performance.now())).observe(player, {attributes: true,
    attributeFilter: ['src']});
  player.addEventListener('playing', () => window.__audio.playing.push(performance.now()));
  return found.length;
}"""


def watch_audio(page, index: int = 0) -> int:
    """Record in the page when the ``index``-th ``<audio>`` element (negative: from the last; Panel's players
    sit in shadow roots) gets a new ``src`` and when it starts playing (``performance.now()`` times, read
    with :func:`audio_events`). Returns how many players the page has."""
    return page.evaluate(_WATCH_AUDIO, index)


def audio_events(page) -> tuple[list[float], list[float]]:
    """The times recorded since :func:`watch_audio`: ``(new src, playing)``."""
    src, playing = page.evaluate("() => [window.__audio.src, window.__audio.playing]")
    return src, playing
