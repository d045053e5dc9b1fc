"""The ``dfractal`` parser and :func:`main`: which command runs, and what
becomes of its errors (:mod:`.errors`: bad input is one line and exit 2, a
bug keeps its traceback).

``dfractal`` with no command prints the usage and the list of commands on
stderr and exits 2, as for any other incomplete command line.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from types import ModuleType

import distributed

from .. import settings
from . import bench, explore, info, palettes, recolor, render, version, zoom
from .errors import BAD_INPUT, EXIT_BAD_INPUT, error_line, interrupted
from .options import Parser, resolve_cluster, resolve_scheduler

__all__ = ["COMMANDS", "build_parser", "join_negative_values", "main", "value_flags"]

#: The commands, in the order ``dfractal --help`` lists them: each module has
#: ``add_parser(subparsers)`` and ``run(args) -> int``.
COMMANDS: tuple[ModuleType, ...] = (render, zoom, recolor, explore, bench, info, palettes, version)

#: Flags whose value may start with ``-`` and not be a plain number (:func:`join_negative_values`).
_SIGNED_FLAGS = ("--julia-c", "--xpos", "--ypos")
#: A value that is a negative number (``-1e-20``, ``-.5``, ``-inf``): never a flag.
_NEGATIVE = re.compile(r"-(?:\d|\.\d|inf(?:inity)?$|nan$)", re.IGNORECASE)


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


def value_flags(parser: argparse.ArgumentParser) -> frozenset[str]:
    """Every flag of ``parser`` and of its commands that takes one value."""
    flags: set[str] = set()
    parsers = [parser]
    while parsers:
        for action in parsers.pop()._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif action.option_strings and action.nargs is None:
                flags.update(action.option_strings)
    return frozenset(flags)


def join_negative_values(argv: list[str], parser: argparse.ArgumentParser | None = None) -> list[str]:
    """``--julia-c -0.8+0.156j`` as ``--julia-c=-0.8+0.156j`` (also ``--xpos``,
    ``--ypos``), and a negative number after any flag that takes a value
    (``--span -1e-20`` as ``--span=-1e-20``, of :func:`value_flags` of
    ``parser``, default :func:`build_parser`'s): argparse takes a value that
    starts with ``-`` (and is not a plain number such as ``-1``) for a flag,
    and says the flag expects one argument; joined, the value reaches the
    flag's own check (``--span must be > 0``)."""
    flags = value_flags(parser if parser is not None else build_parser())
    out: list[str] = []
    it = iter(argv)
    for a in it:
        if a == "--":  # (the rest are values)
            out.append(a)
            out.extend(it)
        elif a in _SIGNED_FLAGS:
            value = next(it, None)
            out.append(a if value is None else f"{a}={value}")
        elif a in flags:
            value = next(it, None)
            if value is not None and _NEGATIVE.match(value):
                out.append(f"{a}={value}")
            else:
                out.extend([a] if value is None else [a, value])
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


def main(argv: list[str] | None = None) -> int:
    """The ``dfractal`` command line (:func:`.entry.run` is the console script).

    Returns the exit code: 0; 2 for bad input (one line on stderr: a usage
    error, a ``ValueError`` or an ``OSError``) or no command; 130 on Ctrl-C.
    Any other exception (a ``TypeError``: a bug) propagates with its traceback.
    """
    parser = build_parser()
    argv = join_negative_values(sys.argv[1:] if argv is None else list(argv), parser)
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version: printed, and done
            return exc.code if isinstance(exc.code, int) else 0
        if args.command is None:
            parser.print_help(sys.stderr)
            return EXIT_BAD_INPUT
        settings.check()  # every dfractal.* dask setting, before anything starts or is touched
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
        return interrupted()
    return EXIT_BAD_INPUT
