"""Diagnose the priors by looking and listening: the thesis's studies of the priors, redone with the Jacobian.

panel serve apps/priors.py                     # the shipped toy priors and their shipped study results
SEPMODELS_PRIORS=runs/x/priors.pt SEPMODELS_STUDIES=runs/x/studies panel serve apps/priors.py

Results come from `sepmodels study all --priors CKPT --out DIR`; "Your clip" scores live with the priors.
"""

import panel as pn

from explorer.cache import priors_from_env
from explorer.mixview import describe
from explorer.priors_view import PriorsExplorer, studies_from_env


def study_list(studies: dict, kind: str) -> str:
    """The studies' names, each of another kind of priors than the page's marked with whose it is (the shipped
    denoise study is the wave priors', while the page describes the flow priors)."""
    named = [name if record.priors.get("kind") == kind else f"{name} (of the {record.priors.get('kind')} priors)"
             for name, record in studies.items()]  # fmt: skip
    return ", ".join(named) or "none"


def build() -> pn.viewable.Viewable:
    pn.extension()
    priors = priors_from_env()
    studies, problems, folder = studies_from_env()
    header = f"{describe(priors)} Study results from `{folder}`: {study_list(studies, priors.kind)}."
    return pn.template.FastListTemplate(
        title="sepmodels: priors",
        main=[pn.pane.Markdown(header), PriorsExplorer(priors, studies, problems)],
    )


if pn.state.served:
    build().servable()
