"""Five browser sessions of the Langevin app at once: each runs its own sampler to the end, with no errors and
no crosstalk (every session's result is exactly what its own settings give when run alone)."""

import itertools
import re

import pytest
import torch

from explorer.langevin_view import LangevinExplorer
from sepmodels.inference.langevin import run
from tests.ui.browser import _ARGS, CHROMIUM, needs_chromium, serve, wait_for

pytestmark = [pytest.mark.ui, pytest.mark.slow, needs_chromium]

SESSIONS = 5


def test_five_sessions_run_to_the_end_without_crosstalk(tiny_priors):
    from playwright.sync_api import sync_playwright

    views: list[LangevinExplorer] = []
    shown: list[float] = []
    seeds = itertools.count()

    def session():
        k = next(seeds)  # every session its own mix and sampler noise
        view = LangevinExplorer(tiny_priors, seconds=0.1, method="constrained", steps=30, levels=2, seed=k,
                                sampler_seed=k)  # fmt: skip
        view.attach()
        views.append(view)
        return view

    with serve("langevin", session) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=_ARGS)
        try:
            pages = [browser.new_context().new_page() for _ in range(SESSIONS)]
            for page in pages:
                page.goto(url, wait_until="networkidle", timeout=90_000)
                page.get_by_text(re.compile(r"Step 0 / 60")).first.wait_for(timeout=60_000)
            for page in pages:  # all five running at once
                page.get_by_role("button", name="Start", exact=True).click()
            for k, page in enumerate(pages):
                done = page.get_by_text(re.compile(r"Step 60 / 60 .*finished"))
                # a deadline, not a timing: five samplers, five refresh loops and the browsers share the cores
                # (alone 60 steps take about 2 s; here the refreshes hold the GIL most of the time)
                assert wait_for(lambda done=done: done.count() > 0, timeout=360), f"session {k} did not finish"
                final = page.get_by_text(re.compile(r"Final: mean SI-SDR")).first
                assert wait_for(lambda final=final: final.count() > 0), f"session {k} shows no final numbers"
                shown.append(float(re.search(r"mean SI-SDR (-?[\d.]+) dB", final.inner_text()).group(1)))
        finally:
            browser.close()
    assert len(views) == SESSIONS  # pages were opened one after the other: views[k] serves pages[k]
    for k, view in enumerate(views):  # each page shows its own session's result
        assert shown[k] == pytest.approx(float(view.runner.latest.si_sdr.mean()), abs=0.06)
    assert len({round(v, 1) for v in shown}) > 1
    assert sorted(v.seed for v in views) == list(range(SESSIONS))
    for view in views:
        assert view.runner.error is None and view.runner.finished
        alone = run(view.mixture, tiny_priors, view.config(), view.truth)
        assert view.runner.latest.step == alone.step == 60
        torch.testing.assert_close(view.runner.latest.sources, alone.sources, atol=1e-4, rtol=1e-4)
