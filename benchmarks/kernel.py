"""Escape kernel throughput, on one core, with no dask: the lockstep kernel
against the scalar reference, and the interior shortcuts against brute force,
all measured in the same run.

    python benchmarks/kernel.py [--rows 96] [--repeats 5]

For each view it computes the same block of sample rows (the middle of the
picture) with

* ``escape_scalar_into``: one sample at a time, the reference;
* ``escape_into(..., BRUTE)``: LANES samples in lockstep, every iteration run;
* ``escape_into(..., CYCLES)``: the default, stops orbits that repeat exactly;
* ``escape_into(..., INTERIOR)``: also skips the main cardioid and bulb;

checks that every variant gives the reference's counts (and, but for
INTERIOR's skipped samples, its norms bit for bit), and prints G iterations/s
(counted iterations: the sum of the counts, what brute force executes) and
ratios against the baselines.  Not a test: numbers, no assertions beyond the
equality checks (a mismatch exits 1).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from dfractal_dask import View
from dfractal_dask.kernels import BRUTE, CYCLES, INTERIOR, LANES, count_dtype, escape_into, escape_scalar_into

VIEWS = {
    "seed default (800 it)": (View(), 800),
    "whole set (800 it)": (View(-0.5, 0.0, 3.0, 1024, 768, 8), 800),
    "seahorse valley (5000 it)": (View(-0.7436438870371, 0.1318259042053, 1e-5, 1024, 768, 8), 5000),
    "interior-heavy (5000 it)": (View(-0.4, 0.0, 1.2, 1024, 768, 8), 5000),
}


def _run_interleaved(fns, view: View, iters: int, rows: int, repeats: int):
    """Best time of each ``fns`` variant; the variants take turns in every
    repeat, so a change in the machine's speed meets them all alike."""
    row0 = view.sample_height // 2 - rows // 2
    out = [None] * len(fns)
    for _ in range(repeats):
        for k, (fn, extra) in enumerate(fns):
            it = np.empty((rows, view.sample_width), count_dtype(iters))
            norm = np.empty((rows, view.sample_width), np.float32)
            t0 = time.perf_counter()
            work = fn(it, norm, view.re0, view.im0, view.step, row0, iters, *extra)
            dt = time.perf_counter() - t0
            if out[k] is None or dt < out[k][3]:
                out[k] = (it, norm, work, dt)
    return out


def _same(ref, got) -> bool:
    if not np.array_equal(ref[0], got[0]) or ref[2] != got[2]:
        return False
    kept = ~np.isnan(got[1])  # INTERIOR leaves norm NaN where it did not iterate
    return ref[1][kept].tobytes() == got[1][kept].tobytes()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=96, help="sample rows per view (of 8192 samples each)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    tiny = np.empty((1, 1), np.uint16), np.empty((1, 1), np.float32)
    escape_scalar_into(*tiny, 0.0, 0.0, 1.0, 0, 1)  # compile / load from cache first
    for level in (BRUTE, CYCLES, INTERIOR):
        escape_into(*tiny, 0.0, 0.0, 1.0, 0, 1, level)

    print(f"escape kernel, one core, {args.rows} rows x 8192 samples, best of {args.repeats}; lockstep: {LANES} lanes")
    print("G/s: counted iterations per second.  Ratios: time of the scalar reference (or of brute force) / time")
    head = f"{'view':<27} {'interior':>8} {'scalar G/s':>10} {'lockstep G/s':>12} {'vs scalar':>9}"
    print(head + f" {'cycles':>7} {'+cardioid':>9}  counts identical")
    ok = True
    for name, (view, iters) in VIEWS.items():
        fns = [(escape_scalar_into, ()), (escape_into, (BRUTE,)), (escape_into, (CYCLES,)), (escape_into, (INTERIOR,))]
        ref, brute, cyc, inter = _run_interleaved(fns, view, iters, args.rows, args.repeats)
        same = all(_same(ref, r) for r in (brute, cyc, inter))
        ok &= same
        frac = float((ref[0] == iters).mean())
        sa, sb = ref[2] / ref[3] / 1e9, brute[2] / brute[3] / 1e9
        print(
            f"{name:<27} {frac:>8.0%} {sa:>10.3f} {sb:>12.3f} {sb / sa:>8.2f}x"
            f" {brute[3] / cyc[3]:>6.2f}x {brute[3] / inter[3]:>8.2f}x  {same}"
        )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
