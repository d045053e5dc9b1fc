"""Zoom explorer frame latency, against its goals and the bare kernel, measured in the same run.

    python benchmarks/explorer.py [--width 800 --height 600 --iters 500 --workers 2 --frames 12]

Starts the embedded cluster (``n`` single-threaded workers, of the kind dask
config ``dfractal.cluster`` names: threads by default), opens an
:class:`~dfractal_dask.widget.Explorer` of 800x600 pixels at 500 iterations,
and zooms step by step into the seahorse valley, as a user's wheel would.
For each view it times, from the request to the pixels being in the
explorer's bokeh source, the coarse frame (a quarter of the resolution) and
the full frame; the goals (issue 19) are a median of at most 0.3 s full and
0.1 s coarse.  Then it zooms back out through the same views, which the
explorer's frame cache serves: their latency, and the tasks that ran on the
cluster for them (the task stream: none).

The stored section (issue 20, ``--stored-size``, 0 skips it) renders a
square store of that many samples a side with its pyramid, once, in a temporary
folder, then browses it with an explorer given the store: 12 wheel zooms and
pans at the explorer's size, every one within the stored resolution, so each
frame is read from the pyramid level that fits and coloured in this process
(no task on the cluster).  Its latency, from the request to the pixels in the
bokeh source, has a goal of a median under 0.2 s; printed with the load
average, and the tiles each frame read.

The baseline is the same full frames computed in this process with no dask
at all: the kernel (with the explorer's shortcuts) and the colouring of the
whole frame in one call, on one core.  ``full / bare`` is then the
explorer's latency in units of the work it does: 1.0 would mean the cluster
costs nothing and gains nothing; 2 workers can at best bring it to about 0.5.
The profile splits a full frame into its parts measured apart: building its
graph on the client, kernel, colouring, bokeh's packing of the pixels; the
rest of a frame's latency is dask's (scheduling, transfer, gathering).  Not
a test: numbers, no assertions.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import dask
from distributed import get_task_stream

from dfractal_dask import View, render
from dfractal_dask.cluster import connect
from dfractal_dask.colorize import color_samples
from dfractal_dask.explorer.panel import _to_bokeh
from dfractal_dask.explorer.session import frame_tasks
from dfractal_dask.kernels import CYCLES, INTERIOR, escape_block
from dfractal_dask.widget import Explorer

GOAL_FULL, GOAL_COARSE = 0.3, 0.1  # seconds, median over the zoom steps (issue 19)
GOAL_STORED = 0.2  # seconds, median over the stored views (issue 20)


def bare_frame(view: View, iters: int, palette: str, mode: str) -> tuple[float, float, float]:
    """Seconds of the kernel, the colouring and bokeh's packing of one frame, with no dask, in this process."""
    shortcuts = INTERIOR if mode == "smooth" else CYCLES  # the explorer's
    t0 = time.perf_counter()
    it, norm, _ = escape_block(view.re0, view.im0, view.step, 0, view.height, view.width, iters, shortcuts)
    t1 = time.perf_counter()
    rgba = color_samples(it, norm, iters, palette, mode)
    t2 = time.perf_counter()
    _to_bokeh(rgba)
    return t1 - t0, t2 - t1, time.perf_counter() - t2


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=800)
    p.add_argument("--height", type=int, default=600)
    p.add_argument("--iters", type=int, default=500)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--frames", type=int, default=12, help="zoom steps (each 1.5x deeper)")
    p.add_argument("--palette", default="Hippi")
    p.add_argument("--mode", default="smooth")
    p.add_argument("--stored-size", type=int, default=8192, help="the stored section's store, samples a side (0: skip)")
    args = p.parse_args()

    start = View(-0.5, 0.0, 3.0, args.width, args.height, 1)
    target = (-0.7436438870371, 0.1318259042053)  # the seahorse valley
    views = []
    for k in range(args.frames):
        f = (k + 1) / args.frames  # glide the centre to the target while zooming 1.5x a step
        views.append(View(start.xpos + f * (target[0] - start.xpos), start.ypos + f * (target[1] - start.ypos),
                          start.span / 1.5 ** (k + 1), args.width, args.height, 1))  # fmt: skip

    bare_frame(start, args.iters, args.palette, args.mode)  # compile / load the kernels here first
    parts = [bare_frame(v, args.iters, args.palette, args.mode) for v in views]
    bare = [k + c for k, c, _ in parts]
    med = statistics.median

    with connect(None, n_workers=args.workers) as client:
        if args.stored_size:
            stored(client, args)
        ex = Explorer(client, start, args.iters, args.palette, args.mode)
        ex.wait(timeout=120)  # the first frame also warms the workers: not counted
        build = []
        for v in views:
            t0 = time.perf_counter()
            frame_tasks(v, args.iters, args.palette, args.mode, blocks=args.workers)
            build.append(time.perf_counter() - t0)
        coarse, full = [], []
        for v in views:
            t0 = time.perf_counter()
            gen = ex.goto(v)
            ex.wait(gen, "coarse", timeout=120)
            coarse.append(time.perf_counter() - t0)
            ex.wait(gen, "full", timeout=120)
            full.append(time.perf_counter() - t0)
        back, cached = [], []
        with get_task_stream(client) as stream:  # zooming back out: every view is in the cache
            for v in [*views[-2::-1], start]:
                t0 = time.perf_counter()
                rec = ex.wait(ex.goto(v), "full", timeout=120)
                back.append(time.perf_counter() - t0)
                cached.append(rec["cached"])
            time.sleep(0.5)  # (the task stream reports what ran a moment later)
        ran = len(stream.data)
        ex.close()

    kind = dask.config.get("dfractal.cluster")
    print(f"explorer frame latency: {args.width}x{args.height}, {args.iters} iterations, {args.palette} "
          f"{args.mode}, {args.workers} workers ({kind}), {args.frames} zoom steps")  # fmt: skip
    print(f"{'step':>4} {'span':>10} {'bare s':>8} {'coarse s':>9} {'full s':>8} {'full/bare':>9}")
    for k, (v, b, c, f) in enumerate(zip(views, bare, coarse, full, strict=True)):
        print(f"{k + 1:>4} {v.span:>10.3g} {b:>8.3f} {c:>9.3f} {f:>8.3f} {f / b:>9.2f}")
    print(f"profile (median ms): graph build {1e3 * med(build):.1f}, kernel {1e3 * med(p[0] for p in parts):.1f}, "
          f"colouring {1e3 * med(p[1] for p in parts):.1f}, bokeh packing {1e3 * med(p[2] for p in parts):.1f} "
          f"(on one core, no dask); the rest of a full frame is dask's: scheduling, transfer, gathering")  # fmt: skip
    ratio = med(f / b for f, b in zip(full, bare, strict=True))
    print(f"median: bare {med(bare):.3f} s, coarse {med(coarse):.3f} s (goal {GOAL_COARSE} s: "
          f"{'met' if med(coarse) <= GOAL_COARSE else 'missed'}), full {med(full):.3f} s (goal {GOAL_FULL} s: "
          f"{'met' if med(full) <= GOAL_FULL else 'missed'}); full/bare {ratio:.2f}"
          f", total full/bare {sum(full) / sum(bare):.2f}")  # fmt: skip
    print(f"zooming back out: {sum(cached)} of {len(cached)} frames from the cache, median {1e3 * med(back):.1f} ms, "
          f"{ran} tasks ran on the cluster for them")  # fmt: skip


def stored(client, args: argparse.Namespace) -> None:
    """The stored section: browse a pyramid store of ``--stored-size`` squared samples (see the module's doc)."""
    n = args.stored_size
    med = statistics.median
    with tempfile.TemporaryDirectory(prefix="dfractal-bench-") as tmp:
        path = Path(tmp) / "big.zarr"
        t0 = time.perf_counter()
        render(View(-0.5, 0.0, 3.0, n, n, 1), args.iters, store_path=path, client=client, pyramid=True)
        print(f"stored: {n}x{n} render with its pyramid {time.perf_counter() - t0:.1f} s")
        start = View(-0.5, 0.0, 3.0, args.width, args.height, 1)
        ex = Explorer(client, start, palette=args.palette, mode=args.mode, store=path)
        ex.wait(timeout=120)  # the first frame compiles / loads the colouring: not counted
        # 6 wheel zooms of 1.4x toward the seahorse valley, each followed by a pan of a quarter of the screen
        v, steps = start, []
        for k in range(12):
            if k % 2 == 0:
                v = View(v.xpos + 0.3 * (-0.7436 - v.xpos), v.ypos + 0.3 * (0.1318 - v.ypos), v.span / 1.4, v.width,
                         v.height, 1)  # fmt: skip
            else:
                v = View(v.xpos + v.span / 4, v.ypos - v.span / 8, v.span, v.width, v.height, 1)
            steps.append(v)
        times, records = [], []
        with get_task_stream(client) as stream:
            for v in steps:
                t0 = time.perf_counter()
                records.append(ex.wait(ex.goto(v), "full", timeout=120))
                times.append(time.perf_counter() - t0)
            time.sleep(0.5)  # (the task stream reports what ran a moment later)
        ex.close()
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{'step':>4} {'span':>10} {'level':>5} {'tiles':>5} {'read':>5} {'s':>7}")
    for k, (v, r, t) in enumerate(zip(steps, records, times, strict=True)):
        info = r.get("stored") or {}
        print(f"{k + 1:>4} {v.span:>10.3g} {info.get('level', '-'):>5} {info.get('tiles', '-'):>5} "
              f"{info.get('read', '-'):>5} {t:>7.3f}")  # fmt: skip
    print(f"stored views at {args.width}x{args.height}: median {med(times):.3f} s (goal {GOAL_STORED} s: "
          f"{'met' if med(times) <= GOAL_STORED else 'missed'}), max {max(times):.3f} s; {len(stream.data)} tasks "
          f"ran on the cluster for them; load average {load}")  # fmt: skip


if __name__ == "__main__":
    main()
