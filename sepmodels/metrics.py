"""Separation metrics.

SI-SDR (Le Roux et al., 2019): the estimate is projected on the reference, and the ratio of the projection's
energy to the rest is reported in dB. Invariant to the estimate's scale, so it does not matter that a
mean-mix convention scales sources by 1/N.

BSS-Eval SDR (Vincent et al., 2006, in its museval v4 form, the figure musdb18 results are quoted in): the
median over one-second windows, per source.

Spectral convergence, for spectrogram models (the inpainting VQ-VAE, the drum CWAE and its inverter): the
Frobenius norm of the magnitude error over the target's.
"""

from __future__ import annotations

import torch


def si_sdr(estimate: torch.Tensor, reference: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Scale-invariant SDR in dB over the last axis: ``[..., T], [..., T] -> [...]``.

    Both signals are made zero-mean first (the usual definition). A silent reference gives -inf or nan
    in the limit; ``eps`` keeps the result finite.
    """
    if estimate.shape != reference.shape:
        shapes = f"estimate {tuple(estimate.shape)} and reference {tuple(reference.shape)}"
        raise ValueError(f"{shapes} differ in shape")
    est = estimate - estimate.mean(dim=-1, keepdim=True)
    ref = reference - reference.mean(dim=-1, keepdim=True)
    alpha = (est * ref).sum(-1, keepdim=True) / ((ref * ref).sum(-1, keepdim=True) + eps)
    target = alpha * ref
    residual = est - target
    return 10 * torch.log10(((target * target).sum(-1) + eps) / ((residual * residual).sum(-1) + eps))


def spectral_convergence(estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``||S_est - S||_F / ||S||_F`` of two magnitude spectrograms ``[..., F, frames] -> [...]``."""
    error = torch.linalg.norm(estimate - target, dim=(-2, -1))
    return error / torch.linalg.norm(target, dim=(-2, -1)).clamp_min(1e-8)


def bss_sdr(estimates: torch.Tensor, references: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """museval's BSS-Eval v4 SDR of ``[N, T]`` estimates against ``[N, T]`` references: ``[N]`` dB, the median
    over one-second windows (windows where a reference is silent do not count; all silent gives nan)."""
    import museval  # heavy; only needed here
    import numpy as np

    if estimates.shape != references.shape or estimates.dim() != 2:
        raise ValueError(
            f"need two [N, T] tensors of one shape, got {tuple(estimates.shape)}, {tuple(references.shape)}"
        )
    ref = references.detach().cpu().double().numpy()[..., None]
    est = estimates.detach().cpu().double().numpy()[..., None]
    sdr, _isr, _sir, _sar = museval.evaluate(ref, est, win=sample_rate, hop=sample_rate)
    with np.errstate(all="ignore"):
        return torch.as_tensor(np.nanmedian(np.where(np.isfinite(sdr), sdr, np.nan), axis=1))


def verdict(separated: list[float], floor: list[float], margin: float = 10.0) -> str:
    """A run's result in words, from each source's SI-SDR and its floor (the mix itself as the estimate):
    ``separated`` when every source beats its floor by ``margin`` dB, else how many beat it by 1 dB."""
    if len(separated) != len(floor):
        raise ValueError(f"{len(separated)} sources separated but {len(floor)} floors")
    gains = [a - b for a, b in zip(separated, floor, strict=True)]
    if gains and min(gains) > margin:
        return "separated"
    beat = sum(g > 1.0 for g in gains)
    if beat:
        return f"{beat} of {len(gains)} sources above the mix itself"
    return "not separated (no source above the mix itself)"
