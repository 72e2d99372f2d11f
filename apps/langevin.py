"""Watch a mix being separated by Langevin dynamics under the priors, and listen to every iterate.

panel serve apps/langevin.py            # the shipped toy score priors, judged by the flow priors
SEPMODELS_PRIORS=runs/x/priors.pt panel serve apps/langevin.py

Score priors give no likelihood; the likelihood views then show that of the flow priors named by
SEPMODELS_JUDGE (default: the shipped flow priors), when they model the same sources.
"""

import panel as pn

from explorer.cache import judge_for, sampler_priors_from_env
from explorer.langevin_view import LangevinExplorer
from explorer.mixview import describe


def build() -> pn.viewable.Viewable:
    pn.extension()
    priors = sampler_priors_from_env()
    explorer = LangevinExplorer(priors, judge=judge_for(priors))
    explorer.attach()
    return pn.template.FastListTemplate(
        title="sepmodels: Langevin separation",
        main=[pn.pane.Markdown(describe(priors)), explorer],
    )


if pn.state.served:
    build().servable()
