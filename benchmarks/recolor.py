"""Recolour throughput versus rendering, measured in the same run.

    python benchmarks/recolor.py [--width 1024 --height 768 --smoothness 8] [--store PATH]

Renders the seed's default view (1024x768 at 8x8 samples = 50 M samples,
800 iterations) on an embedded 2-worker LocalCluster into a Zarr store, then
recolours that store in each mode, both with dask's local threads and on the
cluster, and prints Mpx/s (million samples per second) per core and the ratio
of each recolour's time to the render's.  Not a test: numbers, no assertions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import dask

from dfractal_dask import View, colorize, open_render, render
from dfractal_dask.cluster import connect


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--height", type=int, default=768)
    p.add_argument("--smoothness", type=int, default=8)
    p.add_argument("--iters", type=int, default=800)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--store", default=None, help="where to put the store (default: a temporary folder)")
    args = p.parse_args()

    view = View(width=args.width, height=args.height, supersample=args.smoothness)
    tmp = Path(tempfile.mkdtemp(prefix="dfractal-bench-"))
    store = Path(args.store) if args.store else tmp / "bench.zarr"
    cores = os.cpu_count() or 1
    samples = view.n_samples
    print(
        f"view: {view.width}x{view.height}, {view.supersample}x{view.supersample} samples/pixel = "
        f"{samples / 1e6:.1f} M samples, {args.iters} iterations; {cores} cores, {args.workers} workers"
    )
    try:
        with connect(n_workers=args.workers) as client:
            client.run(lambda: None)
            t0 = time.perf_counter()
            render(view, args.iters, store_path=store, client=client, overwrite=True)
            t_render = time.perf_counter() - t0
            print(f"render (baseline): {t_render:8.2f} s  {samples / t_render / 1e6 / args.workers:8.1f} Mpx/s/core")
            ds = open_render(store)
            rows = []
            for mode in ("seed", "smooth", "histogram"):
                with dask.config.set(scheduler="threads", num_workers=cores):
                    t0 = time.perf_counter()
                    colorize(ds, "Hippi" if mode == "seed" else "Viridis256", 6000, mode)
                    rows.append((mode, "local threads", time.perf_counter() - t0, cores))
                t0 = time.perf_counter()
                colorize(ds, "Hippi" if mode == "seed" else "Viridis256", 6000, mode)  # the client is default
                rows.append((mode, f"cluster ({args.workers} workers)", time.perf_counter() - t0, args.workers))
        print(f"{'mode':<10} {'where':<22} {'seconds':>8} {'Mpx/s/core':>11} {'recolour/render':>16}")
        for mode, where, secs, n in rows:
            print(f"{mode:<10} {where:<22} {secs:8.2f} {samples / secs / 1e6 / n:11.1f} {secs / t_render:16.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
