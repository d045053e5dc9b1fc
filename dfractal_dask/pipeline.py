"""``render``: a view, computed on a dask cluster, written to Zarr by the workers."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

import dask
import xarray as xr
from distributed import Client, get_worker
from distributed.security import Security

from . import graph, kernels, protocol, settings, store
from . import pyramid as pyramid_module
from .checks import check_bool, check_bools
from .cluster import SLOWEST_RATE, ClusterError, connect, current_client
from .colorize import block_coloring, check_picture_memory, color_picture
from .diagnostics import ensure_plugin
from .fractals import Fractal
from .gather import gather_results
from .location import Location, as_location
from .overlap import PictureFile, piece_tasks
from .png import PngWriter, partial_file, save_png
from .spec import RENDER, ZOOM, RenderSpec
from .store import integrity
from .store.lease import Lease, check_held
from .view import View, zoom_views

__all__ = ["MAX_RETRIES", "ClusterError", "PictureFile", "RenderStats", "SLOWEST_RATE", "render", "zoom"]


@dataclass
class RenderStats:
    """What a render did: blocks, samples, fractal iterations, bytes, seconds."""

    blocks: int = 0
    rows: int = 0
    samples: int = 0
    iterations: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    per_block: list[dict] = field(default_factory=list)
    render_id: str | None = None
    resumed: int = 0  # blocks already in the store when a resumed render started
    last_block_at: float = 0.0  # time.time() the last block's kernel ended (its first follow-up task started)
    picture_at: float = 0.0  # time.time() the picture (render(picture=...)) was written
    pyramid_seconds: float = 0.0  # building the pyramid (render(pyramid=True)), after the blocks
    pyramid_levels: int = 0  # levels the pyramid has above level 0


def _write(
    loc: Location,
    block: graph.Block,
    result: tuple,
    render_id: str,
    iters: int,
    store_id: str | None,
    level1: int | None = None,
    lease_token: str | None = None,
) -> dict:
    started = time.time()  # about when the block's kernel ended (this runs next on its worker)
    it, norm, work, *distance = result  # (the distance estimate, if the render has it)
    if level1 is not None:  # (the power) a pyramid render's level 1 from the block, before its done flag
        if lease_token is not None:
            check_held(loc, lease_token)
        pyramid_module.write_block_level(loc, block.row0, result, iters, level1, store_id)
    nbytes = store.write_block(loc, block, it, norm, *distance, store_id=store_id, lease_token=lease_token)
    row = {"block": block.index, "rows": block.nrows, "samples": it.size, "iterations": work, "bytes": nbytes,
           "started": started}  # fmt: skip
    try:
        worker = get_worker()
    except ValueError:  # not on a dask worker (e.g. a local scheduler)
        return row
    y0, thumb = protocol.preview_block(it, block.row0, iters)
    worker.log_event(
        protocol.BLOCK_TOPIC,
        {"render_id": render_id, "worker": worker.address, "rows": block.nrows, "samples": it.size,
         "iterations": work, "bytes_written": nbytes, "preview_row": y0, "preview": thumb},
    )  # fmt: skip
    return row


#: The most times a failed block is tried again (a block that fails 100 times will not succeed).
MAX_RETRIES = 100


def _check_callables(**values: object) -> None:
    # the optional callbacks and objects render and zoom take, checked before anything starts
    for name, value in values.items():
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be callable or None, got {value!r}")


def _check_client(client: object, security: object, stats: object) -> None:
    if client is not None and not isinstance(client, Client | str):
        raise TypeError(f"client must be a distributed.Client, a scheduler address or None, got {client!r}")
    if security is not None and not isinstance(security, Security):
        raise TypeError(f"security must be a distributed.security.Security or None, got {security!r}")
    if stats is not None and not isinstance(stats, RenderStats):
        raise TypeError(f"stats must be a RenderStats or None, got {stats!r}")


def _check_workers(c: Client, workers: list[str] | None) -> None:
    if workers:
        known = set(c.scheduler_info()["workers"])
        unknown = [w for w in workers if w not in known]
        if unknown:
            raise ValueError(f"workers {', '.join(unknown)} are not in the cluster (its workers: "
                             f"{', '.join(sorted(known)) or 'none'})")  # fmt: skip


def _only(workers: list[str] | None) -> dict:
    if workers is None:
        return {}
    if isinstance(workers, str) or not workers or not all(isinstance(w, str) for w in workers):
        raise TypeError(f"workers must be a non-empty list of worker addresses, got {workers!r}")
    return {"workers": list(workers), "allow_other_workers": False}


def _check_run(
    retries: object, resume: bool, store_path: str | os.PathLike | Location | None, storage_options: dict | None
) -> Location | None:
    # the arguments render and zoom share, checked before any cluster starts;
    # the store's location, made absolute here, on the client, before any task is built
    check_bool("resume", resume)
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise TypeError(f"retries must be an integer from 0 to {MAX_RETRIES}, got {retries!r}")
    if not 0 <= retries <= MAX_RETRIES:  # (dask's scheduler sends it as a 64-bit integer: a huge one killed workers)
        raise ValueError(f"retries must be from 0 to {MAX_RETRIES}, got {retries!r}")
    if resume and store_path is None:
        raise ValueError("resume needs a store_path")
    if store_path is None:
        if storage_options:
            raise ValueError("storage_options need a store_path")
        return None
    return as_location(store_path, storage_options, name="store_path")


def _lease_name(kind: str, render_id: str) -> str:
    return f"dfractal {kind} {render_id[:12]}"


def render(
    view: View | None = None,
    iters: int = 800,
    *,
    store_path: str | os.PathLike | None = None,
    client: Client | str | None = None,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    retries: int = 0,
    progress: Callable[[int, int], None] | None = None,
    stats: RenderStats | None = None,
    security: Security | None = None,
    storage_options: dict | None = None,
    balance: bool = True,
    workers: list[str] | None = None,
    fractal: Fractal | None = None,
    distance: bool = False,
    perturbation: bool | None = None,
    exact: bool = False,
    picture: PictureFile | None = None,
    pyramid: bool = False,
    pyramid_progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """Render ``view`` on a dask cluster.

    Parameters
    ----------
    view
        What to render (default: the seed's default view).
    iters
        Iteration limit per sample.
    store_path
        Zarr store the workers write into; the result is then opened lazily
        from it.  A local path (made absolute here, so workers started in
        other folders write the same store) or any URL fsspec opens
        (``s3://bucket/m.zarr``, ``gs://``, ``az://``, ``file://``).
        ``None``: compute in memory and return numpy-backed data (for small
        renders).  While the render writes it, the store holds a lease
        (:mod:`dfractal_dask.store.lease`): a second writer is refused.
    client
        A Client, a scheduler address, or ``None`` for the current default
        client or else an embedded LocalCluster started for this call.
    chunk_rows
        Sample rows per block (one task and one Zarr chunk each); default
        :func:`dfractal_dask.graph.default_chunk_rows`.
    overwrite
        Replace an existing render store at ``store_path``.
    resume
        Finish an interrupted render in ``store_path``: compute only the blocks
        it does not mark done (a store made for another view, size or iteration
        limit is refused).  Starts afresh if there is no store yet.
    retries
        Times dask may retry a failed block.
    progress
        Called as ``progress(done, total)`` as blocks finish.
    stats
        If given, filled with what the render did.
    security
        TLS credentials when ``client`` is a ``tls://`` address (a
        ``distributed.security.Security``, e.g. from
        :func:`dfractal_dask.cluster.tls_security`).
    storage_options
        fsspec options for a ``store_path`` URL (credentials,
        ``endpoint_url``, ...); the standard environment credentials
        apply without them.
    balance
        Start the costliest blocks first (their cost estimated by a sparse
        probe, :func:`dfractal_dask.graph.block_costs`), so interior-heavy
        rows do not leave one worker busy at the end while the others idle.
        ``False``: dask's own order (for comparison).
    workers
        Addresses of the only workers to run on (e.g. a subset of a shared
        cluster, for a scaling study); default: any.
    fractal
        The family and its parameters (:class:`dfractal_dask.fractals.Fractal`,
        e.g. ``Fractal("julia", c=-0.8+0.156j)``); default the Mandelbrot set.
        Stored in the attrs, so a recolouring knows it.
    distance
        Also compute and store each escaped sample's distance estimate to the
        set (a ``distance`` variable), for ``mode="distance"`` colouring; a
        second pass over the escaped samples (Mandelbrot, Julia, Multibrot).
    perturbation
        Compute by perturbation around one arbitrary-precision reference orbit
        (:mod:`dfractal_dask.perturbation`): ``None`` (default) where float64
        cannot resolve the view (:attr:`dfractal_dask.view.View.deep`, e.g. a
        span below ~1e-13 given with a decimal-string centre), ``True`` always
        (also more exact for high iteration counts at moderate zoom),
        ``False`` never.  The Mandelbrot set only.
    exact
        Iterate every step of a deep view, without the bilinear approximation
        that skips many at once (:mod:`dfractal_dask.bla`; the store's attr
        ``bla`` says which, and a resume must ask for the same).
    picture
        Also write this PNG (:class:`dfractal_dask.overlap.PictureFile`: its
        path and colouring; needs ``store_path``): each block is coloured and
        compressed on the worker that computed it as soon as it is done and
        the client writes the pieces in row order, so the PNG is done moments
        after the last block (the same file :func:`dfractal_dask.save_png`
        writes from the store's :func:`dfractal_dask.color_picture`).  A
        resumed render colours its done blocks from the store; histogram
        mode is coloured from the store after the render.
    pyramid
        Also build the store's multiscale pyramid (:mod:`dfractal_dask.pyramid`;
        needs ``store_path``) on the same cluster once its blocks are written
        (a resumed render too): coarser levels for zoomed-out viewing, as
        OME-Zarr 0.5 multiscales.
    pyramid_progress
        Called as ``progress(done, total)`` as the pyramid's rows of tiles finish.

    Returns
    -------
    xarray.Dataset
        ``iterations`` and ``norm`` on ``(im, re)``, the view in attrs.
    """
    settings.check()  # every dfractal.* setting, before anything is touched
    view = View() if view is None else view
    if not isinstance(view, View):
        raise TypeError(f"view must be a View, got {type(view).__name__}")
    _only(workers)  # checked before any store is made
    if picture is not None and not isinstance(picture, PictureFile):
        raise TypeError(f"picture must be a PictureFile, got {type(picture).__name__}")
    if picture is not None and store_path is None:
        raise ValueError("picture needs a store_path (its blocks are coloured as they are written)")
    check_bools(overwrite=overwrite, resume=resume, balance=balance, distance=distance, exact=exact, pyramid=pyramid)
    _check_client(client, security, stats)
    _check_callables(progress=progress)
    check_bool("perturbation", perturbation, none=True)
    if pyramid and store_path is None:
        raise ValueError("pyramid needs a store_path (its levels are stored beside the samples)")
    if pyramid_progress is not None and not callable(pyramid_progress):
        raise TypeError(f"pyramid_progress must be callable, got {pyramid_progress!r}")
    if pyramid and chunk_rows is None:  # blocks that write level 1's tiles themselves, when the picture suits
        chunk_rows = pyramid_module.block_rows(view)
    spec = RenderSpec.make(view, iters, chunk_rows, fractal, distance, perturbation, exact)
    if picture is not None:  # its colouring checked against the render before any cluster starts
        check_picture_memory(view.width, view.height)
        if picture.per_block:
            block_coloring(graph.template_of(spec), **picture.colouring())
    return _run(spec, store_path=store_path, client=client, overwrite=overwrite, resume=resume, retries=retries,
                progress=progress, stats=stats, security=security, storage_options=storage_options, balance=balance,
                workers=workers, picture=picture, pyramid=pyramid, pyramid_progress=pyramid_progress)  # fmt: skip


def _plan(spec: RenderSpec, balance: bool) -> tuple[list[int] | None, int | list[int]]:
    # the blocks' priorities and the kernel's shortcut levels: a render's from one
    # sparse probe (costs for the order, where cycle detection pays); no float64
    # probe of a deep view; a zoom's frames take dask's order and cycle detection
    if spec.kind == ZOOM:
        return None, kernels.CYCLES
    if spec.deep[0]:
        return None, kernels.BRUTE
    costs, interior = graph.probe_blocks(spec.view, spec.iters, spec.blocks(), fractal=spec.fractal)
    return (graph.block_priorities(costs) if balance else None), graph.shortcuts_for(interior)


def _run(
    spec: RenderSpec,
    *,
    store_path: str | os.PathLike | None,
    client: Client | str | None,
    overwrite: bool,
    resume: bool,
    retries: int,
    progress: Callable[[int, int], None] | None,
    security: Security | None,
    storage_options: dict | None,
    stats: RenderStats | None = None,
    balance: bool = True,
    workers: list[str] | None = None,
    picture: PictureFile | None = None,
    pyramid: bool = False,
    pyramid_progress: Callable[[int, int], None] | None = None,
) -> xr.Dataset:
    """:func:`render` or :func:`zoom` of a checked ``spec``: in memory, or
    into a new (or resumed) store, then opened from it."""
    loc = _check_run(retries, resume, store_path, storage_options)
    render_id = uuid.uuid4().hex
    priorities, shortcuts = _plan(spec, balance)
    template = graph.template_of(spec)  # no graph yet
    done = None
    if loc is not None:  # before any cluster starts
        done = store.check_kind_target(loc, spec.kind, template, overwrite=overwrite, resume=resume)
    with connect(client if client is not None else current_client(), security=security) as c:
        _check_workers(c, workers)  # before the store is made: a worker not in the cluster would never start
        t0 = time.perf_counter()
        if loc is None:
            lazy = graph.dataset_of(spec, graph.tasks_of(spec, render_id, priorities, shortcuts))
            ds = c.compute(lazy, retries=retries, **_only(workers)).result()
        else:
            with Lease(loc, _lease_name(spec.kind, render_id)) as lease:
                run = _StoreRun(c, spec, render_id, loc, template, retries, workers, stats, picture)
                done = run.start(overwrite, done, lease.token)
                # a resumed store's pyramid is repaired whether or not this run asks for one
                pyramid = pyramid or (done is not None and spec.kind == RENDER and integrity.has_pyramid(loc))
                if pyramid:  # level 1 written by the blocks themselves when their rows make whole tiles
                    in_blocks = pyramid_module.levels_in_blocks(spec.view, spec.block_rows)
                    if pyramid_module.prepare_render(loc, done is None, in_blocks):
                        run.level1 = int(template.attrs.get("power", 2))
                run.write(done, priorities, shortcuts, progress)
                check_held(loc, lease.token)  # (a client stopped past its lease's life writes nothing more)
                if run.level1 is not None:
                    pyramid_module.mark_block_level(loc, run.store_id, done is None)
                if pyramid:  # from the blocks just written (and those a resume found), on the same workers
                    built = pyramid_module.build_on(c, loc, pyramid_progress, verify=done is not None)
                    if stats is not None:
                        stats.pyramid_seconds, stats.pyramid_levels = built["seconds"], built["levels"]
                if done is not None:  # a resume ends with a store that verifies whole, or says what does not
                    check_held(loc, lease.token)
                    left = integrity.verify_store(loc).damaged
                    if left:
                        raise store.StoreError(f"{loc} is still damaged after the resume: {left[0]}")
            ds = store.open_store(loc, spec.kind)
            if picture is not None and not picture.per_block:  # (histogram) the whole picture's counts first
                with dask.config.set(scheduler=c):
                    save_png(color_picture(ds, **picture.colouring()), picture.local_path)
                if stats is not None:
                    stats.picture_at = time.time()
        if stats is not None:
            stats.seconds = time.perf_counter() - t0
    return ds


@dataclass
class _StoreRun:
    """A render or zoom being written into its store by the workers (its lease held)."""

    c: Client
    spec: RenderSpec
    render_id: str
    loc: Location
    template: xr.Dataset
    retries: int
    workers: list[str] | None
    stats: RenderStats | None
    picture: PictureFile | None = None
    store_id: str | None = ""  # None: a resumed store of format 1, which has none
    level1: int | None = None  # a pyramid render whose blocks write level 1: the map's power
    token: str | None = None  # the lease's: checked by the workers before each write they commit

    def start(self, overwrite: bool, done, token: str):
        """Make the store (``done`` ``None``), or take up the one to resume:
        its metadata and coordinates repaired, and the blocks (frames) that
        need no computing found again now that its lease is held.  Returns those."""
        self.token = token
        if done is None:
            store.create(self.loc, self.spec.kind, self.template, overwrite=overwrite, store_id=self.render_id,
                         lease_token=token)  # fmt: skip
            self.store_id = self.render_id
        else:  # resuming: only the blocks (frames) not marked done and verified (a half-written one is not)
            self.store_id = store.store_attrs(self.loc).get("store_id")  # a resumed store keeps its identity
            store.clear_leftovers(self.loc)
            integrity.repair_base(self.loc, self.template)
            done = store.check_kind_target(self.loc, self.spec.kind, self.template, overwrite=False, resume=True,
                                           lease_token=token)  # fmt: skip
        if self.stats is not None:
            self.stats.resumed = 0 if done is None else int(done.sum())
        ensure_plugin(self.c)
        return done

    def write(self, done, priorities: list[int] | None, shortcuts, progress) -> None:
        """Send the work not ``done`` and wait for it, ``progress`` told as it finishes."""
        if self.spec.kind == RENDER:
            self._blocks(done, priorities, shortcuts, progress)
        else:
            self._frames(done, progress)

    def _blocks(self, done, priorities, shortcuts, progress) -> None:
        # a render: one graph of its blocks, each written by the worker that computed it
        spec, stats, render_id = self.spec, self.stats, self.render_id
        tasks = graph.tasks_of(spec, render_id, priorities, shortcuts)[0]
        tasks = [(b, k) for b, k in tasks if done is None or not done[b.index]]
        meta = {
            **{k: self.template.attrs[k] for k in ("xpos", "ypos", "span", "width", "height", "supersample", "iters")},
            "n_blocks": len(tasks),  # to compute now
            "resumed_blocks": 0 if done is None else int(done.sum()),
            "sample_width": spec.view.sample_width,
            "sample_height": spec.view.sample_height,
            "store": str(self.loc),
        }
        self.c.log_event(protocol.RENDER_TOPIC, {"action": "start", "render_id": render_id, "meta": meta})
        if stats is not None:
            stats.render_id = render_id
        write = dask.delayed(_write, pure=False)
        writes = []
        for b, k in tasks:
            with dask.annotate(priority=0 if priorities is None else priorities[b.index]):
                key = protocol.task_key("write", render_id, b.index)
                writes.append(
                    write(
                        self.loc, b, k, render_id, spec.iters, self.store_id, self.level1, self.token, dask_key_name=key
                    )
                )
        overlap = self.picture is not None and self.picture.per_block
        pieces = self._pieces(tasks, done, priorities) if overlap else []
        futures = self.c.compute(writes + pieces, retries=self.retries, **_only(self.workers))
        work = spec.iters * spec.view.sample_width * spec.block_rows  # the largest block's, at most
        ended: dict[int, float] = {}  # each block's kernel's end: its first follow-up task's start
        with contextlib.ExitStack() as stack:
            png = self._png(stack) if overlap else None
            # a small dict a block, and its compressed pixel rows: samples stay on the workers
            for res in gather_results(self.c, futures, progress, render_id, total=len(writes), work=work,
                               counts=lambda r: isinstance(r, dict)):  # fmt: skip
                if not isinstance(res, dict):
                    index, piece, started = res
                    png.add(index, piece)  # type: ignore[union-attr]
                    ended[index] = min(started, ended.get(index, started))
                    continue
                row = res
                ended[row["block"]] = min(row["started"], ended.get(row["block"], row["started"]))
                if stats is not None:
                    stats.blocks += 1
                    stats.rows += row["rows"]
                    stats.samples += row["samples"]
                    stats.iterations += row["iterations"]
                    stats.bytes_written += row["bytes"]
                    stats.per_block.append(row)
            if png is not None:
                if self.token is not None:  # a client that lost the lease puts no picture in place
                    check_held(self.loc, self.token)
                png.close()
        if stats is not None:
            stats.last_block_at = max((ended[b.index] for b, _ in tasks), default=0.0)
            if overlap:
                stats.picture_at = time.time()
        self.c.log_event(protocol.RENDER_TOPIC, {"action": "end", "render_id": render_id})

    def _pieces(self, tasks, done, priorities: list[int] | None) -> list:
        # the picture's pieces: of the blocks computed now, on their kernels' workers,
        # and of the blocks a resume finds done, from the store
        stored = None if done is None or not done.any() else store.open_store(self.loc, RENDER, allow_incomplete=True)
        coloring = block_coloring(self.template, **self.picture.colouring())  # type: ignore[union-attr]
        top = 1 + max(priorities or [0])  # before the kernels still waiting
        return piece_tasks(coloring, tasks, stored, done, self.render_id, top)

    def _png(self, stack: contextlib.ExitStack) -> PngWriter:
        # the picture's writer, its file a .part until the render is done
        path = self.picture.local_path  # type: ignore[union-attr]
        path.parent.mkdir(parents=True, exist_ok=True)
        view = self.spec.view
        return PngWriter(stack.enter_context(partial_file(path)), view.width, view.height, 4)

    def _frames(self, done, progress) -> None:
        # a zoom: a window of frames in flight, each frame's graph built as it is sent (the
        # client holds a few frames' tasks, not the zoom's, ~10 kB a task), each block written
        # by the worker that computed it, then the frame flagged
        c, loc, sid, token = self.c, self.loc, self.store_id, self.token
        write = dask.delayed(store.write_zoom_block, pure=False)
        mark = dask.delayed(store.mark_frame_done, pure=False)

        def frame(k: int):
            tasks = graph.frame_tasks(self.spec, k, self.render_id)
            # (t[i]: Delayed binds its operators at run time, unseen by mypy)
            writes = [write(loc, k, b, t[0], t[1], store_id=sid, lease_token=token)  # type: ignore[index]
                      for b, t in tasks]  # fmt: skip
            return c.compute(mark(loc, k, *writes, store_id=sid, lease_token=token), retries=self.retries)

        todo = [k for k in range(len(self.spec.views)) if done is None or not done[k]]
        window = max(8, 4 * len(c.scheduler_info()["workers"]))
        first = [frame(k) for k in todo[:window]]
        more = (frame(k) for k in todo[window:])
        work = self.spec.iters * self.spec.view.sample_width * self.spec.view.sample_height  # a frame's, at most
        # samples stay on the workers
        for _ in gather_results(c, first, progress, self.render_id, ZOOM, more, len(todo), work):
            pass


def zoom(
    view: View | None = None,
    iters: int = 800,
    *,
    to_span: float,
    frames: int = 24,
    store_path: str | os.PathLike | None = None,
    client: Client | str | None = None,
    chunk_rows: int | None = None,
    overwrite: bool = False,
    resume: bool = False,
    retries: int = 0,
    progress: Callable[[int, int], None] | None = None,
    security: Security | None = None,
    fractal: Fractal | None = None,
    perturbation: bool | None = None,
    storage_options: dict | None = None,
    exact: bool = False,
) -> xr.Dataset:
    """Render a zoom from ``view`` to a span of ``to_span``: ``frames`` views
    about the same centre (:func:`dfractal_dask.view.zoom_views`), as one dask
    graph of frames × row blocks (:func:`dfractal_dask.graph.zoom_dataset`).

    Parameters
    ----------
    view
        The first frame (default: the seed's view); its centre may be a decimal
        string with as many digits as the deepest frame needs.
    iters
        Iteration limit per sample, the same for every frame.
    to_span
        The last frame's span; frames in between shrink geometrically.
    frames
        Number of frames (at least 2).
    store_path
        Zarr store the workers write into (``(frame, im, re)`` arrays and a
        ``frame_done`` flag per frame), then opened lazily
        (:func:`dfractal_dask.store.open_zoom`).  ``None``: computed in memory.
    client, chunk_rows, overwrite, retries, security, fractal, storage_options, exact
        As for :func:`render`.
    resume
        Finish an interrupted zoom in ``store_path``: compute only the frames
        it does not mark done (a store made for another zoom is refused).
    progress
        Called as ``progress(done, total)`` as frames finish.
    perturbation
        ``None``: each frame deep enough is computed by perturbation
        (:attr:`dfractal_dask.view.View.deep`, the Mandelbrot set only);
        ``True``/``False``: every frame or none.

    Returns
    -------
    xarray.Dataset
        ``iterations`` and ``norm`` on ``(frame, im, re)``; coordinates
        ``span`` and ``deep`` on ``frame``.
    """
    settings.check()  # every dfractal.* setting, before anything is touched
    check_bools(overwrite=overwrite, resume=resume, exact=exact)
    _check_client(client, security, None)
    _check_callables(progress=progress)
    check_bool("perturbation", perturbation, none=True)
    view = View() if view is None else view
    if isinstance(view, View):
        graph.check_zoom_size(view, frames, chunk_rows)  # before making its frames: at any count, at once
    views = zoom_views(view, frames, to_span)
    spec = RenderSpec.make_zoom(views, iters, chunk_rows, fractal, perturbation, exact)
    return _run(spec, store_path=store_path, client=client, overwrite=overwrite, resume=resume, retries=retries,
                progress=progress, security=security, storage_options=storage_options)  # fmt: skip
