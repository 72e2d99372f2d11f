"""Spectrogram inpainting with a VQ-VAE: a note's codemap you can see, edit, resample and hear.

panel serve apps/inpainting.py          # the shipped VQ-VAE and codemap priors, a few notes rendered on the spot
SEPMODELS_CODEC=runs/v/priors.pt SEPMODELS_CODES=runs/v/codes.pt SEPMODELS_CODEC_LOG=runs/v/train_log.csv \
    SEPMODELS_NOTES=data/notes panel serve apps/inpainting.py

The VQ-VAE comes from `sepmodels train --model vqvae --data notes`, its codemap priors from `sepmodels fit-codes`.
"""

import os

import panel as pn

from explorer.inpaint_view import (
    InpaintExplorer,
    default_log_path,
    example_notes,
    inpainter_from_env,
    read_training_log,
)


def build() -> pn.viewable.Viewable:
    pn.extension()
    inpainter = inpainter_from_env()
    codec = inpainter.codec
    log_path = os.environ.get("SEPMODELS_CODEC_LOG") or (
        None if os.environ.get("SEPMODELS_CODEC") else default_log_path()
    )
    params = sum(p.numel() for p in codec.model.parameters())
    cfg = codec.config
    header = (
        f"A VQ-VAE of {params / 1e3:.0f} k parameters turns a note's log-magnitude spectrogram (STFT {cfg.n_fft}, "
        f"hop {cfg.hop}, {cfg.sample_rate} Hz) into a grid of {cfg.codebook_size} discrete codes, "
        f"{cfg.downsample}x coarser in time and frequency, trained {codec.meta.get('step', '?')} steps. "
        "Draw a box on the codemap, change its codes, and hear what the decoder makes of them."
    )
    return pn.template.FastListTemplate(
        title="sepmodels: spectrogram inpainting",
        main=[pn.pane.Markdown(header), InpaintExplorer(inpainter, example_notes(), read_training_log(log_path))],
    )


if pn.state.served:
    build().servable()
