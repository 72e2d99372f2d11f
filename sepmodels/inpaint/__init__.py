"""Spectrogram inpainting with a VQ-VAE: spectrograms, the model, codemap priors and edits."""
