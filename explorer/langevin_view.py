"""Watch a mix being separated by Langevin dynamics, step by step, and listen to every iterate."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param
import torch
import torch.nn.functional as F
from bokeh.models import ColorBar, ColumnDataSource, LinearColorMapper, Span

from explorer.audio import load_audio_bytes, new_figure, playable, smooth, wave_data
from explorer.mixview import PALETTE
from explorer.runner import LiveView, SamplerRunner
from sepmodels import heldout, mixing
from sepmodels.data import toy
from sepmodels.data.audio import AudioError
from sepmodels.inference.langevin import (
    METHOD_DEFAULTS,
    METHODS,
    Iterate,
    LangevinConfig,
    langevin,
    with_likelihood,
)
from sepmodels.metrics import si_sdr
from sepmodels.metrics import verdict as separation_verdict
from sepmodels.priors import Prior

_OWN = METHOD_DEFAULTS[LangevinConfig.method]

_STRIP_BINS = 300
_MIN_SPAN = 1.0  # nats per sample: the strip's colour scale never spans less (smaller differences are noise)


def perfect_fit(sigma: float) -> float:
    """The most a density smoothed by noise of level ``sigma`` gives per sample, ``-log(sigma sqrt(2 pi))``: what
    an estimate scores under a prior that finds it exactly (p_sigma(x) = E_s N(x; s, sigma^2) <= N's peak)."""
    return -math.log(sigma * math.sqrt(2 * math.pi))


_LADDER = ("sigma_max", "levels", "steps")  # the ladder's controls on the page
AMORTISED = "amortised"  # the method menu's amortised posterior: one pass, then the priors' residual sweeps


def _pitch_name(hz: float) -> str:
    """``A4 +12 c (443.1 Hz)``: the nearest piano key, the cents off it, the frequency."""
    key = float(toy.hz_to_key(torch.tensor(hz)))
    near = min(88, max(1, round(key)))
    cents = round(100 * (key - near))
    off = "" if cents == 0 else f" {cents:+d} c"
    return f"{toy.key_name(near)}{off} ({hz:.1f} Hz)"


def _own_ladder(method: str, priors: object) -> dict[str, object]:
    """The method's own ladder (:data:`METHOD_DEFAULTS`), with what the priors carry for it on top (the harmonic
    priors' residual sweep: fewer levels, a greedy second chain, restarts near the bottom). The amortised
    posterior's: three sweeps after its pass, one per level from the harmonic priors' restart level."""
    if method == AMORTISED:
        from sepmodels.sources.harmonic import HarmonicPriors

        return {"sigma_max": HarmonicPriors.sampler_defaults["residual"]["restart_sigma"], "levels": 3, "steps": 1}
    return {**METHOD_DEFAULTS[method], **getattr(priors, "sampler_defaults", {}).get(method, {})}


_ZOOM_MS = 25.0  # the zoomed window of each source: a few periods, where the wave's shape shows


_MUSIC_ADVICE = (
    "this app's priors are all toy priors; `sepmodels separate MIX.wav --priors stems` separates "
    "music into drums, bass, other and vocals"
)


class LangevinExplorer(LiveView, pn.viewable.Viewer):
    """Separate a toy mix (or an uploaded one) live under the priors.

    A per-session :class:`SamplerRunner` advances the sampler on its own thread; a periodic callback
    (``refresh_ms``) draws the newest iterate, decimated. The figures are plain Bokeh figures built once,
    whose data sources are replaced on each draw: rebuilding HoloViews plots took 2.6 s per draw on the
    2-core CPU, updating sources takes milliseconds. Audio players of the estimates change only on Pause,
    Step and at the end, since resending a clip restarts its playback.

    Score priors give no likelihood. With a ``judge`` (flow priors or the exact toy prior over the same
    sources), the likelihood strip and curve show the judge's log-density of the iterate every ``judge_every``
    steps, and their titles say so; without one they are hidden and a note says why. Priors with a likelihood
    judge themselves where a method (the residual sweep) does not report one.

    ``choices`` (name -> priors, or a function that loads them) adds a selector of the priors; every choice
    must model the same sources at the same rate, and ``judge_for(priors)`` gives the judge of each. On a toy
    mix a table shows each estimate's pitch (piano key) against the truth's, so a wrong key under a prior that
    prefers the truth is a failure of the search, not of the prior.
    """

    seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the toy mix.")
    # Shorter than the samplers' defaults so that a whole run fits in a few minutes on a 2-core CPU with
    # flow priors (about 3 steps/s for 1 s of four sources); score priors default to 1 s and 50 steps a level.
    seconds = param.Number(default=0.5, bounds=(0.1, 4.0), step=0.1, doc="Length of the toy mix, seconds.")
    notes = param.Selector(
        default="keys",
        objects=list(toy.VARIANTS),
        doc="The toy's notes: on the piano keys, at continuous pitch, or moving (vibrato, decays).",
    )
    prior = param.Selector(default=None, objects=[], doc="Which priors separate (when choices were given).")
    method = param.Selector(default=LangevinConfig.method, objects=list(METHODS), doc="Sampler.")
    steps = param.Integer(
        default=_OWN["steps"], bounds=(1, 10_000), doc="Steps per noise level (residual: sweeps)."
    )
    levels = param.Integer(default=_OWN["levels"], bounds=(1, 100), doc="Number of noise levels.")
    sigma_max = param.Number(default=_OWN["sigma_max"], bounds=(1e-4, 100.0), doc="Largest noise level.")
    sigma_min = param.Number(default=LangevinConfig.sigma_min, bounds=(1e-4, 10.0), doc="Smallest noise level.")
    delta = param.Number(default=LangevinConfig.delta, bounds=(1e-9, 1.0), doc="Step size at sigma_min.")
    sampler_seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the sampler's noise.")
    judge_every = param.Integer(default=10, bounds=(1, None), doc="Steps between the judge's likelihoods.")
    refresh_ms = param.Integer(default=250, bounds=(50, 5000), doc="How often the views pull the newest iterate.")

    status = param.String(default="", doc="Counter and state, as shown (read-only).")
    message = param.String(default="", doc="The last notice or error (read-only).")

    def __init__(
        self,
        priors: Prior,
        judge: Prior | None = None,
        choices: dict[str, Any] | None = None,
        judge_for: Callable[[Any], Any] | None = None,
        posterior: Any = None,
        **params,
    ) -> None:
        if not priors.has_likelihood or priors.kind in ("exact", "waves", "harmonic"):  # cheaper than a flow's
            params.setdefault("seconds", 1.0)
        for name, value in _own_ladder(params.get("method", LangevinConfig.method), priors).items():
            if name in _LADDER:
                params.setdefault(name, value)  # a method given without a ladder gets its own (or the priors')
        if choices:
            self.param.prior.objects = list(choices)
            params.setdefault("prior", next(iter(choices)))  # the first choice is the priors given
        amortised = params.pop("method", None) if params.get("method") == AMORTISED else None
        super().__init__(**params)
        self._choices, self._judge_for = dict(choices or {}), judge_for
        self._posterior = posterior
        if posterior is not None:  # this instance's menu only (the class's stays the samplers')
            self.param.method.objects = [*METHODS, AMORTISED]
        self._use(priors, judge)
        self._pitch = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._verdict = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._clock: tuple[float, int] | None = None  # (time, step) when the run last started
        self.mixture: torch.Tensor = torch.zeros(0)
        self.truth: torch.Tensor | None = None
        self._shown_step = self._played_step = (-1, 0)  # (step, chain): the closing result repeats a step
        sr = priors.sample_rate
        names = priors.names
        self._mix_player = pn.pane.Audio(None, sample_rate=sr, name="mix")
        self._estimate_players = [pn.pane.Audio(None, sample_rate=sr, name=n) for n in names]
        self._truth_players = [pn.pane.Audio(None, sample_rate=sr, name=n) for n in names]
        self._build_figures()
        self.start_button = pn.widgets.Button(label="Start")
        self.pause_button = pn.widgets.Button(label="Pause")
        self.step_button = pn.widgets.Button(label="Step")
        self.reset_button = pn.widgets.Button(label="Reset")
        self.new_mix_button = pn.widgets.Button(label="New mix")
        self.upload = pn.widgets.FileInput(accept=".wav,.flac,.ogg,.aiff,.aif", multiple=False)
        self.start_button.on_click(lambda _e: self.start())
        self.pause_button.on_click(lambda _e: self.pause())
        self.step_button.on_click(lambda _e: self.step())
        self.reset_button.on_click(lambda _e: self.reset())
        self.new_mix_button.on_click(lambda _e: setattr(self, "seed", self.seed + 1))
        self.upload.param.watch(self._on_upload, "value")
        self.runner = SamplerRunner(self._make_generator)
        self._toy_mix()
        if amortised and posterior is not None:
            self.method = AMORTISED

    def _use(self, priors: Prior, judge: Prior | None) -> None:
        self.priors = priors
        self.judge = None if priors.has_likelihood else judge
        if self.judge is not None and not self.judge.can_judge(priors):
            raise ValueError(
                f"the judge must be flow priors over {', '.join(priors.names)} at {priors.sample_rate} Hz"
            )

    @param.depends("prior", watch=True)
    def _on_prior(self) -> None:
        choice = self._choices[self.prior]
        priors = choice() if callable(choice) else choice
        if priors.names != self.priors.names or priors.sample_rate != self.priors.sample_rate:
            self.message = f"{self.prior} model other sources or another rate; keeping the current priors"
            return
        self._use(priors, None if self._judge_for is None else self._judge_for(priors))
        self._on_method()  # priors with a ladder of their own (the harmonic priors) bring it
        self._toy_mix()
        self.message = " ".join(filter(None, [f"priors: {self.prior}.", self._ladder_note()]))

    @param.depends("method", watch=True)
    def _on_method(self) -> None:
        own = _own_ladder(self.method, self.priors)
        with param.parameterized.batch_call_watchers(self):
            self.sigma_max, self.levels, self.steps = own["sigma_max"], own["levels"], own["steps"]

    def _valid_length(self, length: int) -> int:
        """The smallest length >= ``length`` that the priors and the judge both take (hops are powers of 2)."""
        if self.judge is not None:
            length = self.judge.valid_length(length)
        return self.priors.valid_length(length)

    # -- the mix -----------------------------------------------------------------------------------------
    @param.depends("seed", "seconds", "notes", watch=True)
    def _toy_mix(self) -> None:
        length = self._valid_length(max(1, int(self.seconds * self.priors.sample_rate)))
        g = torch.Generator().manual_seed(self.seed)
        clips = toy.toy_batch(1, length, g, self.priors.sample_rate, options=self.notes)
        which = "" if self.notes == "keys" else f", {self.notes} notes"
        self._set_mix(mixing.mix(clips)[0], clips[0], f"toy mix, seed {self.seed}{which}")

    def _on_upload(self, event: param.parameterized.Event) -> None:
        data = event.new
        if not data:
            return
        name = self.upload.filename or "upload"
        try:
            audio = load_audio_bytes(data, name, self.priors.sample_rate)
        except AudioError as err:
            self.message = f"upload refused: {err}"
            return
        T = audio.samples.shape[0]
        padded = F.pad(audio.samples, (0, self._valid_length(T) - T))
        wrong = None
        if tuple(self.priors.names) == tuple(toy.SOURCES):  # toy priors on music: say so before Start
            wrong = heldout.toy_priors_note(audio.samples, self.priors.sample_rate, advice=_MUSIC_ADVICE,
                                            variants=heldout.toy_variants(self.priors))  # fmt: skip
        self._set_mix(padded, None, name, f"Note: {wrong}." if wrong else "")
        loaded = "; ".join(audio.notes) or f"loaded {name}"
        self.message = " ".join(filter(None, [f"{loaded}.", self._notes()]))

    def _set_mix(self, mixture: torch.Tensor, truth: torch.Tensor | None, label: str, note: str = "") -> None:
        """Show ``mixture`` (with its sources ``truth`` where known); ``note`` stays in the notice until the
        next mix (the priors are wrong for this clip, say)."""
        self.mixture, self.truth, self._label, self._clip_note = mixture, truth, label, note
        self._mix_player.object = playable(mixture)
        for k, player in enumerate(self._truth_players):
            player.object = None if truth is None else playable(truth[k])
        self.reset()

    # -- control -----------------------------------------------------------------------------------------
    def posterior(self):
        """The amortised posterior (loaded on first use), or None when the explorer was given none."""
        if callable(self._posterior):
            self._posterior = self._posterior()
        return self._posterior

    def config(self) -> LangevinConfig:
        """The sampler's settings from the controls (for the amortised posterior: the sweeps after its pass)."""
        if self.method == AMORTISED:
            return LangevinConfig(method="residual", sigma_max=self.sigma_max, sigma_min=self.sigma_min,
                                  levels=self.levels, steps=self.steps, delta=self.delta, seed=self.sampler_seed,
                                  chains=1)  # fmt: skip
        # what the priors' own ladder sets beyond the ladder's controls (the harmonic priors' restarts)
        extra = {k: v for k, v in _own_ladder(self.method, self.priors).items() if k not in _LADDER}
        return LangevinConfig(
            **extra,
            method=self.method,
            sigma_max=self.sigma_max,
            sigma_min=self.sigma_min,
            levels=self.levels,
            steps=self.steps,
            delta=self.delta,
            seed=self.sampler_seed,
        )

    def _make_generator(self):
        if self.method == AMORTISED:
            posterior = self.posterior()
            iterates = posterior.iterates(self.mixture, self.config(), truth=self.truth)
            return with_likelihood(iterates, posterior.priors, self.judge_every)
        iterates = langevin(self.mixture.to(self.priors.device), self.priors, self.config(), truth=self.truth)
        judge = self.priors if self.priors.has_likelihood else self.judge
        return iterates if judge is None else with_likelihood(iterates, judge, self.judge_every)

    @property
    def likelihood_source(self) -> str:
        """Whose log-likelihood the strip and curve show (empty when there is none)."""
        if self.priors.has_likelihood:
            return "its prior"
        if self.judge is None:
            return ""
        named = {"exact": "the exact toy prior", "waves": "the wave priors", "harmonic": "the harmonic priors"}
        whose = named.get(self.judge.kind, "the flow priors")
        return f"{whose} (score priors give none)"

    def _bound(self, sigma: float) -> float | None:
        """What a perfect fit scores per sample under the likelihood shown, at ``sigma`` (None for priors that
        are not conditioned on the noise level: their density is not smoothed by sigma)."""
        judge = self.priors if self.priors.has_likelihood else self.judge
        if judge is None or not getattr(judge, "noise_conditional", True):
            return None
        return perfect_fit(sigma)

    def _trained_range(self) -> tuple[float, float] | None:
        """The noise levels the priors were trained on, where they say (a PriorSet's ladder)."""
        ladder = getattr(self.priors, "ladder", None)
        return None if ladder is None else (float(ladder.sigma_min), float(ladder.sigma_max))

    def _notes(self) -> str:
        """What the notice says about the clip and the ladder before and while a run goes."""
        return " ".join(filter(None, [getattr(self, "_clip_note", ""), self._ladder_note(), self._method_note()]))

    def _method_note(self) -> str:
        """What the amortised posterior does, when it is the method."""
        if self.method != AMORTISED:
            return ""
        whose = (
            "" if self.priors.kind == "harmonic" else " (the shipped harmonic priors', whatever priors are picked)"
        )
        return (f"Step 1 is the amortised posterior's one pass: its encoder reads each source's pitch off the mix "
                f"and the source models follow the notes from there. The steps after it are the harmonic priors' "
                f"residual sweep{whose} started at that answer: Levels sweeps, from Sigma max down.")  # fmt: skip

    def _ladder_note(self) -> str:
        """A sentence when the sampler's ladder leaves the noise range the priors were trained on, else ''."""
        trained = self._trained_range()
        if trained is None or self.sigma_max <= trained[1] * 1.001:
            return ""
        return (f"Note: the ladder starts at sigma {self.sigma_max:g}, above the {trained[1]:g} these priors were "
                f"trained on (noise levels {trained[0]:g} to {trained[1]:g}): they are untested there, and a run "
                f"can diverge or swap sources. Set Sigma max to {trained[1]:g} or pick priors made for this "
                "ladder.")  # fmt: skip

    def _ladder_advice(self) -> str:
        """What to try after a run diverged."""
        trained = self._trained_range()
        if trained is not None and self.sigma_max > trained[1] * 1.001:
            lo, hi = trained
            return (f"These priors were trained on noise levels {lo:g} to {hi:g}; the ladder starts at "
                    f"{self.sigma_max:g}: set Sigma max to {hi:g}, or pick other priors or methods.")  # fmt: skip
        return "Try a smaller Sigma max or Delta, or another method."

    def start(self) -> None:
        try:
            self.config()
        except ValueError as err:
            self.message = f"cannot start: {err}"
            return
        self.message = self._notes()
        latest = self.runner.latest
        self._clock = (time.perf_counter(), 0 if latest is None else latest.step)
        self.runner.start()
        self.refresh()

    def pause(self) -> None:
        self.runner.pause()
        self.refresh(players=True)

    def step(self) -> None:
        try:
            self.config()
        except ValueError as err:
            self.message = f"cannot step: {err}"
            return
        self.runner.step()

    @param.depends("method", "steps", "levels", "sigma_max", "sigma_min", "delta", "sampler_seed", watch=True)
    def reset(self) -> None:
        self.runner.reset(self._make_generator)
        self.message = self._notes()
        self._shown_step = self._played_step = (-1, 0)  # (step, chain): the closing result repeats a step
        for player in self._estimate_players:
            player.object = None
        self._draw_idle()
        self.refresh()

    # -- drawing -------------------------------------------------------------------------------------------
    def refresh(self, players: bool = False) -> None:
        """Pull the newest iterate into the views (the periodic callback calls this)."""
        it = self.runner.latest
        total = self.config_total()
        if self.runner.error:
            self.message = f"sampler stopped: {self.runner.error}. {self._ladder_advice()}"
        state = "running" if self.runner.running else ("finished" if self.runner.finished else "paused")
        state = "stopped" if self.runner.error else state
        if it is None:  # nothing has run since the page opened or since Reset
            self.status = f"Step 0 / {total} · {'starting' if self.runner.running else 'ready: press Start'}"
            return
        self.status = f"Step {it.step} / {it.total} · sigma {it.sigma:.3g} · {state}{self._speed(it)}"
        if (it.step, it.chain) != self._shown_step:
            self._shown_step = (it.step, it.chain)
            self._draw(it)
        if (players or not self.runner.running) and (it.step, it.chain) != self._played_step:
            self._played_step = (it.step, it.chain)
            self._update_players(it)

    def _speed(self, it: Iterate) -> str:
        """`` · N steps/s · about M s left`` while running (measured since the last Start)."""
        if not self.runner.running or self._clock is None:
            return ""
        t0, step0 = self._clock
        elapsed, done = time.perf_counter() - t0, it.step - step0
        if elapsed < 1.0 or done < 2:
            return ""
        rate = done / elapsed
        return f" · {rate:.1f} steps/s · about {max(0.0, (it.total - it.step) / rate):.0f} s left"

    def config_total(self) -> int:
        try:
            return self.config().total_steps
        except ValueError:
            return 0

    def _update_players(self, it: Iterate) -> None:
        for player, est in zip(self._estimate_players, it.sources, strict=True):
            player.object = playable(est)

    def _build_figures(self) -> None:
        """Create every figure once; drawing then only replaces the data of their sources."""
        names = self.priors.names
        wave = {"t": [], "lo": [], "hi": []}
        self._mix_src = ColumnDataSource(dict(wave))
        self._mix_fig = new_figure("Mix", "seconds", "amplitude", height=150)
        self._mix_fig.varea("t", "lo", "hi", source=self._mix_src, color="#555555")
        self._truth_srcs, self._est_srcs, self._source_figs = [], [], []
        self._zoom_srcs, self._zoom_figs = [], []
        for k, name in enumerate(names):
            color = PALETTE[k % len(PALETTE)]
            fig = new_figure(f"{name}: whole clip (envelope)", "seconds", "amplitude", height=170)
            truth, est = ColumnDataSource(dict(wave)), ColumnDataSource(dict(wave))
            fig.varea("t", "lo", "hi", source=truth, color="#bbbbbb", legend_label="truth")
            fig.varea("t", "lo", "hi", source=est, color=color, alpha=0.6, legend_label="estimate")
            fig.legend.orientation = "horizontal"
            fig.add_layout(fig.legend[0], "right")  # beside the plot, never over it
            zoom = new_figure(f"{name}: first {_ZOOM_MS:g} ms", "milliseconds", "", height=170, width=320)
            zoom.sizing_mode = "fixed"
            zsrc = ColumnDataSource({"t": [], "truth": [], "est": []})
            zoom.line("t", "truth", source=zsrc, color="#999999", line_width=3)
            zoom.line("t", "est", source=zsrc, color=color, line_width=1.5)
            self._truth_srcs.append(truth)
            self._est_srcs.append(est)
            self._source_figs.append(fig)
            self._zoom_srcs.append(zsrc)
            self._zoom_figs.append(zoom)
        self._strip_mapper = LinearColorMapper(palette="Viridis256", low=-5, high=5)
        self._strip_src = ColumnDataSource({"image": [np.zeros((len(names), 2))], "dw": [1.0]})
        self._strip_fig = new_figure("Log-likelihood of each estimate", "seconds", "", height=170)
        self._strip_fig.image(image="image", x=0, y=0, dw="dw", dh=len(names), source=self._strip_src,
                              color_mapper=self._strip_mapper)  # fmt: skip
        self._strip_fig.yaxis.ticker = [k + 0.5 for k in range(len(names))]
        # image row 0 is drawn at the bottom: rows are stored last source first, so the first is on top
        self._strip_fig.yaxis.major_label_overrides = {k + 0.5: n for k, n in enumerate(reversed(names))}
        self._strip_fig.add_layout(ColorBar(color_mapper=self._strip_mapper, title="nats/sample"), "right")
        columns = {"step": [], "err": [], **{f"sdr{k}": [] for k in range(len(names))}}
        self._hist_src = ColumnDataSource(columns)
        # the log-likelihood has its own steps: a judge evaluates only every few steps
        self._lp_src = ColumnDataSource({"step": [], "bound": [], **{f"lp{k}": [] for k in range(len(names))}})
        self._sdr_fig = new_figure("SI-SDR (dashed: the mix itself)", "step", "dB", height=260)
        self._lp_fig = new_figure(
            "Log-likelihood per source (dotted: a perfect fit)", "step", "nats per sample", height=260
        )
        self._err_fig = new_figure("Mix error (RMS)", "step", "RMS", height=260, y_axis_type="log")
        self._floors = []
        for k, name in enumerate(names):
            color = PALETTE[k % len(PALETTE)]
            self._sdr_fig.line(
                "step", f"sdr{k}", source=self._hist_src, color=color, line_width=2, legend_label=name
            )
            self._lp_fig.line("step", f"lp{k}", source=self._lp_src, color=color, line_width=2, legend_label=name)
            # dots too: a judge scores every 10th step, so early on a curve is a single point
            self._lp_fig.scatter("step", f"lp{k}", source=self._lp_src, color=color, size=5, legend_label=name)
            floor = Span(location=0, dimension="width", line_color=color, line_dash="dashed", line_alpha=0.7)
            self._sdr_fig.add_layout(floor)
            self._floors.append(floor)
        bound_style = {
            "color": "#222222",
            "line_dash": "dotted",
            "line_width": 2,
        }  # no legend entry: the title says
        self._lp_fig.line("step", "bound", source=self._lp_src, **bound_style)
        self._err_fig.line("step", "err", source=self._hist_src, color="#444444")
        for fig in (self._sdr_fig, self._lp_fig):
            fig.legend.orientation = "horizontal"
            fig.add_layout(fig.legend[0], "below")  # under the plot: the curves' right ends stay visible
        self._strip_fig.x_range.range_padding = 0

    def _draw_idle(self) -> None:
        """Show the mix and the truths; clear the estimates, the strip and the curves."""
        sr = self.priors.sample_rate
        self._mix_fig.title.text = f"Mix: {self._label}"
        self._mix_src.data = wave_data(self.mixture, sr)
        empty = {"t": [], "lo": [], "hi": []}
        n = max(2, int(_ZOOM_MS * sr / 1000))
        t_ms = (np.arange(min(n, self.mixture.shape[-1])) * 1000 / sr).tolist()
        for k in range(len(self.priors)):
            self._truth_srcs[k].data = empty if self.truth is None else wave_data(self.truth[k], sr, 600)
            self._est_srcs[k].data = dict(empty)
            truth = [] if self.truth is None else self.truth[k, :n].tolist()
            self._zoom_srcs[k].data = {"t": t_ms[: len(truth)], "truth": truth, "est": [float("nan")] * len(truth)}
            if self.truth is not None:  # the floor: the mix itself taken as the estimate of this source
                self._floors[k].location = float(si_sdr(self.mixture, self.truth[k]))
        self._verdict.object = self._verdict_text(None)
        self._strip_src.data = {"image": [np.zeros((len(self.priors), 2))], "dw": [1.0]}
        self._hist_src.data = {key: [] for key in self._hist_src.data}
        self._lp_src.data = {key: [] for key in self._lp_src.data}
        self._sdr_fig.visible = self.truth is not None
        self._pitch.object = self._pitch_table(None)
        whose = self.likelihood_source
        self._lp_fig.visible = bool(whose)
        self._strip_fig.visible = False  # until the first judged likelihood: an empty strip looks like data
        self._err_fig.title.text = (
            "Mix error (RMS; 0 by construction)" if self.method == "constrained" else "Mix error (RMS)"
        )
        self._strip_fig.title.text = f"Log-likelihood of each estimate under {whose}"
        self._lp_fig.title.text = (
            "Log-likelihood per source" if self.priors.has_likelihood else "Log-likelihood (flow priors)"
        )

    def _draw(self, it: Iterate) -> None:
        sr = self.priors.sample_rate
        sources = it.sources.detach().cpu()
        for k, src in enumerate(self._est_srcs):
            src.data = wave_data(sources[k], sr, 600)
        if it.log_prob is not None:
            T = it.log_prob.shape[-1]
            per = max(1, T // _STRIP_BINS)
            strip = np.stack([smooth(row, per)[::per] for row in it.log_prob.cpu().flip(0)])  # first on top
            lo, hi = (float(v) for v in np.percentile(strip, [2, 98]))
            bound = self._bound(it.sigma)
            if bound is not None and hi > bound - _MIN_SPAN:  # near a perfect fit: the scale ends at it
                hi = max(hi, bound)
            self._strip_mapper.low, self._strip_mapper.high = min(lo, hi - _MIN_SPAN), hi
            self._strip_src.data = {"image": [strip], "dw": [T / sr]}
            whose, when = self.likelihood_source, f"step {it.step}, sigma {it.sigma:.3g}"
            best = "" if bound is None else f"; a perfect fit scores {bound:.2f}"
            self._strip_fig.title.text = f"Log-likelihood of each estimate under {whose} ({when}{best})"
            self._strip_fig.visible = True
        self._pitch.object = self._pitch_table(sources)
        n = min(max(2, int(_ZOOM_MS * sr / 1000)), sources.shape[-1])
        t_ms = (np.arange(n) * 1000 / sr).tolist()
        for k, zsrc in enumerate(self._zoom_srcs):
            truth = self.truth[k, :n].tolist() if self.truth is not None else [float("nan")] * n
            zsrc.data = {"t": t_ms, "truth": truth, "est": sources[k, :n].tolist()}
        self._verdict.object = self._verdict_text(it)
        records = self.runner.history()
        rec = records[:: max(1, len(records) // 1000)]  # decimate long runs for drawing
        data = {"step": [r.step for r in rec], "err": [max(r.mix_error, 1e-12) for r in rec]}
        for k in range(len(self.priors)):
            data[f"sdr{k}"] = [r.si_sdr[k] if r.si_sdr is not None else np.nan for r in rec]
        self._hist_src.data = data
        judged = [r for r in records if r.log_prob is not None]
        judged = judged[:: max(1, len(judged) // 1000)]
        bounds = [self._bound(r.sigma) for r in judged]
        lp = {"step": [r.step for r in judged], "bound": [np.nan if b is None else b for b in bounds]}
        for k in range(len(self.priors)):
            lp[f"lp{k}"] = [r.log_prob[k] for r in judged]
        self._lp_src.data = lp

    def _verdict_text(self, it: Iterate | None) -> str:
        """The run's result in a sentence, against the floor (the mix itself taken as every estimate)."""
        if self.truth is None:
            return ""
        floors = [float(f.location) for f in self._floors]
        guide = (
            "SI-SDR above its dashed line (the mix itself as the estimate) means that source was separated; "
            "10 dB is clearly audible separation, 30 dB and more near perfect."
        )
        if it is None or it.si_sdr is None:
            return f"*{guide}*"
        sdr = [float(v) for v in it.si_sdr]
        mean, floor = float(np.mean(sdr)), float(np.mean(floors))
        verdict = f"**{separation_verdict(sdr, floors)}**"
        cells = ", ".join(
            f"{n} {a:.1f} dB (mix {b:.1f})" for n, a, b in zip(self.priors.names, sdr, floors, strict=True)
        )
        when = "final" if it.step >= it.total else f"step {it.step}"
        head = f"{when.capitalize()}: mean SI-SDR **{mean:.1f} dB** against the mix's {floor:.1f} dB: {verdict}."
        return f"{head} {cells}. {self._chains_text(it)}*{guide}*"

    def _chains_text(self, it: Iterate) -> str:
        """The residual sweep's restarts in a sentence, once its run is over: why they ran, or why not."""
        if it.chain != -1 or self.method != "residual":
            return ""
        config = self.config()
        chains = len({r.chain for r in self.runner.history() if r.chain >= 0})
        how = ("the second from a greedy placement of the sources, the later ones from the best state with two "
               "sources exchanged" if config.init == "pursuit" else
               "from the best state with two sources exchanged")  # fmt: skip
        why = (f"a chain that ends with an RMS mix error above {100 * config.accept:g} % of the mix's RMS is "
               f"followed by another, {how}")  # fmt: skip
        if chains == 1:
            return f"The first chain explained the mix in {it.step} steps, so no restart ran ({why}). "
        return (f"{chains} chains ran ({why}); the one that explains the mix best is shown (mix error "
                f"{it.mix_error:.2g}). ")  # fmt: skip

    def _pitch_table(self, sources: torch.Tensor | None) -> str:
        """Each estimate's pitch against the truth's (toy mixes only): the frequency of its strongest partial,
        as the nearest key and how many cents off it; an estimate within 50 cents of the truth is right."""
        if self.truth is None:
            return ""
        rate = self.priors.sample_rate
        truth_hz = toy.dominant_hz(self.truth, rate)
        est_hz = None if sources is None else toy.dominant_hz(sources, rate)
        rows = ["| source | true pitch | estimate's pitch | |", "| --- | --- | --- | --- |"]
        right = 0
        for k, name in enumerate(self.priors.names):
            truth = _pitch_name(float(truth_hz[k]))
            if est_hz is None:
                rows.append(f"| {name} | {truth} | not started | |")
                continue
            ok = abs(1200 * math.log2(max(float(est_hz[k]), 1.0) / max(float(truth_hz[k]), 1.0))) < 50
            right += ok
            rows.append(f"| {name} | {truth} | {_pitch_name(float(est_hz[k]))} | {'right' if ok else 'WRONG'} |")
        head = "**Pitch of each estimate** (its strongest partial: the nearest piano key, cents off it, Hz)" + (
            "" if est_hz is None else f": {right} of {len(rows) - 2} within 50 cents of the truth"
        )
        return head + "\n\n" + "\n".join(rows)

    def __panel__(self) -> pn.viewable.Viewable:
        counter = pn.pane.Markdown(self.param.status, styles={"font-size": "1.1em", "font-weight": "bold"})
        notice = pn.pane.Markdown(self.param.message)
        no_likelihood = pn.pane.Markdown(
            "These are score priors: they give no likelihood, so no likelihood map is drawn "
            "(give the explorer flow priors as a judge to see one).",
            visible=not self.likelihood_source,
        )
        settings = pn.Column(
            "### Mix",
            self.new_mix_button,
            pn.widgets.IntInput.from_param(self.param.seed, name="Seed"),
            pn.widgets.FloatSlider.from_param(self.param.seconds, name="Seconds"),
            pn.widgets.Select.from_param(self.param.notes, name="Notes"),
            pn.pane.Markdown("or upload a WAV (mono or stereo, any rate, up to 10 s):"),
            self.upload,
            "### Sampler",
            *([pn.widgets.Select.from_param(self.param.prior, name="Priors")] if self._choices else []),
            pn.widgets.Select.from_param(self.param.method, name="Method"),
            pn.widgets.IntInput.from_param(self.param.steps, name="Steps per level"),
            pn.widgets.IntInput.from_param(self.param.levels, name="Levels"),
            pn.widgets.FloatInput.from_param(self.param.sigma_max, name="Sigma max"),
            pn.widgets.FloatInput.from_param(self.param.sigma_min, name="Sigma min"),
            pn.widgets.FloatInput.from_param(self.param.delta, name="Delta (step at sigma min)"),
            pn.widgets.IntInput.from_param(self.param.sampler_seed, name="Sampler seed"),
            width=300,
        )
        buttons = pn.Row(self.start_button, self.pause_button, self.step_button, self.reset_button)
        players = pn.Column(
            "### Listen",
            pn.Row(pn.pane.Markdown("**mix**", width=90), self._mix_player),
            *[
                pn.Row(pn.pane.Markdown(f"**{n}**", width=90), est, truth)
                for n, est, truth in zip(
                    self.priors.names, self._estimate_players, self._truth_players, strict=True
                )
            ],
            pn.pane.Markdown("Left: current estimate (refreshed on Pause, Step and at the end). Right: truth."),
        )
        main = pn.Column(
            buttons,
            counter,
            notice,
            pn.pane.Bokeh(self._mix_fig, sizing_mode="stretch_width"),
            *[
                pn.Row(
                    pn.pane.Bokeh(f, sizing_mode="stretch_width"), pn.pane.Bokeh(z), sizing_mode="stretch_width"
                )
                for f, z in zip(self._source_figs, self._zoom_figs, strict=True)
            ],
            self._pitch,
            no_likelihood,
            pn.pane.Bokeh(self._strip_fig, sizing_mode="stretch_width"),
            pn.GridBox(
                *[
                    pn.pane.Bokeh(f, sizing_mode="stretch_width")
                    for f in (self._sdr_fig, self._lp_fig, self._err_fig)
                ],
                ncols=3,
                sizing_mode="stretch_width",
            ),
            self._verdict,
            players,
            sizing_mode="stretch_width",
        )
        return pn.Row(settings, main, sizing_mode="stretch_width")
