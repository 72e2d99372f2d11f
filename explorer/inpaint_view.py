"""Spectrogram inpainting with a VQ-VAE, as one app: see a note's codemap, draw a box on it, resample, hear.

:class:`InpaintExplorer` (a :class:`panel.viewable.Viewer` driven by params, so tests need no browser) has
three tabs:

- **Inpaint**: the note's spectrogram beside its codemap (one coloured cell per code, aligned in time and
  frequency), the VQ-VAE's reconstruction and the edited note with the box outlined on every view, and three
  players (original, reconstruction, edited). A box drawn on the codemap (box-select) or set with the two
  range sliders picks the cells; the edit resamples them from a codemap prior at a temperature, copies
  another note's codes there, or erases them to the silence code; the paper's channel ablation keeps one
  latent channel. The time each stage took is shown under the players.
- **Codebook**: how often each code occurs over the training notes and in this note, with the perplexity.
- **Training**: the training log of the VQ-VAE: loss, codebook health, and the energy and CO2 as it ran.

Notes to pick come from ``SEPMODELS_NOTES`` (a ``make-notes`` folder: its test split), else a few rendered
on the spot by FluidSynth when it is installed, else synthetic harmonic tones (said so in their names).
"""

from __future__ import annotations

import math
import os
import random
from functools import lru_cache
from pathlib import Path

import numpy as np
import panel as pn
import param
import torch
from bokeh.models import (
    BoxSelectTool,
    ColorBar,
    ColumnDataSource,
    HoverTool,
    LinearAxis,
    LinearColorMapper,
    Range1d,
)
from bokeh.palettes import Magma256, Turbo256

from explorer.audio import load_audio_bytes, new_figure, playable
from explorer.priors_view import busy
from sepmodels.data.audio import AudioError
from sepmodels.inpaint.codes import box_mask
from sepmodels.inpaint.inpainter import Inpainter, codemaps_of
from sepmodels.train import read_log

EDITS = ("resample from a prior", "replace with another note's codes", "erase to silence")
PHASES = ("Griffin-Lim (fast, 16 iterations)", "the original's phase")
_SPEC_HEIGHT = 260


@lru_cache(maxsize=2)
def load_inpainter(codec: str | None = None, codes: str | None = None) -> Inpainter:
    """The VQ-VAE and codemap priors, loaded once per process (read-only, shared by sessions)."""
    return Inpainter.load(codec, codes)


def inpainter_from_env() -> Inpainter:
    """``SEPMODELS_CODEC`` and ``SEPMODELS_CODES`` (files), else the shipped ones."""
    return load_inpainter(os.environ.get("SEPMODELS_CODEC") or None, os.environ.get("SEPMODELS_CODES") or None)


def _synthetic_notes(rate: int) -> dict[str, torch.Tensor]:
    t = torch.arange(4 * rate) / rate
    hold = (t < 3.0).float() + (t >= 3.0).float() * torch.exp(-(t - 3.0) * 8)
    notes = {}
    for name, midi, tilt, attack in (("synthetic tone, C4, bright", 60, 0.7, 0.01),
                                     ("synthetic tone, G3, soft", 55, 1.6, 0.15),
                                     ("synthetic tone, E5, plucked", 76, 1.0, 0.002)):  # fmt: skip
        f0 = 440 * 2 ** ((midi - 69) / 12)
        env = torch.clamp(t / attack, max=1.0) * hold * (torch.exp(-t * 2) if "plucked" in name else 1.0)
        partials = [k**-tilt * torch.sin(2 * math.pi * k * f0 * t) for k in range(1, 16) if k * f0 < rate / 2]
        notes[name] = 0.3 * env * sum(partials) / len(partials) ** 0.5
    return notes


@lru_cache(maxsize=1)
def example_notes(rate: int = 16_000) -> dict[str, torch.Tensor]:
    """Notes to pick, ``{name: [T]}`` (see the module docstring for where they come from)."""
    folder = os.environ.get("SEPMODELS_NOTES")
    if folder:
        from sepmodels.data.notes import NotesData

        data = NotesData(folder, "test")
        by_family: dict[str, int] = {}
        for i, name in enumerate(data.names):
            by_family.setdefault(name.split("-")[0], i)  # the first note of every instrument
        return {data.names[i]: data.note(i) for i in list(by_family.values())[:12]}
    try:
        from sepmodels.data.notes import render_notes
        from sepmodels.data.stems import find_soundfont, fluidsynth_path

        fluidsynth_path()
        font = find_soundfont()
        import tempfile

        picks = (("piano", 0, 60), ("vibraphone", 11, 67), ("church organ", 19, 48), ("nylon guitar", 24, 55),
                 ("violin", 40, 72), ("trumpet", 56, 64), ("flute", 73, 77), ("square lead", 80, 57))  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:  # one FluidSynth call for all of them
            clips = render_notes([(program, pitch, 100) for _, program, pitch in picks], font, Path(tmp))
        notes = {f"{label} (GM {program}), MIDI {pitch}, rendered by FluidSynth": torch.from_numpy(clip).float()
                 for (label, program, pitch), clip in zip(picks, clips, strict=True)}  # fmt: skip
        return notes
    except Exception:  # no FluidSynth or soundfont here: tones made in Python, named as such
        return _synthetic_notes(rate)


def _legend_below(fig) -> None:
    """Legends go under the plot, never over the curves."""
    fig.legend.orientation = "horizontal"
    fig.add_layout(fig.legend[0], "below")


def _code_palette(K: int) -> list[str]:
    """One colour per code, shuffled so that neighbouring code numbers do not look alike."""
    colours = [Turbo256[int(i * 255 / max(K - 1, 1))] for i in range(K)]
    random.Random(0).shuffle(colours)
    return colours


def read_training_log(path: str | os.PathLike[str] | None) -> dict[str, np.ndarray]:
    """:func:`sepmodels.train.read_log` of ``path``, or nothing where there is no such file."""
    if path is None or not Path(path).is_file():
        return {}
    return read_log(path)


def default_log_path() -> Path:
    from sepmodels.inpaint.vqvae import default_codec_path

    return default_codec_path().with_name("notes_vqvae_log.csv")


class InpaintExplorer(pn.viewable.Viewer):
    """See the module docstring. Arguments: ``inpainter``; ``notes`` ``{name: [T]}``; ``log`` (a training
    log's columns, :func:`read_training_log`)."""

    note = param.Selector(doc="The note to edit.")
    edit = param.Selector(default=EDITS[0], objects=list(EDITS), doc="What happens inside the box.")
    prior = param.Selector(doc="The codemap prior that resamples the box.")
    temperature = param.Number(default=0.5, bounds=(0.0, 3.0), step=0.05, doc="0: the most probable code.")
    seed = param.Integer(default=0, bounds=(0, None), doc="Seed of the draw.")
    other = param.Selector(doc="Whose codes fill the box (replace).")
    channel = param.Selector(default="all", doc="Decode with all latent channels, or keep only one (ablation).")
    phase = param.Selector(default=PHASES[0], objects=list(PHASES), doc="How the edited spectrogram is heard.")
    rows = param.Range(default=(8, 24), label="Box: codemap rows (frequency)", doc="Half-open, from the bottom.")
    columns = param.Range(default=(8, 20), label="Box: codemap columns (time)", doc="Half-open, from the start.")
    status = param.String(default="", doc="What the last edit did and how long each stage took (read-only).")

    def __init__(self, inpainter: Inpainter, notes: dict[str, torch.Tensor],
                 log: dict[str, np.ndarray] | None = None, **params) -> None:  # fmt: skip
        super().__init__(**params)
        self.ip, self.notes, self.log = inpainter, dict(notes), log or {}
        if not self.notes:
            raise ValueError("no notes to show")
        cfg = inpainter.model.config
        self.K, self.D = cfg.codebook_size, cfg.code_dim
        self.palette = _code_palette(self.K)
        names = list(self.notes)
        self.param.note.objects, self.param.other.objects = names, names
        self.param.prior.objects = inpainter.prior_names
        self.param.channel.objects = ["all", *range(self.D)]
        self._build()
        # opening the first note (a watcher of `note`) analyses it and applies the default edit
        with param.discard_events(self):
            self.param.update(other=names[min(1, len(names) - 1)], prior=inpainter.prior_names[0])
        self.note = names[0]

    # -- layout -------------------------------------------------------------------------------------------
    def _spectrogram_figure(self, title: str, x_range=None, y_range=None):
        fig = new_figure(title, "seconds", "Hz", _SPEC_HEIGHT, x_range=x_range, y_range=y_range)
        src = ColumnDataSource({"image": [np.zeros((2, 2))], "x": [0.0], "y": [0.0], "dw": [1.0], "dh": [1.0]})
        mapper = LinearColorMapper(palette=Magma256, low=-80, high=0)
        fig.image("image", x="x", y="y", dw="dw", dh="dh", source=src, color_mapper=mapper)
        fig.add_layout(ColorBar(color_mapper=mapper, width=8, title="dB"), "right")
        box = ColumnDataSource({"left": [], "right": [], "bottom": [], "top": []})
        fig.quad("left", "right", "bottom", "top", source=box, fill_alpha=0, line_color="#00e5ff", line_width=2)
        return fig, src, box

    def _build(self) -> None:
        seconds = 4.0
        nyquist = self.ip.sample_rate / 2
        # shared by every view, so a zoom on one zooms all; never panned off the note
        self._x, self._y = Range1d(0, seconds, bounds="auto"), Range1d(0, nyquist, bounds="auto")
        self._orig_fig, self._orig_src, self._orig_box = self._spectrogram_figure("Original, dB", self._x, self._y)
        self._recon_fig, self._recon_src, self._recon_box = self._spectrogram_figure(
            "VQ-VAE reconstruction (codes unchanged), dB", self._x, self._y)  # fmt: skip
        self._edit_fig, self._edit_src, self._edit_box = self._spectrogram_figure(
            "Edited: the box's codes changed, dB", self._x, self._y)  # fmt: skip
        code = new_figure("Codemap: one cell per code (drag a box to select)", "seconds", "Hz", _SPEC_HEIGHT,
                          x_range=self._x, y_range=self._y)  # fmt: skip
        code.tools = [t for t in code.tools if t.__class__.__name__ != "PanTool"]  # a drag draws the box
        self._cells = ColumnDataSource({"x": [], "y": [], "w": [], "h": [], "code": [], "colour": []})
        cells = code.rect("x", "y", "w", "h", source=self._cells, fill_color="colour", line_color=None)
        cells.selection_glyph = None
        cells.nonselection_glyph = None
        select = BoxSelectTool()
        code.add_tools(select, HoverTool(tooltips=[("code", "@code"), ("at", "@x{0.00} s, @y{0} Hz")]))
        code.toolbar.active_drag = select  # a drag draws the box
        self._code_box = ColumnDataSource({"left": [], "right": [], "bottom": [], "top": []})
        code.quad("left", "right", "bottom", "top", source=self._code_box, fill_alpha=0, line_color="white",
                  line_width=2.5)  # fmt: skip
        self._cells.selected.on_change("indices", self._on_select)
        self._code_fig = code
        self._players = {
            name: pn.pane.Audio(None, sample_rate=self.ip.sample_rate, name=name, sizing_mode="stretch_width")
            for name in ("original", "reconstruction", "edited")
        }
        self._note_md = pn.pane.Markdown(sizing_mode="stretch_width")
        self._status_md = pn.pane.Markdown(sizing_mode="stretch_width")
        self._upload = pn.widgets.FileInput(accept=".wav,.flac,.ogg", multiple=False)
        self._upload.param.watch(self._on_upload, "value")
        self._upload_msg = pn.pane.Markdown()
        self._apply = pn.widgets.Button(label="Apply the edit", color="primary")
        self._apply.on_click(lambda _e: self.press_apply())
        self._edit_panel = pn.Column(
            pn.Row(pn.pane.Bokeh(self._recon_fig, sizing_mode="stretch_width"),
                   pn.pane.Bokeh(self._edit_fig, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            pn.Row(*[pn.Column(f"**{n}**", p, sizing_mode="stretch_width") for n, p in self._players.items()],
                   sizing_mode="stretch_width"),
            self._status_md, sizing_mode="stretch_width",
        )  # fmt: skip
        self._codebook_fig, self._codebook_src = self._codebook_view()

    def _codebook_view(self):
        fig = new_figure("Code usage, codes ranked by their use over the training notes", "rank", "share of cells",
                         300, y_axis_type="log")  # fmt: skip
        usage = self.ip.codes.usage.double()
        order = torch.argsort(usage, descending=True)
        share = (usage[order] / usage.sum()).numpy()
        rank = np.arange(self.K)
        fig.vbar(rank[share > 0], top=share[share > 0], width=0.9, bottom=1e-6, color="#9e9e9e",
                 legend_label="training notes")  # fmt: skip
        src = ColumnDataSource({"rank": [], "share": []})
        fig.scatter("rank", "share", source=src, color="#d62728", size=5, legend_label="this note")
        _legend_below(fig)
        self._order = order
        return fig, src

    def _training_view(self) -> pn.viewable.Viewable:
        log = self.log
        if not log or "step" not in log:
            return pn.pane.Markdown("No training log was found beside the VQ-VAE (`notes_vqvae_log.csv`).")
        step = log["step"]
        loss = new_figure("Training loss (standardised log-spectrogram error + commitment)", "step", "loss", 260)
        loss.line(step, log["loss"], color="#1f77b4")
        health = new_figure("Codebook health", "step", "codes", 260)
        if "codes_used" in log:
            health.line(step, log["codes_used"], color="#2ca02c", legend_label="codes used in the batch")
            health.line(step, log["perplexity"], color="#9467bd", legend_label="perplexity of the batch")
            _legend_below(health)
        plots = [loss, health]
        if "energy_kwh" in log:
            minutes = log["seconds"] / 60
            energy = new_figure("Energy drawn so far", "minutes of training", "Wh", 260)
            energy.line(minutes, 1000 * log["energy_kwh"], color="#ff7f0e", legend_label="energy (Wh)")
            energy.extra_y_ranges = {"power": Range1d(0, float(np.nanmax(log["power_w"])) * 1.1 + 1e-9)}
            energy.add_layout(LinearAxis(y_range_name="power", axis_label="W"), "right")
            energy.line(minutes, log["power_w"], y_range_name="power", color="#bbbbbb", legend_label="power (W)")
            _legend_below(energy)
            co2 = new_figure("CO2e so far", "minutes of training", "g CO2e", 260)
            co2.line(
                minutes, 1000 * log["co2_kg"], color="#8c564b", legend_label="CodeCarbon (the grid's intensity)"
            )
            co2.line(minutes, 1000 * log["co2_paper_kg"], color="#e377c2", line_dash="dashed",
                     legend_label="the paper's formula (0.477 kg/kWh x PUE 1.58)")  # fmt: skip
            _legend_below(co2)
            plots += [energy, co2]
        meta = self.ip.codec.meta.get("energy", {})
        words = ""
        if meta:
            wh, minutes = 1000 * meta["energy_kwh"], meta["seconds"] / 60
            grams, paper = 1000 * meta["co2_kg"], 1000 * meta["co2_paper_kg"]
            words = (
                f"This VQ-VAE's training drew **{wh:.1f} Wh** in {minutes:.1f} minutes: **{grams:.2f} g CO2e** by "
                f"CodeCarbon, **{paper:.2f} g** by the paper's formula. Measured by: {meta['method']}."
            )
        grid = pn.GridBox(*[pn.pane.Bokeh(p, sizing_mode="stretch_width") for p in plots], ncols=2,
                          sizing_mode="stretch_width")  # fmt: skip
        return pn.Column(pn.pane.Markdown(words), grid, sizing_mode="stretch_width")

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Param(
            self.param, parameters=["note", "edit", "prior", "temperature", "seed", "other", "channel", "phase",
                                    "rows", "columns"],
            widgets={"temperature": pn.widgets.FloatSlider, "rows": pn.widgets.IntRangeSlider,
                     "columns": pn.widgets.IntRangeSlider}, show_name=False, width=300,
        )  # fmt: skip
        inpaint = pn.Row(
            pn.Column(controls, self._apply, "Upload a clip (WAV, FLAC or OGG, up to 10 s):", self._upload,
                      self._upload_msg, width=320),
            pn.Column(
                self._note_md,
                pn.Row(pn.pane.Bokeh(self._orig_fig, sizing_mode="stretch_width"),
                       pn.pane.Bokeh(self._code_fig, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
                self._edit_panel, sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )  # fmt: skip
        perplexity = self.ip.codes.perplexity
        used = int((self.ip.codes.usage > 0).sum())
        codebook = pn.Column(
            pn.pane.Markdown(
                f"Over the training notes the codemaps use **{used} of {self.K} codes**, with a perplexity of "
                f"**{perplexity:.1f}** (the number of equally used codes that would carry as much information). "
                "Red dots: the codes of the note open in the Inpaint tab."
            ),
            pn.pane.Bokeh(self._codebook_fig, sizing_mode="stretch_width"), sizing_mode="stretch_width",
        )  # fmt: skip
        return pn.Tabs(("Inpaint", inpaint), ("Codebook", codebook), ("Training", self._training_view()),
                       sizing_mode="stretch_width")  # fmt: skip

    # -- state --------------------------------------------------------------------------------------------
    @param.depends("note", watch=True)
    def _open_note(self) -> None:
        audio = self.notes[self.note]
        self.analysis = self.ip.analyse(audio)
        h, w = self.analysis.codes.shape
        self.param.rows.bounds, self.param.columns.bounds = (0, h), (0, w)
        self.rows = (min(self.rows[0], h - 1), min(max(self.rows[1], self.rows[0] + 1), h))
        self.columns = (min(self.columns[0], w - 1), min(max(self.columns[1], self.columns[0] + 1), w))
        seconds = audio.shape[-1] / self.ip.sample_rate
        self._x.end = seconds
        self._show(self._orig_src, self.analysis.log_mag)
        self._show(self._recon_src, self.analysis.recon)
        self._draw_codes(self.analysis.codes)
        self._players["original"].object = playable(audio)
        recon_audio = self.ip.listen(self.analysis.recon, audio.shape[-1])
        self._players["reconstruction"].object = playable(recon_audio)
        self._note_md.object = (f"**{self.note}**: {seconds:.1f} s at {self.ip.sample_rate} Hz, a codemap of "
                                f"{h} rows x {w} columns (each code {self.ip.row_hz(1):.0f} Hz by "
                                f"{1000 * self.ip.column_seconds(1):.0f} ms).")  # fmt: skip
        used = torch.bincount(self.analysis.codes.flatten(), minlength=self.K).double()
        share = (used[self._order] / used.sum()).numpy()
        rank = np.arange(self.K)
        self._codebook_src.data = {"rank": rank[share > 0], "share": share[share > 0]}
        self.apply()

    def _show(self, src: ColumnDataSource, log_mag: torch.Tensor) -> None:
        db = 20 * log_mag / math.log(10)
        db = (db - db.max()).clamp_min(-80).numpy()
        seconds = (log_mag.shape[-1] - 1) * self.ip.model.config.hop / self.ip.sample_rate
        src.data = {"image": [db], "x": [0.0], "y": [0.0], "dw": [seconds], "dh": [self.ip.sample_rate / 2]}

    def _draw_codes(self, codes: torch.Tensor) -> None:
        h, w = codes.shape
        rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        dt, df = self.ip.column_seconds(1), self.ip.row_hz(1)
        flat = codes.flatten().numpy()
        self._cells.data = {
            "x": (cols.flatten() + 0.5) * dt, "y": (rows.flatten() + 0.5) * df, "w": np.full(h * w, dt),
            "h": np.full(h * w, df), "code": flat, "colour": [self.palette[c] for c in flat],
            "row": rows.flatten(), "col": cols.flatten(),
        }  # fmt: skip

    @param.depends("rows", "columns", watch=True)
    def _draw_box(self) -> None:
        dt, df = self.ip.column_seconds(1), self.ip.row_hz(1)
        box = {"left": [self.columns[0] * dt], "right": [self.columns[1] * dt], "bottom": [self.rows[0] * df],
               "top": [self.rows[1] * df]}  # fmt: skip
        for src in (self._orig_box, self._recon_box, self._edit_box, self._code_box):
            src.data = box

    def _on_select(self, _attr, _old, new) -> None:
        if not new:
            return
        data = self._cells.data
        rows = [int(data["row"][i]) for i in new]
        cols = [int(data["col"][i]) for i in new]
        self.param.update(rows=(min(rows), max(rows) + 1), columns=(min(cols), max(cols) + 1))
        self._cells.selected.indices = []
        busy(self._edit_panel, self.apply)

    def mask(self) -> torch.Tensor:
        return box_mask(tuple(self.analysis.codes.shape), tuple(self.rows), tuple(self.columns))

    def edited_codes(self) -> torch.Tensor:
        """The open note's codemap with the current edit applied inside the box."""
        codes, mask = self.analysis.codes, self.mask()
        if self.edit == EDITS[0]:
            return self.ip.inpaint(codes, mask, self.prior, self.temperature, self.seed)
        if self.edit == EDITS[1]:
            other = codemaps_of(self.ip.codec, self.notes[self.other][None])[0]  # its codes only, no decoding
            return self.ip.replace(codes, other, mask)
        return self.ip.erase(codes, mask)

    def press_apply(self) -> None:
        """The Apply button: a resampling edit draws anew (the next seed, which the Seed field shows; the seed
        shown at load reproduces the edit already on screen), the other edits are applied again."""
        if self.edit == EDITS[0]:
            self.seed += 1  # the settings watcher applies it
        else:
            busy(self._edit_panel, self.apply)

    def apply(self) -> None:
        """Edit the box, decode, draw and make the edited note playable; says how long each stage took."""
        self.ip.timings.clear()
        codes = self.edited_codes()
        keep = None if self.channel == "all" else [int(self.channel)]
        frames = self.analysis.log_mag.shape[-1]
        log_mag = self.ip.decode(codes, frames, keep)
        audio = self.notes[self.note]
        phase_of = audio if self.phase == PHASES[1] else None
        edited = self.ip.listen(log_mag, audio.shape[-1], phase_of)
        self.edited_audio, self.edited_log_mag, self.edited = edited, log_mag, codes
        self._show(self._edit_src, log_mag)
        self._draw_box()
        self._players["edited"].object = playable(edited)
        changed = int((codes != self.analysis.codes).sum())
        t = self.ip.timings
        stages = [f"{name} {t[name]:.0f} ms" for name in ("resample", "decode", "audio") if name in t]
        total = sum(t.values())
        how = self.edit if self.edit != EDITS[0] else (f"{self.prior} at temperature {self.temperature:g}, "
                                                        f"draw seed {self.seed}")  # fmt: skip
        self.status = (f"{changed} of {int(self.mask().sum())} codes in the box changed ({how}"
                       f"{'' if keep is None else f', latent channel {keep[0]} only'}). Time: "
                       f"{' + '.join(stages)} = **{total:.0f} ms**.")  # fmt: skip
        self._status_md.object = self.status

    @param.depends("edit", "prior", "temperature", "seed", "other", "channel", "phase", watch=True)
    def _on_settings(self) -> None:
        busy(self._edit_panel, self.apply)

    def _on_upload(self, event) -> None:
        if not event.new:
            return
        name = self._upload.filename or "upload"
        try:
            audio = load_audio_bytes(event.new, name, self.ip.sample_rate)
        except AudioError as err:
            self._upload_msg.object = f"**Not loaded:** {err}"
            return
        self.notes[name] = torch.as_tensor(audio.samples, dtype=torch.float32)
        self.param.note.objects = list(self.notes)
        self.param.other.objects = list(self.notes)
        self._upload_msg.object = f"Loaded {name} ({audio.seconds:.1f} s)." + "".join(f" {n}" for n in audio.notes)
        self.note = name


__all__ = ["EDITS", "PHASES", "InpaintExplorer", "example_notes", "inpainter_from_env", "read_training_log"]
