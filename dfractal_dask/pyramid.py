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
from typing import Any

import dask
import numba
import numpy as np
import zarr
from distributed import Client

from . import settings
from .cluster import connect, current_client
from .colorize import log2_power
from .gather import gather_results
from .location import Location, as_location
from .store import check_identity, open_render, store_attrs, store_meta
from .store import levels as stored
from .store.layout import PYRAMID_ATTR, PYRAMID_GROUP, TILE, level_shapes
from .store.lease import Lease
from .store.levels import (
    Level,
    base_level,
    level_names,
    level_view,
    no_pyramid,
    open_level,
    pyramid_levels,
    pyramid_summary,
    read_level,
    read_window,
    verify_pyramid,
)
from .view import View

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

#: The group that holds levels 1, 2, ... (its attribute: PYRAMID_ATTR; tiles of TILE samples a side).
GROUP = PYRAMID_GROUP


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
        check_identity(loc, store_id)
    r0, r1 = 2 * band * TILE, min(2 * (band + 1) * TILE, below_height)
    src = read_level(loc, k - 1, names, (slice(r0, r1), slice(0, None)), iters, store_id)
    out = reduce_level(src["iterations"], src["norm"], iters, power, src.get("distance"))
    return {
        "level": k,
        "band": band,
        "bytes": stored.write_band(loc, k, band * TILE, out, store_id, f"tile row {band}"),
    }


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
    (or keep, or repair) the pyramid's arrays.  Returns whether level 1 comes
    from the blocks (``in_blocks``): each block computed now writes its rows
    of tiles; the rest are checked and, where missing, computed by
    :func:`build_on` after the blocks."""
    attrs = store_attrs(loc)
    stored.prepare(loc, attrs, verify=False)
    group = zarr.open_group(loc.zarr_store(), path=GROUP, mode="r+")
    group.attrs[PYRAMID_ATTR] = {**dict(group.attrs[PYRAMID_ATTR]), "in_blocks": in_blocks}  # type: ignore[arg-type]
    return in_blocks


def write_block_level(loc: Location, row0: int, result: tuple, iters: int, power: int, store_id: str | None) -> int:
    """Level 1's rows of one block (its level-0 samples ``result`` from row
    ``row0``, a multiple of ``2 * TILE``): reduced and written on the worker
    that computed them, with their record, before the block's own chunks (so
    a block marked done has its level 1).  Returns the bytes given to the store."""
    it, norm, _work, *distance = result
    out = reduce_level(it, norm, iters, power, distance[0] if distance else None)
    y0 = row0 // 2
    if store_id is not None:
        check_identity(loc, store_id)
    return stored.write_band(loc, 1, y0, out, store_id, f"rows {y0}-{y0 + out['iterations'].shape[0]}")


def mark_block_level(loc: Location, store_id: str | None, fresh: bool) -> None:
    """Level 1 done after a new render's blocks (each wrote its rows); a
    resumed render's level 1 is checked by :func:`build_on` instead."""
    if fresh:
        meta = (stored.pyramid_attrs(loc) or {}).get(PYRAMID_ATTR) or {}
        stored.mark_levels_done(loc, store_id, {1, *meta.get("done", [])})


def build_pyramid(
    path: str | os.PathLike | Location,
    client: Client | str | None = None,
    storage_options: Mapping | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Level]:
    """(Re)build the pyramid of a finished render store on the workers.

    Every level is computed from the one below it by the workers (one task a
    row of tiles, each tile written by exactly one task); only small records
    come back.  Every tile already written is checked against its record and kept if sound (a build
    repairs: only rows of tiles holding a damaged or missing one are made again); a level is marked done once all
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
    settings.check()  # every dfractal.* setting, before anything is touched
    if client is not None and not isinstance(client, Client | str):
        raise TypeError(f"client must be a Client, a scheduler address or None, got {client!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be callable, got {progress!r}")
    loc = as_location(path, storage_options, name="path")
    open_render(loc)  # a finished render (not a zoom), or a StoreError saying what it is
    with Lease(loc, "dfractal pyramid"), connect(client if client is not None else current_client()) as c:
        build_on(c, loc, progress, verify=True)  # (a build repairs: every tile checked, only damaged ones made)
    return pyramid_levels(loc)


def build_on(
    c: Client, loc: Location, progress: Callable[[int, int], None] | None = None, *, verify: bool = False
) -> dict[str, Any]:
    """:func:`build_pyramid` on the client ``c`` of a store whose lease the
    caller holds (e.g. :func:`dfractal_dask.render` after its blocks); with
    ``verify`` (a resume, a repair) every tile is checked against its record
    first and only rows of tiles holding a damaged or missing one are
    computed (:func:`dfractal_dask.store.levels.prepare`).  Returns what it
    did: ``levels``, ``tiles`` and ``bytes`` written, ``seconds``."""
    t0 = time.perf_counter()
    meta = store_meta(loc)
    store_id, names, iters, power = meta.store_id, meta.names, meta.iters, meta.fractal.power
    shapes, todo = stored.prepare(loc, meta.attrs, verify=verify)
    build = dask.delayed(_build_band, pure=False)
    build_id = uuid.uuid4().hex  # in every task's key: the stall report names the workers holding them
    tasks: dict[tuple[int, int], Any] = {}
    for k in range(1, len(shapes)):
        below = shapes[k - 1][0]
        for band in sorted(todo[k]):
            # the level-(k-1) tasks whose rows this band reads (none where they are sound)
            after = [tasks[(k - 1, b)] for b in (2 * band, 2 * band + 1) if (k - 1, b) in tasks]
            key = f"pyramid-{k}-{band}-{build_id}"
            tasks[(k, band)] = build(loc, k, band, names, iters, power, store_id, below, *after, dask_key_name=key)
    total = len(tasks)
    left = {k: len(todo[k]) for k in range(1, len(shapes))}
    done: set[int] = set()
    stats = {"levels": len(shapes) - 1, "tiles": 0, "bytes": 0, "seconds": 0.0}

    def mark() -> None:
        marked = len(done)
        while left.get(len(done) + 1) == 0:  # (levels finish in order: each needs the one below)
            done.add(len(done) + 1)
        if len(done) > marked or not tasks:
            if len(done) == len(shapes) - 1:  # first: a pyramid marked finished has its OME metadata
                stored.write_ome(loc, names, len(shapes))
            stored.mark_levels_done(loc, store_id, done)

    mark()
    if progress:
        progress(0, total)
    futures = c.compute(list(tasks.values()))
    finished = 0
    again = "resume it (build_pyramid, or `dfractal render --resume --pyramid`) to go on"
    for rec in gather_results(c, futures, None, build_id, "pyramid", unit="rows of tiles", resume=again):
        finished += 1
        stats["bytes"] += rec["bytes"]
        stats["tiles"] += -(-shapes[rec["level"]][1] // TILE)
        left[rec["level"]] -= 1
        mark()
        if progress:
            progress(finished, total)
    stats["seconds"] = time.perf_counter() - t0
    return stats
