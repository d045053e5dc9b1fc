"""A stored render browsed by the explorer: frames read from its pyramid, no cluster.

A :class:`StoredPicture` is a finished render store (``render(..., pyramid=True)``,
or without a pyramid: its full-resolution level alone).  For a screen view it
picks the level that fits (:meth:`StoredPicture.level_for`: the coarsest whose
sample step is still at most the screen's pixel step), reads only that level's
tiles overlapping the view (one chunk at a time, as
:func:`dfractal_dask.pyramid.read_window` reads a window, but through arrays
opened once, not at every tile; kept decoded in a small LRU of
:data:`TILE_BYTES`, so panning re-reads nothing), takes each screen pixel's nearest sample from its global coordinate
and colours those samples with any palette and mode.  Screen pixels outside the
stored picture are transparent (no cluster render for them).  A view finer than
the stored samples (or a deep store, past float64) is not the store's to show:
:meth:`StoredPicture.level_for` says ``None`` and the session renders it on the
cluster as usual.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr
import zarr

from ..colorize import BLOCK_MODES, color_samples, colorize
from ..fractals import Fractal
from ..location import Location, as_location
from ..store import StoreError, StoreMeta, open_render
from ..store.levels import Level, base_level, pyramid_levels, read_checked
from ..view import View

__all__ = ["TILE_BYTES", "StoreError", "StoredFrame", "StoredPicture", "check_store"]

#: Bytes of decoded tiles a :class:`StoredPicture` keeps (least recently used out first): 96 MiB, about 250
#: tiles of 256x256 with a distance, enough for several 800x600 screens at any level.
TILE_BYTES = 96 * 2**20
_TOL = 1e-9  # relative: a screen step equal to a level's up to rounding is that level's


class StoredFrame(dict):
    """What :meth:`StoredPicture.frame` tells of a frame: ``level``, ``width``/``height`` (the level's samples),
    ``tiles`` (the level's tiles the view overlaps), ``read`` (those read from the store, not the cache) and
    ``name`` (the store's)."""


class StoredPicture:
    """A finished render store, read tile by tile for the explorer's views.

    Parameters
    ----------
    path
        The store (a path, a URL, a :class:`~dfractal_dask.location.Location`).
    storage_options
        fsspec options for a URL.
    tile_bytes
        The most bytes of decoded tiles kept.

    Raises
    ------
    StoreError
        If ``path`` is missing, not a finished render store (a zoom, an
        unfinished render), or its attributes or pyramid are damaged.
    """

    def __init__(
        self,
        path: str | os.PathLike | Location,
        storage_options: Mapping | None = None,
        tile_bytes: int = TILE_BYTES,
    ) -> None:
        if isinstance(tile_bytes, bool) or not isinstance(tile_bytes, int) or tile_bytes < 0:
            raise ValueError(f"tile_bytes must be an integer >= 0, got {tile_bytes!r}")
        self.location = loc = as_location(path, storage_options, name="store")
        ds = open_render(loc)  # missing, of another kind, unfinished, damaged attributes: one StoreError
        meta = StoreMeta.from_attrs(dict(ds.attrs))  # (the store's attributes, checked once)
        self.attrs: dict[str, Any] = meta.attrs
        self.view, self.iters, self.fractal = meta.view, meta.iters, meta.fractal
        self.names = tuple(n for n in ("iterations", "norm", "distance") if n in ds)
        self._dtypes = {n: ds[n].dtype for n in self.names}
        levels = pyramid_levels(loc)
        # no pyramid: the full-resolution samples alone, in their row chunks
        self.levels: list[Level] = levels or [base_level(self.attrs)]
        self.tile_bytes = tile_bytes
        self.nbytes = 0
        #: tiles read from the store, and served from the tile cache
        self.reads = self.hits = 0
        self._tiles: OrderedDict[tuple[int, int, int], dict[str, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._arrays: dict[tuple[int, str], zarr.Array] = {}

    def _array(self, level: Level, name: str) -> zarr.Array:
        key = (level.index, name)
        if key not in self._arrays:
            self._arrays[key] = zarr.open_array(self.location.zarr_store(read_only=True), path=level.array_path(name),
                                                mode="r")  # fmt: skip
        return self._arrays[key]

    @property
    def name(self) -> str:
        """The store's name (its folder's), as a page shows it."""
        return self.location.name

    def home(self, width: int, height: int) -> View:
        """The store's own view (centre and span) on a screen of ``width`` x ``height`` pixels."""
        v = self.view
        return View(v.xpos, v.ypos, v.span, width, height, 1)

    def level_for(self, view: View, iters: int, fractal: Fractal) -> Level | None:
        """The level a frame of ``view`` is read from: the coarsest whose sample step is at most the screen's
        pixel step; ``None`` if the store cannot show it (a view finer than its samples, another fractal or
        iteration limit, a view or store past float64's resolution): the cluster renders it."""
        if iters != self.iters or fractal != self.fractal or view.deep or self.view.deep:
            return None
        screen, step0 = view.step, self.view.step
        if not screen >= step0 * (1 - _TOL):
            return None
        fits = [lv for lv in self.levels if step0 * lv.scale <= screen * (1 + _TOL)]
        return fits[-1]

    def _indices(self, level: Level, view: View) -> tuple[np.ndarray, np.ndarray]:
        """Each screen row's and column's nearest sample of ``level`` (-1: outside the picture), from the
        pixels' global coordinates (origin + index * step, never accumulated)."""
        v0, m = self.view, level.scale
        # a level-k sample i is the mean of level-0 samples i*m .. i*m + m-1: its centre at i*m + (m-1)/2
        u = (view.re(np.arange(view.width)) - v0.re0) / v0.step
        w = (v0.im0 - view.im(np.arange(view.height))) / v0.step
        cols = np.floor((u - (m - 1) / 2) / m + 0.5)
        rows = np.floor((w - (m - 1) / 2) / m + 0.5)
        cols = np.where((cols >= 0) & (cols < level.width), cols, -1).astype(np.int64)
        rows = np.where((rows >= 0) & (rows < level.height), rows, -1).astype(np.int64)
        return rows, cols

    def _tile(self, level: Level, ty: int, tx: int) -> dict[str, np.ndarray]:
        key = (level.index, ty, tx)
        with self._lock:
            if key in self._tiles:
                self._tiles.move_to_end(key)
                self.hits += 1
                return self._tiles[key]
        ch, cw = level.chunks
        y0, x0 = ty * ch, tx * cw
        y1, x1 = min(y0 + ch, level.height), min(x0 + cw, level.width)
        # a chunk that fails to decode (its crc32c) or is missing: a StoreError naming the store
        window = (slice(y0, y1), slice(x0, x1))
        tile = {n: read_checked(self.location, level.index, n, self._array(level, n), window, self.iters)
                for n in self.names}  # fmt: skip
        size = sum(a.nbytes for a in tile.values())
        with self._lock:
            self.reads += 1
            if size <= self.tile_bytes:
                self._tiles[key] = tile
                self.nbytes += size
                while self.nbytes > self.tile_bytes:
                    self.nbytes -= sum(a.nbytes for a in self._tiles.popitem(last=False)[1].values())
        return tile

    def samples(self, view: View, level: Level) -> tuple[dict[str, np.ndarray], np.ndarray, StoredFrame]:
        """The nearest sample of ``level`` under each pixel of ``view``: the arrays (``iterations``, ``norm``
        [, ``distance``], ``(height, width)``), where a pixel is inside the picture, and what was read."""
        rows, cols = self._indices(level, view)
        inside = (rows[:, None] >= 0) & (cols[None, :] >= 0)
        ch, cw = level.chunks
        out = {n: np.zeros((view.height, view.width), self._dtypes[n]) for n in self.names}
        ys, xs = rows[rows >= 0], cols[cols >= 0]
        tiles = read = 0
        if ys.size and xs.size:
            for ty in range(int(ys.min()) // ch, int(ys.max()) // ch + 1):
                ri = np.flatnonzero((rows >= ty * ch) & (rows < (ty + 1) * ch))
                if not ri.size:
                    continue
                for tx in range(int(xs.min()) // cw, int(xs.max()) // cw + 1):
                    ci = np.flatnonzero((cols >= tx * cw) & (cols < (tx + 1) * cw))
                    if not ci.size:
                        continue
                    before = self.reads
                    tile = self._tile(level, ty, tx)
                    tiles, read = tiles + 1, read + self.reads - before
                    sub = np.ix_(rows[ri] - ty * ch, cols[ci] - tx * cw)
                    for n in self.names:
                        out[n][np.ix_(ri, ci)] = tile[n][sub]
        info = StoredFrame(level=level.index, width=level.width, height=level.height, tiles=tiles, read=read,
                           name=self.name)  # fmt: skip
        return out, inside, info

    def frame(
        self, view: View, level: Level, palette, mode: str, step: int
    ) -> tuple[np.ndarray, StoredFrame]:  # fmt: skip
        """The ``(height, width, 4)`` RGBA frame of ``view`` read from ``level`` and coloured with ``palette``,
        ``mode`` (a whole-picture mode such as histogram: over the samples read) and seed ``step``; pixels
        outside the picture transparent.  Returns it and what was read (:class:`StoredFrame`)."""
        data, inside, info = self.samples(view, level)
        data["iterations"] = np.where(inside, data["iterations"], self.iters).astype(data["iterations"].dtype)
        data["norm"] = np.where(inside, data["norm"], np.float32(1)).astype(np.float32)
        if mode in BLOCK_MODES:
            rgba = color_samples(data["iterations"], data["norm"], self.iters, palette, mode, step,
                                 power=self.fractal.power)  # fmt: skip
        else:  # histogram (its cdf from these samples) or distance: the library's whole-picture colouring
            rgba = np.array(colorize(self._dataset(view, level, data), palette, step, mode))
        rgba[~inside] = 0
        return rgba, info

    def _dataset(self, view: View, level: Level, data: dict[str, np.ndarray]) -> xr.Dataset:
        """The screen's samples as a store's dataset (of the screen's view at the level's sample size)."""
        attrs = {**self.attrs, **view.to_attrs(), "supersample": 1, "pyramid_level": level.index}
        return xr.Dataset({n: (("im", "re"), a) for n, a in data.items()}, attrs=attrs)

    def clear(self) -> None:
        """Drop every decoded tile."""
        with self._lock:
            self._tiles.clear()
            self.nbytes = 0


def check_store(store: object) -> StoredPicture | None:
    """``store`` (``None``, a path, a URL, a Location or a :class:`StoredPicture`) as a StoredPicture."""
    if store is None or isinstance(store, StoredPicture):
        return store
    if not isinstance(store, str | os.PathLike | Location):
        raise TypeError(f"store must be a path, a URL or a Location, got {type(store).__name__}")
    return StoredPicture(store)
