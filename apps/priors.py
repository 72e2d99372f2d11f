"""Look at and listen to the priors: a toy mix and its per-sample log-likelihood under each prior.

panel serve apps/priors.py            # the shipped toy priors
SEPMODELS_PRIORS=runs/x/priors.pt panel serve apps/priors.py
"""

import panel as pn

from explorer.cache import priors_from_env
from explorer.mixview import MixLikelihood, describe


def build() -> pn.viewable.Viewable:
    pn.extension()
    priors = priors_from_env()
    view = MixLikelihood(priors)
    return pn.template.FastListTemplate(
        title="sepmodels: priors",
        main=[pn.pane.Markdown(describe(priors)), view],
    )


if pn.state.served:
    build().servable()
