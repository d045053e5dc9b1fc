"""The dask graph: a view becomes row blocks, each block one kernel call.

This module knows dask and the kernels; it knows nothing about colour or about
where results are stored (see :mod:`dfractal_dask.store`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import dask
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from . import kernels
from . import perturbation as _perturbation
from .fractals import Fractal
from .metrics import task_key
from .view import View

__all__ = [
    "CYCLES_FROM",
    "PROBE_SAMPLES",
    "TARGET_BLOCK_SAMPLES",
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
    "dataset_from_tasks",
    "default_chunk_rows",
    "fractal_dataset",
    "MAX_ZOOM_TASKS",
    "zoom_dataset",
    "zoom_template",
    "check_zoom_size",
    "zoom_dataset_from_tasks",
    "zoom_tasks",
]

#: Aim for about a million samples per task: ~0.1-1 s of kernel time at the
#: seed's iteration counts, large enough that dask's per-task cost (~1 ms) is
#: noise, small enough that two workers share the image evenly.
TARGET_BLOCK_SAMPLES = 2**20


@dataclass(frozen=True)
class Block:
    """Sample rows ``row0 .. row1-1`` of a view: one task, one Zarr chunk."""

    index: int
    row0: int
    row1: int

    @property
    def nrows(self) -> int:
        return self.row1 - self.row0


def default_chunk_rows(view: View) -> int:
    """Rows per block: ~:data:`TARGET_BLOCK_SAMPLES` samples, a multiple of the
    supersampling factor (so a block colours into whole output rows), and at
    least 8 blocks when the picture is tall enough, so every worker gets work."""
    n = view.supersample
    rows = max(1, int(dask.config.get("dfractal.block-samples", TARGET_BLOCK_SAMPLES)) // view.sample_width)
    rows = min(rows, max(1, view.sample_height // 8))
    return max(n, math.ceil(rows / n) * n)


def _check_chunk_rows(view: View, chunk_rows: int | None) -> int:
    if chunk_rows is None:
        return default_chunk_rows(view)
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int | np.integer):
        raise TypeError(f"chunk_rows must be an integer, got {chunk_rows!r}")
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be > 0, got {chunk_rows}")
    if chunk_rows % view.supersample:
        raise ValueError(
            f"chunk_rows ({chunk_rows}) must be a multiple of the supersampling factor "
            f"({view.supersample}) so each block colours into whole pixel rows"
        )
    return int(chunk_rows)


def blocks(view: View, chunk_rows: int | None = None) -> list[Block]:
    """Cut the sample rows of ``view`` into blocks of ``chunk_rows`` rows."""
    rows = _check_chunk_rows(view, chunk_rows)
    h = view.sample_height
    return [Block(i, r0, min(r0 + rows, h)) for i, r0 in enumerate(range(0, h, rows))]


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
    view: View, iters: int, block: Block, orbit: _perturbation.Orbit
) -> tuple[np.ndarray, np.ndarray, int]:
    """One block of a deep view by perturbation around the reference ``orbit``
    (:func:`dfractal_dask.perturbation.perturbation_block`): ``(iterations, norm, work)``."""
    it, norm, work, _ = _perturbation.perturbation_block(view, iters, block.row0, block.nrows, orbit)
    return it, norm, work


def is_deep(view: View, fractal: Fractal | None = None, distance: bool = False, deep: bool | None = None) -> bool:
    """Whether ``view`` is rendered by perturbation: ``deep`` if given, else
    :attr:`dfractal_dask.view.View.deep`.  A deep render must be of the
    Mandelbrot set, without distance estimation (``ValueError`` otherwise)."""
    if deep is not None and not isinstance(deep, bool):
        raise TypeError(f"perturbation must be True, False or None, got {deep!r}")
    if deep is False and view.deep:
        raise ValueError(
            f"a view of span {view.span:g} at ({float(view.xpos):g}, {float(view.ypos):g}) is too deep for float64 "
            "(its samples would collapse into a few values): it needs perturbation, which was turned off"
        )
    deep = view.deep if deep is None else deep
    if deep:
        _perturbation.check_deep_fractal(fractal)
        if distance:
            raise ValueError("distance estimation is not available for deep (perturbation) renders")
    return deep


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


def check_iters(iters: int) -> int:
    """Check an iteration limit (an integer from 1 to 2**32 - 2); return it as int."""
    if isinstance(iters, bool) or not isinstance(iters, int | np.integer):
        raise TypeError(f"iters must be an integer, got {iters!r}")
    if not 1 <= iters <= np.iinfo(np.uint32).max - 1:
        raise ValueError(f"iters must be between 1 and {np.iinfo(np.uint32).max - 1}, got {iters}")
    return int(iters)


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
) -> list[tuple[Block, object]]:
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
    worker and fetched by the others once each; every block's task
    (:func:`compute_deep_block`) depends on it, and ``shortcuts`` do not apply."""
    iters = check_iters(iters)
    bs = blocks(view, chunk_rows)
    if priorities is not None and len(priorities) != len(bs):
        raise ValueError(f"{len(priorities)} priorities for {len(bs)} blocks")
    levels = [shortcuts] * len(bs) if isinstance(shortcuts, int) else list(shortcuts)
    if len(levels) != len(bs):
        raise ValueError(f"{len(levels)} shortcut levels for {len(bs)} blocks")
    fractal = check_fractal(fractal)
    if distance:
        kernels.check_distance_fractal(fractal)
    deep = is_deep(view, fractal, distance, perturbation)
    rid = render_id or tokenize(view, iters, bs[0].nrows, levels, fractal, distance, deep)
    if deep:
        with dask.annotate(priority=1 + max(priorities or [0])):  # everything waits for it
            orbit = dask.delayed(_perturbation.choose_reference, pure=True)(
                view, iters, dask_key_name=task_key("reference", rid, 0)
            )
    fn = dask.delayed(compute_block, pure=True, nout=3)
    deep_fn = dask.delayed(compute_deep_block, pure=True, nout=3)
    tasks = []
    for b in bs:
        with dask.annotate(priority=0 if priorities is None else priorities[b.index]):
            key = task_key("kernel", rid, b.index)
            if deep:
                task = deep_fn(view, iters, b, orbit, dask_key_name=key)
            else:
                task = fn(view, iters, b, levels[b.index], fractal, dask_key_name=key)
            if distance:
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
    ``centre_im``), which float64 can still tell apart.
    Nothing is computed until asked.
    """
    fractal = check_fractal(fractal)
    deep = is_deep(view, fractal, distance, perturbation)
    tasks = block_tasks(view, iters, chunk_rows, fractal=fractal, distance=distance, perturbation=deep)
    return dataset_from_tasks(view, iters, tasks, fractal, distance, deep)


def check_fractal(fractal: Fractal | None) -> Fractal:
    """``fractal``, or the Mandelbrot set for ``None``; a ``TypeError`` for anything else."""
    if fractal is None:
        return Fractal()
    if not isinstance(fractal, Fractal):
        raise TypeError(f"fractal must be a Fractal (e.g. Fractal('julia', c=-0.8+0.156j)), got {fractal!r}")
    return fractal


def _var_attrs(name: str, iters: int) -> dict:
    # what each variable of a picture holds, for readers of the store
    return {
        "iterations": {"long_name": "escape iteration", "max": iters},
        "norm": {"long_name": "|z|^2 at escape (|z|^2/2 if bounded)"},
        "distance": {"long_name": "distance estimate |z| ln|z| / |dz| (NaN if bounded)"},
    }[name]


def _coords(view: View) -> dict:
    # the sample coordinates: absolute, or for a deep view offsets from the
    # exact centre (absolute float64 coordinates would collapse)
    if not view.deep:
        return {"im": view.im(), "re": view.re()}
    h, w = view.sample_height, view.sample_width
    return {
        "im": ("im", ((h - 1) / 2 - np.arange(h)) * view.step, {"long_name": "offset from centre_im"}),
        "re": ("re", (np.arange(w) - (w - 1) / 2) * view.step, {"long_name": "offset from centre_re"}),
    }


def dataset_from_tasks(
    view: View,
    iters: int,
    tasks: list[tuple[Block, object]],
    fractal: Fractal | None = None,
    distance: bool = False,
    perturbation: bool = False,
) -> xr.Dataset:
    """The Dataset of :func:`fractal_dataset` over kernel calls made by
    :func:`block_tasks` (so other tasks, e.g. store writes, can share them);
    ``perturbation``: whether they compute by perturbation (an attr)."""
    w = view.sample_width
    cdt = kernels.count_dtype(iters)
    it = da.concatenate([da.from_delayed(t[0], shape=(b.nrows, w), dtype=cdt) for b, t in tasks], axis=0)
    norm = da.concatenate([da.from_delayed(t[1], shape=(b.nrows, w), dtype=np.float32) for b, t in tasks], axis=0)
    # A single column chunk: xarray/zarr chunk = one row block.
    it = it.rechunk({1: -1})
    norm = norm.rechunk({1: -1})
    data = {"iterations": (("im", "re"), it, _var_attrs("iterations", iters)),
            "norm": (("im", "re"), norm, _var_attrs("norm", iters))}  # fmt: skip
    if distance:
        de = da.concatenate([da.from_delayed(t[3], shape=(b.nrows, w), dtype=np.float32) for b, t in tasks], axis=0)
        data["distance"] = (("im", "re"), de.rechunk({1: -1}), _var_attrs("distance", iters))
    return xr.Dataset(
        data,
        coords=_coords(view),
        attrs={
            **check_fractal(fractal).to_attrs(),
            "distance": bool(distance),
            "perturbation": bool(perturbation),
            "iters": iters,
            "chunk_rows": tasks[0][0].nrows,
            **view.to_attrs(),
        },
    )


def zoom_tasks(
    views: list[View],
    iters: int = 800,
    chunk_rows: int | None = None,
    fractal: Fractal | None = None,
    perturbation: bool | None = None,
    render_id: str | None = None,
) -> tuple[list[bool], list[list[tuple[Block, object]]]]:
    """The kernel calls of a zoom (see :func:`zoom_dataset`): whether each
    frame is computed by perturbation, and each frame's :func:`block_tasks`
    (render id ``<render_id>f<frame>``)."""
    if not views:
        raise ValueError("a zoom needs at least one view")
    first = views[0]
    for v in views:
        if not isinstance(v, View):
            raise TypeError(f"views must be Views, got {type(v).__name__}")
        if (v.width, v.height, v.supersample, v.centre) != (first.width, first.height, first.supersample, first.centre):
            raise ValueError("the views of a zoom must share their size, supersampling and centre")
    fractal = check_fractal(fractal)
    rows = _check_chunk_rows(first, chunk_rows)
    deep = [is_deep(v, fractal, False, perturbation) for v in views]
    rid = render_id or tokenize("zoom", views, iters, rows, fractal, deep)
    tasks = [
        block_tasks(v, iters, rows, f"{rid}f{k}", fractal=fractal, perturbation=d)
        for k, (v, d) in enumerate(zip(views, deep, strict=True))
    ]
    return deep, tasks


def zoom_dataset(
    views: list[View],
    iters: int = 800,
    chunk_rows: int | None = None,
    fractal: Fractal | None = None,
    perturbation: bool | None = None,
    render_id: str | None = None,
) -> xr.Dataset:
    """A zoom: one lazy picture per view (e.g. :func:`dfractal_dask.view.zoom_views`),
    stacked on a ``frame`` dimension: ``iterations`` and ``norm`` on
    ``(frame, im, re)``, one chunk (one task) per frame and row block, so the
    graph has frames × blocks kernel calls.

    Coordinates ``frame``, ``span`` and ``deep`` (computed by perturbation,
    :func:`is_deep`, each frame deciding for itself unless ``perturbation``
    is given; a deep frame has its own reference-orbit task).  The first
    view, ``iters``, the fractal and ``frames``/``to_span`` are in attrs.
    Every view must share the first one's size and centre.
    """
    deep, tasks = zoom_tasks(views, iters, chunk_rows, fractal, perturbation, render_id)
    return zoom_dataset_from_tasks(views, iters, deep, tasks, fractal)


#: The most kernel calls (frames × blocks) one zoom's graph may hold: past
#: this, building the graph alone takes minutes and gigabytes (~1 ms and
#: ~10 kB a task), so such a zoom is refused before any work.
MAX_ZOOM_TASKS = 100_000


def check_zoom_size(view: View, frames: int, chunk_rows: int | None = None) -> int:
    """Refuse (``ValueError``) a zoom of ``frames`` frames of ``view`` with more
    than :data:`MAX_ZOOM_TASKS` kernel calls, before any of its frames is
    made (so at any frame count in microseconds); returns the blocks a frame."""
    n_blocks = len(range(0, view.sample_height, _check_chunk_rows(view, chunk_rows)))
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
) -> xr.Dataset:
    """What :func:`zoom_dataset` would return, without its graph: the same
    shape, chunks, dtypes, coordinates and Dataset attrs, over placeholder arrays, in
    milliseconds at any frame count (so a zoom can be checked before its
    graph is built).  Refuses more than :data:`MAX_ZOOM_TASKS` kernel calls."""
    if not views:
        raise ValueError("a zoom needs at least one view")
    iters = check_iters(iters)
    fractal = check_fractal(fractal)
    first = views[0]
    rows = _check_chunk_rows(first, chunk_rows)
    check_zoom_size(first, len(views), chunk_rows)
    shape = (len(views), first.sample_height, first.sample_width)
    chunks = (1, rows, first.sample_width)
    deep = [is_deep(v, fractal, False, perturbation) for v in views]
    attrs = {**fractal.to_attrs(), "iters": iters, "chunk_rows": min(rows, first.sample_height), **first.to_attrs()}
    attrs.update(frames=len(views), to_span=views[-1].span)
    dims = ("frame", "im", "re")
    data = {
        "iterations": (dims, da.zeros(shape, dtype=kernels.count_dtype(iters), chunks=chunks),
                       _var_attrs("iterations", iters)),
        "norm": (dims, da.zeros(shape, dtype=np.float32, chunks=chunks), _var_attrs("norm", iters)),
    }  # fmt: skip
    coords = {"frame": np.arange(len(views)), "span": ("frame", [v.span for v in views]), "deep": ("frame", deep)}
    return xr.Dataset(data, coords=coords, attrs=attrs)  # (no im/re: they differ frame to frame)


def zoom_dataset_from_tasks(
    views: list[View],
    iters: int,
    deep: list[bool],
    tasks: list[list[tuple[Block, object]]],
    fractal: Fractal | None = None,
) -> xr.Dataset:
    """The Dataset of :func:`zoom_dataset` over the kernel calls of
    :func:`zoom_tasks` (so other tasks, e.g. store writes, can share them)."""
    frames = [dataset_from_tasks(v, iters, t, fractal, False, d) for v, d, t in zip(views, deep, tasks, strict=True)]
    data = {
        name: (("frame", "im", "re"), da.stack([f[name].data for f in frames]), frames[0][name].attrs)
        for name in ("iterations", "norm")
    }
    attrs = {k: val for k, val in frames[0].attrs.items() if k not in ("perturbation", "distance")}
    attrs.update(frames=len(views), to_span=views[-1].span)
    return xr.Dataset(
        data,
        coords={"frame": np.arange(len(views)), "span": ("frame", [v.span for v in views]), "deep": ("frame", deep)},
        attrs=attrs,
    )
