"""Watch a mix being separated by Langevin dynamics under the priors, and listen to every iterate.

panel serve apps/langevin.py            # the shipped wave priors (the samplers' default)
SEPMODELS_PRIORS=runs/x/priors.pt panel serve apps/langevin.py
SEPMODELS_PRIORS=exact panel serve apps/langevin.py   # start on the exact toy prior

A selector switches between those priors, the shipped flow priors and the exact toy prior. The method menu
holds the samplers and ``amortised``: the amortised posterior's one pass (an encoder reads each source's pitch
off the mix), then the harmonic priors' residual sweeps from its answer. Score priors give
no likelihood; the likelihood views then show that of the priors named by SEPMODELS_JUDGE (a flow checkpoint
or ``exact``; default: the shipped flow priors), when they model the same sources.

The "Music" tab separates a song's clip into drums, bass, other and vocals with the shipped music models,
the stems priors' sweep among them, watched step by step (explorer/music_view.py): clips from SEPMODELS_STEMS
(a make-stems folder or a bench/stems.py render), else two short tracks rendered on the spot with FluidSynth,
or an upload. It is built when first opened.
"""

import panel as pn

from explorer.cache import amortised_posterior, judge_for, sampler_choices
from explorer.langevin_view import LangevinExplorer
from explorer.mixview import describe
from explorer.music_view import MusicExplorer, example_clips, shipped_dictionaries, shipped_methods

MUSIC_HEADER = (
    "Separate a song's clip into drums, bass, other and vocals with the shipped music models: the KL-NMF "
    "baseline (one dictionary per stem), frame priors (a VAE per stem over spectrum frames, learned on solo "
    "stems and fitted to the mix from an encoder's one-pass reading of it), a supervised mask network, and "
    "the thesis's approach "
    "(score or flow priors per stem, trained on solo stems only, searched by the residual sweep, which you watch "
    "step by step), "
    "placed between the floor (the mix itself) and the ceiling (the oracle ratio mask). Each stem's estimate is "
    "drawn beside its truth, with players for all of them and for what the estimates leave of the mix."
)

HEADER = (
    "Separate a mix of four toy oscillators (or your own WAV) under one prior per source, and watch every step. "
    "Pick the priors, the toy's notes and the method on the left, press **Start**. The pitch table says whether "
    "each estimate found its source's pitch; the exact toy prior shows what a perfect prior achieves with the "
    "same search (on the keys)."
)


def build() -> pn.viewable.Viewable:
    pn.extension()
    choices = sampler_choices()
    priors = next(iter(choices.values()))()
    explorer = LangevinExplorer(priors, judge=judge_for(priors), choices=choices, judge_for=judge_for,
                                posterior=amortised_posterior)  # fmt: skip
    explorer.attach()
    about = pn.pane.Markdown(describe(priors))
    explorer.param.watch(lambda _e: setattr(about, "object", describe(explorer.priors)), "prior")

    def music() -> pn.viewable.Viewable:
        clips = example_clips()
        note = "" if clips else ("No clips here (no SEPMODELS_STEMS folder, no FluidSynth to render one): upload "
                                 "a song's clip.")  # fmt: skip
        view = MusicExplorer(clips, shipped_methods(), dictionaries=shipped_dictionaries())
        view.attach()  # the sweep's steps are drawn as they arrive
        header = pn.pane.Markdown(" ".join(filter(None, [MUSIC_HEADER, note])))
        return pn.Column(header, view, sizing_mode="stretch_width")

    tabs = pn.Tabs(
        ("Toy mixes: Langevin", pn.Column(pn.pane.Markdown(HEADER), about, explorer, sizing_mode="stretch_width")),
        ("Music: stems", pn.param.ParamFunction(music, lazy=True)),
        dynamic=True, sizing_mode="stretch_width",
    )  # fmt: skip
    return pn.template.FastListTemplate(title="sepmodels: Langevin separation", main=[tabs])


if pn.state.served:
    build().servable()
