"""Watch a mix being separated by Langevin dynamics under the priors, and listen to every iterate.

panel serve apps/langevin.py            # the shipped wave priors (the samplers' default)
SEPMODELS_PRIORS=runs/x/priors.pt panel serve apps/langevin.py
SEPMODELS_PRIORS=exact panel serve apps/langevin.py   # start on the exact toy prior

A selector switches between those priors, the shipped flow priors and the exact toy prior. Score priors give
no likelihood; the likelihood views then show that of the priors named by SEPMODELS_JUDGE (a flow checkpoint
or ``exact``; default: the shipped flow priors), when they model the same sources.
"""

import panel as pn

from explorer.cache import judge_for, sampler_choices
from explorer.langevin_view import LangevinExplorer
from explorer.mixview import describe

HEADER = (
    "Separate a mix of four toy oscillators (or your own WAV) under one prior per source, and watch every step. "
    "Pick the priors and the method on the left, press **Start**. The pitch table says whether each estimate "
    "found its source's piano key; the exact toy prior shows what a perfect prior achieves with the same search."
)


def build() -> pn.viewable.Viewable:
    pn.extension()
    choices = sampler_choices()
    priors = next(iter(choices.values()))()
    explorer = LangevinExplorer(priors, judge=judge_for(priors), choices=choices, judge_for=judge_for)
    explorer.attach()
    about = pn.pane.Markdown(describe(priors))
    explorer.param.watch(lambda _e: setattr(about, "object", describe(explorer.priors)), "prior")
    return pn.template.FastListTemplate(
        title="sepmodels: Langevin separation",
        main=[pn.pane.Markdown(HEADER), about, explorer],
    )


if pn.state.served:
    build().servable()
