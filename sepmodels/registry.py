"""The registry of model kinds: one line per kind.

Each kind's file defines its :class:`~sepmodels.nn.contract.ModelKind` (config class, presets, training
objective, what training produces) beside the model class; this module only lists them. Adding a kind is its
own file, one line here, and its tests (``tests/test_contract.py`` runs the common checks over every kind).

Source models that are fitted rather than trained by gradient (the exact toy prior, the wave priors, the
harmonic priors) are listed in :data:`SOURCE_MODELS`: the class a checkpoint names, and the name that selects
the shipped one (``--priors waves``). :func:`sepmodels.priors.load_priors` reads both tables.
"""

from __future__ import annotations

from typing import Any

from sepmodels.drums import cwae, mcnn
from sepmodels.inference import posterior
from sepmodels.inpaint import vqvae
from sepmodels.nn import ar, flows, score
from sepmodels.nn.contract import ModelKind
from sepmodels.nn.exact import ExactToyPriors
from sepmodels.nn.waves import WavePriors
from sepmodels.sources.harmonic import HarmonicPriors

KINDS: dict[str, ModelKind] = {
    kind.name: kind
    for kind in (
        flows.KIND,  # FloWaveNet-style flows: exact likelihood (the thesis's priors)
        ar.KIND,  # autoregressive WaveNet: exact likelihood, sampled sample by sample
        score.KIND,  # noise-conditional score networks: the gradient of log p only
        posterior.KIND,  # the VAE posterior over the sources, trained against frozen priors
        vqvae.KIND,  # a VQ-VAE over note spectrograms, for codemap inpainting: a codec, not priors
        cwae.KIND,  # a conditional Wasserstein autoencoder over drum hits, for the drum pad
        mcnn.KIND,  # a multi-head convolutional mel-to-waveform inverter for drum hits
    )
}


SOURCE_MODELS: dict[str, type] = {
    "exact": ExactToyPriors,  # the toy generator's own density, exact (no file)
    "waves": WavePriors,  # learned shapes on the toy's key grid (fit-waves)
    "harmonic": HarmonicPriors,  # learned shapes on a continuous, moving pitch (fit-harmonic)
}


def source_model_of_class(class_name: str) -> type | None:
    """The source-model class a checkpoint names (its ``class`` entry), or None."""
    return next((c for c in SOURCE_MODELS.values() if c.__name__ == class_name), None)


def kind_named(name: str) -> ModelKind:
    """The kind called ``name`` (``--model``), or a one-line error listing the kinds."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown model kind {name!r}; choose one of {', '.join(KINDS)}") from None


def kind_of_config(config: Any) -> ModelKind:
    """The kind whose config class ``config`` is an instance of."""
    for kind in KINDS.values():
        if type(config) is kind.config_class:
            return kind
    raise TypeError(f"{type(config).__name__} is the config of no registered model kind")


def kind_of_class(class_name: str) -> ModelKind | None:
    """The kind whose model class a checkpoint names (its ``class`` entry); None for an unknown name."""
    return next((k for k in KINDS.values() if k.model_class.__name__ == class_name), None)


def preset_names() -> list[str]:
    """Every kind's preset names, for ``--config``'s choices."""
    return sorted({name for kind in KINDS.values() for name in kind.presets})


__all__ = [
    "KINDS",
    "SOURCE_MODELS",
    "kind_named",
    "kind_of_class",
    "kind_of_config",
    "preset_names",
    "source_model_of_class",
]
