"""``dfractal recolor``: colour a stored render (or zoom) again, no fractal computation."""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import xarray as xr

from ..animation import color_frames, save_animation
from ..cluster import connect
from ..colorize import MODES, check_picture_memory, color_picture
from ..deepzoom import check_dzi_target, pyramid_of, tiles_folder, write_deep_zoom
from ..location import Location, check_output
from ..palettes import Palette, resolve_palette
from ..store import is_zoom_store, open_render, open_zoom, reading
from .errors import UsageError
from .options import (
    add_cluster_flags,
    add_color_flags,
    add_storage_flag,
    check_color_flags,
    default_of,
    finite_float,
    location,
    positive_int,
    security,
)
from .output import PICTURE_FORMATS, beside, check_animation_flags, check_picture_format, save_picture, say

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``recolor`` and its flags to ``subparsers``."""
    rc = subparsers.add_parser("recolor", help="colour a stored render again (no fractal computation)")
    rc.add_argument(
        "store", metavar="STORE", help="a store written by `dfractal render` or `dfractal zoom` (a path or URL)"
    )
    add_storage_flag(rc)
    rc.add_argument("--outfile", default=None,
                    help=f"picture to write, its format by its ending: {', '.join(PICTURE_FORMATS)}; for a zoom "
                         ".gif or .png (APNG) (default: STORE with .png, here for a URL; for a zoom, "
                         ".gif)")  # fmt: skip
    rc.add_argument("--smoothness", type=positive_int, default=None, help="NxN samples per pixel (the render's)")
    add_cluster_flags(rc, embedded="dask's local threads, here", workers=False)
    rc.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    rc.add_argument("--fps", type=finite_float, default=default_of(save_animation, "fps"),
                    help="a zoom store's animation: frames per second (%(default)s)")  # fmt: skip
    rc.add_argument("--dzi", metavar="OUT.dzi", default=None,
                    help="also write the Deep Zoom picture (OpenSeadragon's tiles, in OUT_files) of a store "
                         "with a pyramid (`dfractal render --pyramid`); the plain picture too when it fits in "
                         "memory (--mode histogram: equalised over the full-resolution samples, every level "
                         "alike)")  # fmt: skip
    rc.add_argument("--overwrite", action="store_true", help="replace an existing --dzi picture")
    add_color_flags(rc, color_picture, MODES)
    rc.set_defaults(run=run)
    return rc


def run(args: argparse.Namespace) -> int:
    """Colour the store again; 0, or an exception for :func:`main` to report."""
    palette = resolve_palette(args.palette)
    check_color_flags(args, MODES)
    store_path = location(args, args.store)
    if is_zoom_store(store_path):
        if args.dzi is not None:
            raise UsageError(f"--dzi: {store_path} holds a zoom, which has no pyramid (a render store's --dzi)")
        return _recolor_zoom(args, palette, store_path)
    outfile = Path(args.outfile) if args.outfile else beside(store_path, ".png")
    check_output(outfile, "picture", store=store_path)
    check_picture_format(outfile)
    sec = security(args)
    ds = open_render(store_path)
    _check_distance(args, ds, store_path)
    picture = True
    if args.dzi is not None:
        picture = _check_dzi(args, ds, store_path, outfile)
    t0 = time.perf_counter()
    # on a cluster if asked, else block by block on dask's local threads
    cluster = connect(args.scheduler, security=sec) if args.scheduler else contextlib.nullcontext()
    with cluster as client:
        if args.dzi is not None:
            # not in reading(): it says which errors are the store's, and an error writing the
            # picture (the tiles' folder, a full disk) names the picture, never a "damaged" store
            dzi = write_deep_zoom(store_path, args.dzi, palette, args.step, args.mode, interior=args.interior,
                                  supersample=args.smoothness, overwrite=args.overwrite, client=client)  # fmt: skip
            say(args, f"wrote {dzi} and its tiles in {tiles_folder(dzi)} ({palette.name}, {args.mode}) "
                      f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
        if picture:
            with reading(store_path):
                # lazy: a PNG is computed and written a strip at a time
                rgba = color_picture(ds, palette, args.step, args.mode, interior=args.interior,
                                     supersample=args.smoothness)  # fmt: skip
                save_picture(rgba, outfile)
            say(
                args,
                f"wrote {outfile} ({rgba.shape[1]}x{rgba.shape[0]}, {palette.name}, {args.mode}) "
                f"in {time.perf_counter() - t0:.1f} s",
            )
    return 0


def _check_distance(args: argparse.Namespace, ds: xr.Dataset, store_path: Location) -> None:
    # before reading: the store is sound, it was made without distances (not "cannot read" it)
    if args.mode == "distance" and "distance" not in ds:
        raise UsageError(f"--mode distance needs a render made with distance estimation (`dfractal render "
                         f"--mode distance`); {store_path} has none: choose another --mode")  # fmt: skip


def _check_dzi(args: argparse.Namespace, ds: xr.Dataset, store_path: Location, outfile: Path) -> bool:
    """--dzi's checks, before any cluster starts: the store's pyramid, the target; whether
    the plain picture is written too (refused when --outfile asks for one too big to hold)."""
    pyramid_of(store_path)
    check_dzi_target(args.dzi, args.overwrite, store=store_path, name="--dzi")
    n = args.smoothness or int(ds.attrs.get("supersample", 1))
    try:
        check_picture_memory(ds.sizes["re"] // n, ds.sizes["im"] // n)
    except ValueError as exc:
        if args.outfile:
            raise UsageError(f"--outfile {outfile}: {exc}; --dzi alone writes the tiles") from None
        say(args, f"no {outfile}: {exc} (the Deep Zoom picture only)")
        return False
    return True


def _recolor_zoom(args: argparse.Namespace, palette: Palette, store_path: Location) -> int:
    outfile = Path(args.outfile) if args.outfile else beside(store_path, ".gif")
    check_animation_flags(args, outfile)
    check_output(outfile, "animation", store=store_path)
    ds = open_zoom(store_path)
    _check_distance(args, ds, store_path)
    t0 = time.perf_counter()
    cluster = connect(args.scheduler, security=security(args)) if args.scheduler else contextlib.nullcontext()
    with cluster, reading(store_path):
        frames = color_frames(ds, palette, args.step, args.mode, interior=args.interior, supersample=args.smoothness,
                               scheduler=None if args.scheduler else "threads")  # fmt: skip
        save_animation(frames, outfile, args.fps)
    say(args, f"wrote {outfile} ({ds.sizes['frame']} frames, {palette.name}, {args.mode}) "
              f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return 0
