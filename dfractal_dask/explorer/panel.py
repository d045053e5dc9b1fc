"""The explorer's bokeh page: a figure and controls that draw an
:class:`~dfractal_dask.explorer.session.ExplorerSession` and drive it.

In the manner of distributed's dashboard components: :class:`ExplorerPanel`
holds ``root`` (the bokeh layout) and :meth:`ExplorerPanel.update` (a frame
handler).  It subscribes to the session, whose ``dispatch`` runs the handlers
where the document may be changed (``doc.add_next_tick_callback`` in a bokeh
server); it holds no threads or locks of its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import replace
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import numpy as np
from bokeh.events import Event, RangesUpdate
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Range1d
from bokeh.models.widgets import Button, Div, Select, Spinner, TextInput  # (bokeh.models exports them unseen by mypy)
from bokeh.plotting import figure

from ..fractals import FAMILIES, MAX_POWER, Fractal
from ..palettes import SEED_PALETTES
from ..view import View, exact, parse_coordinate, parse_span
from .session import ExplorerSession, same_view

__all__ = ["PALETTE_CHOICES", "ExplorerPanel"]

PALETTE_CHOICES = (*SEED_PALETTES, "Viridis256", "Inferno256", "Magma256", "Turbo256", "Greys256")


def _whole(n):
    """A spinner's number: ``600.0`` is the iteration limit 600; anything else is checked as sent."""
    return int(n) if isinstance(n, float) and n.is_integer() else n


def _to_bokeh(rgba: np.ndarray) -> np.ndarray:
    """``(h, w, 4)`` uint8, row 0 at the top -> bokeh's packed uint32, row 0 at the bottom."""
    return np.ascontiguousarray(rgba[::-1]).view(np.uint32).reshape(rgba.shape[:2])


def _when(changed: Callable[[Any], bool], act: Callable[[Any], object]) -> Callable[[str, Any, Any], None]:
    """A control's ``on_change`` callback: ``act(new)`` if ``changed(new)``."""

    def callback(attr: str, old: Any, new: Any) -> None:
        if changed(new):
            act(new)

    return callback


def _options(names: Iterable[str]) -> list[str | tuple[Any, str]]:
    """A Select's options: its values, shown as they are."""
    return list(names)


class _Axes:
    """The plot's coordinates: the complex plane itself for views float64
    resolves; for a deep view, offsets from an *anchor* (an exact centre) in
    units of about the span, so the page's float64 ranges hold the view
    whatever its depth (1e-30, 1e-1000).  Re-anchored when a view needs it."""

    def __init__(self) -> None:
        self.anchor = (Decimal(0), Decimal(0))
        self.unit = Decimal(1)

    @property
    def plane(self) -> bool:
        """Whether plot coordinates are the complex plane's."""
        return self.unit == 1 and self.anchor == (Decimal(0), Decimal(0))

    def fit(self, v: View) -> bool:
        """Re-anchor for ``v`` if its span or offset would not suit the axes; whether it did."""
        if not v.deep:
            if self.plane:
                return False
            self.anchor, self.unit = (Decimal(0), Decimal(0)), Decimal(1)
            return True
        span = exact(v.span)
        off = max(abs(v.centre[0] - self.anchor[0]), abs(v.centre[1] - self.anchor[1]))
        if not self.plane and Decimal("1e-3") < span / self.unit < Decimal(1000) and off < 100 * self.unit:
            return False
        self.anchor, self.unit = v.centre, span
        return True

    def of(self, v: View) -> tuple[float, float, float]:
        """``v``'s centre and step in plot coordinates."""
        if self.plane:
            return float(v.xpos), float(v.ypos), v.step
        (x, y), (ax, ay) = v.centre, self.anchor
        unit = Fraction(self.unit)
        return float((x - ax) / self.unit), float((y - ay) / self.unit), float(v.step_exact / unit)

    def extent(self, v: View) -> tuple[float, float, float]:
        """``v``'s centre and span in plot coordinates."""
        if self.plane:
            return float(v.xpos), float(v.ypos), v.span
        cx, cy, step = self.of(v)
        return cx, cy, step * max(v.sample_width - 1, 1)

    def view(self, v: View, x: float, y: float, span: float) -> View:
        """``v`` moved to the plot's centre ``(x, y)`` and width ``span``."""
        if self.plane:
            return replace(v, xpos=x, ypos=y, span=span)
        ax, ay = self.anchor
        dx, dy, ds = (Decimal(repr(float(t))) * self.unit for t in (x, y, span))
        with localcontext() as ctx:  # the sums exactly (the default 28 digits would round the anchor)
            ctx.prec = len(str(ax)) + len(str(ay)) + 50
            cx, cy = ax + dx, ay + dy
        return replace(v, xpos=parse_coordinate("x", cx), ypos=parse_coordinate("y", cy),
                       span=parse_span("span", ds))  # fmt: skip


class ExplorerPanel:
    """The figure, controls and status line of ``session``: ``root`` is the layout.

    Subscribes to the session's frames, status lines and settings; the page's
    controls, wheel and box zoom and buttons call the session.
    """

    def __init__(self, session: ExplorerSession) -> None:
        self.session = s = session
        v = s.view
        self.axes = _Axes()
        self.axes.fit(v)
        cx, cy, span = self.axes.extent(v)
        half_w, half_h = span / 2, 0.5 * span * v.height / v.width
        self.source = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        self.x_range = Range1d(start=cx - half_w, end=cx + half_w)
        self.y_range = Range1d(start=cy - half_h, end=cy + half_h)
        fig = figure(
            frame_width=v.width,  # the plot area is the frame: one rendered pixel per screen pixel
            frame_height=v.height,
            x_range=self.x_range,
            y_range=self.y_range,
            match_aspect=True,
            tools="wheel_zoom,box_zoom,pan,reset",
            active_scroll="wheel_zoom",
            min_border=0,
            name="fractal",
            title="dfractal explorer",
            toolbar_location="above",
        )
        fig.image_rgba(image="image", x="x", y="y", dw="dw", dh="dh", source=self.source)
        fig.on_event(RangesUpdate, self._on_ranges)
        self.figure = fig
        # the status line echoes names, paths and messages a user typed: shown as text, never as HTML (or TeX)
        self.status = Div(text="starting…", name="status", width=v.width, render_as_text=True, disable_math=True)
        self.palette_select = Select(title="palette", value=str(s.palette), options=_options(PALETTE_CHOICES),
                                     name="palette")  # fmt: skip
        if self.palette_select.value not in PALETTE_CHOICES:
            self.palette_select.options = [self.palette_select.value, *PALETTE_CHOICES]
        self.mode_select = Select(title="colouring", value=s.mode, options=_options(s.modes), name="mode")
        self.iters_spinner = Spinner(title="max iterations", value=s.iters, low=1, high=1_000_000, step=100,
                                     name="iters")  # fmt: skip
        f = s.fractal
        self.fractal_select = Select(title="fractal", value=f.family, options=_options(FAMILIES))
        self.julia_c_input = TextInput(title="julia c", value=str(f.c if f.c is not None else Fractal("julia").c))
        self.power_spinner = Spinner(title="multibrot power", value=f.power if f.family == "multibrot" else 3,
                                     low=2, high=MAX_POWER, step=1)  # fmt: skip
        self.fractal_select.on_change("value", _when(lambda n: n != s.fractal.family, lambda n: self._on_fractal()))
        self.julia_c_input.on_change(
            "value", _when(lambda n: s.fractal.family == "julia", lambda n: self._on_fractal())
        )
        self.power_spinner.on_change("value", _when(lambda n: s.fractal.family == "multibrot",
                                                    lambda n: self._on_fractal()))  # fmt: skip
        self.save_name = TextInput(title="save as (name)", value="explore", name="save_name")
        self.save_button = Button(label="Save full resolution", button_type="primary", name="save")
        self.reset_button = Button(label="Reset view")
        # a control set from Python (see sync_controls) echoes back the current value: nothing to do
        self.palette_select.on_change("value", _when(lambda n: n != s.palette, lambda n: self._control(
            "palette", s.set_coloring, palette=n)))  # fmt: skip
        self.mode_select.on_change("value", _when(lambda n: n != s.mode, lambda n: self._control(
            "colouring", s.set_coloring, mode=n)))  # fmt: skip
        self.iters_spinner.on_change("value", _when(lambda n: n != s.iters, lambda n: self._control(
            "max iterations", s.set_iters, _whole(n))))  # fmt: skip
        self.save_button.on_click(self._on_save)
        self.reset_button.on_click(self._on_reset)
        controls = row(
            self.palette_select, self.mode_select, self.iters_spinner, self.save_name, self.save_button,
            self.reset_button,
        )  # fmt: skip
        family = row(self.fractal_select, self.julia_c_input, self.power_spinner)
        self.root = column(fig, controls, family, self.status)
        s.on_frame(self.update)
        s.on_status(self.set_status)
        s.on_settings(self.sync_controls)

    # -- drawing the session -------------------------------------------------------
    def update(self, record: dict[str, Any], rgba: np.ndarray) -> None:
        """Draw a frame of the session (``record`` as its ``frames`` hold them) on its view's extent."""
        v = record["view"]
        self.axes.fit(v)
        if self.axes.plane:
            step = v.step
            x0, y_top = v.re0 - step / 2, v.im0 + step / 2
        else:
            cx, cy, step = self.axes.of(v)
            x0, y_top = cx - v.width * step / 2, cy + v.height * step / 2
        dw, dh = v.width * step, v.height * step
        self.source.data = {"image": [_to_bokeh(rgba)], "x": [x0], "y": [y_top - dh], "dw": [dw], "dh": [dh]}
        self._frame_ranges(v)

    def set_status(self, text: str) -> None:
        """Show ``text`` in the status line (as text)."""
        self.status.text = text

    def sync_controls(self) -> None:
        """Show the session's settings (e.g. made from Python) in the page's controls."""
        s = self.session
        if s.palette not in self.palette_select.options:
            self.palette_select.options = [s.palette, *self.palette_select.options]
        self.palette_select.value = s.palette
        self.mode_select.value = s.mode
        self.iters_spinner.value = s.iters
        self.fractal_select.value = s.fractal.family
        if s.fractal.c is not None:
            self.julia_c_input.value = str(s.fractal.c)
        if s.fractal.family == "multibrot":
            self.power_spinner.value = s.fractal.power

    def _frame_ranges(self, v: View) -> None:
        """Move the axes onto ``v`` (a view set from Python: zoom, goto, reset).
        After a mouse zoom they are there already; the echo of this change
        names the current view, so it renders nothing (see ``_on_ranges``)."""
        self.axes.fit(v)
        cx, cy, span = self.axes.extent(v)
        half_h = 0.5 * span * v.height / v.width
        for rng, lo, hi in ((self.x_range, cx - span / 2, cx + span / 2),
                            (self.y_range, cy - half_h, cy + half_h)):  # fmt: skip
            start, end = rng.start, rng.end  # numbers (set here, or by the page: a JSON number)
            if not (isinstance(start, int | float) and isinstance(end, int | float)
                    and math.isclose(start, lo, rel_tol=0, abs_tol=1e-9 * span)
                    and math.isclose(end, hi, rel_tol=0, abs_tol=1e-9 * span)):  # fmt: skip
                rng.update(start=lo, end=hi)

    # -- the page's events ---------------------------------------------------------
    def _control(self, what: str, change: Callable[..., int], *args, **kwargs) -> None:
        """A control of the page changed: apply it, or say in the status line why
        not (a page can send any value) and show the settings in use again."""
        try:
            change(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            self.set_status(f"{what} not changed: {exc}")
            self.sync_controls()

    def _on_fractal(self) -> None:
        """The page's fractal controls changed: render what they say, or say why not."""
        family = self.fractal_select.value
        try:
            c = Fractal.parse_c(self.julia_c_input.value) if family == "julia" else None
            power = self.power_spinner.value if family == "multibrot" else 2
            if power is None:  # an emptied spinner
                raise TypeError("multibrot power must be a number, got None")
            fractal = Fractal(family, int(power), c)
        except (TypeError, ValueError) as exc:
            self.set_status(f"cannot render: {exc}")
            return
        if fractal != self.session.fractal:
            self.session.set_fractal(fractal)

    def _on_reset(self, *_) -> None:
        self.session.goto(self.session.home)

    def _on_save(self, *_) -> None:
        try:
            self.session.save(self.save_name.value)
        except (ValueError, OSError) as exc:  # a bad name, an existing file, an unusable folder: said in the page
            self.set_status(f"not saved: {exc}")

    def _on_ranges(self, event: Event) -> None:
        assert isinstance(event, RangesUpdate)  # (subscribed to that one class)
        x0, x1, y0, y1 = event.x0, event.x1, event.y0, event.y1
        if x0 is None or x1 is None or y0 is None or y1 is None:
            return
        s = self.session
        w, h = s.view.width, s.view.height
        span = max(x1 - x0, (y1 - y0) * w / h)  # cover the whole frame
        try:
            view = self.axes.view(s.view, (x0 + x1) / 2, (y0 + y1) / 2, span)
        except ValueError as exc:  # e.g. zoomed past float64
            self.set_status(f"cannot render this view: {exc}")
            return
        if not same_view(view, s.view):
            s.goto(view)
