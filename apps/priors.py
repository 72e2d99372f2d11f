"""Diagnose the priors by looking and listening: the thesis's studies of the priors, redone with the Jacobian.

panel serve apps/priors.py                     # the shipped toy priors and their shipped study results
SEPMODELS_PRIORS=runs/x/priors.pt SEPMODELS_STUDIES=runs/x/studies panel serve apps/priors.py

Results come from `sepmodels study all --priors CKPT --out DIR`; "Your clip" scores live with the priors.

The "Music" tab does the same for the shipped stems flow priors (one flow per stem of the stems benchmark,
trained on solo stems; `python bench/stems_priors.py`), with their shipped studies of the benchmark's test
clips (`python bench/stems_studies.py`); its "Your clip" scores a song's clip (rendered like the benchmark's,
from SEPMODELS_STEMS, or an upload) and says which stem's prior finds which moment most likely. It is built
when first opened.
"""

import panel as pn

from explorer.cache import priors_from_env
from explorer.mixview import describe
from explorer.priors_view import PriorsExplorer, load_studies, stems_studies_dir, studies_from_env

MUSIC_HEADER = (
    "The studies of the **stems priors**: one noise-conditional flow per stem (drums, bass, other, vocals), "
    "trained on the stems benchmark's solo training stems only. Does the bass prior prefer bass? Which moments of "
    "a song does each prior find likely, and is a clip like anything the priors saw (each prior's range on "
    "held-out stems of the validation split)? The thesis's studies on music, noise conditioning included."
)


def study_list(studies: dict, kind: str) -> str:
    """The studies' names, each of another kind of priors than the page's marked with whose it is (the shipped
    denoise study is the wave priors', while the page describes the flow priors)."""
    named = [name if record.priors.get("kind") == kind else f"{name} (of the {record.priors.get('kind')} priors)"
             for name, record in studies.items()]  # fmt: skip
    return ", ".join(named) or "none"


def music_explorer() -> tuple[str, PriorsExplorer]:
    """The music tab's header and explorer: the shipped stems flow priors and their studies."""
    from explorer.music_view import example_clips
    from sepmodels.checkpoint import stems_priors_path
    from sepmodels.priors import load_priors

    priors = load_priors(stems_priors_path("flow"))
    folder = stems_studies_dir()
    studies, problems = load_studies(folder)
    header = f"{MUSIC_HEADER} Study results from `{folder}`: {study_list(studies, priors.kind)}."
    return header, PriorsExplorer(priors, studies, problems, examples=example_clips)


def music() -> pn.viewable.Viewable:
    header, explorer = music_explorer()
    return pn.Column(pn.pane.Markdown(header), explorer, sizing_mode="stretch_width")


def build() -> pn.viewable.Viewable:
    pn.extension()
    priors = priors_from_env()
    studies, problems, folder = studies_from_env()
    header = f"{describe(priors)} Study results from `{folder}`: {study_list(studies, priors.kind)}."
    toy_page = pn.Column(pn.pane.Markdown(header), PriorsExplorer(priors, studies, problems),
                         sizing_mode="stretch_width")  # fmt: skip
    tabs = pn.Tabs(("Toy priors", toy_page), ("Music: stems priors", pn.param.ParamFunction(music, lazy=True)),
                   dynamic=True, sizing_mode="stretch_width")  # fmt: skip
    return pn.template.FastListTemplate(title="sepmodels: priors", main=[tabs])


if pn.state.served:
    build().servable()
