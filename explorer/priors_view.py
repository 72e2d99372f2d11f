"""Diagnose priors by looking and listening: the thesis's studies of the priors, redone, as one app.

Six views, each a :class:`panel.viewable.Viewer` driven by params (so tests need no browser):

- :class:`CrossView`: the cross-likelihood heatmap (source x prior) at a chosen noise level; a click on a
  cell (or ``select(source, prior)``) plays that source's test clip and draws its per-sample
  log-likelihood under that prior.
- :class:`NoiseView`: test log-likelihood against the noise added to the data, for the thesis's fine-tuned
  flows and for the noise-conditional priors conditioned at the same levels, and both cross-likelihoods.
- :class:`ProbeView`: constant inputs 0 and 1 and Gaussian noise under each prior.
- :class:`SamplesView`: draws from each prior, drawn and playable.
- :class:`DenoiseView`: one denoising step per noise level against the exact toy prior's, with audio.
- :class:`ClipView`: an uploaded or toy clip, with each prior's log-likelihood strip under the waveform and a
  playhead that follows playback.

The first five read results files written by ``sepmodels study`` (:func:`load_studies`); the last scores
live with the loaded priors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import panel as pn
import param
import torch
import torch.nn.functional as F
from bokeh.models import BasicTicker, ColorBar, ColumnDataSource, LinearColorMapper, Range1d, Span
from bokeh.palettes import Viridis256

from explorer.audio import load_audio_bytes, new_figure, playable, smooth, wave_data
from explorer.mixview import PALETTE
from sepmodels import heldout, mixing
from sepmodels.checkpoint import first_line
from sepmodels.data import toy
from sepmodels.data.audio import AudioError
from sepmodels.priors import PriorSet
from sepmodels.studies import (
    STUDIES,
    CrossResult,
    DenoiseResult,
    NoiseResult,
    ProbeResult,
    SampleResult,
    StudyError,
    StudyRecord,
    load_study,
    study_clips,
)

_STRIP_BINS = 400


def default_studies_dir() -> Path:
    """Results of the studies of the shipped priors, shipped beside them."""
    from sepmodels.checkpoint import default_priors_path

    return default_priors_path().parent / "studies"


def load_studies(folder: str | os.PathLike[str] | None) -> tuple[dict[str, StudyRecord], list[str]]:
    """Every ``<study>.pt`` in ``folder`` that loads: ``(studies by name, one line per problem)``."""
    studies: dict[str, StudyRecord] = {}
    problems: list[str] = []
    if folder is None:
        return studies, problems
    for name in STUDIES:
        path = Path(folder) / f"{name}.pt"
        if not path.exists():
            continue
        try:
            studies[name] = load_study(path)
        except StudyError as err:
            problems.append(str(err))
    return studies, problems


def studies_from_env() -> tuple[dict[str, StudyRecord], list[str], str]:
    """The results named by ``SEPMODELS_STUDIES`` (a folder), else the shipped ones when the shipped priors
    are in use; also where they came from."""
    folder = os.environ.get("SEPMODELS_STUDIES")
    if not folder and not os.environ.get("SEPMODELS_PRIORS"):
        folder = str(default_studies_dir())
    studies, problems = load_studies(folder)
    return studies, problems, folder or "none"


def busy(target: pn.viewable.Viewable, work: Callable[[], None]) -> None:
    """Run ``work`` while ``target`` shows Panel's loading spinner.

    In a served session the spinner reaches the browser first and the work runs on the server's next tick
    (changes made inside one callback reach the page only when it returns); elsewhere (tests, notebooks) the
    work runs at once.
    """
    doc = pn.state.curdoc
    if doc is None or doc.session_context is None:
        work()
        return
    target.loading = True

    def run() -> None:
        try:
            work()
        finally:
            target.loading = False

    pn.state.execute(run, schedule=True)


def stems_studies_dir() -> Path:
    """Results of the studies of the shipped stems flow priors (``python bench/stems_studies.py``)."""
    from sepmodels.checkpoint import stems_priors_path

    return stems_priors_path("flow").parent / "studies_stems"


def study_data(study: StudyRecord):
    """The test data a study read, to rebuild its clips: a music study's render is looked for where the study
    found it, else in ``SEPMODELS_STEMS`` and in the stems benchmark's own folder (``bench/stems.py``'s), each
    either the render itself or a folder of renders named as the study's."""
    data = study.test_data
    if data.name != "musdb" or (Path(data.root) / "test").is_dir():
        return data
    from sepmodels.data.stems import BENCHMARK_ROOT

    places = [Path(p) for p in (os.environ.get("SEPMODELS_STEMS"), BENCHMARK_ROOT) if p]
    for place in places:
        for candidate in (place / Path(data.root).name, place):
            if (candidate / "test").is_dir():
                return replace(data, root=str(candidate))
    raise OSError(f"the study's clips were read from {data.root}, which is not here")


def _missing(study: str) -> pn.pane.Markdown:
    return pn.pane.Markdown(
        f"No **{study}** results loaded. Write them with `sepmodels study {study} --out DIR` and serve the app "
        f"with `SEPMODELS_STUDIES=DIR`."
    )


def _provenance(study: StudyRecord) -> str:
    p, d = study.priors, study.data
    seconds = f"{d['length']} samples ({d['length'] / d['sample_rate']:.2g} s)"
    what = (f"{d['n']} draws per prior of {seconds}" if study.study == "samples"
            else f"{d['n']} {d['name']} {d['split']} clips of {seconds}")  # fmt: skip
    step = f" (step {p['step']})" if p.get("step") is not None else ""  # fitted priors have no training step
    return (
        f"*{study.study} study of {p['kind']} priors `{p['path']}`{step}: {what}, seed {d['seed']}; "
        f"written {study.created}.*"
    )


def _sigma_select(owner: param.Parameterized, index: str, sigmas, label: str) -> pn.widgets.Select:
    """A selector that shows noise levels and sets ``owner``'s integer parameter ``index`` to the chosen one's."""
    select = pn.widgets.Select(label=label, options={f"{s:g}": i for i, s in enumerate(sigmas)},
                               value=getattr(owner, index))  # fmt: skip
    select.param.watch(lambda e: setattr(owner, index, e.new), "value")
    return select


def _heatmap(title: str, rows: list[str], cols: list[str], height: int = 300):
    """A labelled heatmap figure (rows top to bottom) with a colour bar; returns (figure, source, mapper)."""
    src = ColumnDataSource({"row": [], "col": [], "value": [], "label": [], "text_color": []})
    # lists, never tuples: Bokeh reads a tuple range as (start, end)
    fig = new_figure(title, "prior", "data", height, x_range=list(cols), y_range=list(reversed(rows)))
    mapper = LinearColorMapper(palette=Viridis256, low=0, high=1)
    # a click selects a cell: outline it, and keep the others as they were (Bokeh fades them by default, so far
    # that their numbers could not be read)
    fill = {"field": "value", "transform": mapper}
    fig.rect("col", "row", 1, 1, source=src, fill_color=fill, line_color="white", nonselection_fill_alpha=1.0,
             nonselection_line_alpha=1.0, selection_line_color="#d62728", selection_line_width=3)  # fmt: skip
    fig.text("col", "row", text="label", source=src, text_align="center", text_baseline="middle",
             text_font_size="11px", text_color="text_color", nonselection_text_alpha=1.0)  # fmt: skip
    fig.add_layout(ColorBar(color_mapper=mapper, ticker=BasicTicker(), title="nats/sample"), "right")
    fig.grid.visible = False
    return fig, src, mapper


def _colour_limits(*values: torch.Tensor) -> tuple[float, float]:
    """One colour range for heatmaps meant to be compared: the 10th percentile to the maximum of their finite
    values (one outlier, a flow can give -1e4, must not wash out the rest)."""
    v = torch.cat([x.double().flatten() for x in values])
    finite = v[torch.isfinite(v)]
    return (float(finite.quantile(0.1)), float(finite.max())) if finite.numel() else (0.0, 1.0)


def _fill_heatmap(src: ColumnDataSource, mapper: LinearColorMapper, rows, cols, values: torch.Tensor,
                  limits: tuple[float, float] | None = None) -> None:  # fmt: skip
    """Write ``values [rows, cols]``; the colours are clipped to ``limits`` (default: this heatmap's own, see
    :func:`_colour_limits`), while the labels stay exact."""
    v = values.double()
    lo, hi = limits or _colour_limits(v)
    mapper.low, mapper.high = lo, max(hi, lo + 1e-6)
    r, c, val, lab, tc = [], [], [], [], []
    for i, row in enumerate(rows):
        for j, col in enumerate(cols):
            x = float(v[i, j])
            r.append(row), c.append(col), val.append(min(max(x, lo), hi)), lab.append(f"{x:.3g}")
            tc.append("black" if x > lo + 0.6 * (hi - lo) else "white")
    src.data = {"row": r, "col": c, "value": val, "label": lab, "text_color": tc}


class CrossView(pn.viewable.Viewer):
    """Every source's test clips under every prior, at one noise level; a cell opens its clip."""

    level = param.Selector(doc="Noise level of the clips (and the priors' conditioning).")
    statistic = param.Selector(default="mean", objects=["mean", "median"], doc="Over the clips.")
    source = param.Selector(doc="Data of the selected cell.")
    prior = param.Selector(doc="Prior of the selected cell.")
    clip = param.Integer(default=0, bounds=(0, None), doc="Which test clip of the selected source to open.")
    smoothing = param.Integer(default=128, bounds=(1, 4096), doc="Moving average of the strip, samples.")
    summary = param.String(default="", doc="What the selected cell shows (read-only).")

    def __init__(self, priors: PriorSet, study: StudyRecord, **params) -> None:
        r: CrossResult = study.results
        self.study, self.r, self.priors = study, r, priors
        self.sources, self.prior_names = list(r.sources), list(r.priors)
        self.sigmas = [float(s) for s in r.sigmas]
        self.param.level.objects = self.sigmas
        self.param.source.objects = self.sources
        self.param.prior.objects = self.prior_names
        params.setdefault("level", self.sigmas[0])
        params.setdefault("source", self.sources[0])
        params.setdefault("prior", self.prior_names[0])
        super().__init__(**params)
        self.param.clip.bounds = (0, int(study.data["n"]) - 1)
        self._fig, self._src, self._mapper = _heatmap("Cross-likelihood", self.sources, self.prior_names)
        self._fig.add_tools("tap")
        self._src.selected.on_change("indices", self._on_tap)
        self._strip_src = ColumnDataSource({"t": [], "y": [], "own": []})
        self._strip = new_figure("Log-likelihood of the clip", "seconds", "nats per sample", 280)
        self._strip.line("t", "y", source=self._strip_src, color=PALETTE[0], line_width=1.5, legend_label="prior")
        self._strip.line("t", "own", source=self._strip_src, color="#999999", line_dash="dashed",
                         legend_label="its own prior")  # fmt: skip
        self._strip.legend.orientation = "horizontal"
        self._strip.add_layout(self._strip.legend[0], "below")  # under the plot, not over the curve's end
        self._player = pn.pane.Audio(None, sample_rate=int(study.data["sample_rate"]), name="clip")
        self._note = pn.pane.Markdown()
        strip = pn.pane.Bokeh(self._strip, sizing_mode="stretch_width")
        self._clip_box = pn.Column(self._note, self._player, strip, sizing_mode="stretch_width")
        self._draw_heatmap()
        self._open_clip()

    def values(self) -> torch.Tensor:
        """The heatmap's numbers ``[sources, priors]`` at the current level and statistic."""
        v = self.r.values[self.sigmas.index(self.level)]
        return v.mean(dim=-1) if self.statistic == "mean" else v.median(dim=-1).values

    @param.depends("level", "statistic", watch=True)
    def _draw_heatmap(self) -> None:
        _fill_heatmap(self._src, self._mapper, self.sources, self.prior_names, self.values())
        self._fig.title.text = f"Cross-likelihood, {self.statistic} over clips, sigma {self.level:g}"

    def select(self, source: str, prior: str) -> None:
        """Open ``source``'s clip under ``prior`` (what a click on that cell does)."""
        self.param.update(source=source, prior=prior)

    def _on_tap(self, _attr, _old, new) -> None:
        if new:
            data = self._src.data
            row, col = data["row"][new[0]], data["col"][new[0]]

            def open_cell() -> None:
                self.select(row, col)
                self._player.paused = False  # a click means "let me hear it"

            busy(self._clip_box, open_cell)

    def clip_audio(self) -> torch.Tensor:
        """The selected test clip, exactly as the study scored it: ``[T]``."""
        d = self.study.data
        clips = study_clips(int(d["n"]), int(d["length"]), self.level, int(d["seed"]), study_data(self.study))
        return clips[self.clip, self.sources.index(self.source)]

    def listening_audio(self, seconds: float = 1.0) -> torch.Tensor:
        """The selected clip lengthened to ``seconds`` for listening (studies score short clips, which are
        over before a player shows their length): its first samples are exactly :meth:`clip_audio`, the rest
        the same toy clip (same pitch and phase) with fresh noise of the same level. Clips of other data are
        played as scored."""
        d, x = self.study.data, self.clip_audio()
        want = int(seconds * int(d["sample_rate"]))
        data = study_data(self.study)
        if data.name != "toy" or want <= x.shape[-1]:
            return x
        k = self.sources.index(self.source)
        clean = data.clean(int(d["n"]), want, int(d["seed"]))[self.clip, k]
        noise = torch.randn(want - x.shape[-1], generator=torch.Generator().manual_seed(int(d["seed"]) + 2))
        return torch.cat([x, clean[x.shape[-1] :] + self.level * noise])

    @param.depends("source", "prior", "clip", "level", "smoothing", watch=True)
    def _open_clip(self) -> None:
        try:
            x = self.clip_audio()
        except (OSError, ValueError, RuntimeError) as err:  # a music study whose render is not on this machine
            self._player.object = None
            self._strip_src.data = {"t": [], "y": [], "own": []}
            self._note.object = (
                f"The heatmap is the study's; the clip itself cannot be read here ({first_line(err)[:160]}). "
                "Render the stems benchmark with `python bench/stems.py` (or set SEPMODELS_STEMS to a render) "
                "to hear and score it."
            )
            return
        self._player.object = playable(self.listening_audio())
        names = list(self.priors.names)
        if self.prior not in names or not self.priors.has_likelihood:
            self._note.object = "The loaded priors cannot score this clip (they are not the study's priors)."
            self._strip_src.data = {"t": [], "y": [], "own": []}
            return
        maps = self.priors.cross_log_prob(x[None], self.level)[0]  # [priors, T]
        y = maps[names.index(self.prior)]
        own = maps[names.index(self.source)] if self.source in names else y
        t = np.arange(len(y)) / self.priors.sample_rate
        step = max(1, len(y) // 1200)
        self._strip_src.data = {"t": t[::step], "y": smooth(y, self.smoothing)[::step],
                                "own": smooth(own, self.smoothing)[::step]}  # fmt: skip
        self._strip.title.text = (
            f"{self.source} clip {self.clip} under the {self.prior} prior (sigma {self.level:g})"
        )
        self.summary = (
            f"{self.source} clip {self.clip} under the {self.prior} prior: {float(y.mean()):.3f} nats/sample "
            f"(under its own {self.source} prior: {float(own.mean()):.3f})."
            + (f" The player plays it lengthened to 1 s, the same tone; the score is of the first {len(y)} "
               "samples." if self.study.test_data.name == "toy" else "")
        )  # fmt: skip
        self._note.object = self.summary

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Row(
            pn.widgets.Select.from_param(self.param.level, name="Noise level"),
            pn.widgets.RadioButtonGroup.from_param(self.param.statistic),
            pn.widgets.IntInput.from_param(self.param.clip, name="Clip", width=100),
        )
        return pn.Column(
            pn.pane.Markdown(_provenance(self.study) + " Click a cell to hear its clip."),
            controls,
            pn.pane.Bokeh(self._fig, sizing_mode="stretch_width"),
            self._clip_box,
            sizing_mode="stretch_width",
        )


class NoiseView(pn.viewable.Viewer):
    """Noise conditioning two ways: curves of test log-likelihood against added noise, and heatmaps."""

    source = param.Selector(doc="Whose test clips the curves show ('all' = mean over sources).")
    level = param.Integer(default=0, bounds=(0, None), doc="Index of the level of the heatmaps.")

    def __init__(self, study: StudyRecord, **params) -> None:
        r: NoiseResult = study.results
        self.study, self.r = study, r
        self.param.source.objects = ["all", *r.sources]
        params.setdefault("source", "all")
        super().__init__(**params)
        self.param.level.bounds = (0, len(r.levels) - 1)
        self._curves = new_figure("Test log-likelihood against the noise added", "noise added (sigma)",
                                  "nats per sample", 420, x_axis_type="log")  # fmt: skip
        self._curve_srcs: list[ColumnDataSource] = []
        for label, dashed, level in self.curve_names():
            src = ColumnDataSource({"x": [], "y": []})
            color = "#777777" if level is None else PALETTE[level % len(PALETTE)]
            self._curves.line("x", "y", source=src, color=color, line_width=2, legend_label=label,
                              line_dash="dashed" if dashed else "solid")  # fmt: skip
            self._curves.scatter("x", "y", source=src, color=color, size=5)
            self._curve_srcs.append(src)
        self._curves.legend.click_policy = "hide"
        self._curves.add_layout(self._curves.legend[0], "right")  # beside the plot, not over the curves
        self._heat_b = _heatmap("Noise-conditional prior", r.sources, r.priors, 260)
        self._heat_a = _heatmap("Fine-tuned flows", r.sources, r.priors, 260) if r.finetuned else None
        self._draw()

    def curve_names(self) -> list[tuple[str, bool, int | None]]:
        """Every curve's legend, whether it is the noise-conditional (dashed) kind, and its level's index
        (None for the plain base flow)."""
        labels = self.r.finetuned.labels if self.r.finetuned else ()
        names = [(label, False, i - 1 if i else None) for i, label in enumerate(labels)]
        return names + [(f"conditioned at {s:g}", True, i) for i, s in enumerate(self.r.levels)]

    def curves(self) -> torch.Tensor:
        """``[curves, test noise]``: fine-tuned models first, then the conditioned ones."""
        own = [self.r.finetuned.own] if self.r.finetuned else []
        own = torch.cat([*own, self.r.conditional.own])  # [models, test noise, sources]
        return own.mean(dim=-1) if self.source == "all" else own[..., self.r.sources.index(self.source)]

    @param.depends("source", "level", watch=True)
    def _draw(self) -> None:
        x = list(self.r.test_noise)
        for src, y in zip(self._curve_srcs, self.curves(), strict=True):
            src.data = {"x": x, "y": y.tolist()}
        sigma = self.r.levels[self.level]
        conditional = self.r.conditional.cross[self.level]
        finetuned = self.r.finetuned.cross[self.level + 1] if self.r.finetuned else None  # 0: base
        limits = _colour_limits(*[v for v in (conditional, finetuned) if v is not None])  # one scale for both
        fig, src, mapper = self._heat_b
        _fill_heatmap(src, mapper, self.r.sources, self.r.priors, conditional, limits)
        fig.title.text = f"Noise-conditional priors conditioned at {sigma:g} (data + noise {sigma:g})"
        if self._heat_a is not None:
            fig, src, mapper = self._heat_a
            k = self.level + 1
            _fill_heatmap(src, mapper, self.r.sources, self.r.priors, finetuned, limits)
            fig.title.text = f"Flows {self.r.finetuned.labels[k]} (data + noise {sigma:g})"

    def __panel__(self) -> pn.viewable.Viewable:
        level = _sigma_select(self, "level", self.r.levels, "Heatmaps at noise level sigma")
        heatmaps = [pn.pane.Bokeh(h[0], sizing_mode="stretch_width") for h in (self._heat_a, self._heat_b) if h]
        note = "" if self._heat_a else " The fine-tuned side was not run (`--finetune-steps 0`)."
        return pn.Column(
            pn.pane.Markdown(
                _provenance(self.study) + note + " Solid: the thesis's fine-tuned flows; dashed: one "
                "noise-conditional prior conditioned at the same levels. Both heatmaps share one colour scale."
            ),
            pn.widgets.Select.from_param(self.param.source, name="Test clips of"),
            pn.pane.Bokeh(self._curves, sizing_mode="stretch_width"),
            level,
            pn.Row(*heatmaps, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


class ProbeView(pn.viewable.Viewer):
    """Constant inputs and pure noise under each prior."""

    conditioning = param.Integer(default=0, bounds=(0, None), doc="Index of the priors' conditioning level.")

    def __init__(self, study: StudyRecord, **params) -> None:
        super().__init__(**params)
        r: ProbeResult = study.results
        self.study, self.r = study, r
        self.param.conditioning.bounds = (0, len(self.r.conditionings) - 1)
        self._fig = new_figure("Gaussian noise under each prior", "noise sigma", "nats per sample", 300,
                               x_axis_type="log")  # fmt: skip
        self._srcs = []
        for k, name in enumerate(self.r.priors):
            src = ColumnDataSource({"x": [], "y": []})
            self._fig.line("x", "y", source=src, color=PALETTE[k % len(PALETTE)], line_width=2, legend_label=name)
            self._srcs.append(src)
        self._fig.add_layout(self._fig.legend[0], "right")
        self._table = pn.pane.DataFrame(self.table(), sizing_mode="stretch_width")
        self._noise_table = pn.pane.DataFrame(self.noise_table(), sizing_mode="stretch_width")
        self._summary = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._draw()

    def table(self):
        """Constant inputs: one row per (conditioning, value), one column per prior (nats per sample)."""
        import pandas as pd

        rows, index = [], []
        for i, c in enumerate(self.r.conditionings):
            for j, v in enumerate(self.r.values):
                rows.append([float(x) for x in self.r.constants[i, j]])
                index.append(f"input {v:g}, prior at sigma {c:g}")
        return pd.DataFrame(rows, index=index, columns=self.r.priors).round(3)

    def noise_table(self):
        """Gaussian-noise inputs at the current conditioning: one row per noise sigma, one column per prior."""
        import pandas as pd

        rows = [[float(x) for x in v] for v in self.r.noise[self.conditioning]]
        index = [f"noise sigma {s:g}" for s in self.r.noise_sigmas]
        return pd.DataFrame(rows, index=index, columns=self.r.priors).round(3)

    def summary(self) -> str:
        """What the probes at the chosen conditioning say, with the reference point that gives them meaning."""
        i = self.conditioning
        c = self.r.conditionings[i]
        zero, one = self.r.constants[i, 0], self.r.constants[i, 1]
        ref = -0.5 * float(np.log(2 * np.pi * np.e * c**2))  # a density that knows the clip up to noise c
        noise = self.r.noise[i]  # [noise sigmas, priors]
        likeliest = [self.r.noise_sigmas[int(k)] for k in noise.argmax(dim=0)]
        return (
            f"**Priors at sigma {c:g}.** A density that knew a clip exactly, up to its noise of {c:g}, would give "
            f"{ref:.2f} nats per sample. A constant 0 (silence) scores {float(zero.min()):.2f} to "
            f"{float(zero.max()):.2f}, a constant 1 {float(one.min()):.2f} to {float(one.max()):.2f}: "
            f"{int((zero > one).sum())} of {len(zero)} priors find silence the likelier. Pure Gaussian noise is "
            f"likeliest at sigma {', '.join(f'{s:g}' for s in likeliest)} ({', '.join(self.r.priors)}). "
            + (
                "Silence scoring within a nat of that reference means these priors cannot tell an empty input "
                "from their source by likelihood alone (the thesis's finding, its Table 2)."
                if float(zero.max()) > ref - 1.0
                else "Silence scores well below that reference: these priors do not reward empty inputs."
            )
        )

    @param.depends("conditioning", watch=True)
    def _draw(self) -> None:
        c = self.r.conditionings[self.conditioning]
        self._summary.object = self.summary()
        self._noise_table.object = self.noise_table()
        for src, y in zip(self._srcs, self.r.noise[self.conditioning].T, strict=True):
            src.data = {"x": list(self.r.noise_sigmas), "y": y.tolist()}
        self._fig.title.text = f"Gaussian noise under each prior (priors conditioned at sigma {c:g})"

    def __panel__(self) -> pn.viewable.Viewable:
        return pn.Column(
            pn.pane.Markdown(_provenance(self.study)),
            self._summary,
            "#### Constant inputs (mean nats per sample over the whole clip)",
            self._table,
            _sigma_select(self, "conditioning", self.r.conditionings, "Priors conditioned at sigma"),
            "#### Gaussian noise inputs (nats per sample), priors at the chosen level",
            self._noise_table,
            pn.pane.Bokeh(self._fig, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


class SamplesView(pn.viewable.Viewer):
    """Draws from each prior: the first ``zoom_ms`` drawn, the whole draw playable."""

    sample = param.Integer(default=0, bounds=(0, None), doc="Which draw.")
    zoom_ms = param.Number(default=40.0, bounds=(1.0, 5000.0), doc="Milliseconds drawn.")

    def __init__(self, study: StudyRecord, **params) -> None:
        super().__init__(**params)
        r: SampleResult = study.results
        self.study, self.r = study, r
        self.param.sample.bounds = (0, self.r.samples.shape[0] - 1)
        sr = int(self.r.sample_rate)
        self.players = [pn.pane.Audio(None, sample_rate=sr, name=n) for n in self.r.priors]
        self._figs, self._srcs = [], []
        for k, name in enumerate(self.r.priors):
            fig = new_figure(f"{name} prior", "milliseconds", "amplitude", 160)
            src = ColumnDataSource({"t": [], "y": []})
            fig.line("t", "y", source=src, color=PALETTE[k % len(PALETTE)])
            self._figs.append(fig)
            self._srcs.append(src)
        self._draw()

    @param.depends("sample", "zoom_ms", watch=True)
    def _draw(self) -> None:
        sr = int(self.r.sample_rate)
        n = max(2, int(self.zoom_ms * sr / 1000))
        for k, (src, player) in enumerate(zip(self._srcs, self.players, strict=True)):
            x = self.r.samples[self.sample, k]
            src.data = {"t": (np.arange(min(n, len(x))) * 1000 / sr).tolist(), "y": x[:n].tolist()}
            player.object = playable(x)

    def __panel__(self) -> pn.viewable.Viewable:
        cells = [pn.Column(pn.pane.Bokeh(f, sizing_mode="stretch_width"), p, sizing_mode="stretch_width")
                 for f, p in zip(self._figs, self.players, strict=True)]  # fmt: skip
        return pn.Column(
            pn.pane.Markdown(_provenance(self.study) + f" Drawn at sigma {self.r.sigma:g}."),
            pn.Row(
                pn.widgets.IntSlider.from_param(self.param.sample, name="Draw"),
                pn.widgets.FloatInput.from_param(self.param.zoom_ms, name="Milliseconds drawn"),
            ),
            pn.GridBox(*cells, ncols=2, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


class DenoiseView(pn.viewable.Viewer):
    """One denoising step per noise level: SI-SDR curves per source (noisy input, these priors, the exact toy
    prior), a table and a sentence at the chosen sigma, a zoomed waveform and players for clip 0."""

    sigma = param.Selector(doc="Noise level of the table, the waveforms and the players.")
    zoom_ms = param.Number(default=20.0, bounds=(1.0, 1000.0), doc="Milliseconds of waveform drawn.")

    def __init__(self, study: StudyRecord, **params) -> None:
        r: DenoiseResult = study.results
        self.study, self.r = study, r
        self.has_exact = r.has_exact
        self.param.sigma.objects = list(r.sigmas)
        if r.has_exact:  # the toy: nearest to 1, where separation assigns pitches
            params.setdefault("sigma", min(r.sigmas, key=lambda s: abs(np.log(s))))
        else:  # music: where the noisy input scores nearest 0 dB (at sigma 1 a stem is buried in the noise)
            noisy = r.noisy.mean(dim=(1, 2))
            params.setdefault("sigma", r.sigmas[int(noisy.abs().argmin())])
        super().__init__(**params)
        sr = int(r.sample_rate)
        names = r.sources
        self._curve_figs, self._marks, self._wave_figs, self._wave_srcs, self.players = [], [], [], [], []
        for k, name in enumerate(names):
            fig = new_figure(f"{name}: SI-SDR after one denoising step", "noise level sigma", "SI-SDR (dB)", 330,
                             x_axis_type="log")  # fmt: skip
            x = list(r.sigmas)
            curves = [("noisy input", r.noisy, "#888888", "dotted"),
                      ("these priors", r.denoised, PALETTE[k % len(PALETTE)], "solid")]  # fmt: skip
            if self.has_exact:
                curves.append(("exact toy prior (quadrature reference)", r.exact, "black", "dashed"))
            for label, values, color, dash in curves:
                src = ColumnDataSource({"x": x, "y": values[:, k].mean(dim=-1).tolist()})
                fig.line("x", "y", source=src, color=color, line_width=2, line_dash=dash, legend_label=label)
                fig.scatter("x", "y", source=src, color=color, size=5)
            fig.legend.orientation = "horizontal"
            fig.add_layout(fig.legend[0], "below")  # under the plot, never over the curves
            mark = Span(location=self.sigma, dimension="height", line_color="#444444", line_dash="dotdash")
            fig.add_layout(mark)
            self._curve_figs.append(fig)
            self._marks.append(mark)
            wave = new_figure(f"{name}: clip 0", "milliseconds", "amplitude", 250)
            src = ColumnDataSource({"t": [], "clean": [], "est": [], "exact": []})
            wave.line("t", "clean", source=src, color="#bbbbbb", line_width=4, legend_label="clean")
            wave.line("t", "est", source=src, color=PALETTE[k % len(PALETTE)], line_width=2,
                      legend_label="these priors")  # fmt: skip
            if self.has_exact:
                wave.line("t", "exact", source=src, color="black", line_dash="dashed", legend_label="exact prior")
            wave.legend.orientation = "horizontal"
            wave.add_layout(wave.legend[0], "below")
            self._wave_figs.append(wave)
            self._wave_srcs.append(src)
            kinds = ("clean", "noisy", "these priors", *(("exact prior",) if self.has_exact else ()))
            self.players.append({kind: pn.pane.Audio(None, sample_rate=sr, name=kind) for kind in kinds})
        self._summary = pn.pane.Markdown("", sizing_mode="stretch_width")
        self._table = pn.pane.DataFrame(None, sizing_mode="stretch_width")
        self._interference = pn.pane.DataFrame(None, sizing_mode="stretch_width")
        self._draw()

    def index(self) -> int:
        return self.r.sigmas.index(self.sigma)

    def table(self):
        """Mean SI-SDR (dB) at the chosen sigma: one row per source (and the mean), one column per estimate."""
        import pandas as pd

        i = self.index()
        cols = {"noisy input": self.r.noisy[i], "these priors": self.r.denoised[i]}
        if self.has_exact:
            cols["exact prior"] = self.r.exact[i]
        means = {name: v.mean(dim=-1) for name, v in cols.items()}
        frame = pd.DataFrame({name: [*v.tolist(), float(v.mean())] for name, v in means.items()},
                             index=[*self.r.sources, "mean"])  # fmt: skip
        if self.has_exact:
            frame["gap to exact"] = frame["exact prior"] - frame["these priors"]
        return frame.round(1)

    def interference_table(self):
        """Mean SI-SDR (dB) of each prior's denoised own clip with another source's clip added, at the chosen
        sigma: rows the prior (its own source), columns the source added; "these / exact" where both exist."""
        import pandas as pd

        if self.r.interfered is None:
            return None
        i, names = self.index(), self.r.sources
        mine = self.r.interfered[i].nanmean(dim=-1)
        ref = self.r.exact_interfered[i].nanmean(dim=-1) if self.r.exact_interfered is not None else None
        rows = []
        for k in range(len(names)):
            cells = []
            for j in range(len(names)):
                if j == k:
                    cells.append("")
                elif ref is None:
                    cells.append(f"{float(mine[k, j]):.1f}")
                else:
                    cells.append(f"{float(mine[k, j]):.1f} / {float(ref[k, j]):.1f}")
            rows.append(cells)
        return pd.DataFrame(rows, index=[f"{n} prior" for n in names], columns=[f"+ {n}" for n in names])

    def summary(self) -> str:
        """What the numbers at the chosen sigma say, in a sentence."""
        t = self.table().loc["mean"]
        head = (f"**At sigma {self.sigma:g}** the noisy input scores {t['noisy input']:.1f} dB; one denoising "
                f"step of these priors gives {t['these priors']:.1f} dB")  # fmt: skip
        if not self.has_exact:
            return head + " (no exact reference: it exists for the toy data only)."
        gain, best = t["these priors"] - t["noisy input"], t["exact prior"] - t["noisy input"]
        verdict = (
            "they make the clips worse" if gain < 0
            else f"they recover {100 * gain / best:.0f} % of what the exact prior gains" if best > 0.1
            else "the exact prior gains nothing here either"
        )  # fmt: skip
        return (head + f", the exact toy prior {t['exact prior']:.1f} dB: {verdict}. Separation assigns pitches "
                "at sigma 1 to 30, where the gap matters most.")  # fmt: skip

    @param.depends("sigma", "zoom_ms", watch=True)
    def _draw(self) -> None:
        i, r = self.index(), self.r
        sr = int(r.sample_rate)
        n = max(2, int(self.zoom_ms * sr / 1000))
        t = (np.arange(min(n, r.clean.shape[-1])) * 1000 / sr).tolist()
        for k in range(len(r.sources)):
            self._marks[k].location = self.sigma
            clean = r.clean[k].float()
            noisy = clean + self.sigma * r.noise[k].float()
            est = r.audio[i, k].float()
            exact = r.exact_audio[i, k].float() if self.has_exact else torch.full_like(clean, float("nan"))
            self._wave_srcs[k].data = {"t": t, "clean": clean[:n].tolist(), "est": est[:n].tolist(),
                                       "exact": exact[:n].tolist()}  # fmt: skip
            self._wave_figs[
                k
            ].title.text = f"{r.sources[k]}: clip 0, first {self.zoom_ms:g} ms, sigma {self.sigma:g}"
            players = self.players[k]
            players["clean"].object = playable(clean)
            players["noisy"].object = playable(noisy)
            players["these priors"].object = playable(est)
            if self.has_exact:
                players["exact prior"].object = playable(exact)
        self._table.object = self.table()
        self._summary.object = self.summary()
        self._interference.object = self.interference_table()

    def __panel__(self) -> pn.viewable.Viewable:
        cells = []
        for k, name in enumerate(self.r.sources):
            listen = pn.GridBox(*[pn.Column(pn.pane.Markdown(f"**{kind}**", margin=(0, 10)), player)
                                  for kind, player in self.players[k].items()], ncols=2)  # fmt: skip
            cells.append(pn.Column(f"#### {name}", pn.pane.Bokeh(self._curve_figs[k], sizing_mode="stretch_width"),
                                   pn.pane.Bokeh(self._wave_figs[k], sizing_mode="stretch_width"), listen,
                                   sizing_mode="stretch_width"))  # fmt: skip
        reference = (" Dashed: the exact toy prior, the posterior mean of the true toy distribution computed by "
                     "quadrature over key, phase and amplitude. It is a ceiling only as far as its phase grid is "
                     "fine: at small sigma, where the posterior over the phase is narrower than a grid cell, a "
                     "prior that searches the phase more finely can score higher (the wave priors do on sine and "
                     "triangle below sigma 0.03)." if self.has_exact else "")  # fmt: skip
        what = (
            "; these priors / the exact prior): a prior that takes a foreign source's sound scores near 0 dB or "
            "below here. The exact prior does so only where the added clip's fundamental is itself a likely clip "
            "of this prior (a sine prior takes a square's fundamental); a prior"
            if self.has_exact
            else "): a prior that takes a foreign source's sound scores near 0 dB or below here, and far below "
            "its own solo figure in the table above; a prior"
        )
        interference = (
            "**With another source added** (each prior's own clip plus another source's clip plus noise, SI-SDR "
            f"of its denoised clip against its own{what} that scores near 0 dB everywhere passes whatever it is "
            "given, and a separation sweep cannot explain a source away with it. Denoising a solo clip cannot "
            "show this."
        )
        return pn.Column(
            pn.pane.Markdown(
                _provenance(self.study) + " Each clip plus noise of level sigma is replaced by each prior's "
                "posterior mean of it (Tweedie: x + sigma^2 * score); higher SI-SDR is better. Dotted: the noisy "
                "input itself." + reference + " The waveforms leave the noisy input out (at large sigma it would "
                "hide the rest): listen to it instead."
            ),
            pn.Row(
                pn.widgets.Select.from_param(self.param.sigma, name="Noise level sigma"),
                pn.widgets.FloatInput.from_param(self.param.zoom_ms, name="Milliseconds drawn"),
            ),
            self._summary,
            self._table,
            pn.pane.Markdown(interference),
            self._interference,
            pn.GridBox(*cells, ncols=2, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


_RANGES: dict[tuple[int, float], tuple[object, dict[str, heldout.HeldoutRange] | None]] = {}


def heldout_ranges_of(priors, sigma: float) -> dict[str, heldout.HeldoutRange] | None:
    """:func:`sepmodels.heldout.heldout_ranges` of ``priors`` at ``sigma``, computed once per process (the
    priors are shared by every session), or None for priors of other sources than the toy's. The cache holds
    the priors themselves, so their ``id`` cannot be reused by others while the entry lives."""
    key = (id(priors), float(sigma))
    if key not in _RANGES:
        try:
            _RANGES[key] = (priors, heldout.heldout_ranges(priors, sigma))
        except ValueError:
            _RANGES[key] = (priors, None)
    return _RANGES[key][1]


class ClipView(pn.viewable.Viewer):
    """Your clip: which parts does each prior find unlikely? Waveform, likelihood strip, the prior that finds each
    moment most likely, playhead.

    Priors of the toy sources offer toy clips; priors of other sources (the stems priors) offer ``examples``, a
    function returning ``{name: sources [N, T]}`` (a song's clips with their stems, see
    :func:`explorer.music_view.example_clips`), whose mix or any one stem can be scored.
    """

    toy_source = param.Selector(default=toy.SOURCES[0], objects=[*toy.SOURCES, "mix"], doc="Toy clip to score.")
    example = param.Selector(default=None, objects=[], doc="A song's clip to score (priors of music stems).")
    part = param.Selector(default="mix", objects=["mix"], doc="The clip's mix, or one of its stems alone.")
    seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the toy clip.")
    seconds = param.Number(default=1.0, bounds=(0.1, 10.0), doc="Length of the toy clip.")
    sigma = param.Number(default=0.01, bounds=(1e-4, 2.0), doc="Noise level the priors score at.")
    playhead = param.Number(default=0.0, doc="Seconds: where playback is (follows the player).")
    message = param.String(default="", doc="The last notice or error (read-only).")
    showing = param.String(default="", doc="Which clip is shown: the toy clip or the upload (read-only).")

    def __init__(self, priors: PriorSet, examples: Callable[[], dict[str, torch.Tensor]] | None = None,
                 **params) -> None:  # fmt: skip
        params.setdefault("sigma", priors.default_sigma)
        super().__init__(**params)
        self.priors = priors
        self.toy = tuple(priors.names) == tuple(toy.SOURCES)
        self.examples: dict[str, torch.Tensor] = {} if self.toy or examples is None else dict(examples())
        self.param.example.objects = list(self.examples)
        self.param.part.objects = ["mix", *priors.names]
        self.label = ""
        self.audio = torch.zeros(0)
        self.loglik: torch.Tensor | None = None
        self.player = pn.pane.Audio(None, sample_rate=priors.sample_rate, name="clip")
        self.player.param.watch(lambda e: setattr(self, "playhead", float(e.new or 0.0)), "time")
        self.upload = pn.widgets.FileInput(accept=".wav,.flac,.ogg,.aiff,.aif", multiple=False)
        self.upload.param.watch(self._on_upload, "value")
        self._wave_src = ColumnDataSource({"t": [], "lo": [], "hi": []})
        self._wave = new_figure("Clip", "seconds", "amplitude", 160)
        self._wave.varea("t", "lo", "hi", source=self._wave_src, color="#555555")
        names = list(priors.names)
        self._strip_src = ColumnDataSource({"image": [], "x": [], "dw": []})
        self._mapper = LinearColorMapper(palette=Viridis256, low=-5, high=3)
        self._strip = new_figure("Log-likelihood under each prior", "seconds", "prior", 60 + 40 * len(names),
                                 y_range=list(reversed(names)), x_range=self._wave.x_range)  # fmt: skip
        self._strip.image(image="image", x="x", y=0, dw="dw", dh=len(names), source=self._strip_src,
                          color_mapper=self._mapper)  # fmt: skip
        self._strip.add_layout(ColorBar(color_mapper=self._mapper, title="nats/sample"), "right")
        self._heads = [Span(location=0, dimension="height", line_color="#ff7f0e", line_width=2) for _ in range(2)]
        self._wave.add_layout(self._heads[0])
        self._strip.add_layout(self._heads[1])
        self._best_srcs = {n: ColumnDataSource({"left": [], "right": []}) for n in names}
        self._best = new_figure("The prior that finds each moment most likely", "seconds", "", 170,
                                x_range=self._wave.x_range, y_range=Range1d(0, 1))  # fmt: skip
        for k, name in enumerate(names):
            self._best.quad(left="left", right="right", bottom=0, top=1, source=self._best_srcs[name],
                            color=PALETTE[k % len(PALETTE)], legend_label=name)  # fmt: skip
        self._best.yaxis.visible = False
        self._best.legend.orientation = "horizontal"
        self._best.add_layout(self._best.legend[0], "below")
        self._heads.append(Span(location=0, dimension="height", line_color="#ff7f0e", line_width=2))
        self._best.add_layout(self._heads[-1])
        self._means = pn.pane.Markdown()
        if self.toy:
            self._toy_clip()
        elif self.examples:
            self.example = next(iter(self.examples))  # the watcher scores its mix
        else:
            self.showing = "**Showing:** nothing yet: upload a song's clip (no example clips here)"

    @param.depends("example", "part", watch=True)
    def _example_clip(self) -> None:
        if self.toy or self.example is None:
            return
        stems = self.examples[self.example]
        x = stems.sum(0) if self.part == "mix" else stems[list(self.priors.names).index(self.part)]
        self.set_clip(x, f"{self.example}: {'the mix' if self.part == 'mix' else f'the {self.part} stem alone'}")

    @param.depends("toy_source", "seed", "seconds", watch=True)
    def _toy_clip(self) -> None:
        if not self.toy:
            return
        length = max(1, int(self.seconds * self.priors.sample_rate))
        clips = toy.toy_batch(1, length, torch.Generator().manual_seed(self.seed), self.priors.sample_rate)[0]
        x = mixing.mix(clips) if self.toy_source == "mix" else clips[toy.SOURCES.index(self.toy_source)]
        self.set_clip(x, f"toy {self.toy_source}, seed {self.seed}")

    def _on_upload(self, event) -> None:
        if not event.new:
            return
        name = self.upload.filename or "upload"
        try:
            audio = load_audio_bytes(event.new, name, self.priors.sample_rate)
        except AudioError as err:
            self.message = f"upload refused: {err}"
            return
        self.set_clip(audio.samples, name)
        self.message = "; ".join(audio.notes) or f"loaded {name}"

    def set_clip(self, x: torch.Tensor, label: str) -> None:
        self.audio, self.label = x.float(), label
        seconds = x.shape[-1] / self.priors.sample_rate
        example = label.startswith("toy ") or (not self.toy and label.startswith(f"{self.example}: "))
        self.showing = f"**Showing:** {label} ({seconds:.2f} s)" + (
            "" if example else f"; the {'toy' if self.toy else 'clip'} settings below apply when changed"
        )
        self.player.object = playable(x)
        self.playhead = 0.0
        self._score()

    @param.depends("sigma", watch=True)
    def _score(self) -> None:
        sr = self.priors.sample_rate
        if self.audio.numel() == 0:
            return
        self._wave_src.data = wave_data(self.audio, sr)
        self._wave.title.text = self.label
        if not self.priors.has_likelihood:
            self.loglik = None
            self._strip_src.data = {"image": [], "x": [], "dw": []}
            for src in self._best_srcs.values():
                src.data = {"left": [], "right": []}
            self._means.object = "Score priors give no likelihood: load flow priors to see the strips."
            return
        self.loglik = self.priors.cross_log_prob(self.audio[None], self.sigma)[0]  # [priors, T]
        T = self.loglik.shape[1]
        bins = min(_STRIP_BINS, T)
        binned = F.adaptive_avg_pool1d(self.loglik[None].double(), bins)[0].numpy()  # [priors, bins]
        lo, hi = np.quantile(binned, 0.05), binned.max()
        self._mapper.low, self._mapper.high = float(lo), float(max(hi, lo + 1e-6))
        self._strip_src.data = {"image": [binned[::-1].copy()], "x": [0.0], "dw": [T / sr]}
        edges = np.linspace(0, T / sr, bins + 1)
        names = list(self.priors.names)
        winner = binned.argmax(0)
        for k, name in enumerate(names):
            self._best_srcs[name].data = {"left": edges[:-1][winner == k], "right": edges[1:][winner == k]}
        shares = np.bincount(winner, minlength=len(names)) / bins
        means = self.loglik.mean(dim=1)
        best = int(means.argmax())
        text = "Mean nats/sample: " + ", ".join(
            f"**{n} {float(v):.3f}**" if k == best else f"{n} {float(v):.3f}"
            for k, (n, v) in enumerate(zip(self.priors.names, means, strict=True))
        )
        text += (
            "  \nMost likely over time: "
            + ", ".join(f"{n} {100 * float(v):.0f} %" for n, v in zip(names, shares, strict=True) if v > 0)
            + " of the clip (each moment's prior of highest mean log-likelihood, on the strip's bins)."
        )
        ranges = heldout_ranges_of(self.priors, self.sigma)
        if ranges is not None:
            gains = heldout.gain(self.loglik, self.audio[None].expand(len(self.priors), -1), self.sigma)
            scores = {n: float(v) for n, v in zip(self.priors.names, gains, strict=True)}
            off = heldout.outside(scores, ranges)
            text += (
                "  \nGain over a Gaussian of the clip's own loudness, against each prior's range on "
                f"{min(r.clips for r in ranges.values())} held-out clips of its own source: "
                + ", ".join(
                    f"{n} {v:.2f} ({'**outside**' if n in off else 'within'} {ranges[n].describe()})"
                    for n, v in scores.items()
                )
                + f".  \n**{heldout.verdict(scores, ranges)}**"
            )
        self._means.object = text

    @param.depends("playhead", watch=True)
    def _move_playhead(self) -> None:
        for span in self._heads:
            span.location = self.playhead

    def __panel__(self) -> pn.viewable.Viewable:
        if self.toy:
            pick = ["#### A toy clip", pn.widgets.Select.from_param(self.param.toy_source, name="Source"),
                    pn.widgets.IntInput.from_param(self.param.seed, name="Seed"),
                    pn.widgets.FloatInput.from_param(self.param.seconds, name="Seconds")]  # fmt: skip
        elif self.examples:
            pick = ["#### A song's clip", pn.widgets.Select.from_param(self.param.example, name="Clip"),
                    pn.widgets.Select.from_param(self.param.part, name="The mix or one stem")]  # fmt: skip
        else:
            pick = []
        controls = pn.Column(
            pn.pane.Markdown(self.param.showing, sizing_mode="stretch_width"),
            *pick,
            "#### Or your own (WAV, FLAC, OGG; up to 10 s)",
            self.upload,
            pn.widgets.FloatInput.from_param(self.param.sigma, name="Sigma (noise level)"),
            pn.pane.Markdown(self.param.message, sizing_mode="stretch_width"),  # wraps within the column
            width=300,
        )
        return pn.Row(
            controls,
            pn.Column(
                self.player,
                pn.pane.Bokeh(self._wave, sizing_mode="stretch_width"),
                pn.pane.Bokeh(self._strip, sizing_mode="stretch_width"),
                pn.pane.Bokeh(self._best, height=self._best.height, sizing_mode="stretch_width"),
                self._means,
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )


class PriorsExplorer(pn.viewable.Viewer):
    """The whole app: one tab per study (or a note saying how to make it) and "Your clip".

    Each tab's view is built the first time the tab opens (:meth:`view`), so the page paints at once and a
    view costs its time only when someone looks at it; while it is built, the tab shows a loading spinner.
    """

    TABS: ClassVar[dict[str, str]] = {
        "Cross-likelihood": "cross",
        "Noise conditioning": "noise",
        "Probes": "probes",
        "Samples": "samples",
        "Denoising": "denoise",
        "Your clip": "clip",
    }

    def __init__(self, priors: PriorSet, studies: dict[str, StudyRecord], problems: list[str] = (),
                 examples: Callable[[], dict[str, torch.Tensor]] | None = None) -> None:  # fmt: skip
        super().__init__()
        self.priors, self.studies, self.examples = priors, studies, examples
        self._views: dict[str, pn.viewable.Viewable] = {}
        self.problems = list(problems)
        mismatch = [n for n, s in studies.items() if list(s.priors["sources"]) != list(priors.names)]
        if mismatch:
            self.problems.append(f"results of {', '.join(mismatch)} are for other sources than the loaded priors")

    @property
    def built(self) -> tuple[str, ...]:
        """The views built so far, in the order they were opened."""
        return tuple(self._views)

    def view(self, name: str) -> pn.viewable.Viewable:
        """The view of study ``name`` (or ``clip``), built on first use; a note when its results are missing."""
        if name not in self._views:
            builders = {
                "cross": lambda r: CrossView(self.priors, r),
                "noise": NoiseView,
                "probes": ProbeView,
                "samples": SamplesView,
                "denoise": DenoiseView,
            }
            if name == "clip":
                self._views[name] = ClipView(self.priors, self.examples)
            elif name not in builders:
                raise KeyError(f"no view {name!r}; choose one of {', '.join(self.TABS.values())}")
            else:
                self._views[name] = builders[name](self.studies[name]) if name in self.studies else _missing(name)
        return self._views[name]

    def __panel__(self) -> pn.viewable.Viewable:
        slots = [pn.Column(sizing_mode="stretch_width", min_height=400) for _ in self.TABS]
        tabs = pn.Tabs(*zip(self.TABS, slots, strict=True), dynamic=False, sizing_mode="stretch_width")
        names = list(self.TABS.values())

        def fill(index: int) -> None:
            slot = slots[index]
            if not slot.objects:
                busy(slot, lambda: setattr(slot, "objects", [self.view(names[index])]))

        tabs.param.watch(lambda event: fill(event.new), "active")
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            slots[tabs.active].loading = True
            pn.state.onload(lambda: fill(tabs.active))  # served: paint the page first, then the first view
        else:
            fill(tabs.active)
        notes = [pn.pane.Alert(p, alert_type="warning") for p in self.problems]
        return pn.Column(*notes, tabs, sizing_mode="stretch_width")


__all__ = [
    "ClipView",
    "CrossView",
    "DenoiseView",
    "NoiseView",
    "PriorsExplorer",
    "ProbeView",
    "SamplesView",
    "load_studies",
]
