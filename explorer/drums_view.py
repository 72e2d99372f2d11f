"""The drum machine as one app: a class, an XY pad over its latent space, a sound on every move.

:class:`DrumPad` (a :class:`panel.viewable.Viewer` driven by params, so tests need no browser) shows:

- **the pad**: the chosen class's training codes as a faint scatter in that class's first two principal
  components (in standard deviations), the current point, your uploaded sample's point, and the two ends of
  an interpolation. A click on the pad moves the point there, decodes the code, inverts the spectrogram and
  plays the hit. The x and y sliders, the fine slider (the third component) and the range (how many standard
  deviations the pad spans) do the same.
- **freeze the other dimensions**: off, every principal coordinate past the third is zero (the plane through
  the class's mean, as in the paper); on, they keep the values of the last hit you encoded or drew at random
  ("Draw the rest at random"), so the pad varies *that* sound.
- the hit's waveform and log-mel spectrogram, a player, and the time from the move to the audio being ready
  (decode and inversion apart); the explained variance of the class's principal components.
- a play button per class (the class's mean code), an upload that encodes your own sample (trimmed to its
  onset, peak-normalised, cut to the model's length) and marks where it lands, and an interpolation between
  two points A and B.
"""

from __future__ import annotations

import math

import numpy as np
import panel as pn
import param
import torch
from bokeh.models import ColumnDataSource, HoverTool, LinearColorMapper, Range1d, TapTool
from bokeh.palettes import Magma256

from explorer.audio import load_audio_bytes, new_figure, playable
from sepmodels.data.audio import AudioError
from sepmodels.data.drums import as_hit
from sepmodels.drums.synth import DrumSynth, Hit, PadPoint

_PAD = 420


class DrumPad(pn.viewable.Viewer):
    """The drum machine's view (see the module docstring)."""

    drum = param.Selector(objects=["kick"], doc="the class of sounds")
    x = param.Number(0.0, bounds=(-3, 3), doc="first principal coordinate (standard deviations)")
    y = param.Number(0.0, bounds=(-3, 3), doc="second principal coordinate")
    fine = param.Number(0.0, bounds=(-3, 3), doc="third principal coordinate (the fine slider)")
    span = param.Number(3.0, bounds=(0.5, 6.0), step=0.5, doc="how many standard deviations the pad spans")
    freeze = param.Boolean(False, doc="keep every coordinate past the third at the last encoded or drawn hit's")
    inverter = param.Selector(objects=["griffin-lim"], doc="spectrogram to audio")
    blend = param.Number(0.5, bounds=(0.0, 1.0), step=0.05, doc="interpolation: 0 is A, 1 is B")

    def __init__(self, synth: DrumSynth, **params) -> None:
        self.synth = synth
        names = synth.classes
        self.param.drum.objects = names
        self.param.inverter.objects = synth.inverters
        params.setdefault("drum", names[0])
        params.setdefault("inverter", synth.inverters[0])
        super().__init__(**params)
        self.rest: tuple[float, ...] | None = None  # coordinates past the third when frozen
        self._hold_move = False
        self._heard: Hit | None = None  # a hit already sent to the player, for play() to draw without resending
        self.rest_source = "none yet"
        self.hit: Hit | None = None
        self.ends: dict[str, tuple[int, torch.Tensor] | None] = {"A": None, "B": None}
        self.status = ""
        self._gen = torch.Generator().manual_seed(0)
        self._build()
        self._open_class()

    # -- layout --------------------------------------------------------------------------------------------
    def _build(self) -> None:
        s = self.synth
        self._pad = new_figure("The pad: click to play (principal components 1 and 2)", "PC 1 (std)",
                               "PC 2 (std)", _PAD, x_range=Range1d(-3, 3), y_range=Range1d(-3, 3))  # fmt: skip
        self._pad.tools = [t for t in self._pad.tools if t.__class__.__name__ != "PanTool"]
        self._train_src = ColumnDataSource({"x": [], "y": []})
        self._point_src = ColumnDataSource({"x": [0.0], "y": [0.0]})
        self._upload_src = ColumnDataSource({"x": [], "y": []})
        self._ends_src = ColumnDataSource({"x": [], "y": [], "name": []})
        self._pad.scatter("x", "y", source=self._train_src, size=5, color="#7a7a7a", alpha=0.3,
                          legend_label="training hits")  # fmt: skip
        self._pad.line("x", "y", source=self._ends_src, color="#2b83ba", line_dash="dashed")
        self._pad.text("x", "y", text="name", source=self._ends_src, text_color="#2b83ba", x_offset=6,
                       text_font_style="bold")  # fmt: skip
        self._pad.scatter("x", "y", source=self._ends_src, size=10, color="#2b83ba", legend_label="A and B")
        self._pad.scatter("x", "y", source=self._upload_src, size=16, marker="star", color="#1a9641",
                          legend_label="your sample")  # fmt: skip
        self._pad.scatter("x", "y", source=self._point_src, size=14, color="#d7191c", line_color="black",
                          legend_label="now playing")  # fmt: skip
        self._pad.add_layout(self._pad.legend[0], "below")
        self._pad.legend.orientation = "horizontal"
        self._pad.add_tools(TapTool())
        self._pad.on_event("tap", self._on_tap)
        cfg = s.autoencoder.config.mel
        self._seconds = cfg.length / cfg.sample_rate
        self._wave = new_figure("Waveform", "time (s)", "amplitude", 220, x_range=Range1d(0, self._seconds),
                                y_range=Range1d(-1.05, 1.05))  # fmt: skip
        self._wave_src = ColumnDataSource({"t": [], "a": []})
        self._wave.line("t", "a", source=self._wave_src, color="#333333")
        self._spec = new_figure("Log-mel spectrogram (decoder output), dB below its peak", "time (s)",
                                "mel band", 220, x_range=Range1d(0, self._seconds),
                                y_range=Range1d(0, cfg.n_mels))  # fmt: skip
        self._spec_src = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        self._spec.image("image", x="x", y="y", dw="dw", dh="dh", source=self._spec_src,
                         color_mapper=LinearColorMapper(Magma256, low=-80, high=0))  # fmt: skip
        self._var = new_figure("Explained variance of the class's principal components", "component",
                               "share of variance (%)", 220, x_range=Range1d(0.4, 12.6),
                               y_range=Range1d(0, 5))  # fmt: skip
        self._var_src = ColumnDataSource({"pc": [], "share": [], "colour": []})
        self._var.vbar("pc", top="share", width=0.8, source=self._var_src, color="colour")
        self._var.add_tools(HoverTool(tooltips=[("PC", "@pc"), ("share", "@share{0.0} %")]))
        self._player = pn.pane.Audio(None, sample_rate=s.sample_rate, autoplay=True, name="hit",
                                     sizing_mode="stretch_width")  # fmt: skip
        self._sample_player = pn.pane.Audio(None, sample_rate=s.sample_rate, name="your sample",
                                            sizing_mode="stretch_width")  # fmt: skip
        self._status_md = pn.pane.Markdown(sizing_mode="stretch_width")
        self._var_md = pn.pane.Markdown(sizing_mode="stretch_width")
        self._rest_md = pn.pane.Markdown(sizing_mode="stretch_width")
        self._upload = pn.widgets.FileInput(accept=".wav,.flac,.ogg", multiple=False)
        self._upload.param.watch(self._on_upload, "value")
        self._upload_md = pn.pane.Markdown()
        self._draw_rest = pn.widgets.Button(label="Draw the rest at random")
        self._draw_rest.on_click(lambda _e: self.draw_rest())
        self._set_a = pn.widgets.Button(label="Set A here")
        self._set_b = pn.widgets.Button(label="Set B here")
        self._set_a.on_click(lambda _e: self.set_end("A"))
        self._set_b.on_click(lambda _e: self.set_end("B"))
        self._play_blend = pn.widgets.Button(label="Play the blend", color="primary")
        self._play_blend.on_click(lambda _e: self.play_blend())
        self._class_buttons = []
        for name in s.classes:
            button = pn.widgets.Button(label=f"▶ {name.replace('_', ' ')}", width=110)
            button.on_click(lambda _e, n=name: self.play_class(n))
            self._class_buttons.append(button)

    def __panel__(self) -> pn.viewable.Viewable:
        controls = pn.Param(
            self.param, parameters=["drum", "x", "y", "fine", "span", "freeze", "inverter"],
            widgets={"x": pn.widgets.FloatSlider, "y": pn.widgets.FloatSlider, "fine": pn.widgets.FloatSlider,
                     "span": pn.widgets.FloatSlider, "freeze": {"type": pn.widgets.Checkbox,
                                                                "name": "Freeze the other dimensions"}},
            show_name=False, width=300,
        )  # fmt: skip
        blend = pn.Param(self.param, parameters=["blend"], widgets={"blend": pn.widgets.FloatSlider},
                         show_name=False, width=300)  # fmt: skip
        left = pn.Column(
            controls, self._draw_rest, self._rest_md,
            "**Interpolate** between two points:", pn.Row(self._set_a, self._set_b), blend, self._play_blend,
            "**Encode your own sample** (WAV, FLAC or OGG; the first 0.74 s from its onset):", self._upload,
            self._upload_md, width=320,
        )  # fmt: skip
        right = pn.Column(
            pn.Row(pn.pane.Bokeh(self._pad, width=_PAD + 40),
                   pn.Column(pn.pane.Bokeh(self._var, sizing_mode="stretch_width"), self._var_md,
                             sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            "**Hear each class** (its mean code):", pn.FlexBox(*self._class_buttons),
            # the browser's player rounds a 0.74 s hit's length down to "0:00": the length is said here
            pn.Row(pn.Column(f"**Now playing** (every hit {self._seconds:.2f} s)", self._player,
                             sizing_mode="stretch_width"),
                   pn.Column("**Your sample** (original)", self._sample_player, sizing_mode="stretch_width"),
                   sizing_mode="stretch_width"),
            self._status_md,
            pn.Row(pn.pane.Bokeh(self._wave, sizing_mode="stretch_width"),
                   pn.pane.Bokeh(self._spec, sizing_mode="stretch_width"), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )  # fmt: skip
        return pn.Row(left, right, sizing_mode="stretch_width")

    # -- state ---------------------------------------------------------------------------------------------
    @property
    def label(self) -> int:
        return self.synth.label(self.drum)

    def point(self) -> PadPoint:
        return PadPoint(self.label, self.x, self.y, self.fine, self.rest if self.freeze else None)

    @param.depends("drum", watch=True)
    def _open_class(self) -> None:
        c = self.label
        m = self.synth.latent_map
        coords = m.project(m.codes[m.labels == c], c)
        self._train_src.data = {"x": coords[:, 0].numpy(), "y": coords[:, 1].numpy()}
        share = 100 * m.explained(c).numpy()
        n = min(12, share.size)
        self._var_src.data = {"pc": np.arange(1, n + 1), "share": share[:n],
                              "colour": ["#d7191c"] * min(3, n) + ["#9e9e9e"] * (n - min(3, n))}  # fmt: skip
        self._var.y_range.end = max(5.0, 1.15 * float(share[:n].max()))  # a new Range1d would redraw the figure
        self._var_md.object = (
            f"PC 1 {share[0]:.1f} %, PC 2 {share[1]:.1f} %, PC 3 {share[2]:.1f} % of the variance of "
            f"{self.drum.replace('_', ' ')} codes ({share[:3].sum():.1f} % together; red: the pad and the fine "
            f"slider). A uniform spread over {share.size} dimensions would give {100 / share.size:.1f} % each."
        )
        self._upload_src.data = {"x": [], "y": []}
        self.ends = {"A": None, "B": None}
        self._ends_src.data = {"x": [], "y": [], "name": []}
        self.play()

    @param.depends("span", watch=True)
    def _on_span(self) -> None:
        held = {}
        for name in ("x", "y", "fine"):
            self.param[name].bounds = (-self.span, self.span)
            value = min(max(getattr(self, name), -self.span), self.span)
            if value != getattr(self, name):
                held[name] = value
        self.param.update(**held)  # one batch: the point plays once if it had to move
        self._pad.x_range.start, self._pad.x_range.end = -self.span, self.span
        self._pad.y_range.start, self._pad.y_range.end = -self.span, self.span

    @param.depends("x", "y", "fine", "freeze", "inverter", watch=True)
    def _on_move(self) -> None:
        if not getattr(self, "_hold_move", False):
            self.play()

    def _on_tap(self, event) -> None:
        x = float(np.clip(event.x, -self.span, self.span))
        y = float(np.clip(event.y, -self.span, self.span))
        self.move(x, y)

    def move(self, x: float, y: float, **others) -> None:
        """Move the point (and any other of ``fine``, ``freeze``) and play it once; the sliders follow."""
        changes = {k: v for k, v in dict(x=x, y=y, **others).items() if getattr(self, k) != v}
        if changes:
            self.param.update(**changes)  # one batch of events: _on_move plays once
        else:
            self.play()

    # -- sound ---------------------------------------------------------------------------------------------
    def play(self, hit: Hit | None = None, what: str | None = None) -> Hit:
        """Decode and invert the current pad point (or show ``hit``), draw it and hand it to the player."""
        heard, self._heard = self._heard, None
        if hit is None:
            hit = heard if heard is not None else self.synth.play(self.point(), inverter=self.inverter)
            mean = "'s mean code" if not (self.x or self.y or self.fine or (self.freeze and self.rest)) else ""
            what = (f"{self.drum.replace('_', ' ')}{mean} at PC 1 = {self.x:+.2f}, PC 2 = {self.y:+.2f}, PC 3 = "
                    f"{self.fine:+.2f}; the other {len(hit.code) - 3} coordinates "
                    f"{'frozen at ' + self.rest_source if self.freeze and self.rest else 'at zero'}")  # fmt: skip
            self._point_src.data = {"x": [self.x], "y": [self.y]}
        self.hit = hit
        audio = hit.audio
        t = np.arange(audio.size) / self.synth.sample_rate
        step = max(1, audio.size // 2000)
        sound = playable(audio)
        self._wave_src.data = {"t": t[::step], "a": sound[::step]}
        db = 20 * hit.log_mel.numpy() / math.log(10)
        self._spec_src.data = {"image": [np.maximum(db - db.max(), -80)], "x": [0.0], "y": [0.0],
                               "dw": [self._seconds], "dh": [db.shape[0]]}  # fmt: skip
        if heard is None:  # a hit the player already has is not sent again (it would play twice)
            self._player.object = sound
        iterations = self.synth.griffin_lim_iterations
        name = "MCNN" if hit.inverter == "mcnn" else f"Griffin-Lim ({iterations} iterations)"
        self.status = (f"Playing {what}. Move to audio ready: decode {hit.decode_ms:.1f} ms + {name} "
                       f"{hit.invert_ms:.1f} ms = **{hit.total_ms:.1f} ms** (the target is 50 ms; the browser "
                       "then takes its own time to start the sound).")  # fmt: skip
        self._status_md.object = self.status
        return hit

    def play_class(self, name: str) -> Hit | None:
        """Open class ``name`` at its mean code (every coordinate zero) and play it once: the selector, the pad
        and the variance chart follow the sound. In a served page the sound goes out at once and the views
        follow on the next tick (a button's click arrives without the document's lock, which redrawing the
        class's plots needs); it then returns None."""
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            self._sound_then_open(name)
            return None
        return self._open_at_mean(name)

    def _sound_then_open(self, name: str) -> None:
        """Served: the class's mean hit goes to the player now, and the class's views (selector, pad, variance
        chart, waveform) are drawn on the next tick, so the sound does not wait for the browser to redraw
        them."""
        hit = self.synth.play(PadPoint(self.synth.label(name)), inverter=self.inverter)
        self._player.object = playable(hit.audio)
        self._heard = hit

        def draw() -> None:
            try:
                self._open_at_mean(name)
            finally:
                self._heard = None

        pn.state.execute(draw, schedule=True)

    def _open_at_mean(self, name: str) -> Hit:
        changes = {k: v for k, v in {"drum": name, "x": 0.0, "y": 0.0, "fine": 0.0, "freeze": False}.items()
                   if getattr(self, k) != v}  # fmt: skip
        self._hold_move = "drum" in changes  # opening the class plays the point: moving must not play it again
        try:
            self.param.update(**changes)
        finally:
            self._hold_move = False
        if "drum" not in changes:
            self.play()
        return self.hit

    def draw_rest(self) -> None:
        """Draw every coordinate past the third from N(0, 1) and freeze them."""
        self.rest = self.synth.random_rest(self._gen)
        self.rest_source = "a random draw"
        self._rest_md.object = "The other coordinates are a random draw from the class's Gaussian."
        if self.freeze:
            self.play()
        else:
            self.freeze = True

    def set_end(self, name: str) -> None:
        """Make the current point one end (A or B) of the interpolation."""
        self.ends[name] = (self.label, self.synth.code(self.point()))
        xs, ys, names = [], [], []
        for end, value in self.ends.items():
            if value is not None and value[0] == self.label:
                p = self.synth.coordinates(value[1], self.label)
                xs.append(float(p[0]))
                ys.append(float(p[1]))
                names.append(end)
        self._ends_src.data = {"x": xs, "y": ys, "name": names}

    def play_blend(self) -> Hit | None:
        """Play the code ``(1 - blend) A + blend B`` (both ends must be set, in the same class)."""
        a, b = self.ends["A"], self.ends["B"]
        if a is None or b is None:
            self._status_md.object = (
                "Set both A and B first (move on the pad, then **Set A here** / **Set B here**)."
            )
            return None
        code = (1 - self.blend) * a[1] + self.blend * b[1]
        hit = self.synth.play(code=code, label=a[0], inverter=self.inverter)
        p = self.synth.coordinates(code, self.label)
        self._point_src.data = {"x": [float(p[0])], "y": [float(p[1])]}
        return self.play(hit, f"the blend {1 - self.blend:.2f} A + {self.blend:.2f} B")

    @param.depends("blend", watch=True)
    def _on_blend(self) -> None:
        if self.ends["A"] is not None and self.ends["B"] is not None:
            self.play_blend()

    def encode_sample(self, samples: np.ndarray, name: str) -> None:
        """Encode a clip as a hit of the current class, mark it on the pad and freeze the rest at it."""
        length = self.synth.autoencoder.config.length
        hit = as_hit(samples, length)
        code = self.synth.encode(hit, self.label)
        coords = self.synth.coordinates(code, self.label)
        self._sample_player.object = playable(hit)
        self.rest = tuple(coords.tolist())
        self.rest_source = name
        self._upload_src.data = {"x": [float(coords[0])], "y": [float(coords[1])]}
        span = max(self.span, float(coords[:3].abs().max()))
        if span > self.span:
            self.span = min(6.0, math.ceil(span * 2) / 2)
        self._upload_md.object = (
            f"**{name}** as a {self.drum.replace('_', ' ')} lands at PC 1 = {coords[0]:+.2f}, PC 2 = "
            f"{coords[1]:+.2f}, PC 3 = {coords[2]:+.2f} (standard deviations of the class's training codes); "
            "its other coordinates are frozen, so the pad now varies it."
        )  # fmt: skip
        self._rest_md.object = f"The other coordinates are {name}'s."
        x, y, fine = (min(max(float(v), -self.span), self.span) for v in coords[:3])
        self.move(x, y, fine=fine, freeze=True)

    def _on_upload(self, event) -> None:
        if not event.new:
            return
        name = self._upload.filename or "upload"
        try:
            audio = load_audio_bytes(event.new, name, self.synth.sample_rate)
            self.encode_sample(np.asarray(audio.samples).reshape(-1), name)
        except (AudioError, ValueError) as err:
            self._upload_md.object = f"**Not loaded:** {err}"


__all__ = ["DrumPad"]
