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
from tests.ui.browser import _ARGS, CHROMIUM, free_port  # noqa: E402

_HOOK = """() => {
  const found = [];
  const walk = (root) => {
    root.querySelectorAll('*').forEach((el) => {
      if (el.tagName === 'AUDIO') found.push(el);
      if (el.shadowRoot) walk(el.shadowRoot);
    });
  };
  walk(document);
  window.__drum = {src: [], playing: []};
  const player = found[0];
  new MutationObserver(() => window.__drum.src.push(performance.now())).observe(player, {attributes: true,
    attributeFilter: ['src']});
  player.addEventListener('playing', () => window.__drum.playing.push(performance.now()));
  return found.length;
}"""


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
            if page.evaluate(_HOOK) < 1:
                raise SystemExit("no <audio> element found in the page")
            boxes = [c.bounding_box() for c in page.locator("canvas").all()]
            pad = min(
                (b for b in boxes if b and b["height"] > 300 and 300 < b["width"] < 600), key=lambda b: b["x"]
            )
            # the first sound of the fresh page: a class button, which opens the class (selector, pad, variance
            # chart) as it plays its mean hit
            seen = page.evaluate("() => [window.__drum.src.length, window.__drum.playing.length]")
            clicked = page.evaluate("() => performance.now()")
            page.get_by_role("button", name="▶ snare").first.click()
            deadline = time.time() + 20
            while time.time() < deadline:
                now = page.evaluate("() => [window.__drum.src.length, window.__drum.playing.length]")
                if now[0] > seen[0] and now[1] > seen[1]:
                    break
                time.sleep(0.01)
            else:
                raise SystemExit("the class button gave no sound within 20 s")
            src = page.evaluate(f"() => window.__drum.src[{seen[0]}]")
            playing = page.evaluate(f"() => window.__drum.playing[{seen[1]}]")
            first = {
                "class_button_to_new_audio_ms": src - clicked,
                "class_button_audio_to_playing_ms": playing - src,
            }
            time.sleep(0.8)
            for i in range(args.clicks):
                fx, fy = 0.15 + 0.7 * ((i * 0.37) % 1), 0.15 + 0.7 * ((i * 0.61) % 1)
                seen = page.evaluate("() => [window.__drum.src.length, window.__drum.playing.length]")
                clicked = page.evaluate("() => performance.now()")
                page.mouse.click(pad["x"] + pad["width"] * fx, pad["y"] + pad["height"] * fy)
                deadline = time.time() + 20
                while time.time() < deadline:
                    now = page.evaluate("() => [window.__drum.src.length, window.__drum.playing.length]")
                    if now[0] > seen[0] and now[1] > seen[1]:
                        break
                    time.sleep(0.01)
                else:
                    print(f"click {i}: no new sound within 20 s")
                    continue
                src = page.evaluate(f"() => window.__drum.src[{seen[0]}]")
                playing = page.evaluate(f"() => window.__drum.playing[{seen[1]}]")
                status = page.get_by_text(re.compile(r"Move to audio ready")).first.inner_text()
                server_ms = float(re.search(r"= ([\d.]+) ms", status).group(1))
                rows.append({"click_to_new_audio_ms": src - clicked, "audio_to_playing_ms": playing - src,
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
