"""``dfractal palettes``: list the palette names."""

from __future__ import annotations

import argparse

from ..palettes import SEED_PALETTES, bokeh_palette_names

__all__ = ["add_parser", "run"]


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``palettes`` to ``subparsers``."""
    pl = subparsers.add_parser("palettes", help="list the palette names")
    pl.set_defaults(run=run)
    return pl


def run(args: argparse.Namespace) -> int:
    """Print the seed's palettes, then bokeh's; 0."""
    print("seed palettes:")
    for name in SEED_PALETTES:
        print(f"  {name}")
    print("bokeh palettes:")
    for name in bokeh_palette_names():
        print(f"  {name}")
    print("also: any name with _r appended (reversed), or a list of hex colours '#rrggbb,#rrggbb,...'")
    return 0
