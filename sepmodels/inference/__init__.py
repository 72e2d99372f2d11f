"""Inference: separating a mix under source priors."""
