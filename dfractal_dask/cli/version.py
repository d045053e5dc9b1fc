"""``dfractal version`` (and ``dfractal --version``): print the version."""

from __future__ import annotations

import argparse

from .._version import __version__

__all__ = ["VERSION", "add_parser", "run"]

#: What ``dfractal version`` and ``dfractal --version`` print.
VERSION = f"dfractal {__version__}"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``version`` to ``subparsers``."""
    v = subparsers.add_parser("version", help="print the version")
    v.set_defaults(run=run)
    return v


def run(args: argparse.Namespace) -> int:
    """Print the version; 0."""
    print(VERSION)
    return 0
