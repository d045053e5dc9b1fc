"""The explorer's rendering, with no bokeh: a view, its settings and its frames.

Each new view is rendered twice, coarse first (a quarter of the resolution, one
task) and then at screen resolution (row blocks over the cluster), each block
coloured on the worker that computed it so only RGBA comes back.  A newer view
cancels the futures of an older one on the cluster, and a frame made stale on
its way is dropped.  Finished frames and status lines go to subscribers
(:meth:`ExplorerSession.on_frame`, :meth:`ExplorerSession.on_status`,
:meth:`ExplorerSession.on_settings`); the bokeh page of
:mod:`dfractal_dask.explorer.panel` is one.

Every call into the library's graph, pipeline and store is in this module.
"""

from __future__ import annotations

import math
import os
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable
from concurrent.futures import Future as SaveFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import dask
import numpy as np
from distributed import CancelledError, Client, Future

from .. import graph, kernels
from ..colorize import BLOCK_MODES, Picture, color_samples, colorize, picture_of
from ..deprecation import warn_renamed
from ..fractals import Fractal
from ..location import Location, as_location
from ..palettes import DEFAULT_PALETTE, DEFAULT_STEP, resolve_palette
from ..png import save_png
from ..view import View, divide_span, exact, parse_coordinate

__all__ = ["EXPLORER_MODES", "LEVELS", "ExplorerSession", "check_settings", "frame_tasks"]

#: Colour modes the explorer offers (histogram equalisation needs the whole frame).
EXPLORER_MODES = BLOCK_MODES
#: The frames of a view, in the order they arrive: a quick coarse one, then the full one.
LEVELS = ("coarse", "full")
COARSE = 4  # the coarse pass: 1/COARSE of the resolution along each axis (dask config dfractal.explorer.coarse)
FULL_BLOCKS = 8  # row blocks of a full frame: both workers busy, tasks still ~10-100 ms
#: The explorer's defaults (:class:`ExplorerSession`, ``Explorer``, ``serve``): iterations, palette, mode,
#: seed step, where saves go.
ITERS, PALETTE, MODE, STEP, SAVE_DIR = 500, DEFAULT_PALETTE, "smooth", DEFAULT_STEP, "."
#: the longest name a save writes beside its store: the PNG while it is written (see ``png.save_png``)
_LONGEST_SUFFIX = ".png.part"

#: What :meth:`ExplorerSession.on_frame` subscribers get: the frame's record and its ``(h, w, 4)`` uint8 RGBA.
FrameCallback = Callable[[dict[str, Any], np.ndarray], Any]


def _color_block(result: tuple, iters: int, palette, mode: str, step: int, power: int = 2) -> np.ndarray:
    it, norm, _ = result
    return color_samples(it, norm, iters, palette, mode, step, power=power)


def frame_tasks(
    view: View,
    iters: int,
    palette,
    mode: str = "smooth",
    step: int = DEFAULT_STEP,
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
    colour = dask.delayed(_color_block, pure=True)
    return [
        colour(task, iters, pal, mode, step, fractal.power, dask_key_name=f"explore-colour-{rid}-{b.index}")
        for b, task in graph.block_tasks(view, iters, rows, rid, shortcuts=shortcuts, fractal=fractal)
    ]


def _check_mode(mode: str) -> None:
    if mode not in EXPLORER_MODES:
        raise ValueError(f"unknown explorer mode {mode!r} (modes: {', '.join(EXPLORER_MODES)})")


def _check_view(view: object) -> View:
    if not isinstance(view, View):
        raise TypeError(f"view must be a View, got {type(view).__name__}")
    return view


def check_settings(
    client: Client, view: View | None, iters: int, palette, mode: str, fractal: Fractal | None = None
) -> tuple[View, Fractal]:
    """Check an explorer's arguments; return the first view (one sample a pixel) and the fractal."""
    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    view = View(-0.5, 0.0, 3.0, 800, 600, 1) if view is None else _check_view(view)
    graph.check_iters(iters)
    resolve_palette(palette)
    _check_mode(mode)
    return replace(view, supersample=1), graph.check_fractal(fractal)


def _span_text(v: View) -> str:
    # a span in 6 digits, also past float64 (an extended span's float is 0)
    return f"{exact(v.span):.6g}" if v.extended else f"{v.span:.6g}"


class ExplorerSession:
    """A fractal view rendered on a Dask cluster, frame after frame, as it is moved.

    Renders nothing until asked (:meth:`goto`, :meth:`zoom`, a ``set_*``):
    subscribe first.

    Parameters
    ----------
    client
        The Dask client to render on.
    view
        The first view; its ``width``/``height`` are the frame size in pixels
        (``supersample`` is ignored: frames are one sample a pixel).
    iters
        Iteration limit.
    palette, mode, step
        Colouring (see :func:`dfractal_dask.colorize`); ``mode`` is ``smooth``
        or ``seed``.
    dispatch
        How subscribers are called, from the threads that collect frames and
        saves: ``doc.add_next_tick_callback`` for a bokeh server's document;
        ``None``: directly, under the session's lock (Jupyter, where
        ipywidgets may be updated from threads, or no page at all).
    save_dir
        Where :meth:`save` writes ``<name>.zarr`` and ``<name>.png``: a
        folder, or a URL fsspec opens (``s3://bucket/saves``; a
        :class:`dfractal_dask.location.Location` to give storage options).
    fractal
        The family (:class:`dfractal_dask.fractals.Fractal`; default Mandelbrot).
    """

    def __init__(
        self,
        client: Client,
        view: View | None = None,
        iters: int = ITERS,
        palette: str = PALETTE,
        mode: str = MODE,
        step: int = STEP,
        *,
        dispatch: Callable[[Callable[[], None]], Any] | None = None,
        save_dir: str | Path | Location = SAVE_DIR,
        fractal: Fractal | None = None,
    ) -> None:
        view, self.fractal = check_settings(client, view, iters, palette, mode, fractal)
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
        self._on_frame: list[FrameCallback] = []
        self._on_status: list[Callable[[str], Any]] = []
        self._on_settings: list[Callable[[], Any]] = []
        #: every frame that arrived: generation, level, view, fractal, colouring, seconds, shown
        self.frames: list[dict[str, Any]] = []
        #: futures of stale views cancelled on the cluster before they finished
        self.cancelled = 0
        #: the latest full frame delivered to subscribers, a labelled
        #: :class:`~dfractal_dask.colorize.Picture` (its view, iterations and colouring in attrs)
        self.last_frame: Picture | None = None

    # -- subscribers -----------------------------------------------------------
    def on_frame(self, callback: FrameCallback) -> FrameCallback:
        """Call ``callback(record, rgba)`` with each frame of the current view
        (a frame overtaken by a newer view is not delivered); returns it."""
        self._on_frame.append(callback)
        return callback

    def on_status(self, callback: Callable[[str], Any]) -> Callable[[str], Any]:
        """Call ``callback(text)`` with each status line (one a frame, a refused
        view, a failed render, a save's progress); returns it."""
        self._on_status.append(callback)
        return callback

    def on_settings(self, callback: Callable[[], Any]) -> Callable[[], Any]:
        """Call ``callback()`` after palette, mode, iterations or fractal changed; returns it."""
        self._on_settings.append(callback)
        return callback

    def _direct(self, fn: Callable[[], None]) -> None:
        with self._lock:
            fn()

    def _status(self, text: str) -> None:
        for callback in self._on_status:
            callback(text)

    def _settings_changed(self) -> None:
        for callback in self._on_settings:
            callback()

    # -- views -----------------------------------------------------------------
    def goto(self, view: View) -> int:
        """Render ``view`` (coarse, then full), cancelling older renders.

        Returns the frame generation; :meth:`wait` waits for its frames.  A
        view that cannot be rendered (e.g. a family other than the Mandelbrot
        set past float64's resolution, where only perturbation could) is
        refused in the status line, and the current view stays.
        """
        view = replace(_check_view(view), supersample=1, width=self.view.width, height=self.view.height)
        with self._lock:
            settings = {"iters": self.iters, "palette": self.palette, "mode": self.mode, "fractal": self.fractal}
        k = int(dask.config.get("dfractal.explorer.coarse", COARSE))
        coarse = replace(view, width=max(1, view.width // k), height=max(1, view.height // k))
        try:  # every task is made before anything is cancelled
            levels = [
                (level, v, self._frame_tasks(v, blocks, settings), prio)
                for level, v, blocks, prio in zip(LEVELS, (coarse, view), (1, FULL_BLOCKS), (10, 0), strict=True)
            ]
        except ValueError as exc:
            self._dispatch(partial(self._status, f"cannot render this view: {exc}"))
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
            record = {"gen": gen, "level": level, "view": v, **settings}
            self._pool.submit(self._collect, record, futures, t0)
        return gen

    def _frame_tasks(self, view: View, blocks: int, settings: dict[str, Any]) -> list:
        return frame_tasks(view, settings["iters"], settings["palette"], settings["mode"], self.step, blocks,
                           settings["fractal"])  # fmt: skip

    def zoom(self, factor: float, x: float | None = None, y: float | None = None) -> int:
        """Zoom in by ``factor`` (> 1 in, < 1 out) about ``(x, y)`` (default: the centre)."""
        if isinstance(factor, bool) or not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"zoom factor must be a positive number, got {factor!r}")
        v = self.view
        x = v.xpos if x is None else parse_coordinate("x", x)
        y = v.ypos if y is None else parse_coordinate("y", y)
        return self.goto(replace(v, xpos=x, ypos=y, span=divide_span(v.span, factor)))

    def set_coloring(self, palette: str | None = None, mode: str | None = None) -> int:
        """Change palette and/or mode and re-render the current view."""
        if palette is not None:
            resolve_palette(palette)
        if mode is not None:
            _check_mode(mode)
        with self._lock:
            self.palette = self.palette if palette is None else palette
            self.mode = self.mode if mode is None else mode
        self._dispatch(self._settings_changed)
        return self.goto(self.view)

    def set_colouring(self, palette: str | None = None, mode: str | None = None) -> int:
        """Deprecated spelling of :meth:`set_coloring`."""
        warn_renamed("set_colouring", "set_coloring")
        return self.set_coloring(palette, mode)

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
        self._dispatch(self._settings_changed)
        return self.goto(view)

    def set_iters(self, iters: int) -> int:
        """Change the iteration limit and re-render the current view."""
        graph.check_iters(iters)
        with self._lock:
            self.iters = int(iters)
        self._dispatch(self._settings_changed)
        return self.goto(self.view)

    # -- frames arriving ---------------------------------------------------------
    def _collect(self, record: dict[str, Any], futures: list[Future], t0: float) -> None:
        try:
            blocks = self.client.gather(futures)
        except CancelledError:
            return
        except Exception as exc:  # a failed render: say so, keep going
            self._dispatch(partial(self._status, f"render failed: {exc}"))
            return
        finally:  # release the results on the cluster: the frame is here now
            with self._lock:
                self._pending = [f for f in self._pending if f not in futures]
            for f in futures:
                f.release()
        rgba = np.concatenate(blocks, axis=0)
        record["seconds"] = time.perf_counter() - t0
        with self._lock:
            current = record["gen"] == self._gen
        if current:
            self._dispatch(partial(self._deliver, record, rgba))
        else:
            record["shown"] = False
            self._note(record)

    def _deliver(self, record: dict[str, Any], rgba: np.ndarray) -> None:
        """To the subscribers, unless overtaken while waiting for the dispatch."""
        with self._lock:
            record["shown"] = record["gen"] == self._gen
            if record["shown"]:
                if record["level"] == "full":
                    self.last_frame = picture_of(
                        rgba, replace(record["view"], supersample=1), iters=record["iters"],
                        palette=resolve_palette(record["palette"]).name, mode=record["mode"], step=self.step,
                        **record["fractal"].to_attrs(),
                    )  # fmt: skip
                for callback in self._on_frame:
                    callback(record, rgba)
                self._status(self._describe(record, rgba))
        self._note(record)

    @staticmethod
    def _describe(record: dict[str, Any], rgba: np.ndarray) -> str:
        v = record["view"]
        return (
            f"{record['level']} frame {rgba.shape[1]}x{rgba.shape[0]} in {record['seconds']:.3f} s · "
            f"centre ({v.xpos:.15g}, {v.ypos:.15g}) span {_span_text(v)} · {record['iters']} iterations · "
            f"{record['palette']} {record['mode']} · {record['fractal'].describe()} · frame {record['gen']}"
        )

    def _note(self, record: dict[str, Any]) -> None:
        with self._arrived:
            self.frames.append(record)
            self._arrived.notify_all()

    def wait(self, gen: int | None = None, level: str = "full", timeout: float = 60.0) -> dict[str, Any]:
        """Wait for a frame of generation ``gen`` (default: the latest) to arrive.

        Returns its record (``shown`` false if a newer view overtook it); a
        ``TimeoutError`` after ``timeout`` seconds.
        """
        if level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {level!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise TypeError(f"timeout must be a number of seconds, got {timeout!r}")
        if not (math.isfinite(timeout) and timeout >= 0):
            raise ValueError(f"timeout must be a finite number of seconds >= 0, got {timeout!r}")
        if gen is not None and (isinstance(gen, bool) or not isinstance(gen, int)):
            raise TypeError(f"gen must be an integer (a frame generation), got {gen!r}")
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
    def save(self, name: str, supersample: int = 4, overwrite: bool = False) -> SaveFuture:
        """Render the current view at full resolution (``supersample``² samples a
        pixel) to ``<save_dir>/<name>.zarr`` and ``<name>.png``, in the background.

        Returns a ``concurrent.futures.Future`` of the PNG path.  Never replaces
        an existing store or PNG unless ``overwrite``.  A name that is not a
        plain file name (a path, control characters, too long for the save
        folder) or an existing file is refused with a ``ValueError`` before
        anything is rendered or written.
        """
        from .. import store

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
        from ..pipeline import render

        def progress(done: int, total: int) -> None:
            self._dispatch(partial(self._status, f"saving {zarr_path.name}: {done}/{total} blocks"))

        try:
            ds = render(view, iters, store_path=zarr_path, client=self.client, overwrite=overwrite,
                        progress=progress, fractal=fractal)  # fmt: skip
            self._check_png(png, overwrite)  # again: a file may have appeared there while the store was rendered
            with dask.config.set(scheduler=self.client.get):  # colour on the cluster, block by block
                save_png(colorize(ds, palette, step, mode), png)
        except Exception as exc:
            self._dispatch(partial(self._status, f"save failed: {exc}"))
            raise
        done = f"saved {png} and {zarr_path} ({view.width}x{view.height}, {view.supersample}² samples/pixel)"
        self._dispatch(partial(self._status, done))
        return Path(png.url) if png.is_local else png

    def close(self) -> None:
        """Cancel what is still rendering and stop the session's threads."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._gen += 1
        live = [f for f in pending if not f.done()]
        if live and self.client.status == "running":
            self.client.cancel(live)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._saver.shutdown(wait=False)
