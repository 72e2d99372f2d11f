"""One checker run over every flow layer and the whole stack (STYLE.md habit 2).

A layer follows the protocol ``forward(x, cond) -> (y, logdet)`` with ``logdet`` shaped like ``y``.
"""

from __future__ import annotations

import torch
from torch import nn


def perturb(module: nn.Module, scale: float = 0.1, seed: int = 0) -> nn.Module:
    """Move every parameter off its initial value, so zero-initialised layers are not trivially exact."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module


def _per_example(ld: torch.Tensor) -> torch.Tensor:
    return ld.flatten(1).sum(1)


def check_layer(
    layer: nn.Module, shape: tuple[int, ...], cond: torch.Tensor | None = None, atol: float = 1e-9
) -> None:
    """Assert all protocol properties of ``layer`` on float64 input of ``shape`` = ``[B, G, C, T]``."""
    layer = layer.double().eval()
    torch.manual_seed(0)
    x = torch.randn(shape, dtype=torch.float64)
    cond = None if cond is None else cond.double()
    B = shape[0]

    y, ld = layer(x, cond)
    assert y.shape[0] == B and ld.shape == y.shape, "logdet must have the shape of the output"
    assert torch.isfinite(y).all() and torch.isfinite(ld).all(), "NaN or inf in the output"

    # Round trip, and the inverse's logdet cancels the forward's.
    x_back, ld_inv = layer.inverse(y, cond)
    torch.testing.assert_close(x_back, x, atol=atol, rtol=0)
    torch.testing.assert_close(
        _per_example(ld) + _per_example(ld_inv), torch.zeros(B, dtype=torch.float64), atol=atol, rtol=0
    )

    # logdet per example: the only check that catches a logdet summed over the batch.
    for i in range(B):
        ci = None if cond is None else cond[i : i + 1]
        _, ld_i = layer(x[i : i + 1], ci)
        torch.testing.assert_close(ld_i[0], ld[i], atol=atol, rtol=0)

    # logdet equals the autograd Jacobian's, per example; and examples do not interact.
    def f(flat: torch.Tensor) -> torch.Tensor:
        return layer(flat.view(shape), cond)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(f, x.reshape(-1))  # [B*D_out, B*D_in]
    d_in, d_out = x[0].numel(), y[0].numel()
    assert d_in == d_out, "a flow layer must preserve the number of elements"
    for i in range(B):
        for j in range(B):
            block = jac[i * d_out : (i + 1) * d_out, j * d_in : (j + 1) * d_in]
            if i == j:
                _, logabsdet = torch.linalg.slogdet(block)
                torch.testing.assert_close(logabsdet, _per_example(ld)[i], atol=1e-7, rtol=1e-7)
            else:
                assert block.abs().max() == 0, f"example {i} depends on example {j}"


def check_group_independence(layer: nn.Module, shape: tuple[int, ...], cond: torch.Tensor | None = None) -> None:
    """Output group g must not depend on input group h != g (one prior per group)."""
    layer = layer.double().eval()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    G = shape[1]
    y, ld = layer(x, None if cond is None else cond.double())
    for g in range(G):
        (grad,) = torch.autograd.grad((y[:, g].sum() + ld[:, g].sum()), x, retain_graph=True)
        others = [h for h in range(G) if h != g]
        assert grad[:, others].abs().max() == 0, f"group {g} depends on another group"
