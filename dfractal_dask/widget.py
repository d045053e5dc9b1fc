"""The zoom explorer: a bokeh figure of a view that re-renders on the Dask
cluster as you zoom and pan.

Each new view is rendered twice, coarse first (a quarter of the resolution, one
task) and then at screen resolution (row blocks over the cluster), each block
coloured on the worker that computed it so only RGBA comes back.  A newer view
cancels the futures of an older one on the cluster, and a frame made stale on
its way is dropped.

The same :class:`Explorer` runs in two places:

* JupyterLab: :meth:`Explorer.widget` is an ipywidget (``jupyter_bokeh``), so
  it needs no port of its own;
* a browser: ``dfractal explore`` serves it with a bokeh server bound to
  127.0.0.1 (:func:`serve`).
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import dask
import numpy as np
from distributed import CancelledError, Client, Future

from . import graph, kernels
from .colorize import BLOCK_MODES, colorize, colour_samples
from .fractals import FAMILIES, MAX_POWER, Fractal
from .location import Location, as_location
from .palettes import SEED_PALETTES, resolve_palette
from .png import save_png
from .view import View

__all__ = ["EXPLORER_MODES", "Explorer", "frame_tasks", "serve"]

#: Colour modes the explorer offers (histogram equalisation needs the whole frame).
EXPLORER_MODES = BLOCK_MODES
PALETTE_CHOICES = (*SEED_PALETTES, "Viridis256", "Inferno256", "Magma256", "Turbo256", "Greys256")
COARSE = 4  # the coarse pass: 1/COARSE of the resolution along each axis
FULL_BLOCKS = 8  # row blocks of a full frame: both workers busy, tasks still ~10-100 ms
#: the longest name a save writes beside its store: the PNG while it is written (see ``png.save_png``)
_LONGEST_SUFFIX = ".png.part"


def _colour_block(result: tuple, iters: int, palette, mode: str, step: int, power: int = 2) -> np.ndarray:
    it, norm, _ = result
    return colour_samples(it, norm, iters, palette, mode, step, power=power)


def frame_tasks(
    view: View,
    iters: int,
    palette,
    mode: str = "smooth",
    step: int = 6000,
    blocks: int = 1,
    fractal: Fractal | None = None,
) -> list:
    """Delayed RGBA row blocks of ``view`` (no supersampling: one sample a pixel).

    Each block is a kernel call followed, on the same worker, by its colouring.
    Concatenated top to bottom they make the ``(height, width, 4)`` frame.
    Smooth colouring paints the whole interior one colour, so there the kernel
    skips the main cardioid and period-2 bulb (``kernels.INTERIOR``: the same
    counts, no interior norms).  ``fractal``: the family (default Mandelbrot).
    """
    _check_mode(mode)
    fractal = graph.check_fractal(fractal)
    shortcuts = kernels.INTERIOR if mode == "smooth" else kernels.CYCLES
    pal = resolve_palette(palette)
    view = replace(view, supersample=1)
    rows = max(1, math.ceil(view.height / blocks))
    rid = uuid.uuid4().hex
    colour = dask.delayed(_colour_block, pure=True)
    return [
        colour(task, iters, pal, mode, step, fractal.power, dask_key_name=f"explore-colour-{rid}-{b.index}")
        for b, task in graph.block_tasks(view, iters, rows, rid, shortcuts=shortcuts, fractal=fractal)
    ]


def _check_mode(mode: str) -> None:
    if mode not in EXPLORER_MODES:
        raise ValueError(f"unknown explorer mode {mode!r} (modes: {', '.join(EXPLORER_MODES)})")


def _check_args(client, view, iters, palette, mode) -> View:
    """Check the explorer's arguments; the first view, one sample a pixel."""
    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    view = View(-0.5, 0.0, 3.0, 800, 600, 1) if view is None else view
    if not isinstance(view, View):
        raise TypeError(f"view must be a View, got {type(view).__name__}")
    view = replace(view, supersample=1)
    graph.check_iters(iters)
    resolve_palette(palette)
    _check_mode(mode)
    return view


def _whole(n):
    """A spinner's number: ``600.0`` is the iteration limit 600; anything else is checked as sent."""
    return int(n) if isinstance(n, float) and n.is_integer() else n


def _to_bokeh(rgba: np.ndarray) -> np.ndarray:
    """``(h, w, 4)`` uint8, row 0 at the top -> bokeh's packed uint32, row 0 at the bottom."""
    return np.ascontiguousarray(rgba[::-1]).view(np.uint32).reshape(rgba.shape[:2])


class Explorer:
    """An interactive view of a fractal, rendered on a Dask cluster.

    Parameters
    ----------
    client
        The Dask client to render on.
    view
        The first view; its ``width``/``height`` are the frame size in pixels
        (``supersample`` is ignored: frames are one sample a pixel).
    iters
        Iteration limit (a control in the page).
    palette, mode, step
        Colouring (see :func:`dfractal_dask.colorize`); ``mode`` is ``smooth``
        or ``seed``.
    dispatch
        How to run a change of the bokeh document from another thread:
        ``doc.add_next_tick_callback`` in a bokeh server; ``None`` (direct,
        under a lock) in Jupyter, where ipywidgets may be updated from threads.
    save_dir
        Where the Save button writes ``<name>.zarr`` and ``<name>.png``: a
        folder, or a URL fsspec opens (``s3://bucket/saves``; a
        :class:`dfractal_dask.location.Location` to give storage options).
    fractal
        The family (:class:`dfractal_dask.fractals.Fractal`; default Mandelbrot),
        a control in the page too (with Julia's ``c`` and Multibrot's power).
    """

    def __init__(
        self,
        client: Client,
        view: View | None = None,
        iters: int = 500,
        palette: str = "Hippi",
        mode: str = "smooth",
        step: int = 6000,
        *,
        dispatch: Callable[[Callable[[], None]], Any] | None = None,
        save_dir: str | Path | Location = ".",
        fractal: Fractal | None = None,
    ) -> None:
        view = _check_args(client, view, iters, palette, mode)
        self.fractal = graph.check_fractal(fractal)
        self.client = client
        self.home = self.view = view
        self.iters, self.palette, self.mode, self.step = int(iters), palette, mode, step
        self.save_dir = as_location(save_dir, name="save_dir")
        self._lock = threading.RLock()
        self._dispatch = dispatch or self._direct
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="dfractal-explorer")  # frames in order
        self._saver = ThreadPoolExecutor(1, thread_name_prefix="dfractal-save")
        self._gen = 0
        self._pending: list[Future] = []
        self._arrived = threading.Condition()
        #: every frame that arrived: generation, level, view, fractal, seconds, shown
        self.frames: list[dict[str, Any]] = []
        #: futures of stale views cancelled on the cluster before they finished
        self.cancelled = 0
        self.last_frame: np.ndarray | None = None
        self._build()
        self.goto(self.view)

    # -- the bokeh document --------------------------------------------------
    def _build(self) -> None:
        from bokeh.events import RangesUpdate
        from bokeh.layouts import column, row
        from bokeh.models import Button, ColumnDataSource, Div, Select, Spinner, TextInput
        from bokeh.plotting import figure

        v = self.view
        half_h = 0.5 * v.span * v.height / v.width
        self.source = ColumnDataSource({"image": [], "x": [], "y": [], "dw": [], "dh": []})
        fig = figure(
            frame_width=v.width,  # the plot area is the frame: one rendered pixel per screen pixel
            frame_height=v.height,
            x_range=(v.xpos - v.span / 2, v.xpos + v.span / 2),
            y_range=(v.ypos - half_h, v.ypos + half_h),
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
        self.palette_select = Select(title="palette", value=str(self.palette), options=list(PALETTE_CHOICES),
                                     name="palette")  # fmt: skip
        if self.palette_select.value not in PALETTE_CHOICES:
            self.palette_select.options = [self.palette_select.value, *PALETTE_CHOICES]
        self.mode_select = Select(title="colouring", value=self.mode, options=list(EXPLORER_MODES), name="mode")
        self.iters_spinner = Spinner(title="max iterations", value=self.iters, low=1, high=1_000_000, step=100,
                                     name="iters")  # fmt: skip
        f = self.fractal
        self.fractal_select = Select(title="fractal", value=f.family, options=list(FAMILIES))
        self.julia_c_input = TextInput(title="julia c", value=str(f.c if f.c is not None else Fractal("julia").c))
        self.power_spinner = Spinner(title="multibrot power", value=f.power if f.family == "multibrot" else 3,
                                     low=2, high=MAX_POWER, step=1)  # fmt: skip
        self.fractal_select.on_change("value", lambda a, o, n: n != self.fractal.family and self._on_fractal())
        self.julia_c_input.on_change("value", lambda a, o, n: self.fractal.family == "julia" and self._on_fractal())
        self.power_spinner.on_change("value", lambda a, o, n: self.fractal.family == "multibrot" and self._on_fractal())
        self.save_name = TextInput(title="save as (name)", value="explore", name="save_name")
        self.save_button = Button(label="Save full resolution", button_type="primary", name="save")
        self.reset_button = Button(label="Reset view")
        # a control set from Python (see _sync_controls) echoes back the current value: nothing to do
        self.palette_select.on_change("value", lambda a, o, n: n != self.palette and self._control(
            "palette", self.set_colouring, palette=n))  # fmt: skip
        self.mode_select.on_change("value", lambda a, o, n: n != self.mode and self._control(
            "colouring", self.set_colouring, mode=n))  # fmt: skip
        self.iters_spinner.on_change("value", lambda a, o, n: n != self.iters and self._control(
            "max iterations", self.set_iters, _whole(n)))  # fmt: skip
        self.save_button.on_click(self._on_save)
        self.reset_button.on_click(lambda *_: self.goto(self.home))
        controls = row(
            self.palette_select, self.mode_select, self.iters_spinner, self.save_name, self.save_button,
            self.reset_button,
        )  # fmt: skip
        family = row(self.fractal_select, self.julia_c_input, self.power_spinner)
        self.layout = column(fig, controls, family, self.status)

    def _control(self, what: str, change: Callable[..., int], *args, **kwargs) -> None:
        """A control of the page changed: apply it, or say in the status line why
        not (a page can send any value) and show the settings in use again."""
        try:
            change(*args, **kwargs)
        except (TypeError, ValueError) as exc:
            self._set_status(f"{what} not changed: {exc}")
            self._sync_controls()

    def _on_fractal(self) -> None:
        """The page's fractal controls changed: render what they say, or say why not."""
        family = self.fractal_select.value
        try:
            c = Fractal.parse_c(self.julia_c_input.value) if family == "julia" else None
            fractal = Fractal(family, int(self.power_spinner.value) if family == "multibrot" else 2, c)
        except (TypeError, ValueError) as exc:
            self._set_status(f"cannot render: {exc}")
            return
        if fractal != self.fractal:
            self.set_fractal(fractal)

    def _on_save(self, *_) -> None:
        try:
            self.save(self.save_name.value)
        except (ValueError, OSError) as exc:  # a bad name, an existing file, an unusable folder: said in the page
            self._set_status(f"not saved: {exc}")

    def widget(self):
        """The explorer as an ipywidget for JupyterLab (``jupyter_bokeh``).

        Loads BokehJS into the page first, from the installed bokeh rather than
        a CDN, so it works offline and behind Binder's proxy.
        """
        from bokeh.io import output_notebook
        from bokeh.resources import INLINE
        from jupyter_bokeh import BokehModel

        output_notebook(INLINE, hide_banner=True)
        return BokehModel(self.layout)

    def _direct(self, fn: Callable[[], None]) -> None:
        with self._lock:
            fn()

    # -- views ---------------------------------------------------------------
    def _on_ranges(self, event) -> None:
        if None in (event.x0, event.x1, event.y0, event.y1):
            return
        w, h = self.view.width, self.view.height
        span = max(event.x1 - event.x0, (event.y1 - event.y0) * w / h)  # cover the whole frame
        try:
            view = replace(self.view, xpos=(event.x0 + event.x1) / 2, ypos=(event.y0 + event.y1) / 2, span=span)
        except ValueError as exc:  # e.g. zoomed past float64
            self._set_status(f"cannot render this view: {exc}")
            return
        if not self._same(view, self.view):
            self.goto(view)

    @staticmethod
    def _same(a: View, b: View) -> bool:
        tol = 1e-9 * b.span
        return abs(a.xpos - b.xpos) <= tol and abs(a.ypos - b.ypos) <= tol and abs(a.span - b.span) <= tol

    def goto(self, view: View) -> int:
        """Render ``view`` (coarse, then full), cancelling older renders.

        Returns the frame generation; :meth:`wait` waits for its frames.  A
        view that cannot be rendered (e.g. a family other than the Mandelbrot
        set past float64's resolution, where only perturbation could) is
        refused in the status line, and the current view stays.
        """
        view = replace(view, supersample=1, width=self.view.width, height=self.view.height)
        with self._lock:
            iters, palette, mode, step, fractal = self.iters, self.palette, self.mode, self.step, self.fractal
        coarse = replace(view, width=max(1, view.width // COARSE), height=max(1, view.height // COARSE))
        try:  # every task is made before anything is cancelled
            levels = [
                (level, v, frame_tasks(v, iters, palette, mode, step, blocks, fractal), prio)
                for level, v, blocks, prio in (("coarse", coarse, 1, 10), ("full", view, FULL_BLOCKS, 0))
            ]
        except ValueError as exc:
            self._set_status(f"cannot render this view: {exc}")
            return self._gen
        with self._lock:
            self._gen += 1
            gen = self._gen
            stale, self._pending = self._pending, []
            self.view = view
        live = [f for f in stale if not f.done()]
        if live:
            self.client.cancel(live)
            with self._lock:
                self.cancelled += len(live)
        t0 = time.perf_counter()
        for level, v, tasks, prio in levels:
            futures = self.client.compute(tasks, priority=prio)
            with self._lock:
                self._pending += futures
            self._pool.submit(self._collect, gen, level, v, fractal, futures, t0)
        return gen

    def zoom(self, factor: float, x: float | None = None, y: float | None = None) -> int:
        """Zoom in by ``factor`` (> 1 in, < 1 out) about ``(x, y)`` (default: the centre)."""
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"zoom factor must be a positive number, got {factor!r}")
        v = self.view
        return self.goto(replace(v, xpos=v.xpos if x is None else x, ypos=v.ypos if y is None else y,
                                 span=v.span / factor))  # fmt: skip

    def set_colouring(self, palette: str | None = None, mode: str | None = None) -> int:
        """Change palette and/or mode and re-render the current view."""
        if palette is not None:
            resolve_palette(palette)
        if mode is not None:
            _check_mode(mode)
        with self._lock:
            self.palette = self.palette if palette is None else palette
            self.mode = self.mode if mode is None else mode
        self._dispatch(self._sync_controls)
        return self.goto(self.view)

    def set_fractal(self, fractal: Fractal) -> int:
        """Change the fractal and re-render: a new family starts from a view of
        its whole set; a new Julia ``c`` or power keeps the current view."""
        fractal = graph.check_fractal(fractal)
        with self._lock:
            new_family = fractal.family != self.fractal.family
            self.fractal = fractal
            view = self.view
        if new_family:
            x, y, span = fractal.home
            view = replace(view, xpos=x, ypos=y, span=span)
        self._dispatch(self._sync_controls)
        return self.goto(view)

    def set_iters(self, iters: int) -> int:
        """Change the iteration limit and re-render the current view."""
        graph.check_iters(iters)
        with self._lock:
            self.iters = int(iters)
        self._dispatch(self._sync_controls)
        return self.goto(self.view)

    def _sync_controls(self) -> None:
        """Show settings made from Python in the page's controls."""
        if self.palette not in self.palette_select.options:
            self.palette_select.options = [self.palette, *self.palette_select.options]
        self.palette_select.value = self.palette
        self.mode_select.value = self.mode
        self.iters_spinner.value = self.iters
        self.fractal_select.value = self.fractal.family
        if self.fractal.c is not None:
            self.julia_c_input.value = str(self.fractal.c)
        if self.fractal.family == "multibrot":
            self.power_spinner.value = self.fractal.power

    # -- frames arriving -------------------------------------------------------
    def _collect(self, gen: int, level: str, view: View, fractal: Fractal, futures: list[Future], t0: float) -> None:
        try:
            blocks = self.client.gather(futures)
        except CancelledError:
            return
        except Exception as exc:  # a failed render: say so in the page, keep going
            self._dispatch(partial(self._set_status, f"render failed: {exc}"))
            return
        finally:  # release the results on the cluster: the frame is here now
            with self._lock:
                self._pending = [f for f in self._pending if f not in futures]
            for f in futures:
                f.release()
        rgba = np.concatenate(blocks, axis=0)
        seconds = time.perf_counter() - t0
        with self._lock:
            shown = gen == self._gen
        record = {"gen": gen, "level": level, "view": view, "fractal": fractal, "seconds": seconds, "shown": shown}
        if shown:
            self._dispatch(partial(self._show, record, rgba))
        else:
            self._note(record)

    def _show(self, record: dict[str, Any], rgba: np.ndarray) -> None:
        with self._lock:
            if record["gen"] != self._gen:  # overtaken while waiting for the document
                record["shown"] = False
                self._note(record)
                return
        v = record["view"]
        step = v.step
        x0, y_top = v.re0 - step / 2, v.im0 + step / 2
        dw, dh = v.width * step, v.height * step
        self.source.data = {"image": [_to_bokeh(rgba)], "x": [x0], "y": [y_top - dh], "dw": [dw], "dh": [dh]}
        self._frame_ranges(v)
        if record["level"] == "full":
            self.last_frame = rgba
        self._set_status(
            f"{record['level']} frame {rgba.shape[1]}x{rgba.shape[0]} in {record['seconds']:.3f} s · "
            f"centre ({v.xpos:.15g}, {v.ypos:.15g}) span {v.span:.6g} · {self.iters} iterations · "
            f"{self.palette} {self.mode} · {record['fractal'].describe()} · frame {record['gen']}"
        )
        self._note(record)

    def _frame_ranges(self, v: View) -> None:
        """Move the axes onto ``v`` (a view set from Python: zoom, goto, reset).
        After a mouse zoom they are there already; the echo of this change
        names the current view, so it renders nothing (see ``_on_ranges``)."""
        half_h = 0.5 * v.span * v.height / v.width
        for rng, lo, hi in ((self.figure.x_range, v.xpos - v.span / 2, v.xpos + v.span / 2),
                            (self.figure.y_range, v.ypos - half_h, v.ypos + half_h)):  # fmt: skip
            if not (math.isclose(rng.start, lo, rel_tol=0, abs_tol=1e-9 * v.span)
                    and math.isclose(rng.end, hi, rel_tol=0, abs_tol=1e-9 * v.span)):  # fmt: skip
                rng.update(start=lo, end=hi)

    def _note(self, record: dict[str, Any]) -> None:
        with self._arrived:
            self.frames.append(record)
            self._arrived.notify_all()

    def _set_status(self, text: str) -> None:
        self.status.text = text

    def wait(self, gen: int | None = None, level: str = "full", timeout: float = 60.0) -> dict[str, Any]:
        """Wait for a frame of generation ``gen`` (default: the latest) to arrive."""
        gen = self._gen if gen is None else gen
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for r in self.frames:
                    if r["gen"] == gen and r["level"] == level:
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no {level} frame of generation {gen} within {timeout} s")
                self._arrived.wait(left)

    # -- saving ----------------------------------------------------------------
    def save(self, name: str, supersample: int = 4, overwrite: bool = False):
        """Render the current view at full resolution (``supersample``² samples a
        pixel) to ``<save_dir>/<name>.zarr`` and ``<name>.png``, in the background.

        Returns a ``concurrent.futures.Future`` of the PNG path.  Never replaces
        an existing store or PNG unless ``overwrite``.  A name that is not a
        plain file name (a path, control characters, too long for the save
        folder) or an existing file is refused with a ``ValueError`` before
        anything is rendered or written.
        """
        from . import store

        self._check_name(name)
        with self._lock:
            view = replace(self.view, supersample=supersample)
            iters, palette, mode, step, fractal = self.iters, self.palette, self.mode, self.step, self.fractal
        zarr_path, png = self.save_dir.child(f"{name}.zarr"), self.save_dir.child(f"{name}.png")
        store.check_writable(zarr_path, overwrite=overwrite)
        self._check_png(png, overwrite)
        return self._saver.submit(self._save, view, iters, palette, mode, step, fractal, zarr_path, png, overwrite)

    def _check_name(self, name: str) -> None:
        """Refuse a save name that is not one plain file name the save folder can hold."""
        if not isinstance(name, str):
            raise ValueError(f"save name must be a string, got {name!r}")
        if not name.strip() or name in (".", ".."):
            raise ValueError(f"save name must be a plain file name, got {name!r}")
        if any(sep in name for sep in ("/", "\\", os.sep, os.altsep) if sep) or Path(name).name != name:
            raise ValueError(f"save name must be a plain file name, not a path: got {name!r}")
        if any(unicodedata.category(ch) == "Cc" for ch in name):
            raise ValueError(f"save name must not contain control characters (tabs, newlines, ...): got {name!r}")
        limit = self._name_max() - len(_LONGEST_SUFFIX)
        try:
            size = len(os.fsencode(name) if self.save_dir.is_local else name.encode())
        except UnicodeEncodeError:  # e.g. a lone surrogate a page can send
            raise ValueError(f"save name has characters no file name can hold: got {name!r}") from None
        if size > limit:
            raise ValueError(
                f"save name is too long: {size} bytes, and {self.save_dir} takes file names of at most "
                f"{limit + len(_LONGEST_SUFFIX)} bytes, {_LONGEST_SUFFIX!r} included (at most {limit} for the name)"
            )

    def _name_max(self) -> int:
        """The longest file name (bytes) the save folder takes: the file system's for a local folder."""
        if self.save_dir.is_local:
            try:
                return int(os.pathconf(self.save_dir.url, "PC_NAME_MAX"))
            except (OSError, ValueError):  # no such folder yet, or no such limit: the common one
                pass
        return 255

    @staticmethod
    def _check_png(png: Location, overwrite: bool) -> None:
        """Refuse an existing ``NAME.png`` unless ``overwrite``; a folder there always."""
        if png.is_local and os.path.isdir(png.url):
            raise ValueError(f"{png} exists and is a folder, not a PNG; refusing to replace it")
        if not overwrite and png.exists():
            raise ValueError(f"{png} already exists (choose another name, or pass overwrite=True to replace it)")

    def _save(self, view, iters, palette, mode, step, fractal, zarr_path, png, overwrite) -> Path | Location:
        from .pipeline import render

        def progress(done: int, total: int) -> None:
            self._dispatch(partial(self._set_status, f"saving {zarr_path.name}: {done}/{total} blocks"))

        try:
            ds = render(view, iters, store_path=zarr_path, client=self.client, overwrite=overwrite,
                        progress=progress, fractal=fractal)  # fmt: skip
            self._check_png(png, overwrite)  # again: a file may have appeared there while the store was rendered
            with dask.config.set(scheduler=self.client.get):  # colour on the cluster, block by block
                save_png(colorize(ds, palette, step, mode), png)
        except Exception as exc:
            self._dispatch(partial(self._set_status, f"save failed: {exc}"))
            raise
        done = f"saved {png} and {zarr_path} ({view.width}x{view.height}, {view.supersample}² samples/pixel)"
        self._dispatch(partial(self._set_status, done))
        return Path(png.url) if png.is_local else png

    def close(self) -> None:
        """Cancel what is still rendering and stop the explorer's threads."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._gen += 1
        live = [f for f in pending if not f.done()]
        if live and self.client.status == "running":
            self.client.cancel(live)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._saver.shutdown(wait=False)


def serve(
    client: Client,
    *,
    port: int = 5006,
    address: str = "127.0.0.1",
    view: View | None = None,
    iters: int = 500,
    palette: str = "Hippi",
    mode: str = "smooth",
    save_dir: str | Path | Location = ".",
    fractal: Fractal | None = None,
):
    """A bokeh server of the explorer on ``address:port`` (each browser tab its
    own :class:`Explorer`).  Returns the started, not yet running, server: run
    its ``io_loop``.  Port 0 picks a free one (``server.port``)."""
    from bokeh.server.server import Server

    _check_args(client, view, iters, palette, mode)
    graph.check_fractal(fractal)
    if port == 0:  # the websocket origin check needs the real port up front
        with socket.socket() as s:
            s.bind((address, 0))
            port = s.getsockname()[1]

    def app(doc) -> None:
        ex = Explorer(client, view, iters, palette, mode, dispatch=doc.add_next_tick_callback, save_dir=save_dir,
                      fractal=fractal)  # fmt: skip
        doc.add_root(ex.layout)
        doc.title = "dfractal explorer"
        doc.on_session_destroyed(lambda ctx: ex.close())

    origins = sorted({f"{host}:{port}" for host in (address, "localhost", "127.0.0.1")})
    server = Server({"/": app}, address=address, port=port, allow_websocket_origin=origins)
    server.start()
    return server
