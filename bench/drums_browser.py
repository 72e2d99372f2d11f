"""From a click on the drum pad to sound, in a real browser: what the server's figure leaves out.

    python bench/drums_browser.py                 # the shipped CWAE and MCNN, Debian's chromium

Serves the drum pad in-process, opens it in headless Chromium (autoplay allowed, as after a user's first
click), clicks ``--clicks`` points of the pad and, for each, reads in the page:

- click to new audio: from the click until the player's ``src`` changes (the tap event's trip to the server,
  the decode and inversion there, the WAV encoding and its way back);
- audio to playing: from then until the ``<audio>`` element fires ``playing`` (the browser's own start);

beside the server's own decode and inversion figure from the status line. Medians; before the pad, the fresh
page's first sound, from a press of the "▶ snare" class button (which also opens the class). Writes
docs/bench/drums_browser.json. Run it alone: server and browser share the machine's cores.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explorer.drums_view import DrumPad  # noqa: E402
from sepmodels.drums.synth import load_synth  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from tests.ui.browser import _ARGS, CHROMIUM, audio_events, free_port, watch_audio  # noqa: E402


def _time_sound(page, act) -> tuple[float, float] | None:
    """Do ``act()`` and wait for the watched player's next sound: (to the new audio, then to playing), ms."""
    seen = [len(v) for v in audio_events(page)]
    clicked = page.evaluate("() => performance.now()")
    act()
    deadline = time.time() + 20
    while time.time() < deadline:
        src, playing = audio_events(page)
        if len(src) > seen[0] and len(playing) > seen[1]:
            return src[seen[0]] - clicked, playing[seen[1]] - src[seen[0]]
        time.sleep(0.01)
    return None


def main() -> None:
    import panel as pn
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clicks", type=int, default=12, help="pad clicks (default: 12)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "drums_browser.json")
    args = parser.parse_args()
    synth = load_synth()
    port = free_port()
    server = pn.serve({"drums": lambda: DrumPad(synth)}, port=port, address="127.0.0.1", threaded=True,
                      show=False, start=True, websocket_origin=[f"127.0.0.1:{port}"])  # fmt: skip
    time.sleep(1.0)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM),
                                        args=[*_ARGS, "--autoplay-policy=no-user-gesture-required"])  # fmt: skip
            page = browser.new_page(viewport={"width": 1500, "height": 1600})
            page.goto(f"http://127.0.0.1:{port}/drums", wait_until="networkidle", timeout=60_000)
            page.get_by_text(re.compile(r"Move to audio ready")).first.wait_for(timeout=60_000)
            if watch_audio(page, 0) < 1:
                raise SystemExit("no <audio> element found in the page")
            boxes = [c.bounding_box() for c in page.locator("canvas").all()]
            pad = min(
                (b for b in boxes if b and b["height"] > 300 and 300 < b["width"] < 600), key=lambda b: b["x"]
            )
            # the first sound of the fresh page: a class button, which opens the class (selector, pad, variance
            # chart) as it plays its mean hit
            timed = _time_sound(page, lambda: page.get_by_role("button", name="▶ snare").first.click())
            if timed is None:
                raise SystemExit("the class button gave no sound within 20 s")
            first = {"class_button_to_new_audio_ms": timed[0], "class_button_audio_to_playing_ms": timed[1]}
            time.sleep(0.8)
            for i in range(args.clicks):
                fx, fy = 0.15 + 0.7 * ((i * 0.37) % 1), 0.15 + 0.7 * ((i * 0.61) % 1)
                x, y = pad["x"] + pad["width"] * fx, pad["y"] + pad["height"] * fy
                timed = _time_sound(page, lambda x=x, y=y: page.mouse.click(x, y))
                if timed is None:
                    print(f"click {i}: no new sound within 20 s")
                    continue
                status = page.get_by_text(re.compile(r"Move to audio ready")).first.inner_text()
                server_ms = float(re.search(r"= ([\d.]+) ms", status).group(1))
                rows.append({"click_to_new_audio_ms": timed[0], "audio_to_playing_ms": timed[1],
                             "server_decode_and_invert_ms": server_ms})  # fmt: skip
                time.sleep(0.8)  # let the hit play out
            browser.close()
    finally:
        server.stop()
    if not rows:
        raise SystemExit("no click produced a sound")
    report = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    report |= first  # the fresh page's first sound
    report |= {f"first_pad_click_{key}": value for key, value in rows[0].items()}
    report["clicks"] = len(rows)
    for key, value in report.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
