"""A whole separation of a 10 s song clip in the Langevin app's Music tab, timed in a real browser.

    python bench/music_browser.py --stems /work/stemsbench/fluidr3_gm   # a bench/stems.py render

Serves the Langevin app in-process with ``SEPMODELS_STEMS`` set to the render (its test split's 10 s clips),
opens the Music tab in headless Chromium and runs each iterative method (the shipped score and flow priors per
stem, their sweep and masks as chosen on validation) on the first clip. For each it reads, in the page, the
time from choosing the method until the final verdict is shown, the steps/s the page reported while running,
and the mean SI-SDR improvement of the verdict; the instant methods (NMF, the mask network) are timed the
same way. Writes docs/bench/music_browser.json. Run it alone: server and browser share the machine's cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sepmodels.fileio import atomic_path  # noqa: E402
from tests.ui.browser import open_page, serve, wait_for  # noqa: E402


def _build():
    spec = importlib.util.spec_from_file_location("langevin_app", ROOT / "apps" / "langevin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stems", type=Path, required=True, help="a bench/stems.py render (its test split)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench" / "music_browser.json")
    parser.add_argument("--shots", type=Path, default=None, help="folder for a screenshot at each method's end")
    args = parser.parse_args()
    if not (args.stems / "test").is_dir():
        parser.error(f"{args.stems} has no test split (render one with python bench/stems.py --root DIR)")
    os.environ["SEPMODELS_STEMS"] = str(args.stems)
    rows = []
    with serve("langevin", _build) as url, open_page(url, viewport={"width": 1500, "height": 3000}) as page:
        page.get_by_text(re.compile("ready: press Start")).first.wait_for(timeout=60_000)
        page.get_by_text("Music: stems", exact=True).first.click()
        first = page.get_by_text(re.compile(r"Mean SI-SDR improvement"))
        if not wait_for(lambda: first.count() > 0, timeout=120):
            sys.exit("the Music tab did not build")
        select = page.locator("select").filter(has_text="NMF baseline").first
        clip = page.locator("select").first.input_value()
        labels = [o for o in select.locator("option").all_inner_texts() if not o.startswith("oracle")]
        for label in labels[1:] + labels[:1]:  # the first is on screen: timed last, after another
            start = time.perf_counter()
            select.select_option(label=label)
            end = page.get_by_text(re.compile(re.escape(label) + r" on .*separated in (\d+ steps, )?[\d.]+ s"))
            rates = []
            while not end.count():
                if time.perf_counter() - start > 300:
                    sys.exit(f"{label}: no result within 300 s")
                live = page.get_by_text(re.compile(r"([\d.]+) steps/s · about"))
                if live.count():
                    rates.append(float(re.search(r"([\d.]+) steps/s", live.first.inner_text()).group(1)))
                time.sleep(0.2)
            seconds = time.perf_counter() - start
            verdict = page.get_by_text(re.compile(r"Mean SI-SDR improvement")).first.inner_text()
            gain = float(re.search(r"improvement ([-\d.]+) dB", verdict).group(1))
            status = end.first.inner_text()
            server = float(re.search(r"separated in (?:\d+ steps, )?([\d.]+) s", status).group(1))
            rows.append({"method": label, "seconds_in_browser": round(seconds, 1), "seconds_on_server": server,
                         "steps_per_second_shown": rates[-1] if rates else None, "si_sdri": gain})  # fmt: skip
            print(f"{label}: {seconds:.1f} s from the choice to the verdict (server {server:.1f} s), "
                  f"{gain:.1f} dB SI-SDRi" + (f", {rates[-1]:.2f} steps/s shown" if rates else ""))  # fmt: skip
            if args.shots is not None:
                args.shots.mkdir(parents=True, exist_ok=True)
                time.sleep(1.0)
                page.screenshot(path=str(args.shots / f"music_{len(rows)}.png"))
    result = {"clip": clip, "stems": str(args.stems), "cores": os.cpu_count(), "rows": rows}
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
