"""``dfractal``: the command line.  A thin layer over the public API.

``dfractal render`` takes every flag of the seed's ``fractal leader`` with the
same defaults; bad input gives one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import NoReturn

from .location import check_output

__all__ = ["main", "build_parser"]

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, no usage dump
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {value}")
    return value


def _int_list(text: str) -> list[int]:
    parts = [p.strip() for p in text.split(",")]
    try:
        return [_positive_int(p) for p in parts]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers like 1,2,4 ({exc})") from None


def _finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def _coordinate(text: str) -> float:
    # a decimal with any number of digits: a deep zoom's centre (View keeps them)
    from .view import parse_coordinate

    try:
        return parse_coordinate("coordinate", text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a finite decimal number, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The ``dfractal`` argument parser."""
    parser = _Parser(prog="dfractal", description="Dask-distributed fractal renderer, successor of distributed-fractal")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("render", help="render a view to a Zarr store and a PNG (the seed's `fractal leader`)")
    seed = r.add_argument_group("seed flags (same names and defaults as `fractal leader`)")
    seed.add_argument("--width", type=_positive_int, default=1024, help="picture width in pixels (1024)")
    seed.add_argument("--height", type=_positive_int, default=768, help="picture height in pixels (768)")
    seed.add_argument("--xpos", type=_coordinate, default=-0.00275,
                      help="centre, real part, any number of digits (-0.00275)")  # fmt: skip
    seed.add_argument("--ypos", type=_coordinate, default=0.78912,
                      help="centre, imaginary part, any number of digits (0.78912)")  # fmt: skip
    seed.add_argument(
        "--escape-radius", type=_finite_float, default=0.125689, help="view width in the complex plane (0.125689)"
    )
    seed.add_argument("--iters", type=_positive_int, default=800, help="iteration limit per sample (800)")
    seed.add_argument("--step", type=_positive_int, default=6000, help="colour table size, max(step, iters) (6000)")
    seed.add_argument("--smoothness", type=_positive_int, default=8, help="N: NxN samples averaged per pixel (8)")
    seed.add_argument("--palette", default="Hippi", help="colour palette (Hippi)")
    seed.add_argument("--outfile", default="mandelbrot.png", help="PNG to write (mandelbrot.png)")
    seed.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    seed.add_argument("-m", "--metrics", action="store_true", help="print METRICS lines after the render")
    seed.add_argument("--force-exit", action="store_true", help="accepted for the seed; exiting is the default")
    seed.add_argument("--retries", type=int, default=0, help="times a failed block is retried (0)")
    seed.add_argument("--host", default=None, help="the seed's gRPC address; ignored here (see --scheduler)")
    dask_group = r.add_argument_group("cluster and store")
    dask_group.add_argument(
        "--scheduler", default=None, metavar="ADDRESS", help="dask scheduler (default: embedded LocalCluster)"
    )
    _tls_flags(dask_group)
    dask_group.add_argument(
        "--workers", type=_positive_int, default=None, help="embedded cluster size (default: one per core)"
    )
    dask_group.add_argument("--metrics-json", default=None, metavar="FILE", help="also write the metrics as JSON")
    dask_group.add_argument(
        "--store", default=None, metavar="PATH|URL", help="Zarr store, a path or s3://, gs://, az://... URL "
        "(default: OUTFILE with .zarr)"
    )  # fmt: skip
    _storage_flag(dask_group)
    dask_group.add_argument("--overwrite", action="store_true", help="replace an existing store")
    dask_group.add_argument(
        "--resume", action="store_true", help="finish an interrupted render in --store: only its missing blocks"
    )
    dask_group.add_argument(
        "--chunk-rows", type=_positive_int, default=None, help="sample rows per block (default: ~1 M samples)"
    )
    _colour_flags(dask_group)
    dask_group.add_argument(
        "--distance", action="store_true",
        help="also store each sample's distance estimate, for --mode distance now or in a recolour "
             "(implied by --mode distance)",
    )  # fmt: skip
    dask_group.add_argument(
        "--perturbation", action=argparse.BooleanOptionalAction, default=None,
        help="compute by perturbation around one arbitrary-precision reference orbit (default: when "
             "float64 cannot resolve the view, e.g. --escape-radius 1e-30 with a many-digit --xpos)",
    )  # fmt: skip
    _fractal_flags(r)
    r.set_defaults(func=cmd_render)

    z = sub.add_parser(
        "zoom", help="render a zoom: frames from a view down to --to-span, stored in Zarr, as an animated GIF/PNG"
    )
    zv = z.add_argument_group("the zoom")
    zv.add_argument("--to-span", type=_finite_float, required=True, help="span of the last frame (e.g. 1e-12)")
    zv.add_argument("--frames", type=_positive_int, default=24, help="number of frames, at least 2 (24)")
    zv.add_argument("--xpos", type=_coordinate, default=-0.00275,
                    help="centre, real part, any number of digits (-0.00275)")  # fmt: skip
    zv.add_argument("--ypos", type=_coordinate, default=0.78912,
                    help="centre, imaginary part, any number of digits (0.78912)")  # fmt: skip
    zv.add_argument("--span", type=_finite_float, default=3.0, help="span of the first frame (3.0)")
    zv.add_argument("--width", type=_positive_int, default=320, help="frame width in pixels (320)")
    zv.add_argument("--height", type=_positive_int, default=240, help="frame height in pixels (240)")
    zv.add_argument("--smoothness", type=_positive_int, default=2, help="N: NxN samples averaged per pixel (2)")
    zv.add_argument("--iters", type=_positive_int, default=800, help="iteration limit per sample (800)")
    zv.add_argument("--fps", type=_finite_float, default=12.0, help="frames per second of the animation (12)")
    zv.add_argument("--outfile", default="zoom.gif", help="animation to write: .gif or .png (APNG) (zoom.gif)")
    zv.add_argument("--palette", default="Hippi", help="colour palette (Hippi)")
    zv.add_argument("--step", type=_positive_int, default=6000, help="seed mode colour table size (6000)")
    zv.add_argument("--mode", default="smooth", help="colouring: seed, smooth, histogram (smooth)")
    zv.add_argument("--interior", default="#000000", help="colour of the set itself in smooth modes (#000000)")
    zv.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    zd = z.add_argument_group("cluster and store")
    zd.add_argument(
        "--scheduler", default=None, metavar="ADDRESS", help="dask scheduler (default: embedded LocalCluster)"
    )
    _tls_flags(zd)
    zd.add_argument("--workers", type=_positive_int, default=None, help="embedded cluster size (default: one per core)")
    zd.add_argument("--store", default=None, metavar="PATH|URL", help="Zarr store (default: OUTFILE with .zarr)")
    _storage_flag(zd)
    zd.add_argument("--overwrite", action="store_true", help="replace an existing store")
    zd.add_argument("--resume", action="store_true", help="finish an interrupted zoom in --store: its missing frames")
    zd.add_argument(
        "--chunk-rows", type=_positive_int, default=None, help="sample rows per block (default: ~1 M samples)"
    )
    zd.add_argument("--retries", type=int, default=0, help="times a failed block is retried (0)")
    zd.add_argument(
        "--perturbation", action=argparse.BooleanOptionalAction, default=None,
        help="compute by perturbation (default: each frame float64 cannot resolve)",
    )  # fmt: skip
    _fractal_flags(z)
    z.set_defaults(func=cmd_zoom)

    rc = sub.add_parser("recolor", help="colour a stored render again (no fractal computation)")
    rc.add_argument(
        "store", metavar="STORE", help="a store written by `dfractal render` or `dfractal zoom` (a path or URL)"
    )
    _storage_flag(rc)
    rc.add_argument("--palette", default="Hippi", help="palette name, hex list '#rrggbb,...', or NAME_r (Hippi)")
    rc.add_argument(
        "--outfile", default=None, help="PNG to write (default: STORE with .png, here for a URL; for a zoom, .gif)"
    )
    rc.add_argument("--step", type=_positive_int, default=6000, help="seed mode colour table size (6000)")
    rc.add_argument("--smoothness", type=_positive_int, default=None, help="NxN samples per pixel (the render's)")
    rc.add_argument("--scheduler", default=None, metavar="ADDRESS", help="colour on this dask cluster (default: here)")
    _tls_flags(rc)
    rc.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    rc.add_argument("--fps", type=_finite_float, default=12.0, help="a zoom store's animation: frames per second (12)")
    _colour_flags(rc)
    rc.set_defaults(func=cmd_recolor)

    ex = sub.add_parser("explore", help="interactive zoom explorer in the browser (a bokeh server on 127.0.0.1)")
    ex.add_argument("--port", type=_port, default=5006, help="port of the page (5006; 0: any free port)")
    ex.add_argument("--address", default="127.0.0.1", help="interface to listen on (127.0.0.1: this machine only)")
    ex.add_argument("--xpos", type=_coordinate, default=None, help="centre, real part (the whole set: -0.5)")
    ex.add_argument("--ypos", type=_coordinate, default=None, help="centre, imaginary part (the whole set: 0)")
    ex.add_argument("--escape-radius", "--span", dest="span", type=_finite_float, default=None,
                    help="view width in the complex plane (the whole set: 3)")  # fmt: skip
    ex.add_argument("--width", type=_positive_int, default=800, help="frame width in pixels (800)")
    ex.add_argument("--height", type=_positive_int, default=600, help="frame height in pixels (600)")
    ex.add_argument("--iters", type=_positive_int, default=500, help="iteration limit (500)")
    ex.add_argument("--palette", default="Hippi", help="colour palette (Hippi)")
    ex.add_argument("--mode", default="smooth", help="colouring: smooth or seed (smooth)")
    ex.add_argument("--save-dir", default=".", metavar="PATH|URL",
                    help="where Save writes NAME.zarr and NAME.png, a folder or URL (.)")  # fmt: skip
    _storage_flag(ex)
    ex.add_argument("--scheduler", default=None, metavar="ADDRESS", help="dask scheduler (default: embedded)")
    _tls_flags(ex)
    ex.add_argument("--workers", type=_positive_int, default=None, help="embedded cluster size (one per core)")
    ex.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    _fractal_flags(ex)
    ex.set_defaults(func=cmd_explore)

    b = sub.add_parser("bench", help="strong-scaling study: workers x rows per block x store or gather")
    b.add_argument("--workers", type=_int_list, default=[1, 2], help="worker counts, comma-separated (1,2)")
    b.add_argument("--chunk-rows", type=_int_list, default=[16, 64, 256], help="rows per block (16,64,256)")
    b.add_argument("--outputs", default="store,gather", help="where results go: store, gather or both (both)")
    b.add_argument("--scheduler", default=None, metavar="ADDRESS", help="a running dask scheduler (default: embedded)")
    _tls_flags(b)
    b.add_argument("--xpos", type=_finite_float, default=-0.00275, help="centre, real part (the seed's -0.00275)")
    b.add_argument("--ypos", type=_finite_float, default=0.78912, help="centre, imaginary part (0.78912)")
    b.add_argument("--escape-radius", "--span", dest="escape_radius", type=_finite_float, default=0.125689,
                   help="width of the view (0.125689)")  # fmt: skip
    b.add_argument("--width", type=_positive_int, default=1024, help="picture width in pixels (1024)")
    b.add_argument("--height", type=_positive_int, default=768, help="picture height in pixels (768)")
    b.add_argument("--smoothness", type=_positive_int, default=8, help="NxN samples per pixel (8)")
    b.add_argument("--iters", type=_positive_int, default=800, help="iteration limit (800)")
    b.add_argument("--repeats", type=_positive_int, default=1, help="renders per configuration, best kept (1)")
    b.add_argument("--out", default="dfractal-bench", help="folder for bench.csv/.json/.html (dfractal-bench)")
    b.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    b.set_defaults(func=cmd_bench)

    inf = sub.add_parser("info", help="describe a stored render, verify its chunks, show its render's metrics")
    inf.add_argument("store", metavar="STORE", help="a store (a path or URL)")
    _storage_flag(inf)
    inf.set_defaults(func=cmd_info)

    pl = sub.add_parser("palettes", help="list the palette names")
    pl.set_defaults(func=cmd_palettes)

    v = sub.add_parser("version", help="print the version")
    v.set_defaults(func=cmd_version)
    return parser


def _fractal_flags(parser) -> None:
    g = parser.add_argument_group("fractal (default: the Mandelbrot set, as the seed)")
    g.add_argument(
        "--fractal", default="mandelbrot", metavar="NAME",
        help="mandelbrot, julia, burning-ship or multibrot (mandelbrot)",
    )  # fmt: skip
    g.add_argument("--julia-c", default=None, metavar="C", help="julia's c, e.g. -0.8+0.156j or -0.8,0.156")
    g.add_argument("--power", type=int, default=None, metavar="D", help="multibrot's power d, 2 to 16")


def _fractal(args: argparse.Namespace):
    """The :class:`Fractal` of the --fractal/--julia-c/--power flags."""
    from .fractals import Fractal

    family = Fractal(args.fractal).family  # checks the name
    if args.julia_c is not None and family != "julia":
        raise UsageError("--julia-c is for --fractal julia")
    if args.power is not None and family != "multibrot":
        raise UsageError("--power is for --fractal multibrot")
    c = None if args.julia_c is None else Fractal.parse_c(args.julia_c)
    return Fractal(args.fractal, 2 if args.power is None else args.power, c)


def _storage_flag(group) -> None:
    group.add_argument(
        "--storage-option", action="append", default=[], metavar="KEY=VALUE",
        help="fsspec option for a store URL, repeatable (e.g. endpoint_url=http://127.0.0.1:9000, anon=true)",
    )  # fmt: skip


def _location(args: argparse.Namespace, target: str):
    """``target`` (--store, STORE, --save-dir) as a Location with --storage-option; checked before any work."""
    from .location import as_location, parse_storage_options

    return as_location(target, parse_storage_options(args.storage_option) or None)


def _tls_flags(group) -> None:
    group.add_argument("--tls-ca-file", default=None, metavar="FILE", help="CA of a tls:// scheduler")
    group.add_argument("--tls-cert", default=None, metavar="FILE", help="this client's TLS certificate")
    group.add_argument("--tls-key", default=None, metavar="FILE", help="this client's TLS private key")


def _security(args: argparse.Namespace):
    """The client's TLS credentials from --tls-*, or None; checked before connecting."""
    given = [args.tls_ca_file, args.tls_cert, args.tls_key]
    if not any(given):
        return None
    if not all(given):
        raise UsageError("--tls-ca-file, --tls-cert and --tls-key go together")
    if not args.scheduler:
        raise UsageError("--tls-* flags need --scheduler tls://HOST:PORT (the embedded cluster is local)")
    if not args.scheduler.strip().startswith(("tls://", "wss://")):
        raise UsageError(f"--tls-* flags need a tls:// scheduler address, got --scheduler {args.scheduler}")
    from .cluster import tls_security

    return tls_security(*given)


def _colour_flags(group) -> None:
    group.add_argument(
        "--mode", default="seed", help="colouring: seed (the seed's banded look), smooth, histogram, distance (seed)"
    )
    group.add_argument("--interior", default="#000000", help="colour of the set itself in smooth modes (#000000)")


# -- progress ---------------------------------------------------------------
class _Progress:
    """A text progress bar on stderr; on a non-terminal, a line every 10 %."""

    def __init__(self, label: str, unit: str = "blocks") -> None:
        self.label = label
        self.unit = unit
        self.t0 = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self.last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        frac = done / total if total else 1.0
        elapsed = time.perf_counter() - self.t0
        bar = "#" * int(30 * frac)
        line = f"{self.label} [{bar:<30}] {100 * frac:5.1f}% {done}/{total} {self.unit} {elapsed:6.1f}s"
        if self.tty:
            print("\r" + line, end="\n" if done == total else "", file=sys.stderr, flush=True)
        elif int(10 * frac) > self.last_decile:
            self.last_decile = int(10 * frac)
            print(line, file=sys.stderr, flush=True)


# -- commands ----------------------------------------------------------------
def cmd_version(args: argparse.Namespace) -> int:
    from ._version import __version__

    print(f"dfractal {__version__}")
    return 0


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr, flush=True)


def _store_beside(args: argparse.Namespace, outfile: Path, what: str):
    # render's and zoom's checks of --retries, --outfile (a `what`) and --store; the store's path
    from . import store

    if args.retries < 0:
        raise UsageError(f"--retries must be >= 0, got {args.retries}")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    loc = _location(args, args.store if args.store is not None else store.default_store_path(outfile))
    if loc.is_local and Path(loc.url).resolve() == outfile.resolve():
        raise UsageError("--store and --outfile must differ")
    check_output(outfile, what, store=loc)
    if getattr(args, "metrics_json", None):
        check_output(args.metrics_json, "metrics file", store=loc)
    return loc


def cmd_render(args: argparse.Namespace) -> int:
    # Everything is checked before a cluster starts or a store is touched.
    from . import graph, palettes, store
    from .colorize import check_picture_memory
    from .view import View

    view = View.from_seed_flags(args.xpos, args.ypos, args.escape_radius, args.width, args.height, args.smoothness)
    fractal = _fractal(args)
    distance = args.distance or args.mode == "distance"
    palette = palettes.resolve_palette(args.palette)
    _check_colour_flags(args)
    n_blocks = len(graph.blocks(view, args.chunk_rows))  # validates --chunk-rows
    outfile = Path(args.outfile)
    store_path = _store_beside(args, outfile, "picture")
    check_picture_memory(view.width, view.height)
    template = graph.fractal_dataset(view, args.iters, args.chunk_rows, fractal, distance, args.perturbation)
    store.check_target(store_path, template, n_blocks, overwrite=args.overwrite,
                       resume=args.resume)  # fmt: skip
    security = _security(args)
    if args.host:
        _say(args, f"note: --host {args.host} is the seed's gRPC address and is ignored; use --scheduler ADDRESS")

    from . import metrics
    from .cluster import connect
    from .colorize import colour_picture
    from .lease import Lease
    from .pipeline import RenderStats, render
    from .png import save_png

    stats = RenderStats()
    t0 = time.perf_counter()
    # the store's lease, held until the PNG is written from it (render() shares it)
    with Lease(store_path, "dfractal render"), connect(args.scheduler, n_workers=args.workers,
                                                       security=security) as client:  # fmt: skip
        _say(args, f"dashboard: {client.dashboard_link}  (render page: {_fractal_page(client)})")
        _say(
            args,
            f"rendering {fractal.describe()} {view.width}x{view.height} "
            f"({view.supersample}x{view.supersample} samples/pixel, "
            f"{args.iters} iterations{', by perturbation' if template.attrs['perturbation'] else ''}) "
            f"on {len(client.scheduler_info()['workers'])} workers",
        )
        ds = render(
            view,
            args.iters,
            store_path=store_path,
            client=client,
            chunk_rows=args.chunk_rows,
            overwrite=args.overwrite,
            resume=args.resume,
            retries=args.retries,
            progress=None if args.quiet else _Progress("render"),
            stats=stats,
            fractal=fractal,
            distance=distance,
            perturbation=args.perturbation,
        )
        report, workers_runtime = metrics.collect(client, stats.render_id)
        if report:
            store.write_metrics(store_path, report)
        # lazy, then computed and written to the PNG a strip at a time: the
        # client never holds the whole picture
        save_png(colour_picture(ds, palette, args.step, args.mode, interior=args.interior), outfile)
    elapsed = time.perf_counter() - t0
    _say(
        args,
        f"wrote {outfile} ({view.width}x{view.height}) and {store_path} "
        f"({stats.bytes_written / 1e6:.1f} MB) in {elapsed:.1f} s"
        + (f"; {stats.resumed} blocks were already done, {stats.blocks} computed now" if args.resume else ""),
    )
    client_runtime = metrics.runtime_metrics()
    if args.metrics:
        print("\n".join(metrics.format_metrics(elapsed, client_runtime, report, workers_runtime)))
    if args.metrics_json:
        doc = {"client": {"time_seconds": elapsed, **client_runtime}, "render": report, "workers": workers_runtime}
        Path(args.metrics_json).parent.mkdir(parents=True, exist_ok=True)  # as for the PNG
        Path(args.metrics_json).write_text(metrics.to_json(doc))
    return 0


def _check_colour_flags(args: argparse.Namespace) -> None:
    from .colorize import MODES
    from .palettes import MAX_STEP, parse_hex

    if args.mode not in MODES:
        raise UsageError(f"unknown --mode {args.mode!r} (modes: {', '.join(MODES)})")
    parse_hex(args.interior)
    if args.step > MAX_STEP:
        raise UsageError(f"--step must be at most {MAX_STEP}, got {args.step}")
    iters = getattr(args, "iters", None)
    if args.mode == "seed" and iters is not None and iters > MAX_STEP:
        raise UsageError(f"--iters {iters} in --mode seed makes a colour table of max(--step, --iters) = {iters} "
                         f"entries, more than {MAX_STEP}; use another --mode, or fewer --iters")  # fmt: skip


def cmd_recolor(args: argparse.Namespace) -> int:
    from . import store
    from .colorize import colour_picture
    from .palettes import resolve_palette
    from .png import save_png
    from .store import open_render, reading

    palette = resolve_palette(args.palette)
    _check_colour_flags(args)
    store_path = _location(args, args.store)
    if store.is_zoom_store(store_path):
        return _recolor_zoom(args, palette, store_path)
    outfile = Path(args.outfile) if args.outfile else _beside(store_path, ".png")
    check_output(outfile, "picture", store=store_path)
    security = _security(args)
    ds = open_render(store_path)
    t0 = time.perf_counter()
    from .cluster import connect

    # on a cluster if asked, else block by block on dask's local threads
    cluster = connect(args.scheduler, security=security) if args.scheduler else contextlib.nullcontext()
    with cluster, reading(store_path):
        # lazy: save_png computes and writes it a strip at a time
        rgba = colour_picture(ds, palette, args.step, args.mode, interior=args.interior, supersample=args.smoothness)
        save_png(rgba, outfile)
    _say(
        args,
        f"wrote {outfile} ({rgba.shape[1]}x{rgba.shape[0]}, {palette.name}, {args.mode}) "
        f"in {time.perf_counter() - t0:.1f} s",
    )
    return 0


def _check_animation_flags(args: argparse.Namespace, outfile: Path) -> None:
    from .animation import ANIMATION_FORMATS

    if outfile.suffix.lower() not in ANIMATION_FORMATS:
        raise UsageError(f"--outfile {outfile} must end in .gif or .png (an animation)")
    if not 0 < args.fps <= 100:
        raise UsageError(f"--fps must be above 0 and at most 100, got {args.fps:g}")
    if args.mode == "distance":
        raise UsageError("--mode distance is not available for zooms (they store no distance estimates)")


def _beside(loc, suffix: str) -> Path:
    # a local store's picture goes beside it; a URL's, into this folder
    return Path(loc.url).with_suffix(suffix) if loc.is_local else Path(loc.with_suffix(suffix))


def _recolor_zoom(args: argparse.Namespace, palette, store_path) -> int:
    from .animation import colour_frames, save_animation
    from .store import open_zoom, reading

    outfile = Path(args.outfile) if args.outfile else _beside(store_path, ".gif")
    _check_animation_flags(args, outfile)
    check_output(outfile, "animation", store=store_path)
    ds = open_zoom(store_path)
    t0 = time.perf_counter()
    from .cluster import connect

    cluster = connect(args.scheduler, security=_security(args)) if args.scheduler else contextlib.nullcontext()
    with cluster, reading(store_path):
        frames = colour_frames(ds, palette, args.step, args.mode, interior=args.interior, supersample=args.smoothness,
                               scheduler=None if args.scheduler else "threads")  # fmt: skip
        save_animation(frames, outfile, args.fps)
    _say(args, f"wrote {outfile} ({ds.sizes['frame']} frames, {palette.name}, {args.mode}) "
               f"in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return 0


def cmd_zoom(args: argparse.Namespace) -> int:
    # Everything is checked before a cluster starts or a store is touched.
    from . import graph, palettes, store
    from .colorize import check_picture_memory
    from .view import View, zoom_views

    view = View(args.xpos, args.ypos, args.span, args.width, args.height, args.smoothness)
    graph.check_zoom_size(view, args.frames, args.chunk_rows)  # before making its frames: at any count, at once
    views = zoom_views(view, args.frames, args.to_span)
    fractal = _fractal(args)
    palette = palettes.resolve_palette(args.palette)
    _check_colour_flags(args)
    outfile = Path(args.outfile)
    _check_animation_flags(args, outfile)
    store_path = _store_beside(args, outfile, "animation")
    check_picture_memory(view.width, view.height)
    # checked on a template of the zoom: its graph (~1 ms a task) is built later, by zoom()
    template = graph.zoom_template(views, args.iters, args.chunk_rows, fractal, args.perturbation)
    store.check_zoom_target(store_path, template, overwrite=args.overwrite, resume=args.resume)
    security = _security(args)

    from .animation import colour_frames, save_animation
    from .cluster import connect
    from .lease import Lease
    from .pipeline import zoom

    t0 = time.perf_counter()
    deep = int(template["deep"].sum())
    with Lease(store_path, "dfractal zoom"), connect(args.scheduler, n_workers=args.workers,
                                                     security=security) as client:  # fmt: skip
        _say(args, f"dashboard: {client.dashboard_link}")
        _say(
            args,
            f"zooming into {fractal.describe()} at ({view.centre[0]}, {view.centre[1]}): {args.frames} frames "
            f"{view.width}x{view.height}, span {views[0].span:g} to {views[-1].span:g}"
            + (f" ({deep} by perturbation)" if deep else "")
            + f", {args.iters} iterations, on {len(client.scheduler_info()['workers'])} workers",
        )
        ds = zoom(
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
            progress=None if args.quiet else _Progress("zoom", "frames"),
            fractal=fractal,
            perturbation=args.perturbation,
        )
        with store.reading(store_path):
            save_animation(colour_frames(ds, palette, args.step, args.mode, interior=args.interior), outfile, args.fps)
    _say(args, f"wrote {outfile} ({args.frames} frames) and {store_path} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    from .palettes import resolve_palette
    from .view import View
    from .widget import EXPLORER_MODES

    fractal = _fractal(args)
    home = dict(zip(("xpos", "ypos", "span"), fractal.home, strict=True))  # by default, the whole set
    x, y, span = (home[k] if getattr(args, k) is None else getattr(args, k) for k in ("xpos", "ypos", "span"))
    view = View(x, y, span, args.width, args.height, 1)
    resolve_palette(args.palette)
    if args.mode not in EXPLORER_MODES:
        raise UsageError(f"unknown --mode {args.mode!r} for explore (modes: {', '.join(EXPLORER_MODES)})")
    save_dir = _location(args, args.save_dir)
    if save_dir.is_local and not Path(save_dir.url).is_dir():
        raise UsageError(f"--save-dir {args.save_dir} is not a directory")
    security = _security(args)

    from .cluster import connect
    from .widget import serve

    with connect(args.scheduler, n_workers=args.workers, security=security) as client:
        try:
            server = serve(client, port=args.port, address=args.address, view=view, iters=args.iters,
                           palette=args.palette, mode=args.mode, save_dir=save_dir, fractal=fractal)  # fmt: skip
        except OSError as exc:  # e.g. the port is taken
            raise UsageError(f"cannot listen on {args.address}:{args.port}: {exc.strerror or exc}") from None
        # the URL goes to stdout even with --quiet: it is what the command is for
        print(f"explorer: http://{args.address}:{server.port}/", flush=True)
        _say(args, f"dashboard: {client.dashboard_link}  (Ctrl-C stops)")
        signal.signal(signal.SIGTERM, _interrupt)  # `kill`: stop like Ctrl-C, closing the cluster
        try:
            server.io_loop.start()
        except KeyboardInterrupt:
            pass
        finally:
            server.stop()
    return 0


def _interrupt(signum, frame) -> NoReturn:
    raise KeyboardInterrupt


def _fractal_page(client) -> str:
    link = client.dashboard_link or ""
    return link.rsplit("/status", 1)[0] + "/fractal" if link.endswith("/status") else link + "/fractal"


def cmd_bench(args: argparse.Namespace) -> int:
    from . import graph
    from .bench import OUTPUTS, format_table, strong_scaling, write_results
    from .view import View

    view = View.from_seed_flags(args.xpos, args.ypos, args.escape_radius, args.width, args.height, args.smoothness)
    outputs = [o.strip() for o in args.outputs.split(",")]
    if any(o not in OUTPUTS for o in outputs):
        raise UsageError(f"--outputs takes {' and/or '.join(OUTPUTS)}, got {args.outputs!r}")
    for cr in args.chunk_rows:
        graph.blocks(view, cr)  # a multiple of --smoothness
    store_check = Path(args.out)
    if store_check.exists() and not store_check.is_dir():
        raise UsageError(f"--out {store_check} is a file, not a folder")
    security = _security(args)

    def show(row: dict) -> None:
        _say(args, f"{row['workers']} workers, {row['chunk_rows']:>4} rows/block, {row['output']:<6}: "
                   f"{row['seconds']:7.2f} s  speedup {row['speedup']:.2f}  {row['tasks']} tasks")  # fmt: skip

    _say(args, f"strong scaling: {view.width}x{view.height}x{view.supersample}^2 samples, {args.iters} iterations, "
               f"workers {args.workers}, rows/block {args.chunk_rows}, outputs {outputs}")  # fmt: skip
    rows = strong_scaling(view, args.iters, workers=args.workers, chunk_rows=args.chunk_rows, outputs=outputs,
                          scheduler=args.scheduler, security=security, repeats=args.repeats, progress=show)  # fmt: skip
    paths = write_results(rows, args.out)
    print(format_table(rows))
    _say(args, "wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .metrics import format_metrics
    from .store import block_label, store_info

    loc = _location(args, args.store)
    info = store_info(loc)
    a = info["attrs"]
    print(f"store: {loc}")
    from .fractals import Fractal

    print(f"fractal: {Fractal.from_attrs(a).describe()}  iters: {a['iters']}")
    centre = (a.get("centre_re", repr(a["xpos"])), a.get("centre_im", repr(a["ypos"])))
    how = "  (by perturbation)" if a.get("perturbation") else ""
    print(f"view: centre ({centre[0]}, {centre[1]}) span {a['span']!r}{how}")
    print(f"picture: {a['width']}x{a['height']} pixels, {a['supersample']}x{a['supersample']} samples/pixel")
    done, unit = (info["frames_done"], "frames") if "frames_done" in info else (info["blocks_done"], "blocks")
    if "frames_done" in info:
        print(f"zoom: {a['frames']} frames, span {a['span']!r} to {a['to_span']!r}; "
              f"{info['frames_done']} of {a['frames']} frames written ({a['chunk_rows']} rows a block)")  # fmt: skip
    else:
        print(f"blocks: {info['blocks_done']} of {a['n_blocks']} written ({a['chunk_rows']} sample rows each)")
    print(f"size on disk: {info['bytes'] / 1e6:.1f} MB")
    report = a.get("metrics")
    if isinstance(report, dict) and report:
        try:
            seconds = float(report.get("ended") or 0) - float(report.get("started") or 0)
            lines = format_metrics(seconds, {}, report, {})
            print("\n".join(line for line in lines[1:] if "status: left" not in line))
        except (TypeError, ValueError, KeyError, AttributeError) as exc:  # edited by hand: informative only
            print(f"metrics: unreadable ({type(exc).__name__})")
    elif report is not None and not isinstance(report, dict):
        print("metrics: unreadable (not a mapping)")
    if not info["verified"]:
        print("verified: no (a format-1 store: its chunks carry no checksums)")
        return 0
    if not info["damaged"]:
        print(f"verified: every chunk of the {done} done {unit} matches its record")
        return 0
    for _, why in info["damaged"]:
        print(f"damaged: {why}")
    names = ", ".join(block_label(index) for index, _ in info["damaged"])
    command = "zoom" if "frames_done" in info else "render"
    print(f"dfractal: error: {loc} has {len(info['damaged'])} damaged {unit} ({names}); "
          f"`dfractal {command} --resume` with the same flags computes them again", file=sys.stderr)  # fmt: skip
    return EXIT_BAD_INPUT


def cmd_palettes(args: argparse.Namespace) -> int:
    from .palettes import SEED_PALETTES, bokeh_palette_names

    print("seed palettes:")
    for name in SEED_PALETTES:
        print(f"  {name}")
    print("bokeh palettes:")
    for name in bokeh_palette_names():
        print(f"  {name}")
    print("also: any name with _r appended (reversed), or a list of hex colours '#rrggbb,#rrggbb,...'")
    return 0


def _one_line(text: str) -> str:
    """Escape what would break the one error line (e.g. a newline echoed from an argument)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def _join_negative_values(argv: list[str]) -> list[str]:
    """``--julia-c -0.8+0.156j`` as ``--julia-c=-0.8+0.156j`` (also ``--xpos``,
    ``--ypos``, e.g. ``-1e-30``): argparse takes a value that starts with ``-``
    (and is not a plain number) for a flag."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a in ("--julia-c", "--xpos", "--ypos"):
            value = next(it, None)
            out.append(a if value is None else f"{a}={value}")
        else:
            out.append(a)
    return out


def _quiet_distributed() -> None:
    """Errors are one line here: distributed's own logging (a lost scheduler's
    reconnection tracebacks, a failed task's report) would bury it.  Its
    loggers get their levels when distributed is imported, so after that."""
    import distributed  # noqa: F401 - sets up its loggers

    for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("distributed", "tornado")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``dfractal`` console script."""
    parser = build_parser()
    argv = _join_negative_values(sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser.parse_args(argv)
        if args.command in ("render", "zoom", "recolor", "explore", "bench"):
            _quiet_distributed()
        return args.func(args)
    except BrokenPipeError:  # e.g. `dfractal palettes | head`: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except (UsageError, ValueError, TypeError, OSError) as exc:  # OSError: a disk full, a path gone, ...
        print(f"dfractal: error: {_one_line(str(exc))}", file=sys.stderr)
    except KeyboardInterrupt:
        print("dfractal: interrupted", file=sys.stderr)
        return 130
    return EXIT_BAD_INPUT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
