"""A latent drum synthesizer you play: pick a class, move on the XY pad, hear a new hit on every move.

panel serve apps/drums.py                      # the shipped CWAE and MCNN inverter
SEPMODELS_CWAE=runs/c/priors.pt SEPMODELS_MCNN=runs/m/priors.pt panel serve apps/drums.py
SEPMODELS_MCNN=none panel serve apps/drums.py  # Griffin-Lim only
SEPMODELS_INVERTER=mcnn panel serve apps/drums.py  # the learned inverter by default

The CWAE comes from `sepmodels train --model cwae --data drums`, the inverter from `sepmodels train --model
mcnn --data drums` (both on a `sepmodels make-drums` folder).
"""

import os

import panel as pn

from explorer.drums_view import DrumPad
from sepmodels.drums.synth import load_synth


def build() -> pn.viewable.Viewable:
    pn.extension()
    synth = load_synth(os.environ.get("SEPMODELS_CWAE") or None, os.environ.get("SEPMODELS_MCNN") or None,
                       os.environ.get("SEPMODELS_INVERTER") or "griffin-lim")  # fmt: skip
    ae = synth.autoencoder
    cfg = ae.config
    params = sum(p.numel() for p in ae.model.parameters())
    inverter = (
        "fast Griffin-Lim (8 iterations) turns the spectrogram into audio (the learned MCNN inverter is faster "
        "but, trained on two cores, further from the true spectrogram: pick it under *Inverter*)"
        if synth.inverter is not None
        else "fast Griffin-Lim turns the spectrogram into audio (no learned inverter was loaded)"
    )
    header = (
        f"A conditional Wasserstein autoencoder ({params / 1e3:.0f} k parameters, trained "
        f"{ae.meta.get('step', '?')} steps) maps {len(ae.classes)} classes of drum hits "
        f"({cfg.length / cfg.sample_rate:.2f} s at {cfg.sample_rate} Hz, {cfg.n_mels}-band log-mel) to "
        f"{cfg.latent}-number codes, each class's codes "
        f"pulled toward its own Gaussian; {inverter}. The pad moves along the class's first two principal "
        "components, the fine slider along the third."
    )
    return pn.template.FastListTemplate(
        title="sepmodels: the drum machine", main=[pn.pane.Markdown(header), DrumPad(synth)]
    )


if pn.state.served:
    build().servable()
