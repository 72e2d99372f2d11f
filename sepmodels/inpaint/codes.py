"""Codemap priors: resample the codes inside a box of a VQ-VAE codemap, given the codes around it.

A VQ-VAE (:mod:`.vqvae`) turns a note's spectrogram into a codemap: a ``[F, T]`` grid of code indices in
``[0, K)`` (frequency rows by time columns; 64 by 32 with 256 codes for a 4 s note). Inpainting marks a region
of it with a boolean mask, draws new codes there from a *codemap prior* conditioned on the unmasked codes, and
decodes the result back to sound. Every prior here answers to one interface, :class:`CodePrior`:

- :class:`NaiveBayesCodes`: a categorical naive Bayes of a cell's code given its neighbours' codes, what the
  paper meant (its code fitted a Gaussian naive Bayes on cell coordinates instead). Counting, no training
  loop; a 16 by 16 box of a 64 by 32 map fills in milliseconds.
- :class:`TransformerCodes`: a small masked-token transformer (BERT / MaskGIT style) that sees the whole
  window around the box and fills it in a few rounds of confidence-ordered decoding.
- :class:`UniformCodes`: uniform random codes, the floor any prior must beat.

Sampling: ``temperature`` 0 takes the most probable code (deterministic; ties go to the lowest code);
``temperature > 0`` draws from ``softmax(logits / temperature)`` by the Gumbel-max trick, all noise drawn from
the given generator, so a seeded generator reproduces a draw exactly. A prior saves as a plain dict of
tensors, numbers, strings, lists and dicts (``state()``), which ``torch.load(..., weights_only=True)`` reads
back, and :func:`prior_from_state` rebuilds whichever prior a state holds.

Shapes: codemaps ``[N, F, T]`` for fitting, one codemap ``[F, T]`` and a bool mask ``[F, T]`` for sampling.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, Self, runtime_checkable

import torch
from torch import nn
from torch.nn import functional as nnf
from tqdm.auto import tqdm


@runtime_checkable
class CodePrior(Protocol):
    """What every codemap prior offers: fit on codemaps, resample the masked cells of one, save and load."""

    name: str  # a short label for plots and menus, e.g. "naive Bayes (time+freq)"
    codebook_size: int  # K: codes lie in [0, K)

    def fit(
        self, codemaps: torch.Tensor, *, generator: torch.Generator | None = None, progress: bool = False
    ) -> Self:
        """Learn from training codemaps ``[N, F, T]``; returns the prior."""
        ...

    def sample(
        self,
        codemap: torch.Tensor,
        mask: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A new codemap ``[F, T]``: the cells where ``mask`` is True resampled, all others unchanged."""
        ...

    def state(self) -> dict[str, Any]:
        """Everything needed to rebuild the prior, loadable with ``torch.load(..., weights_only=True)``."""
        ...

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        """The prior a :meth:`state` dict describes."""
        ...


# ----------------------------------------------------------------------------------------------------------
# Argument checks and draws shared by every prior


def _check_codes(codes: torch.Tensor, codebook_size: int, what: str, layout: str) -> None:
    """One-line ValueErrors for a codes tensor of the wrong rank, dtype or range (``layout`` like "[F, T]")."""
    ndim = layout.count(",") + 1
    if not isinstance(codes, torch.Tensor) or codes.dim() != ndim:
        got = tuple(codes.shape) if isinstance(codes, torch.Tensor) else type(codes).__name__
        raise ValueError(f"{what} must be a {layout} tensor of codes, got shape {got}")
    if codes.dtype.is_floating_point or codes.dtype.is_complex or codes.dtype == torch.bool:
        raise ValueError(f"{what} must hold integer codes, got dtype {codes.dtype}")
    if codes.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(codes.shape)})")
    low, high = int(codes.min()), int(codes.max())
    if low < 0 or high >= codebook_size:
        raise ValueError(f"{what} must lie in [0, {codebook_size}), got codes from {low} to {high}")


def _check_query(codemap: torch.Tensor, mask: torch.Tensor, temperature: float, codebook_size: int) -> None:
    _check_codes(codemap, codebook_size, "codemap", "[F, T]")
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.shape != codemap.shape:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor of the codemap's shape {tuple(codemap.shape)}, got {got}")
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")


def _check_codebook_size(codebook_size: int) -> None:
    if codebook_size < 2:
        raise ValueError(f"codebook_size must be at least 2, got {codebook_size}")


def _check_class(state: dict[str, Any], cls: type) -> None:
    if state.get("class") != cls.__name__:
        raise ValueError(f"state holds a {state.get('class')!r}, not a {cls.__name__}")


def _gumbel(rows: int, codebook_size: int, generator: torch.Generator | None) -> torch.Tensor:
    """Gumbel(0, 1) noise ``[rows, K]``; drawn on the CPU so one seeded generator serves every device."""
    u = torch.rand(rows, codebook_size, generator=generator).clamp_min(torch.finfo(torch.float32).tiny)
    return -torch.log(-torch.log(u))


def _choose(logits: torch.Tensor, temperature: float, noise: torch.Tensor | None) -> torch.Tensor:
    """One code per row of ``logits [M, K]``: the argmax at temperature 0, else a draw from
    ``softmax(logits / temperature)`` (Gumbel-max with ``noise [M, K]``)."""
    if temperature == 0:
        return logits.argmax(-1)
    return (logits / temperature + noise.to(logits.device)).argmax(-1)


# ----------------------------------------------------------------------------------------------------------
# Masks


def perplexity(counts: torch.Tensor) -> float:
    """``exp(entropy)`` of code counts ``[K]``: how many equally used codes would carry as much information."""
    p = counts.double() / counts.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def box_mask(shape: Sequence[int], freq: tuple[int, int], time: tuple[int, int]) -> torch.Tensor:
    """A bool mask ``[F, T]`` that is True on rows ``freq[0] <= f < freq[1]`` and columns
    ``time[0] <= t < time[1]``; the ranges are clipped to the map (no negative indexing from the end)."""
    n_freq, n_time = (int(s) for s in shape)
    f0, f1 = max(int(freq[0]), 0), min(int(freq[1]), n_freq)
    t0, t1 = max(int(time[0]), 0), min(int(time[1]), n_time)
    if f0 >= f1 or t0 >= t1:
        raise ValueError(f"box freq {tuple(freq)} x time {tuple(time)} is empty on a {n_freq} x {n_time} map")
    mask = torch.zeros(n_freq, n_time, dtype=torch.bool)
    mask[f0:f1, t0:t1] = True
    return mask


def random_box_masks(
    n: int,
    shape: Sequence[int],
    generator: torch.Generator | None = None,
    min_frac: float = 0.1,
    max_frac: float = 0.5,
) -> torch.Tensor:
    """``n`` random boxes ``[n, F, T]``, as a user might draw them: each side spans between ``min_frac`` and
    ``max_frac`` of its axis (at least one cell), uniformly placed inside the map."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    if not 0 < min_frac <= max_frac <= 1:
        raise ValueError(f"need 0 < min_frac <= max_frac <= 1, got {min_frac} and {max_frac}")
    n_freq, n_time = (int(s) for s in shape)
    sides = []
    for length in (n_freq, n_time):
        low = max(1, round(min_frac * length))
        high = max(low, round(max_frac * length))
        side = torch.randint(low, high + 1, (n,), generator=generator)
        start = (torch.rand(n, generator=generator) * (length - side + 1)).long()
        inside = torch.arange(length)
        sides.append((inside >= start[:, None]) & (inside < (start + side)[:, None]))  # [n, length]
    return sides[0][:, :, None] & sides[1][:, None, :]


def _fill_order(mask: torch.Tensor) -> torch.Tensor:
    """The masked cells ``[M, 2]`` as (f, t), time-major: column by column left to right, each column from
    low to high frequency."""
    t_f = mask.t().nonzero()  # row-major over the transposed mask: t first, then f
    return t_f.flip(1)


# ----------------------------------------------------------------------------------------------------------
# Naive Bayes over neighbour codes

NEIGHBOURS = ("time", "freq", "both")
_NEIGHBOUR_LABEL = {"time": "time", "freq": "freq", "both": "time+freq"}


def neighbour_offsets(neighbours: str, radius: int) -> torch.Tensor:
    """Offsets ``[D, 2]`` as (df, dt) of the neighbours a cell's code is predicted from: along time only,
    along frequency only, or the whole ``(2 radius + 1)^2 - 1`` square."""
    if neighbours not in NEIGHBOURS:
        raise ValueError(f"neighbours must be one of {', '.join(NEIGHBOURS)}, got {neighbours!r}")
    if radius < 1:
        raise ValueError(f"radius must be at least 1, got {radius}")
    steps = [s for s in range(-radius, radius + 1) if s]
    if neighbours == "time":
        pairs = [(0, s) for s in steps]
    elif neighbours == "freq":
        pairs = [(s, 0) for s in steps]
    else:
        pairs = [(df, dt) for df in range(-radius, radius + 1) for dt in range(-radius, radius + 1) if df or dt]
    return torch.tensor(pairs, dtype=torch.long)


class NaiveBayesCodes:
    """A categorical naive Bayes of a cell's code ``c`` given the codes ``n_d`` of its neighbours at offsets
    ``d`` (:func:`neighbour_offsets`)::

        log p(c | known neighbours) = log p(c) + sum over known d of log p(n_d | c, d) + const

    with ``p(c)`` and ``p(n | c, d)`` the training counts plus ``alpha`` (Laplace smoothing). A neighbour is
    unknown, and left out of the sum, when it lies outside the map or is masked and not yet filled. An unfitted
    prior has zero counts, so it draws uniform codes.

    With ``autoregressive=True`` the masked cells are filled one at a time in time-major raster order (column
    by column left to right, each column from low to high frequency, as the sound unfolds), and every filled
    cell is a known neighbour of the later ones, so a long masked run can be carried across from its left
    edge (cells that are no neighbours of each other are filled together, which draws exactly the same codes;
    see :meth:`_waves`). With ``False`` every masked cell sees only the unmasked cells, all at once.

    Arguments:
        codebook_size: K.
        neighbours: ``"time"``, ``"freq"`` or ``"both"`` (the full square).
        radius: how far the neighbourhood reaches, in cells.
        alpha: Laplace smoothing, > 0.
        autoregressive: fill masked cells in order, each conditioning the next (see above).

    Example:
        >>> maps = (torch.arange(8)[None, None, :] + torch.randint(8, (50, 4, 1))) % 8  # code[t] = code[t-1] + 1
        >>> prior = NaiveBayesCodes(8, neighbours="time").fit(maps)
        >>> edited = prior.sample(maps[0], box_mask((4, 8), (0, 4), (2, 6)), temperature=0)
        >>> bool((edited == maps[0]).all())
        True
    """

    def __init__(
        self,
        codebook_size: int,
        neighbours: str = "both",
        radius: int = 1,
        alpha: float = 1.0,
        autoregressive: bool = True,
    ) -> None:
        _check_codebook_size(codebook_size)
        if not alpha > 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.codebook_size, self.neighbours, self.radius = int(codebook_size), neighbours, int(radius)
        self.alpha, self.autoregressive = float(alpha), bool(autoregressive)
        self.offsets = neighbour_offsets(neighbours, self.radius)  # [D, 2]
        D, K = len(self.offsets), self.codebook_size
        self.class_counts = torch.zeros(K)  # [K]: how often each code occurs
        self.pair_counts = torch.zeros(D, K, K)  # [D, c, n]: neighbour code n at offset d of centre code c
        self._tables()

    @property
    def name(self) -> str:
        label = _NEIGHBOUR_LABEL[self.neighbours] + (f", radius {self.radius}" if self.radius != 1 else "")
        return f"naive Bayes ({label})" + ("" if self.autoregressive else " in one pass")

    def _tables(self) -> None:
        """Log tables from the counts: ``log_prior [K]`` and ``log_like [D * K + 1, K]``, whose row ``d * K + n``
        is ``log p(n | c, d)`` over c; the last row is zeros, the row of an unknown neighbour."""
        D, K, a = len(self.offsets), self.codebook_size, self.alpha
        counts = self.class_counts.double()
        self.log_prior = (torch.log(counts + a) - torch.log(counts.sum() + a * K)).float()
        pairs = self.pair_counts.double()
        log_like = torch.log(pairs + a) - torch.log(pairs.sum(-1, keepdim=True) + a * K)  # [D, c, n]
        self.log_like = torch.cat([log_like.transpose(1, 2).reshape(D * K, K), torch.zeros(1, K)]).float()

    def fit(
        self, codemaps: torch.Tensor, *, generator: torch.Generator | None = None, progress: bool = False
    ) -> Self:
        """Count codes and neighbour pairs over ``codemaps [N, F, T]`` (replacing earlier counts). Counting is
        deterministic: ``generator`` is accepted for the common interface and unused."""
        K = self.codebook_size
        _check_codes(codemaps, K, "codemaps", "[N, F, T]")
        maps = codemaps.long().cpu()
        _, n_freq, n_time = maps.shape
        self.class_counts = torch.bincount(maps.flatten(), minlength=K).float()
        self.pair_counts = torch.zeros(len(self.offsets), K, K)
        for d, (df, dt) in enumerate(tqdm(self.offsets.tolist(), desc=self.name, disable=not progress)):
            # centre cells whose neighbour at (df, dt) lies inside the map, and those neighbours
            rows, cols = slice(max(0, -df), n_freq - max(0, df)), slice(max(0, -dt), n_time - max(0, dt))
            near_rows = slice(rows.start + df, rows.stop + df)
            near_cols = slice(cols.start + dt, cols.stop + dt)
            pairs = maps[:, rows, cols] * K + maps[:, near_rows, near_cols]
            self.pair_counts[d] = torch.bincount(pairs.flatten(), minlength=K * K).view(K, K).float()
        self._tables()
        return self

    def _waves(self, cells: torch.Tensor) -> torch.Tensor:
        """Each cell's wave ``[M]`` of the autoregressive fill. The known neighbours of a cell in the raster
        order are the earlier cells of its neighbourhood; cells of one wave are no neighbours of each other and
        every earlier neighbour lies in an earlier wave, so filling wave by wave, all of a wave at once, draws
        exactly what filling cell by cell does: one wave per column (time neighbours), per row (frequency
        neighbours) or per diagonal ``f + (radius + 1) t`` (the square)."""
        f, t = cells[:, 0], cells[:, 1]
        if self.neighbours == "time":
            return t
        if self.neighbours == "freq":
            return f
        return f + (self.radius + 1) * t

    def sample(
        self,
        codemap: torch.Tensor,
        mask: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Resample the cells of ``codemap [F, T]`` where ``mask [F, T]`` is True (see the class docstring)."""
        K, r = self.codebook_size, self.radius
        _check_query(codemap, mask, temperature, K)
        out = codemap.clone()
        cells = _fill_order(mask.cpu())  # [M, 2]
        if len(cells) == 0:
            return out
        noise = _gumbel(len(cells), K, generator) if temperature > 0 else None
        # Known codes in a map padded by the radius; -1 marks unknown (masked or outside the map).
        n_freq, n_time = codemap.shape
        width = n_time + 2 * r
        known = torch.full((n_freq + 2 * r, width), -1, dtype=torch.long)
        known[r : r + n_freq, r : r + n_time] = codemap.long().cpu().masked_fill(mask.cpu(), -1)
        known = known.flatten()
        where = (cells[:, 0] + r) * width + cells[:, 1] + r  # [M] flat positions in the padded map
        steps = self.offsets[:, 0] * width + self.offsets[:, 1]  # [D] flat offsets
        base = torch.arange(len(steps)) * K  # first row of each offset's table
        unknown_row = len(steps) * K
        codes = torch.empty(len(cells), dtype=torch.long)
        wave = self._waves(cells) if self.autoregressive else torch.zeros(len(cells), dtype=torch.long)
        order = torch.sort(wave, stable=True).indices
        sizes = torch.unique_consecutive(wave[order], return_counts=True)[1].tolist()
        for group in torch.split(order, sizes):
            near = known[where[group, None] + steps]  # [cells, D]
            rows = torch.where(near >= 0, base + near, unknown_row)
            logits = self.log_prior + nnf.embedding_bag(rows, self.log_like, mode="sum")
            codes[group] = _choose(logits, temperature, None if noise is None else noise[group])
            known[where[group]] = codes[group]
        out[cells[:, 0], cells[:, 1]] = codes.to(out.device, out.dtype)
        return out

    def state(self) -> dict[str, Any]:
        return {
            "class": type(self).__name__,
            "codebook_size": self.codebook_size,
            "neighbours": self.neighbours,
            "radius": self.radius,
            "alpha": self.alpha,
            "autoregressive": self.autoregressive,
            "class_counts": self.class_counts.clone(),
            "pair_counts": self.pair_counts.clone(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_class(state, cls)
        prior = cls(state["codebook_size"], state["neighbours"], state["radius"], state["alpha"],
                    state["autoregressive"])  # fmt: skip
        if state["pair_counts"].shape != prior.pair_counts.shape:
            raise ValueError(f"pair_counts has shape {tuple(state['pair_counts'].shape)}, "
                             f"expected {tuple(prior.pair_counts.shape)}")  # fmt: skip
        prior.class_counts = state["class_counts"].float().clone()
        prior.pair_counts = state["pair_counts"].float().clone()
        prior._tables()
        return prior


# ----------------------------------------------------------------------------------------------------------
# Masked-token transformer


class _Block(nn.Module):
    """Pre-norm transformer block over ``[B, L, dim]``: attention over every token (no causal mask) with a
    learned bias per head for every relative offset (df, dt) between two cells of a map of ``shape``
    (``[heads, (2F - 1) * (2T - 1)]``)."""

    def __init__(self, dim: int, heads: int, shape: tuple[int, int]) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.shape = shape
        self.offset_bias = nn.Parameter(torch.zeros(heads, (2 * shape[0] - 1) * (2 * shape[1] - 1)))
        self.reset_offset_bias()

    def reset_offset_bias(self) -> None:
        """ALiBi's start (Press et al., 2022), in 2-D: head h's bias falls by ``2^(1 - h)`` per cell of city-block
        distance, so every head starts out looking near its cell, the steepest at its nearest neighbours."""
        F, T = self.shape
        df = torch.arange(1 - F, F).abs()[:, None]
        dt = torch.arange(1 - T, T).abs()[None, :]
        slopes = 2.0 ** (1 - torch.arange(self.heads, dtype=torch.float32))
        with torch.no_grad():
            self.offset_bias.copy_(-slopes[:, None] * (df + dt).flatten())

    def forward(self, x: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """``offsets [L, L]``: each pair of tokens' relative offset, as an index into ``offset_bias``."""
        B, L, C = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(B, L, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        att = nnf.scaled_dot_product_attention(q, k, v, attn_mask=self.offset_bias[:, offsets])  # [B, H, L, C/H]
        x = x + self.proj(att.transpose(1, 2).reshape(B, L, C))
        return x + self.mlp(self.norm2(x))


class _MaskedCodeNet(nn.Module):
    """Logits ``[B, h, w, K]`` of every cell's code from a window ``[B, h, w]`` of codes (``K`` = [MASK]) and
    the window's absolute rows ``[B, h]`` and columns ``[B, w]`` in the map."""

    def __init__(self, codebook_size: int, shape: tuple[int, int], dim: int, layers: int, heads: int) -> None:
        super().__init__()
        self.shape = shape
        self.token = nn.Embedding(codebook_size + 1, dim)  # the last one is [MASK]
        self.row, self.col = nn.Embedding(shape[0], dim), nn.Embedding(shape[1], dim)
        self.stem = nn.Conv2d(dim, dim, 3, padding=1)  # each cell's 3 x 3 neighbourhood, offset by offset
        self.blocks = nn.ModuleList(_Block(dim, heads, shape) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, codebook_size)

    def _offsets(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """``[h * w, h * w]``: the index of ``(df + F - 1, dt + T - 1)`` in a ``[2F - 1, 2T - 1]`` table for
        every pair of cells of an ``h`` by ``w`` window (row-major)."""
        f = torch.arange(h, device=device).repeat_interleave(w)
        t = torch.arange(w, device=device).repeat(h)
        df = f[None, :] - f[:, None] + self.shape[0] - 1
        dt = t[None, :] - t[:, None] + self.shape[1] - 1
        return df * (2 * self.shape[1] - 1) + dt

    def forward(self, codes: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        B, h, w = codes.shape
        x = self.token(codes) + self.row(rows)[:, :, None] + self.col(cols)[:, None, :]  # [B, h, w, dim]
        x = x + self.stem(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x.flatten(1, 2)  # [B, h * w, dim], row-major
        offsets = self._offsets(h, w, codes.device)
        for block in self.blocks:
            x = block(x, offsets)
        return self.head(self.norm(x)).view(B, h, w, -1)


def _window_start(low: int, high: int, size: int, length: int) -> tuple[int, int]:
    """Start and size of a window of ``size`` cells along an axis of ``length``, centred on the span
    ``[low, high)`` and inside the axis; the whole axis when the span does not fit."""
    if high - low > size:
        return 0, length
    return min(max((low + high - size) // 2, 0), length - size), size


class TransformerCodes:
    """A masked-token transformer over a codemap: every masked cell's code from the whole window around it.

    Each cell is a token: its code's embedding (or the [MASK] embedding) plus a learned embedding of its
    frequency row and one of its time column. A 3 by 3 convolution over the embedded map adds each cell's
    neighbours, offset by offset, and pre-norm transformer blocks then give every cell's code logits; their
    attention carries a learned bias per head and relative offset (df, dt), started as 2-D ALiBi (Press et al.,
    2022: the bias falls with city-block distance, each head at its own slope). Both are there because a
    codemap's rules are mostly local: on a toy map whose codes follow their left neighbours, a plain
    transformer with absolute embeddings alone was still at chance after 300 steps, one with the offset bias
    alone broke through at some seeds and not others, and with the convolution it recovers masked boxes at
    every seed tried within 100 to 200 steps (the convolution is the early-convolution stem of Xiao et al.,
    2021). Training (:meth:`fit`, Adam) masks random boxes (as a user draws them) in half of the batch and
    random scattered cells in the other half, the boxes thinned at random so that they are often partly
    revealed, as they are between decoding rounds, all at ratios drawn from MaskGIT's cosine schedule; the
    loss is the cross entropy over the masked cells only.

    Training and sampling look at ``window``-sized crops (default 32 by 32) of the map rather than the whole
    map: attention costs the square of the tokens, so a 32 by 32 crop (1024 tokens) costs a quarter of a whole
    64 by 32 map (2048 tokens), in time and in the activations kept for the backward pass, which is what makes
    training affordable on a CPU. The row and column embeddings are indexed by the crop's absolute position,
    so a crop anywhere in the map means what the same cells mean in the whole map (a low-frequency row stays a
    low-frequency row), and the offset bias does not depend on where the crop lies. Sampling takes the window
    centred on the mask's bounding box, the context size the network was trained on, and the whole extent of
    an axis along which the box is longer than the window.

    Sampling decodes iteratively (MaskGIT, Chang et al., 2022) in at most ``rounds`` rounds: each round draws
    a code for every still-masked cell (argmax at temperature 0), and commits those whose drawn code the
    network finds most probable, as many as the cosine schedule lets go of in that round; the rest stay
    masked and are drawn again with the new context.

    Arguments:
        codebook_size: K.
        shape: (F, T), the codemaps' shape.
        dim, layers, heads: the transformer's width, depth and attention heads (``dim % heads == 0``).
        window: (rows, columns) of the crops trained and sampled on; None for the whole map.
        rounds: decoding rounds.
    """

    name = "masked transformer"

    def __init__(
        self,
        codebook_size: int,
        shape: tuple[int, int] = (64, 32),
        dim: int = 64,
        layers: int = 2,
        heads: int = 4,
        window: tuple[int, int] | None = (32, 32),
        rounds: int = 8,
    ) -> None:
        _check_codebook_size(codebook_size)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"shape must be (F, T) with both at least 1, got {tuple(shape)}")
        if dim < 1 or heads < 1 or dim % heads:
            raise ValueError(f"dim must be a positive multiple of heads, got dim {dim} and {heads} heads")
        if layers < 1 or rounds < 1:
            raise ValueError(f"layers and rounds must be at least 1, got {layers} and {rounds}")
        if window is not None and (len(window) != 2 or min(window) < 1):
            raise ValueError(f"window must be (rows, columns) with both at least 1, got {tuple(window)}")
        self.codebook_size, self.shape = int(codebook_size), (int(shape[0]), int(shape[1]))
        self.dim, self.layers, self.heads, self.rounds = int(dim), int(layers), int(heads), int(rounds)
        full = self.shape if window is None else (min(int(window[0]), shape[0]), min(int(window[1]), shape[1]))
        self.window: tuple[int, int] = full
        self.net = _MaskedCodeNet(self.codebook_size, self.shape, self.dim, self.layers, self.heads)

    @property
    def device(self) -> torch.device:
        return self.net.head.weight.device

    def _reset_parameters(self, generator: torch.Generator | None) -> None:
        """GPT-2's initialisation (normal, std 0.02), drawn from ``generator`` so a seeded fit repeats."""
        for module in self.net.modules():
            if isinstance(module, nn.Linear | nn.Embedding | nn.Conv2d):
                with torch.no_grad():
                    weight = torch.randn(module.weight.shape, generator=generator) * 0.02
                    module.weight.copy_(weight)
            if isinstance(module, nn.Linear | nn.Conv2d) and module.bias is not None:
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                module.reset_parameters()
            elif isinstance(module, _Block):
                module.reset_offset_bias()

    def _training_batch(
        self, maps: torch.Tensor, batch_size: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, ...]:
        """Random crops ``[B, h, w]`` of random maps, their rows ``[B, h]`` and columns ``[B, w]``, and masks."""
        (h, w), (n_freq, n_time), B = self.window, self.shape, batch_size
        which = torch.randint(len(maps), (B,), generator=generator)
        rows = torch.randint(n_freq - h + 1, (B, 1), generator=generator) + torch.arange(h)
        cols = torch.randint(n_time - w + 1, (B, 1), generator=generator) + torch.arange(w)
        crops = maps[which[:, None, None], rows[:, :, None], cols[:, None, :]]
        ratio = torch.cos(0.5 * math.pi * torch.rand(B, 1, 1, generator=generator))  # MaskGIT's schedule
        scattered = torch.rand(B, h, w, generator=generator) < ratio
        box = random_box_masks(B, (h, w), generator, min_frac=1 / max(h, w), max_frac=1.0)
        use_box = torch.rand(B, 1, 1, generator=generator) < 0.5
        mask = torch.where(use_box, box & scattered, scattered)
        return crops, rows, cols, mask

    def fit(
        self,
        codemaps: torch.Tensor,
        *,
        steps: int = 2000,
        batch_size: int = 32,
        lr: float = 1e-3,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> Self:
        """Train from scratch (parameters re-initialised from ``generator``) on ``codemaps [N, F, T]`` for
        ``steps`` Adam steps of ``batch_size`` crops; a tqdm bar with the loss when ``progress``."""
        _check_codes(codemaps, self.codebook_size, "codemaps", "[N, F, T]")
        if tuple(codemaps.shape[1:]) != self.shape:
            raise ValueError(
                f"codemaps must be [N, {self.shape[0]}, {self.shape[1]}], got {tuple(codemaps.shape)}"
            )
        if steps < 1 or batch_size < 1 or not lr > 0:
            raise ValueError(f"steps and batch_size must be >= 1 and lr > 0, got {steps}, {batch_size}, {lr}")
        self._reset_parameters(generator)
        maps, device = codemaps.long().cpu(), self.device
        optimizer = torch.optim.Adam(self.net.parameters(), lr=lr, foreach=True)
        self.net.train()
        bar = tqdm(range(steps), desc=self.name, disable=not progress)
        for _ in bar:
            crops, rows, cols, mask = (t.to(device) for t in self._training_batch(maps, batch_size, generator))
            logits = self.net(crops.masked_fill(mask, self.codebook_size), rows, cols)
            if not mask.any():
                continue
            loss = nnf.cross_entropy(logits[mask], crops[mask])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), 1.0)
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
        self.net.eval()
        return self

    @torch.no_grad()
    def sample(
        self,
        codemap: torch.Tensor,
        mask: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Resample the cells of ``codemap [F, T]`` where ``mask [F, T]`` is True (see the class docstring)."""
        K = self.codebook_size
        _check_query(codemap, mask, temperature, K)
        if tuple(codemap.shape) != self.shape:
            raise ValueError(f"codemap must be {self.shape[0]} x {self.shape[1]}, got {tuple(codemap.shape)}")
        out = codemap.clone()
        if not mask.any():
            return out
        self.net.eval()
        at = mask.nonzero()
        top, h = _window_start(int(at[:, 0].min()), int(at[:, 0].max()) + 1, self.window[0], self.shape[0])
        left, w = _window_start(int(at[:, 1].min()), int(at[:, 1].max()) + 1, self.window[1], self.shape[1])
        device = self.device
        masked = mask[top : top + h, left : left + w].to(device, copy=True)  # emptied round by round
        codes = codemap[top : top + h, left : left + w].to(device, torch.long).masked_fill(masked, K)
        rows, cols = torch.arange(top, top + h, device=device), torch.arange(left, left + w, device=device)
        total = int(masked.sum())
        rounds = min(self.rounds, total)
        for r in range(1, rounds + 1):
            if not masked.any():
                break
            logits = self.net(codes[None], rows[None], cols[None])[0][masked]  # [M, K], row-major cells
            left_masked = len(logits)
            drawn = _choose(logits, temperature, _gumbel(left_masked, K, generator) if temperature > 0 else None)
            confidence = logits.log_softmax(-1).gather(1, drawn[:, None])[:, 0]
            keep = min(math.floor(total * math.cos(0.5 * math.pi * r / rounds)), left_masked - 1)
            best = torch.sort(confidence, descending=True, stable=True).indices[: left_masked - max(keep, 0)]
            cells = masked.nonzero()[best]
            codes[cells[:, 0], cells[:, 1]] = drawn[best]
            masked[cells[:, 0], cells[:, 1]] = False
        out[top : top + h, left : left + w] = codes.to(out.device, out.dtype)
        return out

    def state(self) -> dict[str, Any]:
        return {
            "class": type(self).__name__,
            "codebook_size": self.codebook_size,
            "shape": list(self.shape),
            "dim": self.dim,
            "layers": self.layers,
            "heads": self.heads,
            "window": list(self.window),
            "rounds": self.rounds,
            "state_dict": {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_class(state, cls)
        prior = cls(state["codebook_size"], tuple(state["shape"]), state["dim"], state["layers"], state["heads"],
                    tuple(state["window"]), state["rounds"])  # fmt: skip
        prior.net.load_state_dict(state["state_dict"])
        prior.net.eval()
        return prior


# ----------------------------------------------------------------------------------------------------------
# The floor


class UniformCodes:
    """Uniform random codes, the floor: every masked cell draws each of the K codes alike. At temperature 0
    every logit ties, so every masked cell becomes code 0."""

    name = "uniform"

    def __init__(self, codebook_size: int) -> None:
        _check_codebook_size(codebook_size)
        self.codebook_size = int(codebook_size)

    def fit(
        self, codemaps: torch.Tensor, *, generator: torch.Generator | None = None, progress: bool = False
    ) -> Self:
        """Nothing to learn: checks ``codemaps [N, F, T]`` only."""
        _check_codes(codemaps, self.codebook_size, "codemaps", "[N, F, T]")
        return self

    def sample(
        self,
        codemap: torch.Tensor,
        mask: torch.Tensor,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Uniform codes in the cells of ``codemap [F, T]`` where ``mask [F, T]`` is True."""
        K = self.codebook_size
        _check_query(codemap, mask, temperature, K)
        out = codemap.clone()
        count = int(mask.sum())
        if count == 0:
            return out
        noise = _gumbel(count, K, generator) if temperature > 0 else None
        codes = _choose(torch.zeros(count, K), temperature, noise)
        out[mask] = codes.to(out.device, out.dtype)
        return out

    def state(self) -> dict[str, Any]:
        return {"class": type(self).__name__, "codebook_size": self.codebook_size}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Self:
        _check_class(state, cls)
        return cls(state["codebook_size"])


# ----------------------------------------------------------------------------------------------------------

PRIORS: dict[str, type[CodePrior]] = {
    cls.__name__: cls for cls in (NaiveBayesCodes, TransformerCodes, UniformCodes)
}


def prior_from_state(state: dict[str, Any]) -> CodePrior:
    """The prior a ``state()`` dict describes, whichever class it is."""
    name = state.get("class") if isinstance(state, dict) else None
    if name not in PRIORS:
        raise ValueError(f"unknown code prior class {name!r}; expected one of {', '.join(PRIORS)}")
    return PRIORS[name].from_state(state)


def inpainting_accuracy(
    prior: CodePrior,
    codemaps: torch.Tensor,
    masks: torch.Tensor,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> float:
    """The fraction of masked cells whose resampled code equals the original, over ``codemaps [N, F, T]`` each
    with its own ``masks [N, F, T]``."""
    _check_codes(codemaps, prior.codebook_size, "codemaps", "[N, F, T]")
    if not isinstance(masks, torch.Tensor) or masks.dtype != torch.bool or masks.shape != codemaps.shape:
        raise ValueError(f"masks must be a bool tensor of the codemaps' shape {tuple(codemaps.shape)}")
    total = int(masks.sum())
    if total == 0:
        raise ValueError("masks select no cells")
    right = 0
    for codemap, mask in zip(codemaps, masks, strict=True):
        edited = prior.sample(codemap, mask, temperature, generator)
        right += int((edited[mask] == codemap[mask]).sum())
    return right / total


__all__ = [
    "NEIGHBOURS",
    "PRIORS",
    "CodePrior",
    "NaiveBayesCodes",
    "TransformerCodes",
    "UniformCodes",
    "box_mask",
    "inpainting_accuracy",
    "neighbour_offsets",
    "perplexity",
    "prior_from_state",
    "random_box_masks",
]
