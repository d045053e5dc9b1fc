"""``dfractal explore``: the interactive zoom explorer, a bokeh server on 127.0.0.1."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path
from types import FrameType
from typing import NoReturn

from ..cluster import connect
from ..colorize import MODES
from ..explorer.session import ITERS, store_modes
from ..explorer.stored import StoredPicture
from ..fractals import Fractal
from ..palettes import resolve_palette
from ..spec import is_deep
from ..view import View
from ..widget import serve
from .errors import UsageError
from .options import (
    FrameSize,
    add_cluster_flags,
    add_color_flags,
    add_fractal_flags,
    add_storage_flag,
    add_view_flags,
    default_of,
    fractal,
    location,
    port,
    positive_int,
    security,
)
from .output import say

__all__ = ["EXPLORE_FRAME", "add_parser", "run"]

#: The explorer's frame in pixels, unless told (a browser window's worth).
EXPLORE_FRAME: FrameSize = {"width": 800, "height": 600}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``explore`` and its flags to ``subparsers``."""
    ex = subparsers.add_parser("explore", help="interactive zoom explorer in the browser (a bokeh server on 127.0.0.1)")
    ex.add_argument("--port", type=port, default=default_of(serve, "port"),
                    help="port of the page (%(default)s; 0: any free port)")  # fmt: skip
    ex.add_argument("--address", default=default_of(serve, "address"),
                    help="interface to listen on (%(default)s: this machine only)")  # fmt: skip
    add_view_flags(ex, **EXPLORE_FRAME, span=None, centre=None, smoothness=None)
    ex.add_argument("--iters", type=positive_int, default=None,
                    help=f"iteration limit ({ITERS}; with --store, the store's)")  # fmt: skip
    ex.add_argument("--store", default=None, metavar="PATH|URL",
                    help="browse this stored render (`dfractal render --pyramid`): its views are read from the store, "
                         "no cluster; zooming past its resolution renders on the cluster. Starts at its view, "
                         "fractal and iterations")  # fmt: skip
    palette = default_of(serve, "palette")
    # (histogram and distance: for a store's views, checked in run)
    add_color_flags(ex, serve, MODES, step=False, interior=False, palette_default=palette)
    ex.add_argument("--save-dir", default=default_of(serve, "save_dir"), metavar="PATH|URL",
                    help="where Save writes NAME.zarr and NAME.png, a folder or URL (%(default)s)")  # fmt: skip
    add_storage_flag(ex)
    add_cluster_flags(ex)
    ex.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    add_fractal_flags(ex)
    ex.set_defaults(run=run)
    return ex


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Serve the explorer until Ctrl-C or SIGTERM; 0, or an exception for :func:`main` to report."""
    fr = fractal(args)
    stored = None
    if args.store is not None:  # opened and checked here, before any cluster or server starts
        if (args.fractal, args.julia_c, args.power) != (Fractal.family.replace("_", "-"), None, None):
            raise UsageError("--store starts at the store's fractal: choose another one in the page, not with flags")
        stored = StoredPicture(location(args, args.store))
        fr = stored.fractal
    start = stored.view if stored is not None else View(*fr.home, args.width, args.height, 1)
    home = {"xpos": start.xpos, "ypos": start.ypos, "span": start.span}  # by default, the whole set or the store's
    x, y, span = (home[k] if getattr(args, k) is None else getattr(args, k) for k in ("xpos", "ypos", "span"))
    view = View(x, y, span, args.width, args.height, 1)
    is_deep(view, fr)  # a view past float64 of a family perturbation does not render: refused here
    resolve_palette(args.palette)
    modes = store_modes(stored)
    if args.mode not in modes:
        raise UsageError(f"unknown --mode {args.mode!r} for explore{' --store' if stored else ''} "
                         f"(modes: {', '.join(modes)})")  # fmt: skip
    save_dir = location(args, args.save_dir)
    if save_dir.is_local and not Path(save_dir.url).is_dir():
        raise UsageError(f"--save-dir {args.save_dir} is not a directory")
    sec = security(args)

    with connect(args.scheduler, n_workers=args.workers, security=sec, cluster=args.cluster) as client:
        try:
            server = serve(client, port=args.port, address=args.address, view=view, iters=args.iters,
                           palette=args.palette, mode=args.mode, save_dir=save_dir, fractal=fr,
                           store=stored)  # fmt: skip
        except OSError as exc:  # e.g. the port is taken
            raise UsageError(f"cannot listen on {args.address}:{args.port}: {exc.strerror or exc}") from None
        # the URL goes to stdout even with --quiet: it is what the command is for
        print(f"explorer: http://{args.address}:{server.port}/", flush=True)
        say(args, f"dashboard: {client.dashboard_link}  (Ctrl-C stops)")
        signal.signal(signal.SIGTERM, _interrupt)  # `kill`: stop like Ctrl-C, closing the cluster
        try:
            server.io_loop.start()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0
