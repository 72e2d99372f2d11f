"""Music in the lab: separate a song's clip into drums, bass, other and vocals, see and hear each stem.

:class:`MusicExplorer` (a :class:`panel.viewable.Viewer`, driven by params so tests need no browser) takes clips
with their true stems (the stems benchmark's, see :func:`example_clips`) or an upload, and the shipped music
methods (:func:`shipped_methods`: the KL-NMF baseline with one dictionary per stem, the frame priors (a VAE
per stem over spectrum frames, fitted to the mix from an encoder's one-pass reading), the supervised mask
network, the thesis's approach (score or flow priors per stem, the residual sweep, ratio masks), and the oracle
ratio mask, which reads the true stems and is the ceiling of every mask). It shows

- the mix's spectrogram and, per stem, the estimate's beside the truth's, on one colour scale (dB below the
  mix's peak) and a log-frequency axis labelled with notes and Hz;
- per stem a 60 ms window of the estimate over the truth (the zoom slider moves it);
- SI-SDR improvement over the mix itself per stem, with the floor (the mix, 0 dB) and the ceiling (the oracle
  ratio mask on the same clip) drawn, and a sentence placing the method between them;
- players for the mix, every estimate, every truth and the residual (the mix minus the estimates' sum);
- for the priors' sweep, which runs on a background thread step by step: each stem's SI-SDR improvement at
  every step (of what the run would return if it stopped there, and of the sweep's own sources before the
  masks) with the floor and each stem's ceiling, steps per second and the time left; the spectrograms follow
  the run.

Clips come from ``SEPMODELS_STEMS`` (a ``make-stems`` folder or a ``bench/stems.py`` render: its test split),
else two short tracks rendered on the spot like the benchmark's test split when FluidSynth is installed.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np
import panel as pn
import param
import torch
from bokeh.models import ColorBar, ColumnDataSource, FixedTicker, LinearColorMapper, Range1d, Span
from bokeh.palettes import Magma256

from explorer.audio import load_audio_bytes, new_figure, playable
from explorer.mixview import PALETTE
from explorer.priors_view import busy
from explorer.runner import LiveView, SamplerRunner
from sepmodels import heldout
from sepmodels.data.audio import AudioError
from sepmodels.data.stems import STEMS, StemsBenchmark, StemsError, benchmark_clips, make_stems
from sepmodels.evaluation import silent_stems
from sepmodels.inference.langevin import Iterate
from sepmodels.inference.separator import LangevinSeparator
from sepmodels.metrics import si_sdr
from sepmodels.spectral import STFTConfig, oracle_estimates, stft

RATE = StemsBenchmark().sample_rate
ORACLE = "oracle ratio mask (the ceiling: reads the true stems)"
_ROWS = 240  # log-frequency rows of the spectrograms
_LOW_HZ = 40.0
_ZOOM_S = 0.06
_NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


Method = Callable[[torch.Tensor], torch.Tensor] | LangevinSeparator


def shipped_methods() -> dict[str, Method]:
    """Method name -> ``separate(mixture [T]) -> [4, T]`` (the shipped KL-NMF dictionaries, frame priors and mask
    network) or a :class:`~sepmodels.inference.separator.LangevinSeparator` whose steps the view shows as they
    run (the shipped score and flow priors per stem, with the sweep and masks chosen on validation)."""
    from sepmodels.frames import FramePriors, FramePriorSeparator
    from sepmodels.masknet import MaskNetSeparator
    from sepmodels.nmf import NMFSeparator

    nmf = NMFSeparator(shipped_dictionaries())
    frames = FramePriorSeparator(FramePriors.load())
    net = MaskNetSeparator.load()
    methods: dict[str, Method] = {f"NMF baseline ({nmf.describe()})": nmf.separate,
                                  frames.describe(): frames.separate, net.describe(): net.separate}  # fmt: skip
    for family in ("score", "flow"):
        sweep = shipped_sweep(family)
        methods[f"{family} priors per stem, the thesis's approach ({sweep.describe()})"] = sweep
    return methods


def shipped_sweep(family: str) -> LangevinSeparator:
    """The residual sweep under the shipped stems priors of ``family`` (score or flow), with the settings their
    bench chose on validation (:attr:`~sepmodels.priors.PriorSet.sampler_defaults`)."""
    from sepmodels.checkpoint import stems_priors_path
    from sepmodels.inference.separator import make_separator
    from sepmodels.priors import load_priors

    return make_separator("residual", load_priors(stems_priors_path(family)))


@lru_cache(maxsize=1)
def shipped_dictionaries():
    """The shipped KL-NMF dictionaries (one per stem), loaded once per process."""
    from sepmodels.nmf import StemDictionaries

    return StemDictionaries.load()


@lru_cache(maxsize=1)
def example_clips(seconds: float = 6.0) -> dict[str, torch.Tensor]:
    """Clips to pick, ``{name: stems [4, T]}`` at the benchmark's rate (see the module docstring); empty when
    there are none (no ``SEPMODELS_STEMS`` and no FluidSynth)."""
    bench = StemsBenchmark()
    root = os.environ.get("SEPMODELS_STEMS")
    if root:
        roots = [Path(root)] if (Path(root) / "test").is_dir() else sorted(p for p in Path(root).iterdir()
                                                                           if (p / "test").is_dir())  # fmt: skip
        clips = {}
        for r in roots:
            prefix = "" if r == Path(root) else f"{r.name}, "
            for name, stems in benchmark_clips(r, "test", bench, limit=6):
                clips[f"{prefix}{name} (test split)"] = stems
        return clips
    try:
        seed, _, _ = bench.test
        with tempfile.TemporaryDirectory() as tmp:  # two short tracks of the test split's seed
            make_stems(tmp, 2, bench.offset + seconds + 0.5, seed, split="test")
            short = StemsBenchmark(clip_seconds=seconds)
            return {f"{name}, rendered now like the test split (seed {seed})": stems
                    for name, stems in benchmark_clips(tmp, "test", short)}  # fmt: skip
    except (StemsError, OSError):
        return {}


def _log_rows(config: STFTConfig, sample_rate: int) -> tuple[torch.Tensor, float, float]:
    """Interpolation weights ``[_ROWS, bins]`` from linear STFT bins to log-spaced rows, and the rows' span in
    octaves above :data:`_LOW_HZ` (low, high)."""
    top = math.log2(sample_rate / 2 / _LOW_HZ)
    octaves = torch.linspace(0, top, _ROWS, dtype=torch.float64)
    hz = _LOW_HZ * 2**octaves
    pos = hz / (sample_rate / config.n_fft)  # fractional bin of every row
    lo = pos.floor().long().clamp(0, config.bins - 2)
    frac = (pos - lo).clamp(0, 1)
    weights = torch.zeros(_ROWS, config.bins, dtype=torch.float64)
    weights[torch.arange(_ROWS), lo] = 1 - frac
    weights[torch.arange(_ROWS), lo + 1] = frac
    return weights, 0.0, top


def _note_ticks(top: float) -> tuple[list[float], dict[float, str]]:
    """Ticks at every A from A1 (55 Hz) on the octave axis, labelled with the note and its frequency."""
    ticks, labels = [], {}
    hz = 55.0
    while hz < _LOW_HZ * 2**top:
        pos = math.log2(hz / _LOW_HZ)
        octave = round(math.log2(hz / 55.0)) + 1
        ticks.append(pos)
        labels[pos] = f"A{octave} {hz:.0f} Hz"
        hz *= 2
    return ticks, labels


class MusicExplorer(LiveView, pn.viewable.Viewer):
    """See the module docstring. Arguments: ``clips`` ``{name: stems [4, T]}`` (may be empty: upload only);
    ``methods`` ``{name: separate(mixture [T]) -> [4, T]}``."""

    clip = param.Selector(doc="The clip to separate (a benchmark clip with its true stems, or your upload).")
    method = param.Selector(doc="How to separate it; the oracle reads the true stems and marks the ceiling.")
    zoom = param.Number(default=2.0, bounds=(0.0, None), step=0.05, doc="Seconds: where the waveform window sits.")
    status = param.String(default="", doc="What the last run did and how long it took (read-only).")
    message = param.String(default="", doc="Notices about the clip (read-only).")
    refresh_ms = param.Integer(default=400, bounds=(50, None), doc="Live refresh period (ms) of a sweep.")

    def __init__(self, clips: dict[str, torch.Tensor], methods: dict[str, Method], sample_rate: int = RATE,
                 dictionaries=None, **params) -> None:  # fmt: skip
        super().__init__(**params)
        self.clips, self.methods, self.sample_rate = dict(clips), dict(methods), sample_rate
        self.runner = SamplerRunner(lambda: iter(()))
        self._trace: list[tuple[int, float, list[float], list[float]]] = []  # step, seconds, output, sources
        self._sweep: dict | None = None  # the sweep on screen: its separator, mixture, truth, floor, latest
        self.dictionaries = dictionaries  # StemDictionaries, for "which dictionary explains each stem"
        self.cross: torch.Tensor | None = None
        self._uploads: set[str] = set()  # clips that are uploads: one mixture, no true stems
        self.config = STFTConfig()
        self._weights, self._low, self._top = _log_rows(self.config, sample_rate)
        self.estimates: torch.Tensor | None = None
        self.scores: dict[str, torch.Tensor] = {}
        self._seconds = 0.0
        self._build()
        self._set_choices()
        if self.param.clip.objects:
            self.clip = self.param.clip.objects[0]  # the watcher separates it

    # -- layout -------------------------------------------------------------------------------------------
    def _spec_figure(self, title: str, x_range=None):
        fig = new_figure(
            title, "seconds", "", 240, x_range=x_range or Range1d(0, 1), y_range=Range1d(self._low, self._top)
        )
        ticks, labels = _note_ticks(self._top)
        fig.yaxis.ticker = FixedTicker(ticks=ticks)
        fig.yaxis.major_label_overrides = labels
        src = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        fig.image("image", x="x", y="y", dw="dw", dh="dh", source=src, color_mapper=self._mapper)
        return fig, src

    def _build(self) -> None:
        self._mapper = LinearColorMapper(palette=Magma256, low=-80, high=0)
        self._mix_fig, self._mix_src = self._spec_figure("Mix: spectrogram, dB below its peak")
        self._mix_fig.height = 260
        self._mix_fig.add_layout(ColorBar(color_mapper=self._mapper, width=8, title="dB"), "right")
        x = self._mix_fig.x_range
        self._est, self._true, self._wave, self._wave_src, self._spans = {}, {}, {}, {}, []
        for k, name in enumerate(STEMS):
            self._est[name] = self._spec_figure(f"{name}: estimate", x)
            self._true[name] = self._spec_figure(f"{name}: truth", x)
            fig = new_figure(f"{name}: {1000 * _ZOOM_S:.0f} ms from the zoom point", "seconds", "amplitude", 210)
            src = ColumnDataSource({"t": [], "truth": [], "estimate": []})
            fig.line("t", "truth", source=src, color="#9e9e9e", line_width=2, legend_label="truth")
            fig.line("t", "estimate", source=src, color=PALETTE[k % len(PALETTE)], legend_label="estimate")
            fig.legend.orientation = "horizontal"
            fig.add_layout(fig.legend[0], "below")
            self._wave[name], self._wave_src[name] = fig, src
        span = Span(location=self.zoom, dimension="height", line_color="#00e5ff", line_width=2)
        self._mix_fig.add_layout(span)
        self._spans.append(span)
        self._bars = new_figure("SI-SDR improvement over the mix itself, per stem", "", "dB", 260,
                                x_range=list(STEMS))  # fmt: skip
        self._bar_src = ColumnDataSource({"stem": [], "value": [], "colour": []})
        self._bars.vbar("stem", top="value", width=0.6, source=self._bar_src, color="colour",
                        legend_label="this method")  # fmt: skip
        self._ceiling_src = ColumnDataSource({"stem": [], "value": []})
        self._bars.scatter("stem", "value", source=self._ceiling_src, marker="dash", size=46, line_width=3,
                           color="#d62728", legend_label="ceiling: oracle ratio mask")  # fmt: skip
        self._bars.add_layout(Span(location=0, dimension="width", line_color="#333333", line_dash="dashed"))
        self._bars.legend.orientation = "horizontal"
        self._bars.add_layout(self._bars.legend[0], "below")
        self._verdict = pn.pane.Markdown(sizing_mode="stretch_width")
        self._curve = new_figure("SI-SDR improvement per stem at each step of the sweep", "step", "dB", 260,
                                 y_range=Range1d(-1, 20))  # fmt: skip
        self._curve_src = ColumnDataSource({"step": [], **{f"out {n}": [] for n in STEMS},
                                            **{f"raw {n}": [] for n in STEMS}})  # fmt: skip
        self._ceilings = {}
        for k, name in enumerate(STEMS):
            colour = PALETTE[k % len(PALETTE)]
            self._curve.line("step", f"out {name}", source=self._curve_src, color=colour, line_width=2.5,
                             legend_label=name)  # fmt: skip
            self._curve.scatter("step", f"out {name}", source=self._curve_src, color=colour, size=6)
            self._curve.line("step", f"raw {name}", source=self._curve_src, color=colour, line_dash="dotted",
                             line_width=1.5)  # fmt: skip
            self._ceilings[name] = Span(location=0, dimension="width", line_color=colour, line_dash="dashed",
                                        line_width=1.5, visible=False)  # fmt: skip
            self._curve.add_layout(self._ceilings[name])
        self._curve.add_layout(Span(location=0, dimension="width", line_color="#333333", line_dash="dashed"))
        self._curve.legend.orientation = "horizontal"
        self._curve.add_layout(self._curve.legend[0], "below")
        self._curve_md = pn.pane.Markdown(
            "Solid: what the run returns if it stops at that step (the mix through ratio masks of the sweep's "
            "sources). Dotted: the sweep's own sources, before the masks. Dashed in a stem's colour: its ceiling "
            "(the oracle ratio mask); black dashed: the floor (the mix itself, 0 dB).",
            sizing_mode="stretch_width",
        )
        self._curve_panel = pn.Column(pn.pane.Bokeh(self._curve, height=self._curve.height,
                                                    sizing_mode="stretch_width"),
                                      self._curve_md, visible=False, sizing_mode="stretch_width")  # fmt: skip
        self._stop_button = pn.widgets.Button(label="Stop", disabled=True)
        self._stop_button.on_click(lambda _e: self.stop())
        names = ["mix", "residual", *(f"{s} estimate" for s in STEMS), *(f"{s} truth" for s in STEMS)]
        self._players = {n: pn.pane.Audio(None, sample_rate=self.sample_rate, name=n, sizing_mode="stretch_width")
                         for n in names}  # fmt: skip
        self._player_labels = {n: pn.pane.Markdown(f"**{n}**", sizing_mode="stretch_width") for n in names}
        self._upload = pn.widgets.FileInput(accept=".wav,.flac,.ogg,.aiff,.aif", multiple=False)
        self._upload.param.watch(self._on_upload, "value")
        self._run_button = pn.widgets.Button(label="Separate", color="primary")
        self._run_button.on_click(lambda _e: busy(self._results, self.run))
        self._results = pn.Column(sizing_mode="stretch_width")
        self._cross_button = pn.widgets.Button(label="Which stem's dictionary explains each stem?")
        self._cross_button.on_click(lambda _e: busy(self._results, self.diagnose))
        self._cross_fig = new_figure("Each true stem fitted by each stem's NMF dictionary alone (lower: better)",
                                     "dictionary", "true stem", 280, x_range=list(STEMS),
                                     y_range=list(reversed(STEMS)))  # fmt: skip
        self._cross_src = ColumnDataSource({"dictionary": [], "stem": [], "value": [], "label": [], "ink": []})
        self._cross_mapper = LinearColorMapper(palette=Magma256[::-1], low=0, high=2)
        fill = {"field": "value", "transform": self._cross_mapper}
        self._cross_fig.rect("dictionary", "stem", 1, 1, source=self._cross_src, fill_color=fill, line_color=None)
        self._cross_fig.text("dictionary", "stem", text="label", source=self._cross_src, text_align="center",
                             text_baseline="middle", text_color="ink", text_font_size="12px")  # fmt: skip
        self._cross_fig.add_layout(ColorBar(color_mapper=self._cross_mapper, width=8, title="KL"), "right")
        self._cross_md = pn.pane.Markdown(sizing_mode="stretch_width")
        self._cross_panel = pn.Column(pn.pane.Bokeh(self._cross_fig, height=280, sizing_mode="stretch_width"),
                                      self._cross_md, visible=False, sizing_mode="stretch_width")  # fmt: skip

    def _set_choices(self) -> None:
        self.param.clip.objects = list(self.clips)
        self.param.method.objects = [*self.methods, ORACLE]
        if self.method is None:
            self.method = next(iter(self.methods))

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Column(
            pn.widgets.Select.from_param(self.param.clip, name="Clip"),
            "or upload a song's clip (WAV, FLAC, OGG; up to 10 s):", self._upload,
            pn.widgets.Select.from_param(self.param.method, name="Method"),
            pn.Row(self._run_button, self._stop_button),
            pn.widgets.FloatSlider.from_param(self.param.zoom, name="Zoom at (seconds)", end=10.0),
            pn.pane.Markdown(self.param.message, sizing_mode="stretch_width"),
            *([self._cross_button] if self.dictionaries is not None else []),
            width=300,
        )  # fmt: skip
        stems = []
        for name in STEMS:
            stems.append(pn.Row(*(pn.pane.Bokeh(f, height=f.height, sizing_mode="stretch_width")
                                  for f in (self._est[name][0], self._true[name][0], self._wave[name])),
                                sizing_mode="stretch_width"))  # fmt: skip
        cells = [
            pn.Column(self._player_labels[n], p, sizing_mode="stretch_width") for n, p in self._players.items()
        ]
        players = pn.GridBox(*cells, ncols=5, sizing_mode="stretch_width")
        self._results.objects = [
            pn.pane.Markdown(self.param.status, sizing_mode="stretch_width"),
            pn.Row(pn.pane.Bokeh(self._mix_fig, height=self._mix_fig.height, sizing_mode="stretch_width"),
                   pn.Column(pn.pane.Bokeh(self._bars, height=self._bars.height, sizing_mode="stretch_width"),
                             self._verdict,
                             sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            self._curve_panel, players, *stems, self._cross_panel,
        ]  # fmt: skip
        return pn.Row(controls, self._results, sizing_mode="stretch_width")

    # -- work ---------------------------------------------------------------------------------------------
    def mixture(self) -> torch.Tensor:
        return self.clips[self.clip].sum(0)

    def truth(self) -> torch.Tensor | None:
        stems = self.clips[self.clip]
        return None if self.clip in self._uploads else stems

    @param.depends("clip", watch=True)
    def _on_clip(self) -> None:
        self._cross_panel.visible = False  # the diagnosis was of another clip

    @param.depends("clip", "method", watch=True)
    def _on_choice(self) -> None:
        busy(self._results, self.run)

    def run(self) -> None:
        """Separate the clip with the method, score it against the floor and the ceiling, draw and play it. A
        sweep runs on the background thread; :meth:`refresh` draws its steps and, at its end, its result."""
        self.runner.reset()
        self._sweep = None
        self._stop_button.disabled = True
        if self.clip is None or self.method is None:
            return
        mixture, truth = self.mixture(), self.truth()
        if self.method == ORACLE and truth is None:
            self.status = "The oracle needs the true stems; an upload has none. Pick a method."
            return
        method = self.methods.get(self.method)
        self._curve_panel.visible = isinstance(method, LangevinSeparator) and truth is not None
        if isinstance(method, LangevinSeparator):
            self._start_sweep(method, mixture, truth)
            return
        start = time.perf_counter()
        estimates = oracle_estimates(truth, self.config) if self.method == ORACLE else method(mixture)
        self._seconds = time.perf_counter() - start
        self._show(estimates, mixture, truth)
        length = mixture.shape[-1] / self.sample_rate
        self.status = (f"**{self.method}** on {self.clip}: {length:.1f} s separated in {self._seconds:.2f} s "
                       f"({length / max(self._seconds, 1e-9):.1f} x real time on this machine).")  # fmt: skip

    def _show(self, estimates: torch.Tensor, mixture: torch.Tensor, truth: torch.Tensor | None,
              players: bool = True) -> None:  # fmt: skip
        """Score ``estimates`` against the floor and the ceiling, and draw them (and play them if ``players``)."""
        self.estimates = estimates.float()
        self.scores = {}
        if truth is not None:
            floor, silent = self._floor(mixture, truth)
            ceiling = si_sdr(oracle_estimates(truth, self.config), truth) - floor
            self.scores = {"si_sdri": si_sdr(self.estimates, truth) - floor, "ceiling": ceiling, "floor": floor,
                           "silent": silent}  # fmt: skip
        self._draw(mixture, truth, players)

    @staticmethod
    def _floor(mixture: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each stem's SI-SDR of the mix itself (NaN for a stem silent in the clip, left out as the benchmark
        does) and which stems are silent."""
        silent = silent_stems(truth, mixture)
        nan = torch.full((len(STEMS),), float("nan"))
        return torch.where(silent, nan, si_sdr(mixture.expand_as(truth), truth)), silent

    # -- the sweep, step by step ----------------------------------------------------------------------------
    def _start_sweep(self, sweep: LangevinSeparator, mixture: torch.Tensor, truth: torch.Tensor | None) -> None:
        state = {"sweep": sweep, "name": self.method, "clip": self.clip, "mixture": mixture, "truth": truth,
                 "trace": [], "latest": None, "drawn": 0, "done": False, "t0": time.perf_counter()}  # fmt: skip
        if truth is not None:
            state["floor"], state["silent"] = self._floor(mixture, truth)
            ceiling = si_sdr(oracle_estimates(truth, self.config), truth) - state["floor"]
            state["ceiling"] = ceiling
        self._sweep = state
        self.estimates, self.scores = None, {}
        self._draw_pending(mixture, truth, state.get("ceiling"))
        self.runner.reset(lambda: self._watch(state))
        self.runner.start()
        self._stop_button.disabled = False
        self.status = f"**{self.method}** on {self.clip}: starting ({sweep.config.total_steps} steps at most)."

    def _watch(self, state: dict) -> Iterator[Iterate]:
        """The sweep's iterates (on the runner's thread), each step's estimates and scores kept in ``state``: a
        state of its own per run, so a step of a run that was replaced lands nowhere visible."""
        sweep, mixture, truth = state["sweep"], state["mixture"], state["truth"]
        T = mixture.shape[-1]
        for it in sweep.iterates(mixture):
            estimates = sweep.finish(mixture, it.sources)  # raises on a diverged run: the runner reports it
            out = raw = [float("nan")] * len(STEMS)
            if truth is not None:
                out = (si_sdr(estimates, truth) - state["floor"]).tolist()
                raw = (si_sdr(it.sources[:, :T].cpu().float(), truth) - state["floor"]).tolist()
            state["latest"] = estimates
            if it.chain >= 0:  # the residual sweep's closing result repeats a step
                state["trace"].append((it.step, time.perf_counter() - state["t0"], out, raw))
            yield it

    def stop(self) -> None:
        """Stop the sweep where it is; its latest step is shown and played."""
        self.runner.pause()
        self._stop_button.disabled = True
        if self._sweep is not None and not self.runner.finished:
            self._sweep["stopped"] = True
        self.refresh()

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the sweep on screen ends (tests and notebooks; a served page refreshes by itself), then
        :meth:`refresh`."""
        deadline = time.perf_counter() + timeout
        while self._sweep is not None and self.runner.running and not self.runner.finished:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"the sweep did not finish within {timeout:g} s")
            time.sleep(0.05)
        self.refresh()

    def refresh(self) -> None:
        """Draw the sweep's new steps, and its result when it ends (the periodic callback calls this)."""
        state = self._sweep
        if state is None or state["done"]:
            return
        if self.runner.error:
            state["done"] = True
            self._stop_button.disabled = True
            self.status = f"**{state['name']}** stopped: {self.runner.error}."
            return
        trace = list(state["trace"])
        finished, stopped = self.runner.finished, state.get("stopped", False)
        if len(trace) > state["drawn"] or finished or stopped:
            state["drawn"] = len(trace)
            self._draw_curve(trace, state)
            if state["latest"] is not None:
                self._show(state["latest"], state["mixture"], state["truth"], players=finished or stopped)
                if not (finished or stopped) and trace and self.scores:
                    self._verdict.object = f"At step {trace[-1][0]}: " + self._verdict.object
        total = state["sweep"].config.total_steps
        step, seconds = (trace[-1][0], trace[-1][1]) if trace else (0, time.perf_counter() - state["t0"])
        length = state["mixture"].shape[-1] / self.sample_rate
        if finished or stopped:
            state["done"] = True
            self._stop_button.disabled = True
            how = "stopped by you at" if stopped else "separated in"
            if state["truth"] is not None and trace:
                raw = torch.tensor(trace[-1][3])[~state["silent"]]
                self._verdict.object += (f" The sweep's own sources, before the masks: {float(raw.mean()):.1f} dB "
                                         "(dotted in the curves).")  # fmt: skip
            self.status = (f"**{state['name']}** on {state['clip']}: {length:.1f} s {how} {step} steps, "
                           f"{seconds:.1f} s ({length / max(seconds, 1e-9):.2f} x real time on this "
                           "machine).")  # fmt: skip
            return
        rate = step / seconds if step and seconds > 0 else 0.0
        speed = f" · {rate:.2f} steps/s · about {(total - step) / rate:.0f} s left" if rate else ""
        self.status = f"**{state['name']}** on {state['clip']}: step {step} of {total}{speed}."

    def _draw_curve(self, trace: list, state: dict) -> None:
        data = {"step": np.array([t[0] for t in trace], dtype=float)}
        for k, name in enumerate(STEMS):
            data[f"out {name}"] = np.array([t[2][k] for t in trace], dtype=float)
            data[f"raw {name}"] = np.array([t[3][k] for t in trace], dtype=float)
        self._curve_src.data = data
        total = state["sweep"].config.total_steps
        self._curve.x_range.start, self._curve.x_range.end = 0.5, max(total, 1) + 0.5
        values = [v for t in trace for v in (*t[2], *t[3]) if math.isfinite(v)]
        ceiling = state.get("ceiling")
        tops = [float(c) for c in ceiling if math.isfinite(float(c))] if ceiling is not None else []
        self._curve.y_range.start = min([0.0, *values]) - 1
        self._curve.y_range.end = max([1.0, *values, *tops]) * 1.1 + 0.5

    def _draw_pending(self, mixture: torch.Tensor, truth: torch.Tensor | None, ceiling) -> None:
        """Before the sweep's first step: the mix, the truths and the ceilings drawn, the estimates empty."""
        self._curve_src.data = {"step": [], **{f"out {n}": [] for n in STEMS}, **{f"raw {n}": [] for n in STEMS}}
        for k, name in enumerate(STEMS):
            value = float("nan") if ceiling is None else float(ceiling[k])
            self._ceilings[name].location = value if math.isfinite(value) else 0.0
            self._ceilings[name].visible = math.isfinite(value)
        self._curve.y_range.start, self._curve.y_range.end = (
            -1,
            (
                max([1.0, *(float(c) for c in ceiling if math.isfinite(float(c)))]) * 1.1 + 0.5
                if ceiling is not None
                else 20
            ),
        )
        self._draw_images(mixture, truth, None)
        for name in STEMS:
            self._wave_src[name].data = {"t": [], "truth": [], "estimate": []}
        self._bar_src.data = {"stem": [], "value": [], "colour": []}
        self._ceiling_src.data = {"stem": [], "value": []}
        self._verdict.object = "The sweep is running: the figures fill in as its steps arrive."
        for name in self._players:
            if name != "mix" and not name.endswith("truth"):
                self._players[name].object = None
        self._players["mix"].object = playable(mixture)
        self._player_labels["residual"].object = "**residual** (mix minus the estimates): when the run ends"
        for k, name in enumerate(STEMS):
            self._players[f"{name} truth"].object = None if truth is None else playable(truth[k])

    def _db_rows(self, x: torch.Tensor, ref: float) -> np.ndarray:
        mag = stft(x.double(), self.config).abs()  # [bins, frames]
        rows = self._weights @ mag
        db = 20 * torch.log10(rows.clamp_min(1e-10)) - ref
        return db.clamp_min(-80).float().numpy()

    def _draw_images(self, mixture: torch.Tensor, truth: torch.Tensor | None,
                     estimates: torch.Tensor | None) -> None:  # fmt: skip
        """The mix's spectrogram and each stem's estimate (empty when None) and truth, on one colour scale."""
        seconds = mixture.shape[-1] / self.sample_rate
        ref = float(
            20 * torch.log10((self._weights @ stft(mixture.double(), self.config).abs()).max().clamp_min(1e-10))
        )
        image = lambda x: {"image": [self._db_rows(x, ref)], "x": [0.0], "y": [self._low],  # noqa: E731
                           "dw": [seconds], "dh": [self._top - self._low]}  # fmt: skip
        self._mix_src.data = image(mixture)
        self._mix_fig.x_range.start, self._mix_fig.x_range.end = 0.0, seconds  # shared by every spectrogram
        empty = {"image": [], "x": [], "y": [], "dw": [], "dh": []}
        for k, name in enumerate(STEMS):
            self._est[name][1].data = image(estimates[k]) if estimates is not None else empty
            self._true[name][1].data = image(truth[k]) if truth is not None else empty
            self._true[name][0].title.text = (
                f"{name}: truth" if truth is not None else f"{name}: truth (none for an upload)"
            )

    def _draw(self, mixture: torch.Tensor, truth: torch.Tensor | None, players: bool = True) -> None:
        self._draw_images(mixture, truth, self.estimates)
        self._draw_zoom()
        if players:
            self._draw_players(mixture, truth)
        self._draw_scores()

    def _draw_players(self, mixture: torch.Tensor, truth: torch.Tensor | None) -> None:
        residual = mixture - self.estimates.sum(0)
        self._players["mix"].object = playable(mixture)
        quiet = float(residual.abs().max()) <= 1e-4 * max(float(mixture.abs().max()), 1e-12)
        self._players["residual"].object = None if quiet else playable(residual)
        self._player_labels["residual"].object = (
            "**residual**: none (the estimates add up to the mix)"
            if quiet
            else "**residual** (mix minus the estimates)"
        )
        for k, name in enumerate(STEMS):
            self._players[f"{name} estimate"].object = playable(self.estimates[k])
            self._players[f"{name} truth"].object = None if truth is None else playable(truth[k])

    def _draw_scores(self) -> None:
        if not self.scores:
            self._bar_src.data = {"stem": [], "value": [], "colour": []}
            self._ceiling_src.data = {"stem": [], "value": []}
            self._verdict.object = (
                "No true stems for this clip: nothing to score (listen, and look at the spectrograms)."
            )
            return
        gain, ceiling, silent = self.scores["si_sdri"], self.scores["ceiling"], self.scores["silent"]
        sounding = [n for n, quiet in zip(STEMS, silent.tolist(), strict=True) if not quiet]
        keep = ~silent
        self._bar_src.data = {"stem": sounding, "value": gain[keep].tolist(),
                              "colour": [PALETTE[STEMS.index(n) % len(PALETTE)] for n in sounding]}  # fmt: skip
        self._ceiling_src.data = {"stem": sounding, "value": ceiling[keep].tolist()}
        if not sounding:
            self._verdict.object = "Every stem is silent in this clip: nothing to score."
            return
        top = max(float(ceiling[keep].max()), float(gain[keep].max()), 1.0)
        self._bars.y_range.start, self._bars.y_range.end = min(0.0, float(gain[keep].min())) - 1, top * 1.15
        mean, best = float(gain[keep].mean()), float(ceiling[keep].mean())
        share = 100 * mean / best if best > 0 else float("nan")
        per = ", ".join(f"{n} {float(g):.1f} of {float(c):.1f}" if not q else f"{n} silent (left out)"
                        for n, g, c, q in zip(STEMS, gain, ceiling, silent.tolist(), strict=True))  # fmt: skip
        self._verdict.object = (
            f"Mean SI-SDR improvement **{mean:.1f} dB**, {share:.0f} % of the way from the floor (the mix itself, "
            f"0 dB; its own SI-SDR {float(self.scores['floor'][keep].mean()):.1f} dB) to the ceiling (the oracle "
            f"ratio mask on this clip, {best:.1f} dB). Per stem: {per} dB."
        )

    def diagnose(self) -> None:
        """Fit each true stem of the clip by each stem's NMF dictionary alone and show the divergences: a stem
        another dictionary explains better is one the baseline hands to that stem."""
        truth = self.truth() if self.clip is not None else None
        if self.dictionaries is None or truth is None:
            self._cross_md.object = "This needs a clip with its true stems (not an upload)."
            self._cross_panel.visible = True
            return
        mixture = truth.sum(0)
        silent = silent_stems(truth, mixture)
        start = time.perf_counter()
        self.cross = self.dictionaries.cross_fit(truth, silent)
        seconds = time.perf_counter() - start
        cells = [(d, t, float(self.cross[j, k])) for j, t in enumerate(STEMS) for k, d in enumerate(STEMS)
                 if not bool(silent[j])]  # fmt: skip
        high = max(0.5, max(c[2] for c in cells)) if cells else 2.0
        self._cross_mapper.high = high
        self._cross_src.data = {
            "dictionary": [c[0] for c in cells], "stem": [c[1] for c in cells], "value": [c[2] for c in cells],
            "label": [f"{c[2]:.2f}" for c in cells],
            "ink": ["#111111" if c[2] < 0.5 * high else "#ffffff" for c in cells],  # legible on either end
        }  # fmt: skip
        words = []
        for j, t in enumerate(STEMS):
            if bool(silent[j]):
                continue
            best = STEMS[int(self.cross[j].argmin())]
            low, own = float(self.cross[j].min()), float(self.cross[j, j])
            other = f"{t}: **the {best} dictionary** explains it better than its own ({low:.2f} against {own:.2f})"
            words.append(f"{t}: its own dictionary" if best == t else other)
        self._cross_md.object = (
            "KL divergence of each true stem's magnitude from its best fit by one dictionary, per unit of "
            f"magnitude ({seconds:.1f} s). Best fit per stem: " + "; ".join(words) + ". A stem another dictionary "
            "explains better is one the NMF baseline hands to that stem (on the benchmark's test clips: "
            "`python bench/stems_cross.py`)."
        )
        self._cross_panel.visible = True

    @param.depends("zoom", watch=True)
    def _draw_zoom(self) -> None:
        if self.estimates is None:
            return
        truth = self.truth()
        T = self.estimates.shape[-1]
        start = min(int(self.zoom * self.sample_rate), max(0, T - int(_ZOOM_S * self.sample_rate)))
        stop = min(T, start + int(_ZOOM_S * self.sample_rate))
        t = np.arange(start, stop) / self.sample_rate
        for k, name in enumerate(STEMS):
            est = self.estimates[k, start:stop].numpy()
            true = truth[k, start:stop].numpy() if truth is not None else np.full_like(est, np.nan)
            self._wave_src[name].data = {"t": t, "truth": true, "estimate": est}
        for span in self._spans:
            span.location = start / self.sample_rate

    def _on_upload(self, event) -> None:
        if not event.new:
            return
        name = self._upload.filename or "upload"
        try:
            audio = load_audio_bytes(event.new, name, self.sample_rate)
        except AudioError as err:
            self.message = f"upload refused: {err}"
            return
        if audio.samples.shape[0] < self.config.n_fft:
            self.message = f"upload refused: {name} is shorter than one STFT window ({self.config.n_fft} samples)"
            return
        label = f"{name} (upload)"
        # an upload is one mixture: held as stems [4, T] whose sum is the mix (the first row), truth unknown
        stems = torch.zeros(len(STEMS), audio.samples.shape[0])
        stems[0] = torch.as_tensor(audio.samples, dtype=torch.float32)
        self.clips[label] = stems
        self._uploads.add(label)
        wrong = heldout.stems_priors_note(stems[0], self.sample_rate)
        self.message = " ".join(filter(None, ["; ".join(audio.notes) + "." if audio.notes else f"loaded {name}.",
                                              f"Note: {wrong}." if wrong else ""]))  # fmt: skip
        if self.method == ORACLE:
            self.method = next(iter(self.methods))
        self.param.clip.objects = list(self.clips)
        self.clip = label


__all__ = ["ORACLE", "MusicExplorer", "example_clips", "shipped_dictionaries", "shipped_methods"]
