"""A render store's pyramid as stored: its levels' arrays, records, reading and checking.

The pyramid's keys are :mod:`dfractal_dask.store.layout`'s; what a level
holds and how it is computed is :mod:`dfractal_dask.pyramid`'s.  Every tile
of every level has a CRC-32C in its level's record (``tile_crc``), written
with it by the task that wrote the tile, so a tile that is missing,
truncated, garbled or swapped with another is told from what was written,
by :func:`verify_levels` and by every read (:func:`read_checked`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import Crc32cCodec

from ..location import Location, as_location
from ..spec import ZOOM
from ..view import View, parse_coordinate, parse_span
from .layout import (
    METADATA,
    PYRAMID_ATTR,
    PYRAMID_GROUP,
    SAMPLE_VARS,
    TILE,
    array_path,
    chunk_key,
    level_group,
    level_shapes,
    owns,
    tile_record,
)
from .meta import StoreMeta
from .samples import (
    COMPRESSORS,
    FORMAT,
    StoreError,
    check_identity,
    clear_leftovers,
    crc,
    group_attrs,
    open_array,
    open_render,
    read_block,
    read_tolerant,
    rewrite,
    short,
    store_attrs,
    writing,
)

__all__ = [
    "Level",
    "base_level",
    "level_names",
    "level_view",
    "no_pyramid",
    "open_level",
    "check_metadata",
    "group_damage",
    "level_keys",
    "mark_levels_done",
    "prepare",
    "pyramid_attrs",
    "pyramid_levels",
    "pyramid_summary",
    "read_checked",
    "read_level",
    "read_window",
    "tile_record_of",
    "verify_levels",
    "verify_pyramid",
    "write_band",
    "write_ome",
]


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
        return array_path(self.index, name)


def base_level(attrs: dict[str, Any]) -> Level:
    """Level 0 of the render store with ``attrs``: its own samples, in their row-block chunks."""
    view = View.from_attrs(attrs)
    return Level(0, view.sample_height, view.sample_width, 1, "", (int(attrs["chunk_rows"]), view.sample_width))


# -- reading ---------------------------------------------------------------------


def _unwritten(name: str, dtype: np.dtype, iters: int) -> Any:
    # what a level's tile never written (or deleted) reads as: a count above the limit, which
    # no sample has (norm and distance: NaN), so a missing tile is told as such
    if name == "iterations":
        return iters + 1 if iters < np.iinfo(dtype).max else 0
    return np.nan


def read_checked(loc: Location, k: int, name: str, arr: zarr.Array, sel: tuple[slice, slice], iters: int) -> np.ndarray:
    """``arr[sel]``, samples of the array ``name`` of level ``k`` of the store at ``loc``, checked.

    The whole tiles (level 0: row blocks) under ``sel`` are read and each is
    compared with its record, so a tile that is missing, truncated, garbled
    or another tile's is an error naming it, never samples.

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
        One line naming the tile (level 0: the block) that is damaged.
    """
    if k == 0:
        return _read_base(loc, name, arr, sel)
    rows, cols = (s.indices(n) for s, n in zip(sel, arr.shape, strict=True))
    ty0, ty1 = rows[0] // TILE, -(-rows[1] // TILE)
    tx0, tx1 = cols[0] // TILE, -(-cols[1] // TILE)
    whole = (slice(ty0 * TILE, ty1 * TILE), slice(tx0 * TILE, tx1 * TILE))
    try:
        data = np.asarray(arr[whole])
    except Exception as exc:  # zarr and its codecs raise many kinds on damaged chunks
        raise _tile_damaged(loc, k, name, (ty0, tx0), f"cannot be decoded ({short(exc)})") from None
    if store_attrs(loc)["dfractal_format"] < FORMAT:  # an older pyramid: no record of its tiles, only gaps told
        if (name == "iterations" and (data > iters).any()) or (name == "norm" and np.isnan(data).any()):
            raise _tile_damaged(loc, k, name, (ty0, tx0), "missing")
        return data[rows[0] - ty0 * TILE : rows[1] - ty0 * TILE, cols[0] - tx0 * TILE : cols[1] - tx0 * TILE]
    record, index = tile_record_of(loc, k, name)
    fresh = False
    for ty in range(ty0, ty1):
        for tx in range(tx0, tx1):
            tile = data[(ty - ty0) * TILE : (ty - ty0 + 1) * TILE, (tx - tx0) * TILE : (tx - tx0 + 1) * TILE]
            got = crc(tile)
            if got != record[ty, tx, index] and not fresh:
                # the record as cached may predate this tile (a build writes a level while reading it)
                _forget_records(loc)
                record, index = tile_record_of(loc, k, name)
                fresh = True
            if got != record[ty, tx, index]:
                missing = (name == "iterations" and (tile > iters).all()) or (
                    name != "iterations" and np.isnan(tile).all()
                )
                raise _tile_damaged(loc, k, name, (ty, tx), "missing" if missing else "not what was written (checksum)")
    return data[rows[0] - ty0 * TILE : rows[1] - ty0 * TILE, cols[0] - tx0 * TILE : cols[1] - tx0 * TILE]


def _read_base(loc: Location, name: str, arr: zarr.Array, sel: tuple[slice, slice]) -> np.ndarray:
    # level 0's rows under sel, whole blocks each checked against its record (samples.read_block)
    attrs = store_attrs(loc)
    rows = sel[0].indices(arr.shape[0])
    step = int(attrs["chunk_rows"])
    parts = [read_block(loc, attrs, name, b) for b in range(rows[0] // step, -(-rows[1] // step))]
    data = np.concatenate(parts) if parts else np.empty((0, arr.shape[1]), arr.dtype)
    off = (rows[0] // step) * step
    return data[rows[0] - off : rows[1] - off, sel[1]]


def _tile_damaged(loc: Location, k: int, name: str, tile: tuple[int, int], why: str) -> StoreError:
    why = why if why.startswith("cannot") else f"is {why}"
    return StoreError(f"{loc} has a damaged pyramid: {array_path(k, name)} tile (row {tile[0]}, column {tile[1]}) "
                      f"{why}; `dfractal render --resume` repairs it")  # fmt: skip


_RECORDS: dict[tuple, tuple[np.ndarray, list[str]]] = {}


def tile_record_of(loc: Location, k: int, name: str) -> tuple[np.ndarray, int]:
    """Level ``k``'s record (``(tile row, tile column, variable)`` CRC-32Cs) and
    ``name``'s index in it; cached by the store's identity (a repair writes
    the same bytes again, a store replaced has another identity)."""
    store_id = store_attrs(loc).get("store_id")
    key = (loc.url, store_id, k)
    if key not in _RECORDS:
        try:
            rec = open_array(loc, tile_record(k), store_id, read_only=True)
        except Exception as exc:  # zarr raises many kinds on a missing or damaged document
            raise StoreError(f"{loc} has a damaged pyramid: {tile_record(k)}: {short(exc)}") from None
        names = rec.attrs.get("variables", [])
        _RECORDS[key] = (read_tolerant(rec)[0], [str(n) for n in names] if isinstance(names, list) else [])
        if len(_RECORDS) > 64:
            _RECORDS.pop(next(iter(_RECORDS)))
    record, names = _RECORDS[key]
    if name not in names:
        raise StoreError(f"{loc} has a damaged pyramid: {tile_record(k)} records no {name}")
    return record, names.index(name)


class _CheckedLevel:
    """A level's array as dask reads it (``da.from_array``): each chunk through :func:`read_checked`."""

    def __init__(self, loc: Location, k: int, name: str, arr: zarr.Array, iters: int) -> None:
        self.loc, self.k, self.name, self.arr, self.iters = loc, k, name, arr, iters
        self.shape, self.dtype, self.ndim = arr.shape, arr.dtype, 2

    def __getitem__(self, sel: tuple[slice, slice]) -> np.ndarray:
        return read_checked(self.loc, self.k, self.name, self.arr, sel, self.iters)


def pyramid_attrs(loc: Location) -> dict[str, Any] | None:
    """The pyramid group's attributes (``None``: no group, or a document that is none)."""
    return group_attrs(loc.child(PYRAMID_GROUP)) if loc.exists(f"{PYRAMID_GROUP}/zarr.json") else None


def level_names(attrs: dict[str, Any]) -> list[str]:
    """The sample arrays a store with ``attrs`` has at every level (``distance`` if rendered with it)."""
    return [v for v in SAMPLE_VARS if v != "distance" or attrs.get("distance")]


def _damaged(loc: Location, why: str) -> StoreError:
    return StoreError(f"{loc} has a damaged pyramid: {why}; build_pyramid, or `dfractal render --resume`, repairs it")


def _is_count(value: object, low: int) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= low


def _levels_of(loc: Location, attrs: dict[str, Any], *, finished: bool = True) -> list[Level]:
    # the levels of the store at ``loc`` (its attrs checked), [] without a (finished) pyramid
    pyr = pyramid_attrs(loc)
    if pyr is None and loc.exists(f"{PYRAMID_GROUP}/zarr.json"):
        raise _damaged(loc, f"{PYRAMID_GROUP}/zarr.json is no Zarr group's")
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
        bad = check_metadata(loc, attrs) if attrs["dfractal_format"] >= FORMAT else []  # (older: made otherwise)
        if bad:
            raise _damaged(loc, bad[0])
        # (written once every level is done: without it, OME-Zarr readers see no pyramid)
        if attrs.get("ome") != _ome(level_names(attrs), len(shapes)):
            raise _damaged(loc, "the store's OME-Zarr metadata (its attribute ome) are missing or altered")
    levels = [base_level(attrs)]
    levels += [Level(k, h, w, 2**k, level_group(k), (tile, tile)) for k, (h, w) in enumerate(shapes[1:], 1)]
    return levels


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
    return _levels_of(loc, store_attrs(loc))


def pyramid_summary(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> str:
    """One line on the pyramid of the render store at ``path`` (``dfractal info``):
    its levels and sizes, how far an unfinished one got, or why it is damaged;
    ``""`` if the store has none."""
    loc = as_location(path, storage_options, name="path")
    attrs = store_attrs(loc)
    try:
        levels = _levels_of(loc, attrs)  # (first: it checks the attribute read below)
        meta = (pyramid_attrs(loc) or {}).get(PYRAMID_ATTR)
        if meta is None:
            return ""
        if levels:
            sizes = ", ".join(f"{lv.index}: {lv.width}x{lv.height}" for lv in levels[1:]) or "level 0 only"
            return f"pyramid: {len(levels) - 1} levels above the samples ({sizes}; tiles of {meta['tile']})"
        if meta.get("store_id") != attrs.get("store_id"):
            return ("pyramid: of a store this one replaced "
                    "(build_pyramid, or `dfractal render --resume --pyramid`, builds it again)")  # fmt: skip
        built = _levels_of(loc, attrs, finished=False)
        return (f"pyramid: unfinished, levels {sorted(meta['done'])} of 1..{len(built) - 1} done "
                "(build_pyramid, or `dfractal render --resume --pyramid`, finishes it)")  # fmt: skip
    except StoreError as exc:
        return f"pyramid: damaged ({exc})"


def no_pyramid(
    loc: Location, none: str = "no pyramid (build_pyramid, or `dfractal render --resume --pyramid`, builds one)"
) -> str:
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
    attrs = store_attrs(loc)
    zstore = loc.zarr_store(read_only=True)
    damaged = []
    for level in _levels_of(loc, attrs)[1:]:
        for name in level_names(attrs):
            arr = zarr.open_array(zstore, path=array_path(level.index, name), mode="r")
            for y in range(0, level.height, level.chunks[0]):
                for x in range(0, level.width, level.chunks[1]):
                    tile = (slice(y, y + level.chunks[0]), slice(x, x + level.chunks[1]))
                    try:
                        read_checked(loc, level.index, name, arr, tile, int(attrs["iters"]))
                    except StoreError as exc:
                        damaged.append(str(exc))
    return damaged


def _check_level(loc: Location, k: object) -> tuple[dict[str, Any], list[Level], int]:
    attrs = store_attrs(loc)
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise TypeError(f"k must be an integer level, got {k!r}")
    if attrs.get("dfractal_kind") == ZOOM:
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
        ds = open_render(loc)
        return ds[level_names(attrs)].assign_attrs(level_attrs)
    view = View.from_attrs(level_attrs)
    zstore = loc.zarr_store(read_only=True)
    data = {}
    for name in level_names(attrs):
        arr = zarr.open_array(zstore, path=array_path(k, name), mode="r")
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
    return {n: read_checked(loc, k, n, open_array(loc, array_path(k, n), store_id, read_only=True), sel, iters)
            for n in names}  # fmt: skip


def write_band(loc: Location, k: int, y0: int, out: dict[str, np.ndarray], store_id: str | None, what: str) -> int:
    """Write rows from ``y0`` of level ``k`` (whole rows of its tiles, one
    task's alone), then their tiles' checksums in the level's record.
    Returns the bytes given."""
    nbytes = 0
    rec = open_array(loc, tile_record(k), store_id)
    names = list(rec.attrs["variables"])  # type: ignore[arg-type]
    crcs = np.zeros((-(-next(iter(out.values())).shape[0] // TILE), rec.shape[1], len(names)), np.uint32)
    for name, data in out.items():
        arr = open_array(loc, array_path(k, name), store_id)
        data = np.asarray(data, arr.dtype)
        with writing(loc, f"level {k} {what} of {name}"):
            # (a shard is wider than its level, and zarr reads it back: a damaged one is rewritten whole)
            bands = range(y0 // TILE, -(-(y0 + data.shape[0]) // TILE))
            rewrite(loc, arr, (slice(y0, y0 + data.shape[0]),), data,
                    [chunk_key(array_path(k, name), (band, 0)) for band in bands])  # fmt: skip
        for ty in range(crcs.shape[0]):
            for tx in range(crcs.shape[1]):
                crcs[ty, tx, names.index(name)] = _tile_crc(data, ty, tx)
        nbytes += data.nbytes
    with writing(loc, f"the record of level {k} {what}"):
        rec[y0 // TILE : y0 // TILE + crcs.shape[0]] = crcs
    return nbytes


def _tile_crc(data: np.ndarray, ty: int, tx: int) -> int:
    # a tile's checksum: its samples (an edge tile: those inside the level), as read back
    return crc(data[ty * TILE : (ty + 1) * TILE, tx * TILE : (tx + 1) * TILE])


def _ome(names: list[str], n_levels: int) -> dict[str, Any]:
    axes = [{"name": "im", "type": "space"}, {"name": "re", "type": "space"}]
    multiscales = []
    for name in names[:2]:  # iterations and norm (the distance rides along, as the contract has it)
        datasets = [{"path": name, "coordinateTransformations": [{"type": "scale", "scale": [1.0, 1.0]}]}]
        for k in range(1, n_levels):
            t = (2**k - 1) / 2
            datasets.append(
                {
                    "path": array_path(k, name),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [float(2**k)] * 2},
                        {"type": "translation", "translation": [t, t]},
                    ],
                }
            )
        multiscales.append({"name": name, "axes": axes, "datasets": datasets})
    return {"version": "0.5", "multiscales": multiscales}


def level_keys(loc: Location, attrs: dict[str, Any]) -> dict[str, bytes]:
    """The metadata every level of the store at ``loc`` with ``attrs`` has
    (its groups, arrays and records, the arrays with level 0's attributes),
    as zarr writes it: what :func:`prepare` writes and repairs, and what
    :func:`check_metadata` compares with, byte for byte."""
    var_attrs = {}
    for name in level_names(attrs):
        try:
            var_attrs[name] = dict(open_array(loc, name, None, read_only=True).attrs)
        except Exception as exc:  # zarr raises many kinds on damaged metadata
            raise StoreError(f"{loc} is damaged: {name}/zarr.json: {short(exc)}") from None
    view = View.from_attrs(attrs)
    shapes = level_shapes(view.sample_height, view.sample_width)
    names = level_names(attrs)
    written: dict = {}
    zstore = zarr.storage.MemoryStore(written)
    iters = int(attrs["iters"])
    for k, shape in enumerate(shapes[1:], 1):
        zarr.create_group(zstore, path=level_group(k))
        tiles = (-(-shape[0] // TILE), -(-shape[1] // TILE))
        for name in names:
            dtype = _count_dtype(iters) if name == "iterations" else np.dtype(np.float32)
            zarr.create_array(
                zstore, name=array_path(k, name), shape=shape, chunks=(TILE, TILE), dtype=dtype,
                shards=(TILE, tiles[1] * TILE),  # a row of tiles a shard: see the module docstring
                compressors=list(COMPRESSORS), fill_value=_unwritten(name, dtype, iters),
                dimension_names=("im", "re"), attributes=var_attrs[name],
            )  # fmt: skip
        zarr.create_array(
            zstore, name=tile_record(k), shape=(*tiles, len(names)), chunks=(1, tiles[1], len(names)),
            dtype=np.uint32, fill_value=0, compressors=[Crc32cCodec()], attributes={"variables": names},
            dimension_names=("tile_row", "tile_column", "variable"),
        )  # fmt: skip
    # (zarr writes the parents' documents too: the root's and the pyramid group's are not the levels')
    own = tuple(f"{level_group(k)}/" for k in range(1, len(shapes)))
    return {k: v.to_bytes() for k, v in written.items() if k.endswith(METADATA) and k.startswith(own)}


def _count_dtype(iters: int) -> np.dtype:
    # level 0's count dtype (kernels.count_dtype's rule: uint16 while the limit fits)
    return np.dtype(np.uint16 if iters <= np.iinfo(np.uint16).max else np.uint32)


def check_metadata(loc: Location, attrs: dict[str, Any]) -> list[str]:
    """The level metadata keys of the store at ``loc`` that are missing or not
    what :func:`level_keys` says (a line each)."""
    bad = []
    for key, data in level_keys(loc, attrs).items():
        try:
            there = loc.read_bytes(key)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            bad.append(f"{key} is missing")
            continue
        if there != data:
            bad.append(f"{key} is not what was written")
    return bad


def prepare(loc: Location, attrs: dict[str, Any], *, verify: bool) -> tuple[list[tuple[int, int]], dict[int, set[int]]]:
    """Make (or keep, or repair) the pyramid's group, levels and records
    before a build; the level shapes and, per level, the rows of tiles to
    compute.  A pyramid of this store keeps every piece that is sound: its
    metadata is rewritten where missing or altered (never its tiles), and
    with ``verify`` every tile is checked against its record and only the
    rows holding a damaged or missing one are computed again; without it,
    the levels the pyramid's record marks done are taken as they are."""
    view = View.from_attrs(attrs)
    shapes = level_shapes(view.sample_height, view.sample_width)
    store_id = attrs.get("store_id")
    want = {"tile": TILE, "levels": len(shapes) - 1, "store_id": store_id}
    pyr = pyramid_attrs(loc)
    meta = (pyr or {}).get(PYRAMID_ATTR)
    if isinstance(meta, dict) and meta.get("store_id") not in (None, store_id):
        for key in loc.list_keys():  # the pyramid of a store this one replaced: its keys, no other
            if key.startswith(PYRAMID_GROUP + "/") and owns(StoreMeta.from_attrs(attrs), key):
                loc.delete(key)
        meta = None
    ours = isinstance(meta, dict) and {k: meta.get(k) for k in want} == want and isinstance(meta.get("done"), list)
    begun = ours or loc.exists(array_path(1, "iterations") + "/zarr.json")
    if not ours:  # a new pyramid, or its group's document lost or garbled (its levels are checked below)
        # (the document alone: zarr's create_group(overwrite=True) would delete the levels under it)
        group = {"zarr_format": 3, "node_type": "group", "attributes": {PYRAMID_ATTR: {**want, "done": []}}}
        loc.write_bytes(f"{PYRAMID_GROUP}/zarr.json", json.dumps(group, indent=2).encode())
    for key, data in level_keys(loc, attrs).items():  # metadata: written where missing or altered; chunks untouched
        try:
            same = loc.read_bytes(key) == data
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            same = False
        if not same:
            loc.write_bytes(key, data)
    clear_leftovers(loc)  # (what a killed tile write left: the store's own .partial files alone)
    bands = {k: set(range(-(-h // TILE))) for k, (h, _) in enumerate(shapes) if k}
    if not begun:
        return shapes, bands
    if verify or not ours:
        todo: dict[int, set[int]] = {k: set() for k in bands}
        for k, band, _why in verify_levels(loc, attrs):
            todo[k].add(band)
        return shapes, todo
    done = set(meta["done"]) if isinstance(meta, dict) else set()
    return shapes, {k: set() if k in done else b for k, b in bands.items()}


def group_damage(loc: Location, attrs: dict[str, Any]) -> str:
    """Why the pyramid group's document is not one this store wrote, or ``""``."""
    if not loc.exists(f"{PYRAMID_GROUP}/zarr.json"):
        return f"{PYRAMID_GROUP}/zarr.json is missing"
    meta = (pyramid_attrs(loc) or {}).get(PYRAMID_ATTR)
    view = View.from_attrs(attrs)
    want = {"tile": TILE, "levels": len(level_shapes(view.sample_height, view.sample_width)) - 1,
            "store_id": attrs.get("store_id")}  # fmt: skip
    if not isinstance(meta, dict) or {k: meta.get(k) for k in want} != want or not isinstance(meta.get("done"), list):
        return f"{PYRAMID_GROUP}/zarr.json is not what was written"
    return ""


def verify_levels(loc: Location, attrs: dict[str, Any]) -> list[tuple[int, int, str]]:
    """Every tile of every level read back and compared with its record:
    ``(level, tile row, why)`` for each row holding a damaged or missing tile."""
    view = View.from_attrs(attrs)
    shapes = level_shapes(view.sample_height, view.sample_width)
    names = level_names(attrs)
    iters = int(attrs["iters"])
    damaged = []
    _forget_records(loc)
    for k in range(1, len(shapes)):
        try:
            arrays = {n: open_array(loc, array_path(k, n), None, read_only=True) for n in names}
        except Exception as exc:  # zarr raises many kinds on damaged metadata
            damaged += [(k, b, f"level {k}: {short(exc)}") for b in range(-(-shapes[k][0] // TILE))]
            continue
        for band in range(-(-shapes[k][0] // TILE)):
            rows = (slice(band * TILE, (band + 1) * TILE), slice(0, None))
            for n in names:
                try:
                    read_checked(loc, k, n, arrays[n], rows, iters)
                except StoreError as exc:  # (its words without the store's name and the advice)
                    why = str(exc).removeprefix(f"{loc} has a damaged pyramid: ").split("; `dfractal")[0]
                    damaged.append((k, band, why))
                    break
    return damaged


def _forget_records(loc: Location) -> None:
    for key in [k for k in _RECORDS if k[0] == loc.url]:
        del _RECORDS[key]


def mark_levels_done(loc: Location, store_id: str | None, done: set[int]) -> None:
    """Record levels ``done`` (all their tiles written) in the pyramid's attribute."""
    if store_id is not None:
        check_identity(loc, store_id)
    group = zarr.open_group(loc.zarr_store(), path=PYRAMID_GROUP, mode="r+")
    meta = dict(group.attrs[PYRAMID_ATTR])  # type: ignore[arg-type]  # (a dict: _prepare wrote it)
    group.attrs[PYRAMID_ATTR] = {**meta, "done": sorted(done)}


def write_ome(loc: Location, names: list[str], n_levels: int) -> None:
    """The OME-Zarr 0.5 multiscales of a finished pyramid, in the root's attributes."""
    group = zarr.open_group(loc.zarr_store(), mode="r+")
    group.attrs["ome"] = _ome(names, n_levels)
