"""The ``dfractal`` parser and :func:`main`: which command runs, and what
becomes of its errors (:mod:`.errors`: bad input is one line and exit 2, a
bug keeps its traceback).

``dfractal`` with no command prints the usage and the list of commands on
stderr and exits 2, as for any other incomplete command line.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from types import ModuleType
from typing import NoReturn

import distributed

from . import bench, explore, info, palettes, recolor, render, version, zoom
from .errors import BAD_INPUT, EXIT_BAD_INPUT, error_line
from .options import Parser, resolve_cluster, resolve_scheduler

__all__ = ["COMMANDS", "build_parser", "join_negative_values", "main"]

#: The commands, in the order ``dfractal --help`` lists them: each module has
#: ``add_parser(subparsers)`` and ``run(args) -> int``.
COMMANDS: tuple[ModuleType, ...] = (render, zoom, recolor, explore, bench, info, palettes, version)

#: Flags whose value may start with ``-`` and not be a plain number (:func:`join_negative_values`).
_SIGNED_FLAGS = ("--julia-c", "--xpos", "--ypos")


def build_parser() -> argparse.ArgumentParser:
    """The ``dfractal`` argument parser."""
    parser = Parser(
        prog="dfractal",
        description="Dask-distributed fractal renderer, successor of distributed-fractal",
        epilog="`dfractal COMMAND --help` lists a command's flags; with no command, dfractal prints this and exits 2.",
    )
    parser.add_argument("--version", action="version", version=version.VERSION)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def join_negative_values(argv: list[str]) -> list[str]:
    """``--julia-c -0.8+0.156j`` as ``--julia-c=-0.8+0.156j`` (also ``--xpos``,
    ``--ypos``, e.g. ``-1e-30``): argparse takes a value that starts with ``-``
    (and is not a plain number) for a flag."""
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a in _SIGNED_FLAGS:
            value = next(it, None)
            out.append(a if value is None else f"{a}={value}")
        else:
            out.append(a)
    return out


def _quiet_distributed() -> None:
    """Errors are one line here: distributed's own logging (a lost scheduler's
    reconnection tracebacks, a failed task's report) would bury it.  Its
    loggers get their levels when distributed is imported, so after that."""
    assert distributed  # imported above: its loggers exist
    for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] in ("distributed", "tornado")]:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def run() -> NoReturn:
    """The ``dfractal`` console script (and ``python -m dfractal_dask``):
    :func:`main`, then exit with its code.

    Before the interpreter's teardown, every object is moved to the garbage
    collector's permanent generation (``gc.freeze``): the final collection
    then skips them (the memory goes back with the process).  That collection
    walks the whole of numba's, xarray's and distributed's objects: measured
    here at 0.4-1.2 s of every command (py-spy: ``gc_collect_main`` after
    the last ``atexit`` handler), as long as a small render itself.  The
    same is done once the imports are in (the package imports with the
    collector off, see ``dfractal_dask/__init__.py``): the collections during
    the command (the dashboard's imports, the render's) then walk only what
    it made."""
    gc.freeze()
    code = main()
    sys.stdout.flush()
    gc.freeze()
    sys.exit(code)


def main(argv: list[str] | None = None) -> int:
    """The ``dfractal`` command line (:func:`run` is the console script).

    Returns the exit code: 0; 2 for bad input (one line on stderr: a usage
    error, a ``ValueError`` or an ``OSError``) or no command; 130 on Ctrl-C.
    Any other exception (a ``TypeError``: a bug) propagates with its traceback.
    """
    parser = build_parser()
    argv = join_negative_values(sys.argv[1:] if argv is None else list(argv))
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version: printed, and done
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        resolve_scheduler(args)
        resolve_cluster(args)
        if args.command in ("render", "zoom", "recolor", "explore", "bench"):
            _quiet_distributed()
        return args.run(args)
    except BrokenPipeError:  # e.g. `dfractal palettes | head`: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return 0
    except BAD_INPUT as exc:  # OSError: a disk full, a path gone, a scheduler out of reach, ...
        print(error_line(exc), file=sys.stderr)
    except KeyboardInterrupt:
        print("dfractal: interrupted", file=sys.stderr)
        return 130
    return EXIT_BAD_INPUT
