"""The dask graph: a view becomes row blocks, each block one kernel call.

This module knows dask and the kernels; it knows nothing about colour or about
where results are stored (see :mod:`dfractal_dask.store`).
"""

from __future__ import annotations

import math

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize
from dask.delayed import Delayed

from . import kernels
from . import perturbation as _perturbation
from .fractals import Fractal
from .protocol import task_key
from .spec import (
    ZOOM,
    Block,
    RenderSpec,
    blocks,
    check_chunk_rows,
    check_fractal,
    check_iters,
    default_chunk_rows,
    is_deep,
)
from .view import View

__all__ = [
    "CYCLES_FROM",
    "PROBE_SAMPLES",
    "Block",
    "block_costs",
    "block_priorities",
    "block_shortcuts",
    "probe_blocks",
    "shortcuts_for",
    "block_tasks",
    "blocks",
    "check_fractal",
    "check_iters",
    "compute_block",
    "compute_distance",
    "compute_deep_block",
    "is_deep",
    "dataset_of",
    "default_chunk_rows",
    "fractal_dataset",
    "MAX_ZOOM_TASKS",
    "zoom_dataset",
    "zoom_template",
    "check_zoom_size",
    "frame_id",
    "frame_tasks",
    "tasks_of",
    "template_of",
]


def compute_block(
    view: View, iters: int, block: Block, shortcuts: int = kernels.CYCLES, fractal: Fractal | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """Run the kernel on one block: ``(iterations, norm, work)``.  ``shortcuts``,
    ``fractal``: see :func:`dfractal_dask.kernels.escape_into` (the default
    level keeps every count and norm exact; ``INTERIOR`` leaves interior norms
    NaN; the default fractal is the Mandelbrot set)."""
    return kernels.escape_block(
        view.re0, view.im0, view.step, block.row0, block.nrows, view.sample_width, iters, shortcuts, fractal
    )


def compute_deep_block(
    view: View, iters: int, block: Block, orbit: _perturbation.Orbit, table: _perturbation.AnyTable | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """One block of a deep view by perturbation around the reference ``orbit``
    (:func:`dfractal_dask.perturbation.perturbation_block`), skipping with its
    BLA ``table`` (:func:`dfractal_dask.perturbation.bla_table`) and stopping
    interior samples early (:data:`~dfractal_dask.perturbation.INTERIOR_DERIVATIVE`,
    their norm NaN); ``None``: every step exact, as the escape rule states it:
    ``(iterations, norm, work)``."""
    interior = 0.0 if table is None else _perturbation.INTERIOR_DERIVATIVE
    it, norm, work, _ = _perturbation.perturbation_block(
        view, iters, block.row0, block.nrows, orbit, table=table, interior=interior
    )
    return it, norm, work


def compute_distance(view: View, iters: int, block: Block, result: tuple, fractal: Fractal | None = None) -> np.ndarray:
    """The distance estimate of one computed block (``result`` from
    :func:`compute_block`): :func:`dfractal_dask.kernels.distance_block`."""
    return kernels.distance_block(result[0], view.re0, view.im0, view.step, block.row0, iters, fractal)


#: Samples in the probe :func:`block_costs` computes: ~0.1% of the seed
#: default's, tens of milliseconds on the client.
PROBE_SAMPLES = 2**16


def block_costs(
    view: View, iters: int, bs: list[Block], probe_samples: int = PROBE_SAMPLES, fractal: Fractal | None = None
) -> np.ndarray:
    """Estimated iterations of each block, from a sparse probe of the view.

    The probe is a grid of about ``probe_samples`` samples, every ``s``-th row
    and column (at least one row inside each block), computed here with the
    kernel; a block's estimate is the mean count of its probe samples times its
    sample count.  Interior-heavy rows cost up to ``iters`` per sample where an
    exterior row may cost a few, so blocks differ by orders of magnitude.
    """
    return probe_blocks(view, iters, bs, probe_samples, fractal)[0]


def block_shortcuts(
    view: View, iters: int, bs: list[Block], probe_samples: int = PROBE_SAMPLES, fractal: Fractal | None = None
) -> list[int]:
    """The kernel's ``shortcuts`` level for each block, from the same probe:
    cycle detection (exact, see :func:`dfractal_dask.kernels.escape_into`) where
    at least :data:`CYCLES_FROM` of the block's probe samples are interior, where
    it pays (1.6x at 56% interior, 11x at 100%), brute force elsewhere (looking
    for cycles costs ~10% where few samples are interior).  Both give the same
    counts and norms, bit for bit."""
    return shortcuts_for(probe_blocks(view, iters, bs, probe_samples, fractal)[1])


def shortcuts_for(interior: np.ndarray) -> list[int]:
    """:func:`block_shortcuts` from already probed interior fractions."""
    return [kernels.CYCLES if f >= CYCLES_FROM else kernels.BRUTE for f in interior]


#: Interior fraction from which :func:`block_shortcuts` looks for cycles.
CYCLES_FROM = 0.45


def probe_blocks(
    view: View, iters: int, bs: list[Block], probe_samples: int = PROBE_SAMPLES, fractal: Fractal | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per block: estimated iterations (:func:`block_costs`), and the fraction
    of its probe samples that are interior (:func:`block_shortcuts`)."""
    iters = check_iters(iters)
    s = max(1, math.ceil(math.sqrt(view.sample_width * view.sample_height / probe_samples)))
    ncols = max(1, view.sample_width // s)
    re0 = view.re0 + (s // 2) * view.step  # the probe's columns: j = s//2 + k*s
    it = np.empty((1, ncols), kernels.count_dtype(iters))
    norm = np.empty((1, ncols), np.float32)
    costs = np.empty(len(bs))
    interior = np.empty(len(bs))
    for k, b in enumerate(bs):
        rows = range(b.row0 + min(s // 2, b.nrows // 2), b.row1, s)
        work = inside = 0
        for r in rows:  # one probe row: im of row r, re every s-th column (global indices)
            work += kernels.escape_into(
                it, norm, re0, view.im0 - r * view.step, view.step * s, 0, iters, kernels.CYCLES, None, fractal
            )
            inside += int((it == iters).sum())
        costs[k] = work / (len(rows) * ncols) * b.nrows * view.sample_width
        interior[k] = inside / (len(rows) * ncols)
    return costs, interior


def block_priorities(costs: np.ndarray) -> list[int]:
    """Dask priorities (higher runs first) that start the costliest blocks
    first: the longest-processing-time rule, so the cheap blocks fill in at the
    end and no worker is left with one long block while the others idle."""
    order = np.argsort(-np.asarray(costs), kind="stable")
    prio = np.empty(len(order), np.int64)
    prio[order] = np.arange(len(order))[::-1]
    return [int(p) for p in prio]


def block_tasks(
    view: View,
    iters: int,
    chunk_rows: int | None = None,
    render_id: str | None = None,
    priorities: list[int] | None = None,
    shortcuts: int | list[int] = kernels.CYCLES,
    fractal: Fractal | None = None,
    distance: bool = False,
    perturbation: bool | None = None,
    exact: bool = False,
) -> list[tuple[Block, Delayed]]:
    """One delayed kernel call per block, keyed ``dfractal-kernel-<render id>-<block>``
    so the metrics plugin can tell renders apart (default id: a hash of the
    inputs, so equal views share keys).  ``priorities`` (one per block, e.g.
    :func:`block_priorities`) are given to dask as task annotations;
    ``shortcuts`` goes to the kernel (:func:`compute_block`): one level, or
    one per block (e.g. :func:`block_shortcuts`); ``fractal`` too (default
    Mandelbrot).  With ``distance``, each block's kernel call is followed by
    :func:`compute_distance` on the same results, and the task is the tuple
    ``(iterations, norm, work, distance)``.

    A deep view (:func:`is_deep`; ``perturbation``: ``None`` decides by the
    view, ``True``/``False`` force it) has one more task, keyed
    ``dfractal-reference-<render id>-0``: its reference orbit
    (:func:`dfractal_dask.perturbation.choose_reference`), computed once on one
    worker and fetched by the others once each; unless ``exact``, one more,
    ``dfractal-bla-<render id>-0``, its BLA table
    (:func:`dfractal_dask.perturbation.bla_table`), likewise; every block's task
    (:func:`compute_deep_block`) depends on them, and ``shortcuts`` do not apply."""
    spec = RenderSpec.make(view, iters, chunk_rows, fractal, distance, perturbation, exact)
    return tasks_of(spec, render_id, priorities, shortcuts)[0]


def tasks_of(
    spec: RenderSpec,
    render_id: str | None = None,
    priorities: list[int] | None = None,
    shortcuts: int | list[int] = kernels.CYCLES,
) -> list[list[tuple[Block, Delayed]]]:
    """The kernel calls of ``spec``: each frame's :func:`frame_tasks` (a
    render has one frame).  ``render_id``: default a hash of the spec, so
    equal renders share keys; ``priorities``, ``shortcuts``: see :func:`block_tasks`."""
    if render_id is None:
        rows, deep = spec.chunk_rows, list(spec.deep)
        exact = ("exact",) if spec.exact and any(deep) else ()  # (the ids of other renders as they were)
        if spec.kind == ZOOM:
            render_id = tokenize("zoom", list(spec.views), spec.iters, rows, spec.fractal, deep, *exact)
        else:
            levels = _levels(spec, shortcuts)
            render_id = tokenize(
                spec.view, spec.iters, spec.block_rows, levels, spec.fractal, spec.distance, deep[0], *exact
            )
    return [frame_tasks(spec, k, render_id, priorities, shortcuts) for k in range(len(spec.views))]


def _levels(spec: RenderSpec, shortcuts: int | list[int]) -> list[int]:
    # the kernel's shortcut level of each block
    levels = [shortcuts] * spec.n_blocks if isinstance(shortcuts, int) else list(shortcuts)
    if len(levels) != spec.n_blocks:
        raise ValueError(f"{len(levels)} shortcut levels for {spec.n_blocks} blocks")
    return levels


def frame_id(spec: RenderSpec, render_id: str, frame: int) -> str:
    """The render id in the task keys of one frame: a zoom's frames are ``<render_id>f<frame>``."""
    return f"{render_id}f{frame}" if spec.kind == ZOOM else render_id


def frame_tasks(
    spec: RenderSpec,
    frame: int,
    render_id: str,
    priorities: list[int] | None = None,
    shortcuts: int | list[int] = kernels.CYCLES,
) -> list[tuple[Block, Delayed]]:
    """The block tasks of frame ``frame`` of ``spec`` (see :func:`block_tasks`),
    keyed by :func:`frame_id`; a zoom's frames are built one at a time as they are sent."""
    view, iters, fractal, deep = spec.views[frame], spec.iters, spec.fractal, spec.deep[frame]
    bs = spec.blocks()
    if priorities is not None and len(priorities) != len(bs):
        raise ValueError(f"{len(priorities)} priorities for {len(bs)} blocks")
    levels = _levels(spec, shortcuts)
    rid = frame_id(spec, render_id, frame)
    if deep:
        with dask.annotate(priority=1 + max(priorities or [0])):  # everything waits for it
            orbit = dask.delayed(_perturbation.choose_reference, pure=True)(
                view, iters, dask_key_name=task_key("reference", rid, 0)
            )
            table = None
            if not spec.exact:  # built once per view, fetched once per worker
                table = dask.delayed(_perturbation.bla_table, pure=True)(
                    view, orbit, dask_key_name=task_key("bla", rid, 0)
                )
    fn = dask.delayed(compute_block, pure=True, nout=3)
    deep_fn = dask.delayed(compute_deep_block, pure=True, nout=3)
    tasks = []
    for b in bs:
        with dask.annotate(priority=0 if priorities is None else priorities[b.index]):
            key = task_key("kernel", rid, b.index)
            if deep:
                task = deep_fn(view, iters, b, orbit, table, dask_key_name=key)
            else:
                task = fn(view, iters, b, levels[b.index], fractal, dask_key_name=key)
            if spec.distance:
                de = dask.delayed(compute_distance, pure=True)(
                    view, iters, b, task, fractal, dask_key_name=task_key("distance", rid, b.index)
                )
                task = dask.delayed(_with_distance, pure=True, nout=4)(task, de)
            tasks.append((b, task))
    return tasks


def _with_distance(result: tuple, distance: np.ndarray) -> tuple:
    return (*result, distance)


def fractal_dataset(
    view: View,
    iters: int = 800,
    chunk_rows: int | None = None,
    fractal: Fractal | None = None,
    distance: bool = False,
    perturbation: bool | None = None,
    exact: bool = False,
) -> xr.Dataset:
    """The lazy picture: an xarray Dataset of dask arrays, one chunk per block.

    Variables ``iterations`` (uint16/uint32) and ``norm`` (float32) on dims
    ``(im, re)`` with the sample coordinates; the view, ``iters`` and the
    fractal (:meth:`dfractal_dask.fractals.Fractal.to_attrs`, default
    Mandelbrot) in attrs.  ``distance``: also ``distance`` (float32), the
    distance estimate of each escaped sample to the set
    (:func:`dfractal_dask.kernels.distance_block`), for distance shading.
    A deep view (:attr:`dfractal_dask.view.View.deep`, or ``perturbation=True``)
    is computed by perturbation (:func:`block_tasks`); its ``re``/``im``
    coordinates are then offsets from the exact centre (attrs ``centre_re``,
    ``centre_im``), which float64 can still tell apart; ``exact`` computes
    it without the bilinear approximation (:mod:`dfractal_dask.bla`; attr ``bla``).
    Nothing is computed until asked.
    """
    spec = RenderSpec.make(view, iters, chunk_rows, fractal, distance, perturbation, exact)
    return dataset_of(spec, tasks_of(spec))


def _var_attrs(name: str, iters: int) -> dict:
    # what each variable of a picture holds, for readers of the store
    attrs: dict[str, dict] = {
        "iterations": {"long_name": "escape iteration", "max": iters},
        "norm": {"long_name": "|z|^2 at escape (|z|^2/2 if bounded)"},
        "distance": {"long_name": "distance estimate |z| ln|z| / |dz| (NaN if bounded)"},
    }
    return attrs[name]


def _coords(view: View) -> dict:
    # the sample coordinates: absolute, or for a deep view offsets from the
    # exact centre (absolute float64 coordinates would collapse); with CF attrs
    return view.coords()


def _names(spec: RenderSpec) -> tuple[str, ...]:
    # the per-sample variables of a picture of ``spec``
    return ("iterations", "norm", "distance") if spec.distance else ("iterations", "norm")


def _dtype(spec: RenderSpec, name: str) -> np.dtype:
    return np.dtype(kernels.count_dtype(spec.iters) if name == "iterations" else np.float32)


def _dataset(spec: RenderSpec, arrays: dict[str, da.Array]) -> xr.Dataset:
    # the Dataset of ``spec`` over its variables' arrays ((im, re), or (frame, im, re) for a zoom)
    if spec.kind == ZOOM:
        dims: tuple[str, ...] = ("frame", "im", "re")
        coords = {
            "frame": np.arange(len(spec.views)),
            "span": ("frame", [math.nan if v.extended else v.span for v in spec.views]),  # (NaN: below float64)
            "deep": ("frame", list(spec.deep)),
        }  # fmt: skip  (no im/re: they differ frame to frame)
    else:
        dims, coords = ("im", "re"), _coords(spec.view)
    data = {name: (dims, arrays[name], _var_attrs(name, spec.iters)) for name in _names(spec)}
    return xr.Dataset(data, coords=coords, attrs=spec.attrs())


def dataset_of(spec: RenderSpec, tasks: list[list[tuple[Block, Delayed]]]) -> xr.Dataset:
    """The lazy Dataset of ``spec`` over its kernel calls (:func:`tasks_of`,
    so other tasks, e.g. store writes, can share them): :func:`fractal_dataset`
    for a render, :func:`zoom_dataset` for a zoom."""
    w = spec.view.sample_width
    # index 3 of a task: its distance estimate (see block_tasks)
    slots = {"iterations": 0, "norm": 1, "distance": 3}

    def frame(name: str, frame_tasks: list[tuple[Block, Delayed]]) -> da.Array:
        # one frame's variable; a single column chunk: xarray/zarr chunk = one row block
        # (t[i]: Delayed binds its operators at run time, unseen by mypy)
        parts = [da.from_delayed(t[slots[name]], shape=(b.nrows, w), dtype=_dtype(spec, name))  # type: ignore[index]
                 for b, t in frame_tasks]  # fmt: skip
        return da.concatenate(parts, axis=0).rechunk({1: -1})

    if spec.kind == ZOOM:
        arrays = {name: da.stack([frame(name, t) for t in tasks]) for name in _names(spec)}
    else:
        arrays = {name: frame(name, tasks[0]) for name in _names(spec)}
    return _dataset(spec, arrays)


def template_of(spec: RenderSpec) -> xr.Dataset:
    """What :func:`dataset_of` would return, without its graph: the same
    shape, chunks, dtypes, coordinates and attrs over placeholder arrays, in
    milliseconds at any frame count (so a store can be checked and made
    before the graph is built)."""
    v = spec.view
    lead = (len(spec.views),) if spec.kind == ZOOM else ()
    shape, chunks = (*lead, v.sample_height, v.sample_width), (*(1 for _ in lead), spec.chunk_rows, v.sample_width)
    return _dataset(spec, {name: da.zeros(shape, dtype=_dtype(spec, name), chunks=chunks) for name in _names(spec)})


def zoom_dataset(
    views: list[View],
    iters: int = 800,
    chunk_rows: int | None = None,
    fractal: Fractal | None = None,
    perturbation: bool | None = None,
    render_id: str | None = None,
    exact: bool = False,
) -> xr.Dataset:
    """A zoom: one lazy picture per view (e.g. :func:`dfractal_dask.view.zoom_views`),
    stacked on a ``frame`` dimension: ``iterations`` and ``norm`` on
    ``(frame, im, re)``, one chunk (one task) per frame and row block, so the
    graph has frames × blocks kernel calls (render id ``<render_id>f<frame>``).

    Coordinates ``frame``, ``span`` and ``deep`` (computed by perturbation,
    :func:`is_deep`, each frame deciding for itself unless ``perturbation``
    is given; a deep frame has its own reference-orbit task, and unless
    ``exact`` its own BLA-table task).  The first
    view, ``iters``, the fractal and ``frames``/``to_span`` are in attrs.
    Every view must share the first one's size and centre.
    """
    spec = RenderSpec.make_zoom(views, iters, chunk_rows, fractal, perturbation, exact)
    return dataset_of(spec, tasks_of(spec, render_id))


#: The most kernel calls (frames × blocks) one zoom's graph may hold: past
#: this, building the graph alone takes minutes and gigabytes (~1 ms and
#: ~10 kB a task), so such a zoom is refused before any work.
MAX_ZOOM_TASKS = 100_000


def check_zoom_size(view: View, frames: int, chunk_rows: int | None = None) -> int:
    """Refuse (``ValueError``) a zoom of ``frames`` frames of ``view`` with more
    than :data:`MAX_ZOOM_TASKS` kernel calls, before any of its frames is
    made (so at any frame count in microseconds); returns the blocks a frame."""
    n_blocks = len(range(0, view.sample_height, check_chunk_rows(view, chunk_rows)))
    if isinstance(frames, int) and frames * n_blocks > MAX_ZOOM_TASKS:
        raise ValueError(
            f"a zoom of {frames} frames x {n_blocks} blocks is {frames * n_blocks:,} tasks, more than "
            f"{MAX_ZOOM_TASKS:,} in one graph: use fewer frames, or larger chunk_rows"
        )
    return n_blocks


def zoom_template(
    views: list[View],
    iters: int = 800,
    chunk_rows: int | None = None,
    fractal: Fractal | None = None,
    perturbation: bool | None = None,
    exact: bool = False,
) -> xr.Dataset:
    """What :func:`zoom_dataset` would return, without its graph: the same
    shape, chunks, dtypes, coordinates and Dataset attrs, over placeholder arrays, in
    milliseconds at any frame count (so a zoom can be checked before its
    graph is built).  Refuses more than :data:`MAX_ZOOM_TASKS` kernel calls."""
    if not views:
        raise ValueError("a zoom needs at least one view")
    if isinstance(views[0], View):  # before a check of each frame
        check_zoom_size(views[0], len(views), chunk_rows)
    return template_of(RenderSpec.make_zoom(views, iters, chunk_rows, fractal, perturbation, exact))
