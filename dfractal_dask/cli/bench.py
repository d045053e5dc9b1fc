"""``dfractal bench``: a strong-scaling study, workers x rows per block x store or gather."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..bench import OUTPUTS, format_table, strong_scaling, write_results
from ..graph import blocks
from ..view import View
from .errors import UsageError
from .options import add_cluster_flags, add_view_flags, default_of, int_list, positive_int, security
from .output import say

__all__ = ["add_parser", "run"]


def _listed(values: tuple | list) -> str:
    return ",".join(str(v) for v in values)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``bench`` and its flags to ``subparsers``."""
    b = subparsers.add_parser("bench", help="strong-scaling study: workers x rows per block x store or gather")
    workers, chunk_rows = (_listed(default_of(strong_scaling, k)) for k in ("workers", "chunk_rows"))
    b.add_argument("--workers", type=int_list, default=workers, help="worker counts, comma-separated (%(default)s)")
    b.add_argument("--chunk-rows", type=int_list, default=chunk_rows, help="rows per block (%(default)s)")
    outputs = _listed(default_of(strong_scaling, "outputs"))
    b.add_argument("--outputs", default=outputs, metavar=f"{{{_listed(OUTPUTS)}}}",
                   help=f"where results go: {' and/or '.join(OUTPUTS)}, comma-separated (%(default)s)")  # fmt: skip
    add_cluster_flags(b, embedded="embedded clusters of each --workers count", workers=False)
    add_view_flags(b, deep=False)
    b.add_argument("--iters", type=positive_int, default=default_of(strong_scaling, "iters"),
                   help="iteration limit (%(default)s)")  # fmt: skip
    b.add_argument("--repeats", type=positive_int, default=default_of(strong_scaling, "repeats"),
                   help="renders per configuration, best kept (%(default)s)")  # fmt: skip
    b.add_argument("--out", default="dfractal-bench", help="folder for bench.csv/.json/.html (%(default)s)")
    b.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    b.set_defaults(run=run)
    return b


def run(args: argparse.Namespace) -> int:
    """Run the study and write its results; 0, or an exception for :func:`main` to report."""
    view = View.from_seed_flags(args.xpos, args.ypos, args.span, args.width, args.height, args.smoothness)
    outputs = [o.strip() for o in args.outputs.split(",")]
    if any(o not in OUTPUTS for o in outputs):
        raise UsageError(f"--outputs takes {' and/or '.join(OUTPUTS)}, got {args.outputs!r}")
    for cr in args.chunk_rows:
        blocks(view, cr)  # a multiple of --smoothness
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    sec = security(args)

    def show(row: dict) -> None:
        say(args, f"{row['workers']} workers, {row['chunk_rows']:>4} rows/block, {row['output']:<6}: "
                  f"{row['seconds']:7.2f} s  speedup {row['speedup']:.2f}  {row['tasks']} tasks")  # fmt: skip

    say(args, f"strong scaling: {view.width}x{view.height}x{view.supersample}^2 samples, {args.iters} iterations, "
              f"workers {args.workers}, rows/block {args.chunk_rows}, outputs {outputs}")  # fmt: skip
    rows = strong_scaling(view, args.iters, workers=args.workers, chunk_rows=args.chunk_rows, outputs=outputs,
                          scheduler=args.scheduler, security=sec, repeats=args.repeats, progress=show)  # fmt: skip
    paths = write_results(rows, args.out)
    print(format_table(rows))
    say(args, "wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
