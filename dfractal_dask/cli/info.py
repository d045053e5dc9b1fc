"""``dfractal info``: describe a stored render or zoom, verify its chunks, show its render's metrics."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from typing import Any

from ..diagnostics.report import format_metrics
from ..fractals import Fractal
from ..pyramid import pyramid_summary
from ..store import StoreError, store_info
from ..store.integrity import verify_store
from .errors import EXIT_BAD_INPUT, error_line, flag_terms
from .options import add_storage_flag, fractal_name, location

__all__ = ["add_parser", "iso_date", "run"]

#: Keys of a worker's metrics that are times (seconds since the epoch).
_TIMES = ("start", "stop")


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``info`` and its flags to ``subparsers``."""
    inf = subparsers.add_parser("info", help="describe a stored render, verify its chunks, show its render's metrics")
    inf.add_argument("store", metavar="STORE", help="a store (a path or URL)")
    add_storage_flag(inf)
    inf.set_defaults(run=run)
    return inf


def iso_date(epoch: float) -> str:
    """``epoch`` (seconds) as an ISO 8601 date in local time with its offset, to the millisecond."""
    return datetime.fromtimestamp(float(epoch)).astimezone().isoformat(timespec="milliseconds")


def _metrics_lines(report: dict[str, Any]) -> list[str]:
    # the render's METRICS lines, its times as dates (format_metrics prints the epochs)
    started, ended = float(report.get("started") or 0), float(report.get("ended") or 0)
    workers = {addr: {k: iso_date(v) if k in _TIMES and isinstance(v, int | float) else v for k, v in row.items()}
               for addr, row in report.get("workers", {}).items()}  # fmt: skip
    events = [(what, ev) for what in ("joined", "left") for ev in report.get(what, [])]
    dated = {**report, "workers": workers, "joined": [], "left": []}
    lines = format_metrics(ended - started, {}, dated, {})[1:]
    lines = [line for line in lines if "status: left" not in line]
    lines[-1:-1] = [f"METRICS CLUSTER worker_{what}: {ev['worker']} at {iso_date(ev['time'])}" for what, ev in events]
    if started and ended:
        lines.insert(0, f"rendered: {iso_date(started)} to {iso_date(ended)} ({ended - started:.1f} s)")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the store's description; 0, or 2 for a damaged store."""
    loc = location(args, args.store)
    try:
        info = store_info(loc)
    except StoreError as exc:  # an array's metadata lost or garbled: say what else is damaged too
        if "is damaged:" not in str(exc):
            raise
        print(f"store: {loc}")
        return _verify(loc, "render", True)
    a = info["attrs"]
    print(f"store: {loc}")
    print(f"fractal: {fractal_name(Fractal.from_attrs(a))}  iters: {a['iters']}")
    centre = (a.get("centre_re", repr(a["xpos"])), a.get("centre_im", repr(a["ypos"])))
    how = "  (by perturbation)" if a.get("perturbation") else ""
    print(f"view: centre ({centre[0]}, {centre[1]}) span {a['span']!r}{how}")
    print(f"picture: {a['width']}x{a['height']} pixels, {a['supersample']}x{a['supersample']} samples/pixel")
    if "frames_done" in info:
        print(f"zoom: {a['frames']} frames, span {a['span']!r} to {a['to_span']!r}; "
              f"{info['frames_done']} of {a['frames']} frames written ({a['chunk_rows']} rows a block)")  # fmt: skip
    else:
        print(f"blocks: {info['blocks_done']} of {a['n_blocks']} written ({a['chunk_rows']} sample rows each)")
    print(f"size on disk: {info['bytes'] / 1e6:.1f} MB")
    if "frames_done" not in info:
        summary = pyramid_summary(loc)
        if summary:
            print(flag_terms(summary))  # (the library's words: e.g. what finishes an unfinished pyramid)
    report = a.get("metrics")
    if isinstance(report, dict) and report:
        try:
            print("\n".join(_metrics_lines(report)))
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, OSError) as exc:
            # attributes edited by hand: informative only (a date out of range is an OverflowError or OSError)
            print(f"metrics: unreadable ({type(exc).__name__})")
    elif report is not None and not isinstance(report, dict):
        print("metrics: unreadable (not a mapping)")
    return _verify(loc, "zoom" if "frames_done" in info else "render", info["verified"])


def _verify(loc, command: str, recorded: bool) -> int:
    # every piece read back against its record (blocks, coordinates, metadata, metrics, pyramid tiles)
    if not recorded:
        print("verified: no (a format-1 store: its chunks carry no checksums)")
        return 0
    report = verify_store(loc)
    if report.unwritten:
        listed = ", ".join(report.unwritten[:8]) + (
            f" and {len(report.unwritten) - 8} more" if len(report.unwritten) > 8 else ""
        )
        print(f"not written: {listed} (`dfractal {command} --resume` computes them)")
    if not report.damaged:
        print(f"verified: {report.summary()}: every one matches its record")
        return 0
    for why in report.damaged:
        print(f"damaged: {flag_terms(why)}")  # (the library's words: e.g. build_pyramid, to_span)
    how = f"`dfractal {command} --resume` with the same flags computes them again"
    labels = [
        re.split(r": | is | cannot | does not | has ", why.removeprefix("pyramid: "))[0] for why in report.damaged
    ]
    unit = "frames" if command == "zoom" else "blocks"
    kind = unit if all(label.startswith(("block ", "frame ")) for label in labels) else "pieces"
    more = f" and {len(labels) - 5} more" if len(labels) > 5 else ""
    first = report.damaged[0].removeprefix("pyramid: ").removeprefix(labels[0]).lstrip(": ").split("; ")[0]
    print(error_line(f"{loc} has {len(labels)} damaged {kind} ({', '.join(labels[:5])}{more}): {first}; {how}"),
          file=sys.stderr)  # fmt: skip
    return EXIT_BAD_INPUT
