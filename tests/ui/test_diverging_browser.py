"""A diverging run in a real browser: the page says why before Start and stops the run with what to do (its own
module: a module's Playwright session must end before another starts)."""

import re

import pytest

from explorer.langevin_view import LangevinExplorer
from tests.ui.browser import needs_chromium, open_page, serve, wait_for

pytestmark = [pytest.mark.ui, needs_chromium]


def _status(page) -> str:
    return page.get_by_text(re.compile(r"Step \d+ / \d+")).first.inner_text().strip()


def test_a_diverging_run_stops_with_its_sentence_in_the_page():
    """The shipped flow priors under the residual ladder (from sigma 45, far above the 1 they were trained on):
    the page says so before Start, and the run stops at its first non-finite step with what to do."""
    from sepmodels.priors import load_priors

    def session():
        view = LangevinExplorer(load_priors(None), seconds=0.25, method="residual")
        view.attach()
        return view

    with serve("langevin_flows", session) as url, open_page(url) as page:
        page.get_by_text(re.compile(r"ladder starts at sigma 45, above the 1 these priors")).first.wait_for(
            timeout=30_000
        )
        page.get_by_role("button", name="Start").click()
        stopped = page.get_by_text(re.compile(r"sampler stopped: the run diverged at step \d+"))
        stopped.first.wait_for(timeout=120_000)
        assert "set Sigma max to 1" in stopped.first.inner_text()
        assert wait_for(lambda: "stopped" in _status(page)), _status(page)
