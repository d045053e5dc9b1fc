"""Zoom explorer frame latency, against the bare kernel, measured in the same run.

    python benchmarks/explorer.py [--width 800 --height 600 --iters 500 --workers 2 --frames 12]

Starts an embedded LocalCluster (2 single-threaded workers), opens an
:class:`~dfractal_dask.widget.Explorer` of 800x600 pixels at 500 iterations, and
zooms step by step into the seahorse valley, as a user's wheel would.  For each
view it times, from the request to the pixels being in the explorer, the coarse
frame (a quarter of the resolution) and the full frame.

The baseline is the same full frames computed in this process with no dask at
all: the Numba kernel and the colouring of the whole frame in one call, on one
core.  ``full / bare`` is then the explorer's latency in units of the work it
does: 1.0 would mean the cluster costs nothing and gains nothing; 2 workers can
at best bring it to about 0.5.  Not a test: numbers, no assertions.
"""

from __future__ import annotations

import argparse
import statistics
import time

from dfractal_dask import View
from dfractal_dask.cluster import connect
from dfractal_dask.colorize import color_samples
from dfractal_dask.kernels import escape_block
from dfractal_dask.widget import Explorer


def bare_frame(view: View, iters: int, palette: str, mode: str) -> float:
    """Seconds for one frame with no dask: kernel + colouring, in this process."""
    t0 = time.perf_counter()
    it, norm, _ = escape_block(view.re0, view.im0, view.step, 0, view.height, view.width, iters)
    color_samples(it, norm, iters, palette, mode)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=800)
    p.add_argument("--height", type=int, default=600)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--frames", type=int, default=12, help="zoom steps (each 1.5x deeper)")
    p.add_argument("--palette", default="Hippi")
    p.add_argument("--mode", default="smooth")
    args = p.parse_args()

    start = View(-0.5, 0.0, 3.0, args.width, args.height, 1)
    target = (-0.7436438870371, 0.1318259042053)  # the seahorse valley
    views = []
    for k in range(args.frames):
        f = (k + 1) / args.frames  # glide the centre to the target while zooming 1.5x a step
        views.append(View(start.xpos + f * (target[0] - start.xpos), start.ypos + f * (target[1] - start.ypos),
                          start.span / 1.5 ** (k + 1), args.width, args.height, 1))  # fmt: skip

    bare_frame(start, args.iters, args.palette, args.mode)  # compile / load the kernels here first
    bare = [bare_frame(v, args.iters, args.palette, args.mode) for v in views]

    with connect(None, n_workers=args.workers) as client:
        ex = Explorer(client, start, args.iters, args.palette, args.mode)
        ex.wait(timeout=120)  # the first frame also warms the workers: not counted
        coarse, full = [], []
        for v in views:
            gen = ex.goto(v)
            coarse.append(ex.wait(gen, "coarse", timeout=120)["seconds"])
            full.append(ex.wait(gen, "full", timeout=120)["seconds"])
        ex.close()

    print(f"explorer frame latency: {args.width}x{args.height}, {args.iters} iterations, {args.palette} "
          f"{args.mode}, {args.workers} workers, {args.frames} zoom steps")  # fmt: skip
    print(f"{'step':>4} {'span':>10} {'bare s':>8} {'coarse s':>9} {'full s':>8} {'full/bare':>9}")
    for k, (v, b, c, f) in enumerate(zip(views, bare, coarse, full, strict=True)):
        print(f"{k + 1:>4} {v.span:>10.3g} {b:>8.3f} {c:>9.3f} {f:>8.3f} {f / b:>9.2f}")
    med = statistics.median
    print(f"median: bare {med(bare):.3f} s, coarse {med(coarse):.3f} s, full {med(full):.3f} s; "
          f"full/bare {med(f / b for f, b in zip(full, bare, strict=True)):.2f}, "
          f"total full/bare {sum(full) / sum(bare):.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
