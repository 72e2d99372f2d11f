"""Diagnose the priors by looking and listening: the thesis's studies of the priors, redone with the Jacobian.

panel serve apps/priors.py                     # the shipped toy priors and their shipped study results
SEPMODELS_PRIORS=runs/x/priors.pt SEPMODELS_STUDIES=runs/x/studies panel serve apps/priors.py

Results come from `sepmodels study all --priors CKPT --out DIR`; "Your clip" scores live with the priors.
"""

import panel as pn

from explorer.cache import priors_from_env
from explorer.mixview import describe
from explorer.priors_view import PriorsExplorer, studies_from_env


def build() -> pn.viewable.Viewable:
    pn.extension()
    priors = priors_from_env()
    studies, problems, folder = studies_from_env()
    header = f"{describe(priors)} Study results from `{folder}`: {', '.join(studies) or 'none'}."
    return pn.template.FastListTemplate(
        title="sepmodels: priors",
        main=[pn.pane.Markdown(header), PriorsExplorer(priors, studies, problems)],
    )


if pn.state.served:
    build().servable()
