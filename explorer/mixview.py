"""A toy mix, its sources, and where each prior finds the mix likely or unlikely, with audio players."""

from __future__ import annotations

import math

import holoviews as hv
import holoviews.plotting.bokeh
import panel as pn
import param
import torch

from explorer.audio import envelope, playable, smooth
from sepmodels import mixing
from sepmodels.data import toy
from sepmodels.priors import PriorSet

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f")


class MixLikelihood(pn.viewable.Viewer):
    """Draw a toy mix from a seed; show its waveform and its per-sample log-likelihood under every prior.

    The likelihood map is ``PriorSet.cross_log_prob`` of the mix at noise level ``sigma``: nats per
    sample, Jacobian included, so each curve's mean is the number in the table. Curves are smoothed over
    ``smoothing`` samples for reading; the table is exact.
    """

    seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the toy mix.")
    seconds = param.Number(default=1.0, bounds=(0.1, 4.0), step=0.1, doc="Length of the mix, seconds.")
    sigma = param.Number(default=0.01, bounds=(1e-3, 2.0), doc="Noise level the priors score at.")
    smoothing = param.Integer(default=256, bounds=(1, 4096), doc="Moving-average window of the curves, samples.")

    mix = param.Parameter(default=None, doc="The current mix, float32 [T] (read-only).")
    sources = param.Parameter(default=None, doc="The current sources, float32 [N, T] (read-only).")
    loglik = param.Parameter(default=None, doc="Per-sample log-likelihood of the mix, [N priors, T] (read-only).")

    def __init__(self, priors: PriorSet, **params) -> None:
        params.setdefault("sigma", priors.default_sigma)
        super().__init__(**params)
        self.priors = priors
        self._mix_player = pn.pane.Audio(None, sample_rate=priors.sample_rate, name="Mix")
        self._source_players = [pn.pane.Audio(None, sample_rate=priors.sample_rate, name=n) for n in toy.SOURCES]
        self._wave = pn.pane.HoloViews(sizing_mode="stretch_width")
        self._strip = pn.pane.HoloViews(sizing_mode="stretch_width")
        self._table = pn.pane.Markdown()
        self._new_mix_button = pn.widgets.Button(label="New mix")
        self._new_mix_button.on_click(lambda _event: setattr(self, "seed", self.seed + 1))
        self._recompute()

    @param.depends("seed", "seconds", watch=True)
    def _new_mix(self) -> None:
        self._recompute()

    @param.depends("sigma", watch=True)
    def _rescore(self) -> None:
        self._score()
        self._draw()

    @param.depends("smoothing", watch=True)
    def _redraw(self) -> None:
        self._draw()

    def _recompute(self) -> None:
        length = max(1, int(self.seconds * self.priors.sample_rate))
        clips = toy.toy_batch(1, length, torch.Generator().manual_seed(self.seed), self.priors.sample_rate)
        self.sources = clips[0]
        self.mix = mixing.mix(clips)[0]
        self._mix_player.object = playable(self.mix)
        for player, source in zip(self._source_players, self.sources, strict=True):
            player.object = playable(source)
        self._score()
        self._draw()

    def _score(self) -> None:
        self.loglik = self.priors.cross_log_prob(self.mix[None], self.sigma)[0]

    def means(self) -> dict[str, float]:
        """Mean log-likelihood of the mix under each prior, nats per sample."""
        return {n: float(v) for n, v in zip(self.priors.names, self.loglik.mean(dim=1), strict=True)}

    def _draw(self) -> None:
        sr = self.priors.sample_rate
        t, lo, hi = envelope(self.mix, sr)
        self._wave.object = hv.Area((t, lo, hi), "seconds", ["low", "high"], label="mix").opts(
            height=180,
            responsive=True,
            color="#555555",
            line_width=0.5,
            title=f"Toy mix (seed {self.seed})",
            ylabel="amplitude",
            tools=["hover"],
        )
        curves = []
        for k, name in enumerate(self.priors.names):
            y = smooth(self.loglik[k], self.smoothing)
            tt, ylo, _ = envelope(y, sr)  # decimate the smoothed curve for drawing
            curves.append(
                hv.Curve((tt, ylo), "seconds", "nats per sample", label=name).opts(
                    color=PALETTE[k % len(PALETTE)], line_width=1.5
                )
            )
        self._strip.object = hv.Overlay(curves).opts(
            height=260,
            responsive=True,
            legend_position="right",
            tools=["hover"],
            title=f"Log-likelihood of the mix under each prior (sigma {self.sigma:g}, smoothed {self.smoothing})",
        )
        means = self.means()
        best = max(means, key=means.get)
        rows = "\n".join(f"| {n} | {v:.3f}{' (best)' if n == best else ''} |" for n, v in means.items())
        self._table.object = f"| prior | mean nats/sample |\n|---|---|\n{rows}"

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Column(
            "### Mix",
            self._new_mix_button,
            pn.widgets.IntInput.from_param(self.param.seed, name="Seed"),
            pn.widgets.FloatSlider.from_param(self.param.seconds, name="Seconds"),
            pn.widgets.FloatInput.from_param(self.param.sigma, name="Sigma (noise level)"),
            pn.widgets.IntSlider.from_param(self.param.smoothing, name="Smoothing (samples)"),
            "### Listen",
            self._mix_player,
            *[pn.Column(f"**{n}**", p) for n, p in zip(toy.SOURCES, self._source_players, strict=True)],
            width=320,
        )
        return pn.Row(
            controls,
            pn.Column(self._wave, self._strip, self._table, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 100_000 else f"{n:,}".replace(",", " ")


def describe(priors: PriorSet) -> str:
    """One paragraph about the loaded priors for the page header."""
    if priors.kind == "exact":
        return (
            "The exact toy prior: the true density of each toy source at any noise level (key, phase and "
            "amplitude integrated by quadrature; no training, no parameters), the reference a learned prior "
            f"should approach; sample rate {priors.sample_rate} Hz."
        )
    if priors.kind == "waves":
        return (
            "Learned wave priors: each source one periodic wave of a learned shape at a learned pitch "
            "distribution and amplitude range, fitted to solo clips (sepmodels fit-waves); pitch, phase and "
            f"amplitude integrated as the exact prior does; {_count(priors.parameters_count())} numbers; sample "
            f"rate {priors.sample_rate} Hz."
        )
    if priors.kind == "harmonic":
        bands = ", ".join(f"{n} {'steady' if m == 0 else f'{m:g} Hz'}"
                          for n, m in zip(priors.names, priors.motion.tolist(), strict=True))  # fmt: skip
        return (
            "Harmonic priors: each source a learned periodic shape played along a continuous pitch that may move "
            f"(vibrato, glides) with a moving envelope (bands: {bands}); pitch density, bands and the share of "
            "moving notes fitted to solo clips of the richer toy (sepmodels fit-harmonic); posterior means over a "
            f"few pitch candidates, each followed through the clip; sample rate {priors.sample_rate} Hz."
        )
    kind = f"{'noise-conditional' if priors.noise_conditional else 'plain'} {priors.kind}"
    step = priors.meta.get("step", "?")
    rf = priors.receptive_field()
    field = "the whole clip" if math.isinf(rf) else f"{rf} samples ({rf / priors.sample_rate:.2f} s)"
    return (
        f"{len(priors)} {kind} priors ({', '.join(priors.names)}), "
        f"{_count(priors.parameters_count())} parameters, receptive field {field}, "
        f"trained {step} steps; sample rate {priors.sample_rate} Hz; noise levels "
        f"{priors.ladder.sigma_max:g} to {priors.ladder.sigma_min:g}."
    )
