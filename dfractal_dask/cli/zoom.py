"""``dfractal zoom``: frames from a view down to ``--to-span``, stored in Zarr,
written as an animated GIF or PNG (APNG)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..animation import ANIMATION_FORMATS, color_frames, save_animation
from ..cluster import connect
from ..colorize import MODES, check_picture_memory
from ..fractals import HOME
from ..graph import check_zoom_size, zoom_template
from ..palettes import resolve_palette
from ..pipeline import zoom as zoom_view
from ..store import check_zoom_target, reading
from ..store.lease import Lease
from ..view import View, zoom_views
from .options import (
    ViewFlagDefaults,
    add_cluster_flags,
    add_color_flags,
    add_exact_flag,
    add_fractal_flags,
    add_store_flags,
    add_view_flags,
    check_color_flags,
    default_of,
    finite_float,
    fractal,
    fractal_name,
    positive_int,
    security,
    span_number,
    store_beside,
)
from .output import Progress, check_animation_flags, say

__all__ = ["ZOOM_VIEW", "add_parser", "run"]

#: A zoom's first frame, unless told: the whole Mandelbrot set's span about
#: the seed's centre, at an animation's size (the seed has no zoom).
ZOOM_VIEW: ViewFlagDefaults = {"span": HOME["mandelbrot"][2], "width": 320, "height": 240, "smoothness": 2}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``zoom`` and its flags to ``subparsers``."""
    z = subparsers.add_parser(
        "zoom", help="render a zoom: frames from a view down to --to-span, stored in Zarr, as an animated GIF/PNG"
    )
    g = z.add_argument_group("the zoom")
    g.add_argument("--to-span", type=span_number, required=True, help="span of the last frame (e.g. 1e-12)")
    g.add_argument("--frames", type=positive_int, default=default_of(zoom_view, "frames"),
                   help="number of frames, at least 2 (%(default)s)")  # fmt: skip
    add_view_flags(g, **ZOOM_VIEW, span_help="span of the first frame")
    g.add_argument("--iters", type=positive_int, default=default_of(zoom_view, "iters"),
                   help="iteration limit per sample (%(default)s)")  # fmt: skip
    g.add_argument("--fps", type=finite_float, default=default_of(save_animation, "fps"),
                   help="frames per second of the animation (%(default)s)")  # fmt: skip
    g.add_argument("--outfile", default="zoom.gif",
                   help=f"animation to write: {' or '.join(ANIMATION_FORMATS)} (APNG) (%(default)s)")  # fmt: skip
    add_color_flags(g, color_frames, tuple(m for m in MODES if m != "distance"))
    g.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    d = z.add_argument_group("cluster and store")
    add_cluster_flags(d)
    add_store_flags(d, zoom_view, resume_help="finish an interrupted zoom in --store: its missing frames")
    d.add_argument(
        "--perturbation", action=argparse.BooleanOptionalAction, default=None,
        help="compute by perturbation (default: each frame float64 cannot resolve)",
    )  # fmt: skip
    add_exact_flag(d)
    add_fractal_flags(z)
    z.set_defaults(run=run)
    return z


def run(args: argparse.Namespace) -> int:
    """Render the zoom and its animation; 0, or an exception for :func:`main` to report."""
    # Everything is checked before a cluster starts or a store is touched.
    view = View(args.xpos, args.ypos, args.span, args.width, args.height, args.smoothness)
    check_zoom_size(view, args.frames, args.chunk_rows)  # before making its frames: at any count, at once
    views = zoom_views(view, args.frames, args.to_span)
    fr = fractal(args)
    palette = resolve_palette(args.palette)
    check_color_flags(args, MODES)  # distance: refused below, with the reason
    outfile = Path(args.outfile)
    check_animation_flags(args, outfile)
    store_path = store_beside(args, outfile, "animation")
    check_picture_memory(view.width, view.height)
    # checked on a template of the zoom: its graph (~1 ms a task) is built later, by zoom_view()
    template = zoom_template(views, args.iters, args.chunk_rows, fr, args.perturbation, exact=args.exact)
    check_zoom_target(store_path, template, overwrite=args.overwrite, resume=args.resume)
    sec = security(args)

    t0 = time.perf_counter()
    deep = int(template["deep"].sum())
    with Lease(store_path, "dfractal zoom"), connect(args.scheduler, n_workers=args.workers,
                                                     security=sec, cluster=args.cluster,
                                                     dashboard_later=True) as client:  # fmt: skip
        say(args, f"dashboard: {client.dashboard_link}")
        say(
            args,
            f"zooming into {fractal_name(fr)} at ({view.centre[0]}, {view.centre[1]}): {args.frames} frames "
            f"{view.width}x{view.height}, span {views[0].span:g} to {views[-1].span:g}"
            + (f" ({deep} by perturbation)" if deep else "")
            + f", {args.iters} iterations, on {len(client.scheduler_info()['workers'])} workers",
        )
        ds = zoom_view(
            view,
            args.iters,
            to_span=args.to_span,
            frames=args.frames,
            store_path=store_path,
            client=client,
            chunk_rows=args.chunk_rows,
            overwrite=args.overwrite,
            resume=args.resume,
            retries=args.retries,
            progress=None if args.quiet else Progress("zoom", "frames"),
            fractal=fr,
            perturbation=args.perturbation,
            exact=args.exact,
        )
        with reading(store_path):
            save_animation(color_frames(ds, palette, args.step, args.mode, interior=args.interior), outfile, args.fps)
    say(args, f"wrote {outfile} ({args.frames} frames) and {store_path} in {time.perf_counter() - t0:.1f} s")
    return 0
