"""Watch a mix being separated by Langevin dynamics under the priors, and listen to every iterate.

panel serve apps/langevin.py            # the shipped toy priors
SEPMODELS_PRIORS=runs/x/priors.pt panel serve apps/langevin.py
"""

import panel as pn

from explorer.cache import priors_from_env
from explorer.langevin_view import LangevinExplorer
from explorer.mixview import describe


def build() -> pn.viewable.Viewable:
    pn.extension()
    priors = priors_from_env()
    explorer = LangevinExplorer(priors)
    explorer.attach()
    return pn.template.FastListTemplate(
        title="sepmodels: Langevin separation",
        main=[pn.pane.Markdown(describe(priors)), explorer],
    )


if pn.state.served:
    build().servable()
