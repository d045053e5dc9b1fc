"""Escape kernel throughput, on one core, with no dask: the lockstep kernel
against the scalar reference, and the interior shortcuts against brute force,
all measured in the same run.

    python benchmarks/kernel.py [--rows 96] [--repeats 5] [--whole-repeats 3]

First, the whole seed default picture (every one of its 6144 sample rows:
the fast-escaping ones too, not only the middle): the scalar reference and
``escape_into`` at its default level (``CYCLES``) in turn, best of
``--whole-repeats``, their ratio and the kernel's G iterations/s on one core
(issue 19: at least 2.2), counts and norms compared bit for bit.

Then, for each view it computes the same block of sample rows (the middle of the
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


def _whole(fn, view: View, iters: int, rows: int = 256) -> tuple[float, int, list[np.ndarray]]:
    """Seconds of ``fn`` over every sample of ``view`` (in blocks of ``rows``, as
    a render cuts it), its work, and the counts and norms of each block."""
    work, outs = 0, []
    t0 = time.perf_counter()
    for r0 in range(0, view.sample_height, rows):
        n = min(rows, view.sample_height - r0)
        it, norm = np.empty((n, view.sample_width), count_dtype(iters)), np.empty((n, view.sample_width), np.float32)
        work += fn(it, norm, view.re0, view.im0, view.step, r0, iters)
        outs += [it, norm]
    return time.perf_counter() - t0, work, outs


def whole_picture(repeats: int) -> bool:
    """Print the scalar reference and the kernel over the whole seed default,
    taking turns, best of ``repeats``; True if they agree bit for bit."""
    view, iters = View(), 800
    best: dict[str, tuple[float, int, list[np.ndarray]]] = {}
    for _ in range(repeats):
        for name, fn in (("scalar", escape_scalar_into), ("kernel", escape_into)):
            got = _whole(fn, view, iters)
            if name not in best or got[0] < best[name][0]:
                best[name] = got
    (ts, ws, ref), (tk, wk, out) = best["scalar"], best["kernel"]
    same = ws == wk and all(a.tobytes() == b.tobytes() for a, b in zip(ref, out, strict=True))
    print(f"whole seed default ({view.sample_width}x{view.sample_height} samples, {iters} it, {ws / 1e9:.2f} G "
          f"iterations), one core, in turn, best of {repeats}:")  # fmt: skip
    print(f"  scalar reference {ts:6.2f} s {ws / ts / 1e9:6.3f} G it/s")
    print(f"  kernel (CYCLES)  {tk:6.2f} s {wk / tk / 1e9:6.3f} G it/s per core (goal >= 2.2)  "
          f"{ts / tk:.2f}x the scalar reference; counts and norms identical: {same}")  # fmt: skip
    return same


def _same(ref, got) -> bool:
    if not np.array_equal(ref[0], got[0]) or ref[2] != got[2]:
        return False
    kept = ~np.isnan(got[1])  # INTERIOR leaves norm NaN where it did not iterate
    return ref[1][kept].tobytes() == got[1][kept].tobytes()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=96, help="sample rows per view (of 8192 samples each)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--whole-repeats", type=int, default=3, help="runs over the whole seed default (0: skip)")
    args = p.parse_args()
    tiny = np.empty((1, 1), np.uint16), np.empty((1, 1), np.float32)
    escape_scalar_into(*tiny, 0.0, 0.0, 1.0, 0, 1)  # compile / load from cache first
    for level in (BRUTE, CYCLES, INTERIOR):
        escape_into(*tiny, 0.0, 0.0, 1.0, 0, 1, level)

    ok = whole_picture(args.whole_repeats) if args.whole_repeats > 0 else True
    print(f"escape kernel, one core, {args.rows} rows x 8192 samples, best of {args.repeats}; lockstep: {LANES} lanes")
    print("G/s: counted iterations per second.  Ratios: time of the scalar reference (or of brute force) / time")
    head = f"{'view':<27} {'interior':>8} {'scalar G/s':>10} {'lockstep G/s':>12} {'vs scalar':>9}"
    print(head + f" {'cycles':>7} {'+cardioid':>9}  counts identical")
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
