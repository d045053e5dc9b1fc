"""Escape kernel throughput: the lockstep kernel against the scalar reference,
measured in the same run, on one core, with no dask.

    python benchmarks/kernel.py [--rows 96] [--repeats 3]

For each view it computes the same block of sample rows with
``kernels.escape_scalar_into`` (one sample at a time, the reference) and
``kernels.escape_into`` (LANES samples in lockstep), checks that both give the
same counts and norms, and prints G iterations/s (counted iterations: the sum
of the counts) and the speed-up.  Not a test: numbers, no assertions beyond
the equality check.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dfractal_dask import View
from dfractal_dask.kernels import LANES, count_dtype, escape_into, escape_scalar_into

VIEWS = {
    "seed default (800 it)": (View(), 800),
    "whole set (800 it)": (View(-0.5, 0.0, 3.0, 1024, 768, 8), 800),
    "seahorse valley (5000 it)": (View(-0.7436438870371, 0.1318259042053, 1e-5, 1024, 768, 8), 5000),
}


def _run(fn, view: View, iters: int, rows: int, repeats: int):
    row0 = view.sample_height // 2 - rows // 2  # the middle of the picture
    best = None
    for _ in range(repeats):
        it = np.empty((rows, view.sample_width), count_dtype(iters))
        norm = np.empty((rows, view.sample_width), np.float32)
        t0 = time.perf_counter()
        work = fn(it, norm, view.re0, view.im0, view.step, row0, iters)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return it, norm, work, best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=96, help="sample rows per view (of 8192 samples each)")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    for fn in (escape_into, escape_scalar_into):  # compile / load from cache first
        fn(np.empty((1, 1), np.uint16), np.empty((1, 1), np.float32), 0.0, 0.0, 1.0, 0, 1)

    print(f"escape kernel, one core, {args.rows} rows x 8192 samples, best of {args.repeats}; lockstep: {LANES} lanes")
    print(f"{'view':<28} {'scalar G/s':>10} {'lockstep G/s':>12} {'speed-up':>8}  identical")
    for name, (view, iters) in VIEWS.items():
        a = _run(escape_scalar_into, view, iters, args.rows, args.repeats)
        b = _run(escape_into, view, iters, args.rows, args.repeats)
        same = np.array_equal(a[0], b[0]) and a[1].tobytes() == b[1].tobytes() and a[2] == b[2]
        sa, sb = a[2] / a[3] / 1e9, b[2] / b[3] / 1e9
        print(f"{name:<28} {sa:>10.3f} {sb:>12.3f} {sb / sa:>8.2f}  {same}")


if __name__ == "__main__":
    main()
