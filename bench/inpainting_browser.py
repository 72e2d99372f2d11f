"""From a press of "Apply the edit" to the edited note being playable, in a real browser.

    python bench/inpainting_browser.py              # the shipped VQ-VAE and codemap priors, Debian's chromium

Serves the inpainting app in-process, opens it in headless Chromium and presses "Apply the edit"
``--presses`` times (each press draws the next seed). For each press it reads in the page the time from the
click until the edited player's ``src`` changes (the click's trip to the server, the resample, decode and
Griffin-Lim there, the drawing and WAV encoding, and their way back), beside the server's own figure from
the status line. Medians, and the slowest press; writes docs/bench/inpainting_browser.json. Run it alone:
server and browser share the machine's cores.
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

from explorer.inpaint_view import InpaintExplorer, example_notes, inpainter_from_env  # noqa: E402
from sepmodels.fileio import atomic_path  # noqa: E402
from tests.ui.browser import _ARGS, CHROMIUM, audio_events, free_port, watch_audio  # noqa: E402


def main() -> None:
    import panel as pn
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presses", type=int, default=12, help="presses of Apply (default: 12)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "inpainting_browser.json")
    args = parser.parse_args()
    inpainter = inpainter_from_env()
    notes = example_notes(inpainter.sample_rate)
    port = free_port()
    server = pn.serve({"inpainting": lambda: InpaintExplorer(inpainter, notes)}, port=port, address="127.0.0.1",
                      threaded=True, show=False, start=True, websocket_origin=[f"127.0.0.1:{port}"])  # fmt: skip
    time.sleep(1.0)
    rows = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1600})
            page.goto(f"http://127.0.0.1:{port}/inpainting", wait_until="networkidle", timeout=60_000)
            status = page.get_by_text(re.compile(r"codes in the box changed")).first
            status.wait_for(timeout=60_000)
            if watch_audio(page, -1) < 3:  # the edited note's player: the last of original, reconstruction, edited
                raise SystemExit("the three players were not found in the page")
            button = page.get_by_role("button", name="Apply the edit")
            for i in range(args.presses):
                seen = len(audio_events(page)[0])
                clicked = page.evaluate("() => performance.now()")
                button.click()
                deadline = time.time() + 20
                while time.time() < deadline and len(audio_events(page)[0]) <= seen:
                    time.sleep(0.005)
                if len(audio_events(page)[0]) <= seen:
                    print(f"press {i}: no new edit within 20 s")
                    continue
                arrived = audio_events(page)[0][seen]
                time.sleep(0.3)  # the status line follows in the same message; let it settle
                server_ms = float(re.search(r"= \*?\*?([\d.]+) ms", status.inner_text()).group(1))
                rows.append({"press_to_edited_audio_ms": arrived - clicked, "server_edit_ms": server_ms})
            browser.close()
    finally:
        server.stop()
    if not rows:
        raise SystemExit("no press produced an edit")
    report = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    report["slowest_press_to_edited_audio_ms"] = max(r["press_to_edited_audio_ms"] for r in rows)
    report["presses"] = len(rows)
    for key, value in report.items():
        print(f"{key}: {value:.1f}" if isinstance(value, float) else f"{key}: {value}")
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
