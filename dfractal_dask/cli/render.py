"""``dfractal render``: a view to a Zarr store and a picture (the seed's ``fractal leader``).

It takes every flag of the seed's leader with the same defaults.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from ..cluster import connect
from ..colorize import MODES, check_picture_memory, color_picture
from ..diagnostics import report as reports
from ..graph import blocks, template_of
from ..overlap import PictureFile
from ..palettes import DEFAULT_PALETTE, resolve_palette
from ..pipeline import RenderStats
from ..pipeline import render as render_view
from ..protocol import PAGE_PATH
from ..pyramid import block_rows
from ..spec import RenderSpec
from ..store import check_target, write_metrics
from ..store.lease import Lease, check_held
from ..view import View
from .errors import UsageError
from .options import (
    add_cluster_flags,
    add_color_flags,
    add_exact_flag,
    add_fractal_flags,
    add_pyramid_flag,
    add_store_flags,
    add_view_flags,
    check_color_flags,
    default_of,
    fractal,
    fractal_name,
    positive_int,
    security,
    store_beside,
)
from .output import PICTURE_FORMATS, Progress, check_picture_format, save_picture, say

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``render`` and its flags to ``subparsers``."""
    what = "render a view to a Zarr store and a picture (the seed's `fractal leader`)"
    r = subparsers.add_parser("render", help=what)
    seed = r.add_argument_group("seed flags (same names and defaults as `fractal leader`)")
    add_view_flags(seed)
    seed.add_argument("--iters", type=positive_int, default=default_of(render_view, "iters"),
                      help="iteration limit per sample (%(default)s)")  # fmt: skip
    add_color_flags(seed, color_picture, MODES)
    seed.add_argument("--outfile", default="mandelbrot.png",
                      help=f"picture to write, its format by its ending: {', '.join(PICTURE_FORMATS)} "
                           "(%(default)s)")  # fmt: skip
    seed.add_argument("--no-picture", dest="picture", action="store_false",
                      help="write the store (and its --pyramid) only, no picture: for pictures too big to want "
                           "whole, coloured later by `dfractal recolor` (e.g. --dzi)")  # fmt: skip
    seed.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    seed.add_argument("-m", "--metrics", action="store_true", help="print METRICS lines after the render")
    seed.add_argument("--force-exit", action="store_true", help="accepted for the seed; exiting is the default")
    seed.add_argument("--host", default=None, help="the seed's gRPC address; ignored here (see --scheduler)")
    g = r.add_argument_group("cluster and store")
    add_cluster_flags(g)
    g.add_argument("--metrics-json", default=None, metavar="FILE", help="also write the metrics as JSON")
    add_store_flags(g, render_view, resume_help="finish an interrupted render in --store: only its missing blocks")
    g.add_argument(
        "--distance", action="store_true",
        help="also store each sample's distance estimate, for --mode distance now or in a recolour "
             "(implied by --mode distance)",
    )  # fmt: skip
    g.add_argument(
        "--perturbation", action=argparse.BooleanOptionalAction, default=None,
        help="compute by perturbation around one arbitrary-precision reference orbit (default: when "
             "float64 cannot resolve the view, e.g. --span 1e-30 with a many-digit --xpos)",
    )  # fmt: skip
    add_exact_flag(g)
    add_pyramid_flag(g)
    g.add_argument(
        "--overlap", action=argparse.BooleanOptionalAction, default=True,
        help="colour and compress each block of a PNG on its worker as soon as it is computed, so the picture "
             "is done with the render (default; not --mode histogram, which needs every count first); "
             "--no-overlap: colour the store once the render is done",
    )  # fmt: skip
    add_fractal_flags(r)
    r.set_defaults(run=run)
    return r


def _fractal_page(client) -> str:
    link = client.dashboard_link or ""
    base = link.rsplit("/status", 1)[0] if link.endswith("/status") else link.rstrip("/")
    return f"{base}/{PAGE_PATH}"


def _started_later(label: str, unit: str) -> Callable[[int, int], None]:
    # a progress bar whose clock starts with its first call (the pyramid's, after the blocks)
    bar: list[Progress] = []

    def call(done: int, total: int) -> None:
        if not bar:
            bar.append(Progress(label, unit))
        bar[0](done, total)

    return call


def _check_no_picture(args: argparse.Namespace) -> None:
    # a flag that only colours the picture, with --no-picture: a mistake, not a wish to ignore it
    # (--mode distance stays: it stores the distances, as --distance)
    given = [flag for flag, value, default in (
        ("--palette", args.palette, DEFAULT_PALETTE), ("--step", args.step, default_of(color_picture, "step")),
        ("--interior", args.interior, default_of(color_picture, "interior")), ("--no-overlap", args.overlap, True),
    ) if value != default]  # fmt: skip
    if args.mode not in (default_of(color_picture, "mode"), "distance"):
        given.append(f"--mode {args.mode}")
    if given:
        them = "them" if len(given) > 1 else "it"
        raise UsageError(f"--no-picture writes no picture, so {', '.join(given)} would do nothing; drop {them} "
                         "(colour the store later: dfractal recolor)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Render, write the picture; 0, or an exception for :func:`main` to report."""
    # Everything is checked before a cluster starts or a store is touched.
    view = View.from_seed_flags(args.xpos, args.ypos, args.span, args.width, args.height, args.smoothness)
    fr = fractal(args)
    distance = args.distance or args.mode == "distance"
    palette = resolve_palette(args.palette)
    check_color_flags(args, MODES)
    if not args.picture:
        _check_no_picture(args)
    if args.pyramid and args.chunk_rows is None:  # as render(pyramid=True): blocks that write level 1 too
        args.chunk_rows = block_rows(view)
    n_blocks = len(blocks(view, args.chunk_rows))  # validates --chunk-rows
    outfile = Path(args.outfile)
    store_path = store_beside(args, outfile, "picture")
    if args.picture:
        check_picture_format(outfile)  # after the path's own checks (e.g. /dev/null: not a regular file)
        check_picture_memory(view.width, view.height)
    # its shape, chunks and attrs without its graph (milliseconds at any block count)
    template = template_of(RenderSpec.make(view, args.iters, args.chunk_rows, fr, distance, args.perturbation,
                                           args.exact))  # fmt: skip
    check_target(store_path, template, n_blocks, overwrite=args.overwrite, resume=args.resume)
    sec = security(args)
    if args.host:
        say(args, f"note: --host {args.host} is the seed's gRPC address and is ignored; use --scheduler ADDRESS")

    # a PNG is coloured block by block as the blocks are computed (histogram: after, by render_view too)
    picture = None
    if args.picture and args.overlap and check_picture_format(outfile) == "PNG":
        picture = PictureFile(outfile, palette, args.step, args.mode, interior=args.interior)
    stats = RenderStats()
    t0 = time.perf_counter()
    # the store's lease, held until the picture is written from it (render_view() shares it)
    deep = bool(template.attrs["perturbation"])  # its kernels only: not the plain escape ones warmed
    with Lease(store_path, "dfractal render") as lease, connect(args.scheduler, n_workers=args.workers,
                                                       security=sec, cluster=args.cluster, dashboard_later=True,
                                                       escape_kernels=not deep) as client:  # fmt: skip
        say(args, f"dashboard: {client.dashboard_link}  (render page: {_fractal_page(client)})")
        say(
            args,
            f"rendering {fractal_name(fr)} {view.width}x{view.height} "
            f"({view.supersample}x{view.supersample} samples/pixel, "
            f"{args.iters} iterations{', by perturbation' if deep else ''}) "
            f"on {len(client.scheduler_info()['workers'])} workers",
        )
        ds = render_view(
            view,
            args.iters,
            store_path=store_path,
            client=client,
            chunk_rows=args.chunk_rows,
            overwrite=args.overwrite,
            resume=args.resume,
            retries=args.retries,
            progress=None if args.quiet else Progress("render"),
            stats=stats,
            fractal=fr,
            distance=distance,
            perturbation=args.perturbation,
            exact=args.exact,
            picture=picture,
            pyramid=args.pyramid,
            pyramid_progress=None if args.quiet else _started_later("pyramid", "tile rows"),
        )
        report, workers_runtime = reports.collect(client, stats.render_id)
        if report:
            check_held(store_path, lease.token)
            write_metrics(store_path, report)
        if picture is None and args.picture:
            # lazy, then computed (a PNG: written a strip at a time, the client
            # never holds the whole picture)
            save_picture(color_picture(ds, palette, args.step, args.mode, interior=args.interior), outfile)
            stats.picture_at = time.time()
    elapsed = time.perf_counter() - t0
    say(
        args,
        (f"wrote {outfile} ({view.width}x{view.height}) and " if args.picture else "wrote ") + f"{store_path} "
        f"({stats.bytes_written / 1e6:.1f} MB) in {elapsed:.1f} s"
        + (f"; {stats.resumed} blocks were already done, {stats.blocks} computed now" if args.resume else ""),
    )
    if args.pyramid:
        say(args, f"built its pyramid ({stats.pyramid_levels} levels above the samples) "
                  f"in {stats.pyramid_seconds:.1f} s")  # fmt: skip
    client_runtime = reports.runtime_metrics()
    if args.metrics:
        print("\n".join(reports.format_metrics(elapsed, client_runtime, report, workers_runtime)))
    if args.metrics_json:
        # the picture's seconds after the last block's kernel ended (None: no block was computed)
        after = stats.picture_at - stats.last_block_at if stats.last_block_at else None
        picture_doc = {
            "overlapped": bool(picture and picture.per_block),
            "after_last_block_seconds": after,
            "written": bool(args.picture),
        }
        doc = {"client": {"time_seconds": elapsed, **client_runtime}, "render": report, "workers": workers_runtime,
               "picture": picture_doc}  # fmt: skip
        Path(args.metrics_json).parent.mkdir(parents=True, exist_ok=True)  # as for the picture
        Path(args.metrics_json).write_text(reports.to_json(doc))
    return 0
