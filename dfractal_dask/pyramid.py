"""A render store's multiscale pyramid: coarser levels of its samples, OME-Zarr 0.5.

Layout (beside the store's own level 0; see :mod:`dfractal_dask.store`)::

    pyramid/                     group, attrs["dfractal_pyramid"] = {"tile", "levels", "store_id", "done"}
    pyramid/<k>/iterations, norm[, distance]   level k: ceil(h/2) x ceil(w/2) samples of level k-1,
                                               chunks of TILE x TILE, the codecs and dims of level 0,
                                               a row of tiles a shard (zarr's sharding codec)
    root attrs["ome"]            OME-Zarr 0.5 multiscales (one for iterations, one for norm)

Level ``k`` is reduced from level ``k-1`` over each 2x2 square (the samples an
edge square has): interior if at least half of them are interior (the mean of
their norms), else the mean smooth value ``mu`` of the escaped ones
(:func:`dfractal_dask.colorize.smooth_value`), encoded back as a count and a
norm that give ``mu`` again; the distance estimate is the mean of the same
samples'.  So any colouring of a level looks like the picture from ``2**k``
times farther away.

Levels are computed on the workers, one task per row of tiles (it writes
those tiles only, no other task does), each from the rows of the level below
it needs; a level is marked done only once all its tiles are written, so an
interrupted build resumes at the first level not done.  A render whose blocks
are ``2 * TILE`` rows (:func:`block_rows`) writes level 1 from each block on
the worker that computed it, so level 0 is never read back.

Why shards: a row of tiles is one object (one write, and one read for the
level above it), while a reader of a window still reads only its tiles (byte
ranges from the shard's index).  On the S3 test server the pyramid of a
16384x16384 render took 29.7 s in separate tile objects and 8.7 s in shards
(benchmarks/gigapixel.py, setup (b)).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numba
import numpy as np
import xarray as xr
import zarr
from distributed import Client

from . import store
from .cluster import connect, current_client
from .colorize import log2_power
from .gather import gather_results
from .lease import Lease
from .location import Location, as_location
from .store import _COMPRESSORS, _SAMPLE_VARS, StoreError
from .view import View, parse_coordinate, parse_span

__all__ = [
    "GROUP",
    "PYRAMID_ATTR",
    "TILE",
    "Level",
    "base_level",
    "block_rows",
    "build_pyramid",
    "level_names",
    "no_pyramid",
    "level_shapes",
    "level_view",
    "open_level",
    "pyramid_levels",
    "pyramid_summary",
    "read_level",
    "read_window",
    "reduce_level",
    "verify_pyramid",
]

#: Samples along each side of a level's chunks (level 0 keeps its row blocks).
TILE = 256
#: The group that holds levels 1, 2, ... and its attribute.
GROUP = store.PYRAMID_GROUP
PYRAMID_ATTR = "dfractal_pyramid"


@dataclass(frozen=True)
class Level:
    """One level of a store's pyramid: ``index`` k, its size in samples,
    ``scale`` (``2**k`` level-0 samples a side per sample), its group ``path``
    in the store (``""`` for level 0) and its chunks."""

    index: int
    height: int
    width: int
    scale: int
    path: str
    chunks: tuple[int, int]

    def array_path(self, name: str) -> str:
        """The path in the store of this level's array ``name`` (``iterations``, ``norm``, ``distance``)."""
        return _var_path(self.index, name)


def base_level(attrs: dict[str, Any]) -> Level:
    """Level 0 of the render store with ``attrs``: its own samples, in their row-block chunks."""
    view = View.from_attrs(attrs)
    return Level(0, view.sample_height, view.sample_width, 1, "", (int(attrs["chunk_rows"]), view.sample_width))


def level_shapes(height: int, width: int, tile: int = TILE) -> list[tuple[int, int]]:
    """``(height, width)`` of level 0, 1, ... down to the first level whose
    both sides are at most ``tile`` (level 0 alone if it already fits)."""
    shapes = [(height, width)]
    while max(shapes[-1]) > tile:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes


def _level_path(k: int) -> str:
    return "" if k == 0 else f"{GROUP}/{k}"


def _var_path(k: int, name: str) -> str:
    return name if k == 0 else f"{GROUP}/{k}/{name}"


# -- the reduction (Numba, numpy arrays only) ------------------------------------


def _loglog_table() -> np.ndarray:
    # log2(0.5 * log2(x)) at every float32 whose low 15 bits are 0 (its sign, exponent and
    # top 8 mantissa bits: 2**16 + 1 points); a sample's value is interpolated between its
    # two neighbours (error < 4e-6 on the seed default view).  Why a table: the reduction
    # reads every sample of level 0 and two float64 log2 took most of its time; the
    # kernel section of benchmarks/gigapixel.py measures both in the same run.
    x = (np.arange(2**16 + 1, dtype=np.uint64) << np.uint64(15)).astype(np.uint32).view(np.float32)
    with np.errstate(all="ignore"):
        return np.log2(0.5 * np.log2(x.astype(np.float64)))


_LOGLOG = _loglog_table()
# the bit patterns the table serves: from 4.0 (below, the double log is steep; escaped
# samples have |z|^2 > 4) to the last float32 whose next table point is finite
_LOGLOG_LOW = int(np.float32(4.0).view(np.uint32))
_LOGLOG_HIGH = int(np.float32(np.finfo(np.float32).max).view(np.uint32)) - (1 << 15)


@numba.njit(cache=True, nogil=True)
def _reduce_kernel(it, norm, bits, de, iters, lp, table, low, high, it_out, norm_out, de_out):  # pragma: no cover
    # each output sample from the (up to) 2x2 samples it covers, summed a pair of rows at a
    # time; de empty: no distances.  mu = it + 1 - log2(0.5 * log2(norm)) / lp (colorize._nu)
    h, w = it.shape
    ho, wo = it_out.shape
    with_de = de.size != 0
    inv = 1.0 / lp
    s_n = np.empty(wo)
    s_in = np.empty(wo)
    s_norm = np.empty(wo)
    s_mu = np.empty(wo)
    s_de_in = np.empty(wo)
    n_de_in = np.empty(wo)
    s_de = np.empty(wo)
    n_de = np.empty(wo)
    for i in range(ho):
        s_n[:] = 0.0
        s_in[:] = 0.0
        s_norm[:] = 0.0
        s_mu[:] = 0.0
        if with_de:
            s_de_in[:] = 0.0
            n_de_in[:] = 0.0
            s_de[:] = 0.0
            n_de[:] = 0.0
        for r in range(2 * i, min(2 * i + 2, h)):
            for c in range(w):
                j = c >> 1
                s_n[j] += 1.0
                inside = it[r, c] >= iters
                if inside:
                    s_in[j] += 1.0
                    s_norm[j] += norm[r, c]
                else:
                    b = bits[r, c]
                    if low <= b < high:
                        k = b >> 15
                        a = table[k]
                        t = a + np.float64(b & 0x7FFF) * (1.0 / 32768.0) * (table[k + 1] - a)
                    else:
                        t = np.log2(0.5 * np.log2(np.float64(norm[r, c])))
                    s_mu[j] += np.float64(it[r, c]) + 1.0 - t * inv
                if with_de:
                    d = np.float64(de[r, c])
                    if np.isfinite(d):
                        if inside:
                            s_de_in[j] += d
                            n_de_in[j] += 1.0
                        else:
                            s_de[j] += d
                            n_de[j] += 1.0
        for j in range(wo):
            if 2.0 * s_in[j] >= s_n[j]:  # an interior majority (or half): interior
                it_out[i, j] = iters
                norm_out[i, j] = s_norm[j] / s_in[j]
                if with_de:
                    de_out[i, j] = s_de_in[j] / n_de_in[j] if n_de_in[j] else np.nan
                continue
            m = s_mu[j] / (s_n[j] - s_in[j])
            # mu = k + 1 - log2(0.5 * log2(norm)) / lp  =>  norm = 2 ** (2 * 2 ** ((k + 1 - mu) * lp))
            k = min(max(np.floor(m), 0.0), iters - 1.0)
            e = 2.0 * np.exp2((k + 1.0 - m) * lp)
            it_out[i, j] = np.int64(k)
            norm_out[i, j] = np.exp2(e) if e < 127.0 else 1.7e38  # (float32 ends at 2**128)
            if with_de:
                de_out[i, j] = s_de[j] / n_de[j] if n_de[j] else np.nan


def reduce_level(
    iterations: np.ndarray,
    norm: np.ndarray,
    iters: int,
    power: int = 2,
    distance: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One pyramid step: each 2x2 square of samples (an edge square: the ones
    it has) reduced to one, as the module docstring says.

    Parameters
    ----------
    iterations, norm
        A level's samples (2-D, the same shape).
    iters
        The iteration limit (a count of ``iters`` is interior).
    power
        The map's power ``d`` (``z**d + c``): the smooth value's log base.
    distance
        The level's distance estimates, if it has them.

    Returns
    -------
    dict
        ``iterations``, ``norm`` (and ``distance``) of the reduced level,
        ``ceil(h/2) x ceil(w/2)``, of the input dtypes.
    """
    it = np.ascontiguousarray(iterations)
    nm = np.ascontiguousarray(norm, np.float32)
    if it.ndim != 2 or it.shape != nm.shape:
        raise ValueError(f"iterations {it.shape} and norm {nm.shape} must be 2-D arrays of one shape")
    de = np.empty((0, 0), np.float32) if distance is None else np.ascontiguousarray(distance, np.float32)
    if distance is not None and de.shape != it.shape:
        raise ValueError(f"distance {de.shape} and iterations {it.shape} differ in shape")
    shape = (-(-it.shape[0] // 2), -(-it.shape[1] // 2))
    out = {"iterations": np.empty(shape, it.dtype), "norm": np.empty(shape, np.float32)}
    de_out = np.empty(shape if distance is not None else (0, 0), np.float32)
    _reduce_kernel(
        it,
        nm,
        nm.view(np.uint32),
        de,
        int(iters),
        log2_power(power),
        _LOGLOG,
        _LOGLOG_LOW,
        _LOGLOG_HIGH,
        out["iterations"],
        out["norm"],
        de_out,
    )
    if distance is not None:
        out["distance"] = de_out
    return out


# -- reading ---------------------------------------------------------------------


def _unwritten(name: str, base: zarr.Array, iters: int) -> Any:
    # what a level's tile never written (or deleted) reads as: a count above the limit, which
    # no sample has, so read_checked tells it from a written tile (norm: NaN, which none has either)
    if name == "iterations" and iters < np.iinfo(base.dtype).max:
        return iters + 1
    return base.fill_value


def read_checked(loc: Location, k: int, name: str, arr: zarr.Array, sel: tuple[slice, slice], iters: int) -> np.ndarray:
    """``arr[sel]``, samples of the array ``name`` of level ``k`` of the store at ``loc``, checked.

    Parameters
    ----------
    loc, k, name
        The store, the level and the array (for the message).
    arr
        That array, open.
    sel
        The rows and columns to read.
    iters
        The store's iteration limit.

    Raises
    ------
    StoreError
        One line, for a tile that fails to decode (its crc32c) or that is
        missing (read as :func:`_unwritten`'s values; a level above 0).
    """
    try:
        data = np.asarray(arr[sel])
    except Exception as exc:  # zarr and its codecs raise many kinds on damaged chunks
        raise _tile_damaged(loc, k, name, sel, store._short(exc)) from None
    if k > 0 and ((name == "iterations" and (data > iters).any()) or (name == "norm" and np.isnan(data).any())):
        raise _tile_damaged(loc, k, name, sel, "a tile of it is missing")
    return data


def _tile_damaged(loc: Location, k: int, name: str, sel: tuple[slice, slice], why: str) -> StoreError:
    (y0, y1), (x0, x1) = ((s.start, "" if s.stop is None else s.stop) for s in sel)
    where = f"{_var_path(k, name)} [{y0}:{y1}, {x0}:{x1}]"
    return StoreError(f"{loc} has a damaged pyramid: {where}: {why}; render it again with overwrite=True")


class _CheckedLevel:
    """A level's array as dask reads it (``da.from_array``): each chunk through :func:`read_checked`."""

    def __init__(self, loc: Location, k: int, name: str, arr: zarr.Array, iters: int) -> None:
        self.loc, self.k, self.name, self.arr, self.iters = loc, k, name, arr, iters
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, 2

    def __getitem__(self, sel: tuple[slice, slice]) -> np.ndarray:
        return read_checked(self.loc, self.k, self.name, self.arr, sel, self.iters)


def _pyramid_attrs(loc: Location) -> dict[str, Any] | None:
    return store._attrs(loc.child(GROUP)) if loc.exists(f"{GROUP}/zarr.json") else None


def level_names(attrs: dict[str, Any]) -> list[str]:
    """The sample arrays a store with ``attrs`` has at every level (``distance`` if rendered with it)."""
    return [v for v in _SAMPLE_VARS if v != "distance" or attrs.get("distance")]


def _damaged(loc: Location, why: str) -> StoreError:
    return StoreError(f"{loc} has a damaged pyramid: {why}; build it again (build_pyramid)")


def _is_count(value: object, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def _levels_of(loc: Location, attrs: dict[str, Any], *, finished: bool = True) -> list[Level]:
    # the levels of the store at ``loc`` (its attrs checked), [] without a (finished) pyramid
    pyr = _pyramid_attrs(loc)
    if pyr is None and loc.exists(f"{GROUP}/zarr.json"):
        raise _damaged(loc, f"{GROUP}/zarr.json is no Zarr group's")
    meta = (pyr or {}).get(PYRAMID_ATTR)
    if meta is None:
        return []
    if not isinstance(meta, dict) or not all(k in meta for k in ("tile", "levels", "store_id", "done")):
        raise _damaged(loc, f"its attribute {PYRAMID_ATTR} is {meta!r}")
    if meta["store_id"] != attrs.get("store_id"):
        return []  # the pyramid of a store this one replaced
    # (a tile size below 1 would make level_shapes endless; a done list of other things, a wrong sort)
    if not _is_count(meta["tile"], 1):
        raise _damaged(loc, f"its tile size is {meta['tile']!r}")
    if not isinstance(meta["done"], list) or not all(_is_count(k, 1) for k in meta["done"]):
        raise _damaged(loc, f"its list of levels done is {meta['done']!r}")
    tile = meta["tile"]
    view = View.from_attrs(attrs)
    shapes = level_shapes(view.sample_height, view.sample_width, tile)
    if meta["levels"] != len(shapes) - 1:
        raise _damaged(loc, f"it says {meta['levels']!r} levels, the store's size makes {len(shapes) - 1}")
    if finished and not set(range(1, len(shapes))) <= set(meta["done"]):
        return []
    if finished:
        _check_arrays(loc, attrs, shapes, tile, range(1, len(shapes)))
        # (written once every level is done: without it, OME-Zarr readers see no pyramid)
        if attrs.get("ome") != _ome(level_names(attrs), len(shapes)):
            raise _damaged(loc, "the store's OME-Zarr metadata (its attribute ome) are missing or altered")
    levels = [base_level(attrs)]
    levels += [Level(k, h, w, 2**k, _level_path(k), (tile, tile)) for k, (h, w) in enumerate(shapes[1:], 1)]
    return levels


def _check_arrays(loc: Location, attrs: dict[str, Any], shapes: list[tuple[int, int]], tile: int, ks: range) -> None:
    """A StoreError unless levels ``ks``' arrays are there, of their shapes, chunks and dtypes."""
    zstore = loc.zarr_store(read_only=True)
    for name in level_names(attrs):
        dtype = None
        for k in ks:
            try:
                if dtype is None:  # level 0's, once
                    dtype = zarr.open_array(zstore, path=name, mode="r").dtype
                arr = zarr.open_array(zstore, path=_var_path(k, name), mode="r")
            except Exception as exc:  # zarr raises many kinds on damaged stores
                raise _damaged(loc, f"{_var_path(k, name)}: {store._short(exc)}") from None
            if arr.shape != shapes[k]:
                raise _damaged(loc, f"{_var_path(k, name)} is {arr.shape}, not {shapes[k]}")
            # (else its chunks are read as garbage, or fail to reshape, tile by tile)
            if arr.chunks != (tile, tile) or arr.dtype != dtype:
                raise _damaged(loc, f"{_var_path(k, name)} is {arr.dtype} in chunks of {arr.chunks}, not "
                                    f"{dtype} in chunks of {(tile, tile)}")  # fmt: skip


def pyramid_levels(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> list[Level]:
    """The levels of a render store's pyramid, level 0 first.

    Parameters
    ----------
    path
        A render store (a local path or a URL fsspec opens).
    storage_options
        For a URL: fsspec options.

    Returns
    -------
    list of Level
        ``[]`` if the store has no pyramid, or one not (yet) fully built.

    Raises
    ------
    StoreError
        If ``path`` is no render store, or its pyramid is damaged.
    """
    loc = as_location(path, storage_options, name="path")
    return _levels_of(loc, store.store_attrs(loc))


def pyramid_summary(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> str:
    """One line on the pyramid of the render store at ``path`` (``dfractal info``):
    its levels and sizes, how far an unfinished one got, or why it is damaged;
    ``""`` if the store has none."""
    loc = as_location(path, storage_options, name="path")
    attrs = store.store_attrs(loc)
    try:
        levels = _levels_of(loc, attrs)  # (first: it checks the attribute read below)
        meta = (_pyramid_attrs(loc) or {}).get(PYRAMID_ATTR)
        if meta is None:
            return ""
        if levels:
            sizes = ", ".join(f"{lv.index}: {lv.width}x{lv.height}" for lv in levels[1:]) or "level 0 only"
            return f"pyramid: {len(levels) - 1} levels above the samples ({sizes}; tiles of {meta['tile']})"
        if meta.get("store_id") != attrs.get("store_id"):
            return "pyramid: of a store this one replaced (build_pyramid builds it again)"
        built = _levels_of(loc, attrs, finished=False)
        return (f"pyramid: unfinished, levels {sorted(meta['done'])} of 1..{len(built) - 1} done "
                "(build_pyramid, or `dfractal render --resume --pyramid`, finishes it)")  # fmt: skip
    except StoreError as exc:
        return f"pyramid: damaged ({exc})"


def no_pyramid(loc: Location, none: str = "no pyramid (render it with pyramid=True, or build_pyramid)") -> str:
    """Why a render store gives no pyramid levels, for an error's words:
    ``none`` if it has none, or an unfinished one and what finishes it
    (:func:`pyramid_summary`'s words)."""
    summary = pyramid_summary(loc).removeprefix("pyramid: ")
    return f"no finished pyramid: {summary}" if summary else none


def verify_pyramid(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> list[str]:
    """Read every tile of a store's finished pyramid: what is damaged, a line each.

    Parameters
    ----------
    path
        A render store.
    storage_options
        For a URL: fsspec options.

    Returns
    -------
    list of str
        A line for each tile that fails to decode or is missing; ``[]`` for
        a sound pyramid, or none (or one not finished).

    Raises
    ------
    StoreError
        If ``path`` is no render store, or its pyramid's metadata are damaged.
    """
    loc = as_location(path, storage_options, name="path")
    attrs = store.store_attrs(loc)
    zstore = loc.zarr_store(read_only=True)
    damaged = []
    for level in _levels_of(loc, attrs)[1:]:
        for name in level_names(attrs):
            arr = zarr.open_array(zstore, path=_var_path(level.index, name), mode="r")
            for y in range(0, level.height, level.chunks[0]):
                for x in range(0, level.width, level.chunks[1]):
                    tile = (slice(y, y + level.chunks[0]), slice(x, x + level.chunks[1]))
                    try:
                        read_checked(loc, level.index, name, arr, tile, int(attrs["iters"]))
                    except StoreError as exc:
                        damaged.append(str(exc))
    return damaged


def _check_level(loc: Location, k: object) -> tuple[dict[str, Any], list[Level], int]:
    attrs = store.store_attrs(loc)
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an integer level, got {k!r}")
    if attrs.get("dfractal_kind") == store.ZOOM:
        raise ValueError(f"path {loc} holds a zoom, which has no pyramid")
    levels = _levels_of(loc, attrs)
    if not levels:
        raise ValueError(f"path {loc} has {no_pyramid(loc)}")
    if not 0 <= k < len(levels):
        raise ValueError(f"k must be a level of 0..{len(levels) - 1}, got {k}")
    return attrs, levels, int(k)


def level_view(view: View, k: int) -> View:
    """The view whose samples are level ``k``'s of ``view``'s: ``2**k`` times
    the step, centred where the level's samples are (an odd size shifts the
    centre by a fraction of a step)."""
    if k == 0:
        return view
    s = 2**k
    h, w = level_shapes(view.sample_height, view.sample_width, 1)[k]
    step = view.step_exact
    # level-k sample p covers level-0 samples p*s .. p*s + s-1: its centre is at p*s + (s-1)/2
    dx = Fraction(s * w - view.sample_width, 2) * step
    dy = -Fraction(s * h - view.sample_height, 2) * step
    span = s * step * max(w - 1, 1)
    if not view.deep:
        return View(float(view.xpos) + float(dx), float(view.ypos) + float(dy), float(span), w, h, 1)
    cre, cim = view.centre
    with localcontext() as ctx:
        ctx.prec = max(len(cre.as_tuple().digits), len(cim.as_tuple().digits)) + 40

        def dec(q: Fraction) -> Decimal:
            return Decimal(q.numerator) / Decimal(q.denominator)

        return View(parse_coordinate("xpos", cre + dec(dx)), parse_coordinate("ypos", cim + dec(dy)),
                    parse_span("span", dec(span)), w, h, 1)  # fmt: skip


def _level_attrs(attrs: dict[str, Any], k: int) -> dict[str, Any]:
    view = level_view(View.from_attrs(attrs), k)
    return {**attrs, **view.to_attrs(), "pyramid_level": k, "pyramid_scale": 2**k}


def open_level(path: str | os.PathLike | Location, k: int, storage_options: Mapping | None = None) -> xr.Dataset:
    """Level ``k`` of a store's pyramid, lazily (dask arrays, chunked as stored).

    Parameters
    ----------
    path
        A render store with a finished pyramid.
    k
        The level: 0 (the store's own samples) .. ``len(pyramid_levels(path)) - 1``.
    storage_options
        For a URL: fsspec options.

    Returns
    -------
    xarray.Dataset
        ``iterations``, ``norm`` (and ``distance``) on ``(im, re)``, with the
        coordinates of the level's sample centres; attrs: the store's, its view
        that of the level (:func:`level_view`, so colouring works on it as on a
        store), and ``pyramid_level`` k, ``pyramid_scale`` ``2**k``.

    Raises
    ------
    TypeError, ValueError
        For a ``k`` that is not a level, or a store without a pyramid.
    """
    loc = as_location(path, storage_options, name="path")
    attrs, _, k = _check_level(loc, k)
    level_attrs = _level_attrs(attrs, k)
    if k == 0:
        ds = store.open_render(loc)
        return ds[level_names(attrs)].assign_attrs(level_attrs)
    view = View.from_attrs(level_attrs)
    zstore = loc.zarr_store(read_only=True)
    data = {}
    for name in level_names(attrs):
        arr = zarr.open_array(zstore, path=_var_path(k, name), mode="r")
        checked = _CheckedLevel(loc, k, name, arr, int(attrs["iters"]))
        lazy = da.from_array(checked, chunks=arr.chunks, name=f"pyramid-{k}-{name}-{attrs['store_id']}",
                             asarray=True, meta=np.empty((0, 0), arr.dtype))  # fmt: skip
        data[name] = (("im", "re"), lazy)
    return xr.Dataset(data, coords=view.coords(), attrs=level_attrs)


def read_window(
    path: str | os.PathLike | Location,
    k: int,
    y0: int,
    y1: int,
    x0: int,
    x1: int,
    storage_options: Mapping | None = None,
) -> dict[str, np.ndarray]:
    """Samples ``[y0:y1, x0:x1]`` of level ``k``, reading only the chunks that overlap them.

    Returns
    -------
    dict
        ``iterations``, ``norm`` (and ``distance``): numpy arrays of the window.

    Raises
    ------
    TypeError, ValueError
        For a ``k`` that is not a level, a store without a pyramid, or a
        window that is empty or reaches outside the level.
    """
    loc = as_location(path, storage_options, name="path")
    attrs, levels, k = _check_level(loc, k)
    level = levels[k]
    for name, value, top in (("y0", y0, level.height), ("y1", y1, level.height),
                             ("x0", x0, level.width), ("x1", x1, level.width)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        if not 0 <= value <= top:
            raise ValueError(f"{name} must be in 0..{top} (level {k} is {level.width}x{level.height}), got {value}")
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"the window [{y0}:{y1}, {x0}:{x1}] is empty")
    window = (slice(int(y0), int(y1)), slice(int(x0), int(x1)))
    return read_level(loc, k, level_names(attrs), window, int(attrs["iters"]), attrs.get("store_id"))


def read_level(
    loc: Location, k: int, names: list[str], sel: tuple[slice, slice], iters: int, store_id: str | None
) -> dict[str, np.ndarray]:
    """The arrays ``names`` of level ``k`` at ``sel``, each read through
    :func:`read_checked`, for a caller that has checked the level exists
    (:func:`read_window` does; a worker's task was given it): no metadata
    read again but the arrays' own (cached by ``store_id``)."""
    return {n: read_checked(loc, k, n, store._array(loc, _var_path(k, n), store_id, read_only=True), sel, iters)
            for n in names}  # fmt: skip


def _write_level(loc: Location, k: int, y0: int, out: dict[str, np.ndarray], store_id: str | None, what: str) -> int:
    # the rows from y0 of level k's arrays (whole rows of its tiles: one task's alone); the bytes given
    nbytes = 0
    for name, data in out.items():
        arr = store._array(loc, _var_path(k, name), store_id)
        with store._writing(loc, f"level {k} {what} of {name}"):
            arr[y0 : y0 + data.shape[0]] = data
        nbytes += data.nbytes
    return nbytes


# -- building (the workers write; the client keeps the record) -------------------


def _build_band(
    loc: Location,
    k: int,
    band: int,
    names: list[str],
    iters: int,
    power: int,
    store_id: str | None,
    below_height: int,
    *_after: object,
) -> dict[str, Any]:
    """Write the row ``band`` of level ``k``'s tiles from the rows of level
    ``k-1`` below them (runs on a worker; ``_after``: the tasks that wrote those).
    Returns a small record."""
    if store_id is not None:
        store.check_identity(loc, store_id)
    r0, r1 = 2 * band * TILE, min(2 * (band + 1) * TILE, below_height)
    src = read_level(loc, k - 1, names, (slice(r0, r1), slice(0, None)), iters, store_id)
    out = reduce_level(src["iterations"], src["norm"], iters, power, src.get("distance"))
    return {"level": k, "band": band, "bytes": _write_level(loc, k, band * TILE, out, store_id, f"tile row {band}")}


def _ome(names: list[str], n_levels: int) -> dict[str, Any]:
    axes = [{"name": "im", "type": "space"}, {"name": "re", "type": "space"}]
    multiscales = []
    for name in names[:2]:  # iterations and norm (the distance rides along, as the contract has it)
        datasets = [{"path": name, "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]}]
        for k in range(1, n_levels):
            t = (2**k - 1) / 2
            datasets.append(
                {
                    "path": _var_path(k, name),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [float(2**k)] * 2},
                        {"type": "translation", "translation": [t, t]},
                    ],
                }
            )
        multiscales.append({"name": name, "axes": axes, "datasets": datasets})
    return {"version": "0.5", "multiscales": multiscales}


def _prepare(loc: Location, attrs: dict[str, Any]) -> tuple[list[tuple[int, int]], set[int]]:
    """Make (or keep) the pyramid's group and arrays; the level shapes and
    the levels already done (a prefix 1..m of them)."""
    view = View.from_attrs(attrs)
    shapes = level_shapes(view.sample_height, view.sample_width)
    names = level_names(attrs)
    store_id = attrs.get("store_id")
    pyr = (_pyramid_attrs(loc) or {}).get(PYRAMID_ATTR)
    want = {"tile": TILE, "levels": len(shapes) - 1, "store_id": store_id}
    if isinstance(pyr, dict) and {k: pyr.get(k) for k in want} == want and isinstance(pyr.get("done"), list):
        done, m = set(pyr["done"]), 0
        while m + 1 in done:
            m += 1
        try:
            _check_arrays(loc, attrs, shapes, TILE, range(1, len(shapes)))
        except StoreError:
            m = -1  # start again, below
        if m >= 0:
            _clear_partials(loc)
            return shapes, set(range(1, m + 1))
    for key in loc.list_keys():  # another store's pyramid, or a damaged one: start again
        if key.startswith(GROUP + "/"):
            loc.delete(key)
    zstore = loc.zarr_store()
    zarr.create_group(zstore, path=GROUP, attributes={PYRAMID_ATTR: {**want, "done": []}}, overwrite=True)
    for k, shape in enumerate(shapes[1:], 1):
        zarr.create_group(zstore, path=_level_path(k), overwrite=True)
        for name in names:
            base = zarr.open_array(zstore, path=name, mode="r")
            zarr.create_array(
                zstore, name=_var_path(k, name), shape=shape, chunks=(TILE, TILE), dtype=base.dtype,
                shards=(TILE, -(-shape[1] // TILE) * TILE),  # a row of tiles a shard: see the module docstring
                compressors=list(_COMPRESSORS), fill_value=_unwritten(name, base, int(attrs["iters"])),
                dimension_names=("im", "re"),
                attributes=dict(base.attrs), overwrite=True,
            )  # fmt: skip
    return shapes, set()


def block_rows(view: View) -> int | None:
    """Rows per block for a pyramid render of ``view``: ``2 * TILE``, so each
    block writes a whole row of level 1's tiles itself (no reading level 0
    back), when the picture is tall enough for 8 such blocks and it is a
    multiple of the supersampling; else ``None`` (the default rows)."""
    rows = 2 * TILE
    if view.sample_height >= 8 * rows and rows % view.supersample == 0:
        return rows
    return None


def levels_in_blocks(view: View, chunk_rows: int) -> bool:
    """Whether a render of ``view`` in blocks of ``chunk_rows`` rows can write
    level 1 from its blocks: each block's rows make whole rows of its tiles."""
    return chunk_rows % (2 * TILE) == 0 and len(level_shapes(view.sample_height, view.sample_width)) > 1


def prepare_render(loc: Location, fresh: bool, in_blocks: bool) -> bool:
    """Before a pyramid render's blocks (on the client, its lease held): make
    (or keep) the pyramid's arrays.  Returns whether level 1 comes from the
    blocks: for a new store when ``in_blocks``; for a resumed one only if its
    pyramid was begun so (blocks done before without it have no level 1)."""
    attrs = store.store_attrs(loc)
    meta = (_pyramid_attrs(loc) or {}).get(PYRAMID_ATTR) if not fresh else None
    was = isinstance(meta, dict) and bool(meta.get("in_blocks")) and meta.get("store_id") == attrs.get("store_id")
    _prepare(loc, attrs)
    use = in_blocks and (fresh or was)
    group = zarr.open_group(loc.zarr_store(), path=GROUP, mode="r+")
    group.attrs[PYRAMID_ATTR] = {**dict(group.attrs[PYRAMID_ATTR]), "in_blocks": use}  # type: ignore[arg-type]
    return use


def write_block_level(loc: Location, row0: int, result: tuple, iters: int, power: int, store_id: str | None) -> int:
    """Level 1's rows of one block (its level-0 samples ``result`` from row
    ``row0``, a multiple of ``2 * TILE``): reduced and written on the worker
    that computed them, before the block's own chunks (so a block marked done
    has its level 1).  Returns the bytes given to the store."""
    it, norm, _work, *distance = result
    out = reduce_level(it, norm, iters, power, distance[0] if distance else None)
    y0 = row0 // 2
    if store_id is not None:
        store.check_identity(loc, store_id)
    return _write_level(loc, 1, y0, out, store_id, f"rows {y0}-{y0 + out['iterations'].shape[0]}")


def mark_block_level(loc: Location, store_id: str | None) -> None:
    """Level 1 done (every block wrote its rows): after a render's blocks."""
    meta = (_pyramid_attrs(loc) or {}).get(PYRAMID_ATTR) or {}
    _mark_done(loc, store_id, {1, *meta.get("done", [])})


def _clear_partials(loc: Location) -> None:
    # what a killed tile write left in a local store (see store.clear_leftovers)
    if loc.is_local:
        for leftover in Path(loc.url, GROUP).glob("*/*/c/**/*.partial"):
            leftover.unlink(missing_ok=True)


def _mark_done(loc: Location, store_id: str | None, done: set[int]) -> None:
    if store_id is not None:
        store.check_identity(loc, store_id)
    group = zarr.open_group(loc.zarr_store(), path=GROUP, mode="r+")
    meta = dict(group.attrs[PYRAMID_ATTR])  # type: ignore[arg-type]  # (a dict: _prepare wrote it)
    group.attrs[PYRAMID_ATTR] = {**meta, "done": sorted(done)}


def _write_ome(loc: Location, names: list[str], n_levels: int) -> None:
    group = zarr.open_group(loc.zarr_store(), mode="r+")
    group.attrs["ome"] = _ome(names, n_levels)


def build_pyramid(
    path: str | os.PathLike | Location,
    client: Client | str | None = None,
    storage_options: Mapping | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Level]:
    """(Re)build the pyramid of a finished render store on the workers.

    Every level is computed from the one below it by the workers (one task a
    row of tiles, each tile written by exactly one task); only small records
    come back.  Levels already done are kept; a level is marked done once all
    its tiles are written.

    Parameters
    ----------
    path
        A finished render store (a local path or a URL every worker reaches).
    client
        A Client, a scheduler address, or ``None`` for the current default
        client or else an embedded LocalCluster started for this call.
    storage_options
        For a URL: fsspec options.
    progress
        Called as ``progress(done, total)`` as rows of tiles finish.

    Returns
    -------
    list of Level
        The levels, level 0 first (:func:`pyramid_levels`).

    Raises
    ------
    StoreError
        If ``path`` is no finished render store, or it was replaced meanwhile.
    """
    if client is not None and not isinstance(client, Client | str):
        raise TypeError(f"client must be a Client, a scheduler address or None, got {client!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, got {progress!r}")
    loc = as_location(path, storage_options, name="path")
    store.open_render(loc)  # a finished render (not a zoom), or a StoreError saying what it is
    with Lease(loc, "dfractal pyramid"), connect(client if client is not None else current_client()) as c:
        build_on(c, loc, progress)
    return pyramid_levels(loc)


def build_on(c: Client, loc: Location, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """:func:`build_pyramid` on the client ``c`` of a store whose lease the
    caller holds (e.g. :func:`dfractal_dask.render` after its blocks); returns
    what it did: ``levels``, ``tiles`` and ``bytes`` written, ``seconds``."""
    t0 = time.perf_counter()
    attrs = store.store_attrs(loc)
    store_id = attrs.get("store_id")
    shapes, done = _prepare(loc, attrs)
    names = level_names(attrs)
    iters, power = int(attrs["iters"]), int(attrs.get("power", 2))
    build = dask.delayed(_build_band, pure=False)
    build_id = uuid.uuid4().hex  # in every task's key: the stall report names the workers holding them
    tasks: dict[tuple[int, int], Any] = {}
    for k in range(1, len(shapes)):
        if k in done:
            continue
        h = shapes[k][0]
        below = shapes[k - 1][0]
        for band in range(-(-h // TILE)):
            # the level-(k-1) tasks whose rows this band reads (none for a level already done)
            after = [tasks[(k - 1, b)] for b in (2 * band, 2 * band + 1) if (k - 1, b) in tasks]
            key = f"pyramid-{k}-{band}-{build_id}"
            tasks[(k, band)] = build(loc, k, band, names, iters, power, store_id, below, *after, dask_key_name=key)
    total = len(tasks)
    left = {k: sum(1 for lk, _ in tasks if lk == k) for k in range(1, len(shapes)) if k not in done}
    stats = {"levels": len(shapes) - 1, "tiles": 0, "bytes": 0, "seconds": 0.0}
    if progress:
        progress(0, total)
    futures = c.compute(list(tasks.values()))
    finished = 0
    again = "build it again (build_pyramid, or render --resume --pyramid) to go on"
    for rec in gather_results(c, futures, None, build_id, "pyramid", unit="rows of tiles", resume=again):
        finished += 1
        stats["bytes"] += rec["bytes"]
        stats["tiles"] += -(-shapes[rec["level"]][1] // TILE)
        left[rec["level"]] -= 1
        marked = len(done)
        while left.get(len(done) + 1) == 0:  # (levels finish in order: each needs the one below)
            done.add(len(done) + 1)
        if len(done) > marked:
            if len(done) == len(shapes) - 1:  # first: a pyramid marked finished has its OME metadata
                _write_ome(loc, names, len(shapes))
            _mark_done(loc, store_id, done)
        if progress:
            progress(finished, total)
    if not tasks:  # every level was done already (e.g. level 1 alone, from the blocks)
        _write_ome(loc, names, len(shapes))
    stats["seconds"] = time.perf_counter() - t0
    return stats
