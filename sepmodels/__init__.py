"""Deep generative priors for unsupervised audio source separation.

The library layer: data, models, inference, metrics, training, checkpoints and the CLI. It never imports
Panel; the ``explorer`` package builds the apps on top of it.
"""

from sepmodels.priors import NoiseLadder, Prior, PriorSet

__all__ = ["NoiseLadder", "Prior", "PriorSet"]
__version__ = "0.1.0"
