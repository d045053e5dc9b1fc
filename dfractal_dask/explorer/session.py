"""The explorer's rendering, with no bokeh: a view, its settings and its frames.

Each new view is rendered twice, coarse first (a quarter of the resolution, one
task) and then at screen resolution (one row block for each worker thread),
both levels sent to the scheduler in one graph.  A block is one task: the
kernel and its colouring, so only RGBA comes back (a deep view's block also
waits for its reference orbit and BLA table).  A newer view cancels the
futures of an older one on the cluster, and a frame made stale on its way is
dropped.  Frames already rendered are kept in a :class:`FrameCache` (least
recently used first out, bounded in bytes: dask config
``dfractal.explorer.cache-bytes``); a view rendered before with the same
settings is served from it at once, nothing sent to the cluster.  Finished
frames and status lines go to subscribers (:meth:`ExplorerSession.on_frame`,
:meth:`ExplorerSession.on_status`, :meth:`ExplorerSession.on_settings`); the
bokeh page of :mod:`dfractal_dask.explorer.panel` is one.

Every call into the library's graph, pipeline and store is in this module.
"""

from __future__ import annotations

import math
import os
import threading
import time
import unicodedata
import uuid
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future as SaveFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import dask
import numpy as np
from distributed import CancelledError, Client, Future

from .. import graph, kernels
from ..checks import check_bool
from ..colorize import BLOCK_MODES, MODES, WHOLE_PICTURE_MODES, Picture, color_samples, colorize, picture_of
from ..deprecation import warn_renamed
from ..fractals import Fractal
from ..location import Location, as_location
from ..palettes import DEFAULT_PALETTE, DEFAULT_STEP, resolve_palette
from ..png import save_png
from ..pyramid import Level
from ..settings import check as check_all_settings
from ..settings import get as setting
from ..spec import Block, RenderSpec, is_deep
from ..view import View, divide_span, exact, parse_coordinate
from .stored import StoredFrame, StoredPicture, check_store

__all__ = ["EXPLORER_MODES", "LEVELS", "ExplorerSession", "FrameCache", "check_settings", "frame_tasks", "same_view"]

#: Colour modes the explorer offers (histogram equalisation needs the whole frame).
EXPLORER_MODES = BLOCK_MODES
#: The frames of a view, in the order they arrive: a quick coarse one, then the full one.
LEVELS = ("coarse", "full")
# Row blocks of a full frame per worker thread.  A shallow frame is ~5-50 ms of kernel at 800x600: dask's
# per-task cost (a few ms each) is then most of its latency, so one block a thread.  A deep frame's blocks
# take seconds and differ widely in cost: several a thread, so the idle ones can take the rest.
BLOCKS_PER_THREAD, DEEP_BLOCKS_PER_THREAD = 1, 4
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


def _rgba_block(view: View, iters: int, block: Block, shortcuts: int, fractal: Fractal, palette, mode: str,
                step: int) -> np.ndarray:  # fmt: skip
    # one task a block: its kernel and colouring, so only the RGBA leaves the worker
    return _color_block(graph.compute_block(view, iters, block, shortcuts, fractal), iters, palette, mode, step,
                        fractal.power)  # fmt: skip


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

    Each block is one task, the kernel call and its colouring (a view past
    float64's resolution: a perturbation task, after its reference orbit and
    BLA table, then its colouring on the same worker).  Concatenated top to
    bottom they make the ``(height, width, 4)`` frame.  Smooth colouring
    paints the whole interior one colour, so there the kernel skips the main
    cardioid and period-2 bulb (``kernels.INTERIOR``: the same counts, no
    interior norms).  ``fractal``: the family (default Mandelbrot).  Keys
    start with ``explore-``.
    """
    _check_mode(mode)
    shortcuts = kernels.INTERIOR if mode == "smooth" else kernels.CYCLES
    pal = resolve_palette(palette)
    view = replace(view, supersample=1)
    spec = RenderSpec.make(view, iters, max(1, math.ceil(view.height / blocks)), fractal)
    iters, fractal = spec.iters, spec.fractal
    rid = uuid.uuid4().hex
    if spec.deep[0]:  # the library's perturbation graph, each block coloured after it
        colour = dask.delayed(_color_block, pure=True)
        return [
            colour(task, iters, pal, mode, step, fractal.power, dask_key_name=f"explore-colour-{rid}-{b.index}")
            for b, task in graph.tasks_of(spec, rid)[0]
        ]
    rgba = dask.delayed(_rgba_block, pure=True)
    return [
        rgba(view, iters, b, shortcuts, fractal, pal, mode, step, dask_key_name=f"explore-rgba-{rid}-{b.index}")
        for b in spec.blocks()
    ]


def same_view(a: View, b: View) -> bool:
    """Whether ``a`` and ``b`` are one view up to rounding: centres and spans within 1e-9 of ``b``'s span
    (compared in decimals for deep views, which floats cannot tell apart); sizes are not compared."""
    if a.deep or b.deep:
        near = Decimal("1e-9") * exact(b.span)
        (ax, ay), (bx, by) = a.centre, b.centre
        return abs(ax - bx) <= near and abs(ay - by) <= near and abs(exact(a.span) - exact(b.span)) <= near
    tol = 1e-9 * b.span
    return abs(a.xpos - b.xpos) <= tol and abs(a.ypos - b.ypos) <= tol and abs(a.span - b.span) <= tol


class FrameCache:
    """Frames already rendered, for serving a view again without computing it.

    A frame is found by its settings (any hashable: the session's are
    iterations, palette, mode, seed step and fractal) and its view: the same
    size, and the same centre and span up to rounding (:func:`same_view`), as
    a view reached again by zooming in and back out is.  The least recently
    used frames are dropped first once the frames hold more than
    ``max_bytes``; a frame larger than that is not kept (0 keeps none).
    Frames are kept read-only: what is served is what was rendered.
    Thread-safe.

    Parameters
    ----------
    max_bytes
        The most bytes of RGBA kept (an integer >= 0; default: dask config
        ``dfractal.explorer.cache-bytes``).
    """

    def __init__(self, max_bytes: int | None = None) -> None:
        if max_bytes is None:
            max_bytes = setting("explorer.cache-bytes")
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int | np.integer):
            raise TypeError(f"max_bytes must be an integer, got {max_bytes!r}")
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        #: frames served from the cache, and looked for but not there
        self.hits = self.misses = 0
        self._frames: OrderedDict[int, tuple[View, Hashable, np.ndarray]] = OrderedDict()
        self._next = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._frames)

    def get(self, view: View, settings: Hashable) -> tuple[View, np.ndarray] | None:
        """The kept frame of ``view`` with ``settings``: its own view and its RGBA; ``None`` if there is none."""
        with self._lock:
            for k in reversed(self._frames):  # the latest first
                v, kept, rgba = self._frames[k]
                if self._matches(v, kept, view, settings):
                    self._frames.move_to_end(k)
                    self.hits += 1
                    return v, rgba
            self.misses += 1
            return None

    def put(self, view: View, settings: Hashable, rgba: np.ndarray) -> None:
        """Keep ``rgba``, the frame of ``view`` with ``settings`` (made read-only), dropping the least
        recently used frames beyond :attr:`max_bytes`."""
        if rgba.nbytes > self.max_bytes:
            return
        rgba.flags.writeable = False
        with self._lock:
            for k, (v, kept, _) in list(self._frames.items()):  # a frame of the same view replaces it
                if self._matches(v, kept, view, settings):
                    self.nbytes -= self._frames.pop(k)[2].nbytes
            self._frames[self._next] = (view, settings, rgba)
            self._next += 1
            self.nbytes += rgba.nbytes
            while self.nbytes > self.max_bytes:
                self.nbytes -= self._frames.popitem(last=False)[1][2].nbytes

    @staticmethod
    def _matches(v: View, kept: Hashable, view: View, settings: Hashable) -> bool:
        return kept == settings and (v.width, v.height) == (view.width, view.height) and same_view(v, view)

    def clear(self) -> None:
        """Drop every frame."""
        with self._lock:
            self._frames.clear()
            self.nbytes = 0


def _cache_bytes() -> int:
    """The frame cache's bound: dask config ``dfractal.explorer.cache-bytes``, checked."""
    return setting("explorer.cache-bytes")


def _check_mode(mode: str, modes: tuple[str, ...] = EXPLORER_MODES) -> None:
    if mode not in modes:
        raise ValueError(f"unknown explorer mode {mode!r} (modes: {', '.join(modes)})")


def store_modes(stored: StoredPicture | None) -> tuple[str, ...]:
    """The colour modes an explorer of ``stored`` offers: a stored picture's views are coloured on the
    client, so whole-picture modes too (histogram; distance if the store has distances)."""
    if stored is None:
        return EXPLORER_MODES
    return tuple(m for m in MODES if m in (*EXPLORER_MODES, *WHOLE_PICTURE_MODES) or m in stored.names)


def _check_view(view: object) -> View:
    if not isinstance(view, View):
        raise TypeError(f"view must be a View, got {type(view).__name__}")
    return view


def check_settings(
    client: Client,
    view: View | None,
    iters: int | None,
    palette,
    mode: str,
    fractal: Fractal | None = None,
    store: StoredPicture | None = None,
) -> tuple[View, int, Fractal]:
    """Check an explorer's arguments; return the first view (one sample a pixel), the iteration limit and
    the fractal.  With a ``store``, what is not given is the store's: its view (centre and span on
    800x600 pixels), iterations and fractal."""
    if not isinstance(client, Client):
        raise TypeError(f"client must be a distributed.Client, got {type(client).__name__}")
    if view is None:
        view = View(-0.5, 0.0, 3.0, 800, 600, 1) if store is None else store.home(800, 600)
    view = _check_view(view)
    iters = (ITERS if store is None else store.iters) if iters is None else iters
    graph.check_iters(iters)
    resolve_palette(palette)
    _check_mode(mode, store_modes(store))
    fractal = graph.check_fractal(store.fractal if fractal is None and store is not None else fractal)
    is_deep(view, fractal)  # a view past float64 of a family perturbation does not render: refused here
    return replace(view, supersample=1), int(iters), fractal


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
        (``supersample`` is ignored: frames are one sample a pixel).  Default:
        the whole Mandelbrot set, or the ``store``'s view, on 800x600 pixels.
    iters
        Iteration limit (default :data:`ITERS`, or the ``store``'s).
    palette, mode, step
        Colouring (see :func:`dfractal_dask.colorize`); ``mode`` is ``smooth``
        or ``seed`` (with a ``store``, also ``histogram``, and ``distance`` if
        it holds distances: for its views only).
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
        The family (:class:`dfractal_dask.fractals.Fractal`; default Mandelbrot,
        or the ``store``'s).
    store
        A finished render store to browse (a path, a URL, a
        :class:`~dfractal_dask.location.Location` for storage options, or a
        :class:`~dfractal_dask.explorer.stored.StoredPicture`): a view the
        store resolves, with its fractal and iterations, is read from its
        pyramid level that fits the screen and coloured here, no task on the
        cluster (:mod:`dfractal_dask.explorer.stored`; screen pixels outside
        the stored picture are transparent).  A view zoomed past its
        resolution, or other iterations or fractal, renders on the cluster.
    """

    def __init__(
        self,
        client: Client,
        view: View | None = None,
        iters: int | None = None,
        palette: str = PALETTE,
        mode: str = MODE,
        step: int = STEP,
        *,
        dispatch: Callable[[Callable[[], None]], Any] | None = None,
        save_dir: str | Path | Location = SAVE_DIR,
        fractal: Fractal | None = None,
        store: str | Path | Location | StoredPicture | None = None,
    ) -> None:
        check_all_settings()  # every dfractal.* setting, before any store is read or task sent
        #: the stored picture browsed (:class:`~dfractal_dask.explorer.stored.StoredPicture`), or ``None``
        self.stored = check_store(store)
        #: the colour modes offered
        self.modes = store_modes(self.stored)
        view, iters, self.fractal = check_settings(client, view, iters, palette, mode, fractal, self.stored)
        cache_bytes = _cache_bytes()
        self.client = client
        self.home = self.view = view
        self.iters, self.palette, self.mode, self.step = iters, palette, mode, step
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
        #: the frames already rendered, served again without computing (:class:`FrameCache`)
        self.cache = FrameCache(cache_bytes)
        self._threads, self._threads_at = self._count_threads(), time.monotonic()

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
        view already rendered with the same settings (:attr:`cache`) is served
        from the cache: its full frame alone, at once, nothing computed (the
        record's ``cached`` is true; its view the cached frame's, equal up to
        rounding).  A view that cannot be rendered (e.g. a family other than
        the Mandelbrot set past float64's resolution, where only perturbation
        could) is refused in the status line, and the current view stays.
        """
        view = replace(_check_view(view), supersample=1, width=self.view.width, height=self.view.height)
        with self._lock:
            settings = {"iters": self.iters, "palette": self.palette, "mode": self.mode, "fractal": self.fractal}
            iters, fractal = self.iters, self.fractal
        stored = None if self.stored is None else self.stored.level_for(view, iters, fractal)
        if stored is not None:  # read from the store and coloured here: nothing for the cluster
            return self._goto_stored(view, settings, stored)
        if settings["mode"] not in EXPLORER_MODES:
            self._dispatch(partial(self._status, f"cannot render this view on the cluster in {settings['mode']} "
                                                 f"colouring (only the stored picture's views): choose "
                                                 f"{' or '.join(EXPLORER_MODES)}"))  # fmt: skip
            return self._gen
        key = self._cache_key(settings)
        k = setting("explorer.coarse")
        coarse = replace(view, width=max(1, view.width // k), height=max(1, view.height // k))
        # each level: its view, and its tasks or (None) its frame from the cache
        levels: list[tuple[str, View, list | None, np.ndarray | None]]
        hit = self.cache.get(view, key)
        if hit is not None:  # nothing to compute, and no coarse frame to show first
            view, levels = hit[0], [("full", hit[0], None, hit[1])]
        else:
            small = self.cache.get(coarse, key)
            try:  # every task is made before anything is cancelled
                levels = [
                    ("coarse", small[0], None, small[1]) if small else
                    ("coarse", coarse, self._level_tasks("coarse", coarse, settings), None),
                    ("full", view, self._level_tasks("full", view, settings), None),
                ]  # fmt: skip
            except ValueError as exc:
                self._dispatch(partial(self._status, f"cannot render this view: {exc}"))
                return self._gen
        gen = self._next_view(view)
        t0 = time.perf_counter()
        # both levels in one graph: one message to the scheduler (the client sends its messages 10 ms apart)
        futures = iter(self.client.compute([t for _, _, tasks, _ in levels for t in tasks or ()]))
        for level, v, tasks, rgba in levels:
            record = {"gen": gen, "level": level, "view": v, **settings, "cached": tasks is None}
            if tasks is None:  # (a cached frame: its pixels at hand)
                assert rgba is not None
                self._pool.submit(self._arrive, record, rgba, t0)
                continue
            mine = [next(futures) for _ in tasks]
            with self._lock:
                self._pending += mine
            self._pool.submit(self._collect, record, mine, key, t0)
        return gen

    def _next_view(self, view: View) -> int:
        """Make ``view`` the current one: a new generation, the older renders cancelled on the cluster."""
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
        return gen

    def _goto_stored(self, view: View, settings: dict[str, Any], level: Level) -> int:
        """Show ``view`` from the stored picture's ``level``: read and coloured on the session's thread."""
        gen = self._next_view(view)
        record = {"gen": gen, "level": "full", "view": view, **settings, "cached": False}
        self._pool.submit(self._read_stored, record, level, time.perf_counter())
        return gen

    def _read_stored(self, record: dict[str, Any], level: Level, t0: float) -> None:
        assert self.stored is not None
        with self._lock:
            stale = record["gen"] != self._gen
        if stale:  # a newer view came first: nothing to read for this one
            return self._not_shown(record, t0)
        try:
            rgba, info = self.stored.frame(record["view"], level, record["palette"], record["mode"], self.step)
        except Exception as exc:  # a damaged or vanished store: say so, keep going
            self._dispatch(partial(self._status, f"cannot read the stored picture: {exc}"))
            return self._not_shown(record, t0)
        record["stored"] = info
        self._arrive(record, rgba, t0)

    def _not_shown(self, record: dict[str, Any], t0: float) -> None:
        """A stored frame that will not be shown (overtaken before it was read, or unreadable)."""
        record["shown"], record["seconds"], record["stored"] = False, time.perf_counter() - t0, None
        self._note(record)

    def _level_tasks(self, level: str, view: View, settings: dict[str, Any]) -> list:
        """The tasks of one level of a view: the coarse one first (a higher priority), in one block."""
        tasks = partial(frame_tasks, view, settings["iters"], settings["palette"], settings["mode"], self.step,
                        fractal=settings["fractal"])  # fmt: skip
        if level == "coarse":
            with dask.annotate(priority=10):
                return tasks(1)
        return tasks(max(1, (DEEP_BLOCKS_PER_THREAD if view.deep else BLOCKS_PER_THREAD) * self._threads))

    def _count_threads(self) -> int:
        """The cluster's worker threads (none yet: one)."""
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # a client closing or reconnecting: blocks as for one thread
            return 1

    def _cache_key(self, settings: dict[str, Any]) -> tuple:
        """What a frame of the cache must have been rendered with, besides its view."""
        return (settings["iters"], resolve_palette(settings["palette"]), settings["mode"], self.step,
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
            _check_mode(mode, self.modes)
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
    def _collect(self, record: dict[str, Any], futures: list[Future], key: tuple, t0: float) -> None:
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
        rgba = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)
        self.cache.put(record["view"], key, rgba)  # even if stale: its pixels are right for its view
        self._arrive(record, rgba, t0)
        if time.monotonic() - self._threads_at > 2.0:  # workers come and go: count them now and then
            self._threads, self._threads_at = self._count_threads(), time.monotonic()

    def _arrive(self, record: dict[str, Any], rgba: np.ndarray, t0: float) -> None:
        """A frame is here (computed or from the cache): deliver it if still current."""
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
        stored: StoredFrame | None = record.get("stored")
        where = "" if stored is None else (
            f" · stored level {stored['level']} ({stored['width']}x{stored['height']}), {stored['tiles']} tiles "
            f"of {stored['name']}"
        )  # fmt: skip
        return (
            f"{record['level']} frame {rgba.shape[1]}x{rgba.shape[0]} in {record['seconds']:.3f} s"
            f"{' from the cache' if record['cached'] else ''}{where} · "
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
        ``TimeoutError`` after ``timeout`` seconds.  A generation served from
        the cache or the stored picture has no coarse frame: waiting for it
        returns the full one.
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
                    alone = r["cached"] or "stored" in r
                    if r["gen"] == gen and (r["level"] == level or (r["level"] == "full" and alone)):
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
        check_bool("overwrite", overwrite)
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
