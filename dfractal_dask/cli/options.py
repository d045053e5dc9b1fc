"""The flag groups the commands share (view, fractal, cluster, TLS, colour,
store), the types that check each value, and what the flags become.

Defaults are the library's own: :class:`~dfractal_dask.view.View`'s fields,
:data:`~dfractal_dask.palettes.DEFAULT_PALETTE`, and the defaults of the
function a command calls (:func:`default_of`), never numbers written here.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, NoReturn, TypedDict

import dask.config
from distributed import Security

from ..cluster import CLUSTER_KINDS, cluster_kind, tls_security
from ..fractals import FAMILIES, Fractal
from ..location import Location, as_location, check_output, parse_storage_options
from ..palettes import DEFAULT_PALETTE, MAX_STEP, SEED_PALETTES, parse_hex
from ..pipeline import MAX_RETRIES
from ..store import default_store_path
from ..view import EXTENDED_SPAN, View, parse_coordinate, shown
from .errors import UsageError

__all__ = [
    "FRACTAL_CHOICES", "FrameSize", "Parser", "VIEW_DEFAULTS", "ViewFlagDefaults", "add_cluster_flags",
    "add_color_flags", "add_fractal_flags", "add_storage_flag", "add_store_flags", "add_tls_flags", "add_view_flags",
    "check_color_flags", "coordinate", "default_of", "finite_float", "fractal", "fractal_name", "int_list", "location",
    "port", "positive_int", "resolve_cluster", "resolve_scheduler", "security", "span_number", "store_beside",
]  # fmt: skip

#: :class:`View`'s defaults by field (the seed's view: its flags' defaults).
VIEW_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(View)}

#: ``--fractal`` choices, spelled as on the command line (``burning-ship``).
FRACTAL_CHOICES = tuple(name.replace("_", "-") for name in FAMILIES)


def default_of(func: Callable[..., Any], name: str) -> Any:
    """The default of ``func``'s parameter ``name``: a flag's default is the
    one of the library function it is passed to, defined there once."""
    return inspect.signature(func).parameters[name].default


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (a :class:`UsageError`), no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


# -- value types ---------------------------------------------------------------
#: The largest whole number a flag takes (2**63 - 1): a size, count or limit
#: beyond it is a typo, refused before its digits reach any message or product.
MAX_WHOLE = 2**63 - 1


def positive_int(text: str) -> int:
    """A whole number above 0, at most :data:`MAX_WHOLE`."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {shown(text)}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {shown(value, str)}")
    if value > MAX_WHOLE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_WHOLE} (2**63 - 1), got {shown(value, str)}")
    return value


def port(text: str) -> int:
    """A TCP port number, 0 (any free port) to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0-65535, got {value}")
    return value


def int_list(text: str) -> list[int]:
    """Comma-separated whole numbers above 0, e.g. ``1,2,4``."""
    parts = [p.strip() for p in text.split(",")]
    try:
        return [positive_int(p) for p in parts]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers like 1,2,4 ({exc})") from None


def finite_float(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {shown(text)}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {shown(text)}")
    return value


def span_number(text: str) -> float | Decimal:
    """A finite number; one below float64's range (e.g. ``1e-1000``) as the
    ``Decimal`` it spells (a :class:`View` keeps it: an extended span, refused
    below :data:`~dfractal_dask.view.MIN_SPAN`).  Any exponent or number of
    digits is answered at once (``1e-99999999`` is refused by the View)."""
    try:
        d = Decimal(text.strip().replace("\u2212", "-"))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"expected a number, got {shown(text)}") from None
    if d.is_finite() and d != 0 and d.copy_abs() < Decimal(EXTENDED_SPAN):  # (abs() would overflow at 1e+999999)
        return d
    return finite_float(text)


def coordinate(text: str) -> float:
    """A decimal with any number of digits: a deep zoom's centre (View keeps
    them), rounded to a multiple of :data:`~dfractal_dask.view.CENTRE_QUANTUM`
    (1e-1540) and refused from :data:`~dfractal_dask.view.MAX_COORDINATE`
    (1e150) up: the rule of :func:`~dfractal_dask.view.parse_coordinate`."""
    try:
        d = Decimal(text.strip().replace("\u2212", "-"))
    except InvalidOperation:
        d = Decimal("nan")
    if not d.is_finite():
        raise argparse.ArgumentTypeError(f"expected a finite decimal number, got {shown(text)}")
    try:
        return parse_coordinate("coordinate", text)
    except ValueError as exc:  # past MAX_COORDINATE: its message states the rule
        raise argparse.ArgumentTypeError(str(exc).replace("coordinate must", "a centre coordinate must", 1)) from None


def _family(text: str) -> str:
    # either spelling (burning-ship, burning_ship), kept as the flag spells it
    name = text.strip().lower().replace("_", "-")
    if name not in FRACTAL_CHOICES:
        raise argparse.ArgumentTypeError(f"unknown fractal {text!r} (fractals: {', '.join(FRACTAL_CHOICES)})")
    return name


# -- flag groups -----------------------------------------------------------------
class FrameSize(TypedDict):
    """A command's own picture size for :func:`add_view_flags`."""

    width: int
    height: int


class ViewFlagDefaults(FrameSize, total=False):
    """A command's own defaults for :func:`add_view_flags` (its keyword arguments)."""

    span: float | None
    smoothness: int | None
    centre: tuple[float, float] | None


def add_view_flags(
    group: argparse._ActionsContainer,
    *,
    width: int = VIEW_DEFAULTS["width"],
    height: int = VIEW_DEFAULTS["height"],
    span: float | None = VIEW_DEFAULTS["span"],
    smoothness: int | None = VIEW_DEFAULTS["supersample"],
    centre: tuple[float, float] | None = (VIEW_DEFAULTS["xpos"], VIEW_DEFAULTS["ypos"]),
    deep: bool = True,
    span_help: str = "view width in the complex plane",
) -> None:
    """``--xpos --ypos --span/--escape-radius --width --height [--smoothness]``.

    ``centre`` and ``span`` of ``None``: the fractal's whole set (the command
    reads :attr:`Fractal.home`).  ``smoothness`` of ``None``: no such flag.
    ``deep``: the centre keeps any number of digits (else a plain float)."""
    kind, digits = (coordinate, ", any number of digits") if deep else (finite_float, "")
    whole = "(default: the whole set)"
    for i, (flag, axis) in enumerate((("--xpos", "real"), ("--ypos", "imaginary"))):
        default, shown = (None, whole) if centre is None else (centre[i], "(%(default)s)")
        group.add_argument(flag, type=kind, default=default, help=f"centre, {axis} part{digits} {shown}")
    # --span everywhere; --escape-radius is the seed's name for it
    group.add_argument("--span", "--escape-radius", dest="span", type=span_number if deep else finite_float,
                       default=span,
                       help=f"{span_help} " + (whole if span is None else "(%(default)s)"))  # fmt: skip
    group.add_argument("--width", type=positive_int, default=width, help="picture width in pixels (%(default)s)")
    group.add_argument("--height", type=positive_int, default=height, help="picture height in pixels (%(default)s)")
    if smoothness is not None:
        group.add_argument("--smoothness", type=positive_int, default=smoothness,
                           help="N: NxN samples averaged per pixel (%(default)s)")  # fmt: skip


def add_fractal_flags(parser: argparse.ArgumentParser) -> None:
    """``--fractal --julia-c --power``."""
    g = parser.add_argument_group("fractal (default: the Mandelbrot set, as the seed)")
    g.add_argument("--fractal", type=_family, choices=FRACTAL_CHOICES, default=Fractal.family.replace("_", "-"),
                   metavar="NAME", help="one of %(choices)s (%(default)s)")  # fmt: skip
    g.add_argument("--julia-c", default=None, metavar="C", help="julia's c, e.g. -0.8+0.156j or -0.8,0.156")
    g.add_argument("--power", type=int, default=None, metavar="D", help="multibrot's power d, 2 to 16")


def add_tls_flags(group: argparse._ActionsContainer) -> None:
    """``--tls-ca-file --tls-cert --tls-key`` (a ``tls://`` scheduler)."""
    group.add_argument("--tls-ca-file", default=None, metavar="FILE", help="CA of a tls:// scheduler")
    group.add_argument("--tls-cert", default=None, metavar="FILE", help="this client's TLS certificate")
    group.add_argument("--tls-key", default=None, metavar="FILE", help="this client's TLS private key")


def add_cluster_flags(
    group: argparse._ActionsContainer, *, embedded: str = "an embedded LocalCluster", workers: bool = True
) -> None:
    """``--scheduler``, the TLS flags and (``workers``) ``--workers``."""
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="dask scheduler (default: dask's scheduler-address config, e.g. DASK_SCHEDULER_ADDRESS, "
                            f"else {embedded})")  # fmt: skip
    add_tls_flags(group)
    if workers:
        group.add_argument("--workers", type=positive_int, default=None,
                           help="embedded cluster size (default: one per core)")  # fmt: skip
        group.add_argument("--cluster", choices=CLUSTER_KINDS, default=None,
                           help="embedded cluster's workers: threads of this process, or processes of their own "
                                f"({', '.join(CLUSTER_KINDS)}; default: dask config dfractal.cluster, "
                                f"{dask.config.get('dfractal.cluster', None)})")  # fmt: skip


def add_storage_flag(group: argparse._ActionsContainer) -> None:
    """``--storage-option KEY=VALUE``, repeatable."""
    group.add_argument(
        "--storage-option", action="append", default=[], metavar="KEY=VALUE",
        help="fsspec option for a store URL, repeatable (e.g. endpoint_url=http://127.0.0.1:9000, anon=true)",
    )  # fmt: skip


def add_exact_flag(group: argparse._ActionsContainer) -> None:
    """``--exact``: deep views without the bilinear approximation (``exact=True``)."""
    group.add_argument(
        "--exact", action="store_true",
        help="iterate every step of a deep view, without the bilinear approximation (BLA) that skips many at once",
    )  # fmt: skip


def add_pyramid_flag(group: argparse._ActionsContainer) -> None:
    """``--pyramid``: also build the store's multiscale pyramid (``pyramid=True``)."""
    group.add_argument(
        "--pyramid", action="store_true",
        help="also build the store's multiscale pyramid once its blocks are written (coarser levels in tiles "
             "of 256, OME-Zarr 0.5 multiscales), for zoomed-out viewing",
    )  # fmt: skip


def add_store_flags(group: argparse._ActionsContainer, run: Callable[..., Any], *, resume_help: str) -> None:
    """``--store --storage-option --overwrite --resume --chunk-rows --retries``
    for a command that calls ``run`` (``render`` or ``zoom``: its defaults)."""
    group.add_argument("--store", default=default_of(run, "store_path"), metavar="PATH|URL",
                       help="Zarr store, a path or s3://, gs://, az://... URL "
                            "(default: OUTFILE with .zarr)")  # fmt: skip
    add_storage_flag(group)
    group.add_argument("--overwrite", action="store_true", help="replace an existing store")
    group.add_argument("--resume", action="store_true", help=resume_help)
    group.add_argument("--chunk-rows", type=positive_int, default=default_of(run, "chunk_rows"),
                       help="sample rows per block (default: ~dask config dfractal.block-samples "
                            "samples, 1 M)")  # fmt: skip
    group.add_argument("--retries", type=int, default=default_of(run, "retries"),
                       help="times a failed block is retried (%(default)s)")  # fmt: skip


def add_color_flags(
    group: argparse._ActionsContainer,
    colour: Callable[..., Any],
    modes: tuple[str, ...],
    *,
    step: bool = True,
    interior: bool = True,
    palette_default: str | None = DEFAULT_PALETTE,
) -> None:
    """``--palette [--step] --mode [--interior]``, defaults those of ``colour``
    (the colouring function the command calls); ``--mode`` takes ``modes``
    (checked by :func:`check_color_flags`, whose message is the clearer)."""
    seeds = ", ".join(SEED_PALETTES)
    group.add_argument("--palette", default=palette_default,
                       help=f"palette: {seeds}, any bokeh palette (`dfractal palettes` lists them), NAME_r "
                            "(reversed) or '#rrggbb,#rrggbb,...' (%(default)s)")  # fmt: skip
    if step:
        group.add_argument("--step", type=positive_int, default=default_of(colour, "step"),
                           help="seed mode colour table size, max(step, iters) (%(default)s)")  # fmt: skip
    group.add_argument("--mode", default=default_of(colour, "mode"), metavar="{" + ",".join(modes) + "}",
                       help=f"colouring: {', '.join(modes)} (%(default)s)")  # fmt: skip
    if interior:
        group.add_argument("--interior", default=default_of(colour, "interior"),
                           help="colour of the set itself in smooth modes (%(default)s)")  # fmt: skip


# -- what the flags become ----------------------------------------------------------
def resolve_scheduler(args: argparse.Namespace) -> None:
    """``--scheduler``, else dask's own ``scheduler-address`` config (the
    ``DASK_SCHEDULER_ADDRESS`` environment variable, a dask YAML file): the
    cluster a command uses, as a dask Client would pick it.  The flag wins."""
    if getattr(args, "scheduler", ...) is None:
        args.scheduler = dask.config.get("scheduler-address", None) or None


def resolve_cluster(args: argparse.Namespace) -> None:
    """``--cluster``, else dask config ``dfractal.cluster``, for a command that
    starts an embedded cluster (no scheduler): checked before anything starts."""
    if getattr(args, "cluster", ...) is None and not getattr(args, "scheduler", None):
        args.cluster = cluster_kind(None)


def fractal(args: argparse.Namespace) -> Fractal:
    """The :class:`Fractal` of the --fractal/--julia-c/--power flags."""
    family = Fractal(args.fractal).family
    if args.julia_c is not None and family != "julia":
        raise UsageError("--julia-c is for --fractal julia")
    if args.power is not None and family != "multibrot":
        raise UsageError("--power is for --fractal multibrot")
    c = None if args.julia_c is None else Fractal.parse_c(args.julia_c)
    return Fractal(args.fractal, 2 if args.power is None else args.power, c)


def fractal_name(fractal: Fractal) -> str:
    """:meth:`Fractal.describe` with the family spelled as ``--fractal`` spells it."""
    return fractal.describe().replace(fractal.family, fractal.family.replace("_", "-"), 1)


def location(args: argparse.Namespace, target: str) -> Location:
    """``target`` (--store, STORE, --save-dir) as a Location with --storage-option; checked before any work."""
    return as_location(target, parse_storage_options(args.storage_option) or None)


def security(args: argparse.Namespace) -> Security | None:
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
    return tls_security(*given)


def check_color_flags(args: argparse.Namespace, modes: tuple[str, ...]) -> None:
    """--mode among ``modes``, --interior a colour, --step (and with it --iters) a table that fits."""
    if args.mode not in modes:
        raise UsageError(f"unknown --mode {args.mode!r} (modes: {', '.join(modes)})")
    parse_hex(args.interior)
    if args.step > MAX_STEP:
        raise UsageError(f"--step must be at most {MAX_STEP}, got {args.step}")
    iters = getattr(args, "iters", None)
    if args.mode == "seed" and iters is not None and iters > MAX_STEP:
        raise UsageError(f"--iters {iters} in --mode seed makes a colour table of max(--step, --iters) = {iters} "
                         f"entries, more than {MAX_STEP}; use another --mode, or fewer --iters")  # fmt: skip


def store_beside(args: argparse.Namespace, outfile: Path, what: str) -> Location:
    """Render's and zoom's checks of --retries, --outfile (a ``what``) and
    --store; the store's location (default: beside ``outfile``)."""
    if not 0 <= args.retries <= MAX_RETRIES:
        raise UsageError(f"--retries must be from 0 to {MAX_RETRIES}, got {args.retries}")
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    loc = location(args, args.store if args.store is not None else default_store_path(outfile))
    if loc.is_local and Path(loc.url).resolve() == outfile.resolve():
        raise UsageError("--store and --outfile must differ")
    check_output(outfile, what, store=loc)
    if getattr(args, "metrics_json", None):
        check_output(args.metrics_json, "metrics file", store=loc)
    return loc
