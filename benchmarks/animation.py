"""Memory of encoding a zoom animation: peak RSS of a fresh process encoding
25 and 400 synthetic 320x240 frames, as GIF and APNG, with the streaming
:func:`dfractal_dask.animation.save_animation` ("after") and with the code it
replaced, reproduced below ("before": every frame held, then pillow's
``save_all``).  Numbers, no assertions.

    python benchmarks/animation.py [--frames 25 400] [--width 320 --height 240] [--zoom]

``--zoom`` also times real ``dfractal zoom`` runs (320x240, 200 iterations,
embedded 2-worker cluster, whose scheduler lives in the client process) of
25 and 400 frames, twice each in turn, and prints the client's peak RSS
(``ru_maxrss`` of the command) and the ratio 400 / 25 (goal: at most 1.20).

Each measurement is its own child process (``ru_maxrss`` is a peak over a
process's life), which imports :mod:`dfractal_dask.animation` (numpy, dask,
xarray, pillow: what the ``dfractal zoom`` client has loaded anyway), notes its
RSS, then encodes frames made one at a time by a generator, as
:func:`~dfractal_dask.animation.color_frames` yields them: an RGBA gradient
and a bar that move every frame, so no two frames are equal and none is
merged.  Reported: the peak, the peak above the RSS after imports ("held"),
the ratios ``400 / 25`` of the peaks (the goal: at most 1.20 after) and
``after / before``.  About 3 minutes on 2 cores, nearly all of it pillow
quantising the GIF frames (the same work before and after); these machines
are shared, so the times are indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def synthetic_frames(n: int, width: int, height: int):
    """``n`` different ``(height, width, 4)`` uint8 frames, made as asked for."""
    import numpy as np

    x = np.arange(width, dtype=np.int64)
    y = np.arange(height, dtype=np.int64)[:, None]
    for k in range(n):
        f = np.empty((height, width, 4), np.uint8)
        f[..., 0] = (x + 3 * k) % 256
        f[..., 1] = (2 * y + k) % 256
        f[..., 2] = ((x + y) // 2 + 5 * k) % 256
        f[..., 3] = 255
        bar = (7 * k) % max(1, width - 8)
        f[:, bar : bar + 8, :3] = 255
        yield f


def save_animation_in_memory(frames, path: Path, fps: float) -> None:
    """The encoder before streaming (dfractal_dask/animation.py until issue
    16): every frame an image in a list, then pillow's ``save_all``."""
    import numpy as np
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    if len({im.size for im in images}) > 1:
        raise ValueError("frames differ in size")
    if path.suffix == ".gif":
        images = [im.convert("RGB") for im in images]
    fmt = "GIF" if path.suffix == ".gif" else "PNG"
    images[0].save(path, format=fmt, save_all=True, append_images=images[1:],
                   duration=round(1000 / fps), loop=0, **({"optimize": False} if fmt == "GIF" else {}))  # fmt: skip


def rss_kb() -> int:
    """This process's resident set now, in KiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def child(fmt: str, n: int, impl: str, width: int, height: int) -> None:
    from dfractal_dask.animation import save_animation

    encode = save_animation if impl == "after" else save_animation_in_memory
    base = rss_kb()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"zoom{fmt}"
        t = time.perf_counter()
        encode(synthetic_frames(n, width, height), path, 12.0)
        seconds = time.perf_counter() - t
        size = path.stat().st_size
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"base_kb": base, "peak_kb": peak, "seconds": seconds, "bytes": size}))


def measure(fmt: str, n: int, impl: str, width: int, height: int) -> dict:
    cmd = [sys.executable, __file__, "--child", fmt, str(n), impl, "--width", str(width), "--height", str(height)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def zooms(frames: list[int]) -> None:
    """Peak RSS of whole `dfractal zoom` commands, ``frames`` each, in turn, twice."""
    peaks: dict[int, list[float]] = {n: [] for n in frames}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(2):
            for n in frames:
                argv = ["dfractal", "zoom", "--frames", str(n), "--to-span", "1e-6", "--width", "320", "--height",
                        "240", "--iters", "200", "--outfile", "z.gif", "--overwrite", "-q"]  # fmt: skip
                # a fresh wrapper process each: RUSAGE_CHILDREN's peak is over all of its children
                wrap = "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); " \
                       "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"  # fmt: skip
                t0 = time.perf_counter()
                out = subprocess.run([sys.executable, "-c", wrap, *argv], cwd=tmp, check=True, capture_output=True,
                                     text=True).stdout  # fmt: skip
                peak = int(out.split()[-1]) / 1024
                peaks[n].append(peak)
                print(f"dfractal zoom, {n:4d} frames: {time.perf_counter() - t0:6.1f} s, peak RSS {peak:6.1f} MiB")
    few, many = frames
    print(f"dfractal zoom peak RSS {many}/{few}: {min(peaks[many]) / min(peaks[few]):.2f} (goal at most 1.20)\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs=2, default=[25, 400], metavar=("FEW", "MANY"))
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--child", nargs=3, metavar=("FMT", "N", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--zoom", action="store_true", help="also measure real `dfractal zoom` runs")
    parser.add_argument("--zoom-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.zoom or args.zoom_only:
        zooms(args.frames)
    if args.zoom_only:
        return
    if args.child:
        fmt, n, impl = args.child
        child(fmt, int(n), impl, args.width, args.height)
        return

    few, many = args.frames
    frame_mb = args.width * args.height * 4 / 2**20
    print(f"{args.width}x{args.height} RGBA frames ({frame_mb:.2f} MiB each), peak RSS of a fresh process each")
    print(f"{'fmt':5} {'code':7} {'frames':>6} {'after imports':>14} {'peak':>9} {'held':>9} {'s':>6} {'file':>9}")
    peaks: dict[tuple[str, str, int], int] = {}
    for fmt in (".gif", ".png"):
        for impl in ("before", "after"):
            for n in (few, many):
                r = measure(fmt, n, impl, args.width, args.height)
                peaks[fmt, impl, n] = r["peak_kb"]
                base, peak = r["base_kb"] / 1024, r["peak_kb"] / 1024
                print(
                    f"{fmt:5} {impl:7} {n:6d} {base:11.1f} MiB {peak:5.1f} MiB {peak - base:5.1f} MiB"
                    f" {r['seconds']:6.2f} {r['bytes'] / 2**20:5.1f} MiB"
                )
    print(f"\npeak RSS ratios ({many} frames / {few}: goal at most 1.20 after; after / before)")
    for fmt in (".gif", ".png"):
        b = peaks[fmt, "before", many] / peaks[fmt, "before", few]
        a = peaks[fmt, "after", many] / peaks[fmt, "after", few]
        ab = [peaks[fmt, "after", n] / peaks[fmt, "before", n] for n in (few, many)]
        print(
            f"{fmt:5} {many}/{few}: before {b:.2f}, after {a:.2f}"
            f"   after/before: {few} frames {ab[0]:.2f}, {many} frames {ab[1]:.2f}"
        )


if __name__ == "__main__":
    main()
