"""Store costs, each as a ratio against a baseline measured in this same run
(not a test: these machines are shared and noisy).

    python benchmarks/store.py [--repeats 5] [--renders 3] [--baseline e644ecc]

1. One seed-default block (128 sample rows x 8192, counts and norms, real
   kernel output) written and read back:
   - the previous hand-written path (numcodecs Blosc encode + rename into
     place; decode + frombuffer), reproduced here as the baseline;
   - zarr's own storage and codec pipeline on a local disk (what workers and
     the client do now: identity check, Blosc + crc32c, block record, done
     flag; read back checked against the record);
   - the same through s3fs into a real S3-compatible server on 127.0.0.1
     (moto's, started here).
   Best of ``--repeats``, interleaved.
2. ``dfractal render`` of the seed default, a fresh process with its embedded
   2-worker cluster, end to end: this checkout against ``--baseline`` (the
   commit before the store moved onto zarr's pipeline, checked out into a
   temporary worktree), run in turn, best of ``--renders``.  Issue 15 allows
   a loss of at most 10% (ratio <= 1.10).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numcodecs import Blosc

from dfractal_dask import View, graph
from dfractal_dask import store as st
from dfractal_dask.location import as_location

ROOT = Path(__file__).resolve().parents[1]
BASELINE = "e644ecc"  # the last commit with the hand-written chunk encoder and reader


def _hand_write(folder: Path, index: int, arrays: list[np.ndarray]) -> None:
    # the former store._write_chunk: Blosc lz4 + byte shuffle, written to .part, renamed
    codec = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
    for k, data in enumerate(arrays):
        chunk = folder / f"v{k}" / "c" / str(index) / "0"
        chunk.parent.mkdir(parents=True, exist_ok=True)
        part = chunk.with_name(f"0.{os.getpid()}.part")
        part.write_bytes(codec.encode(np.ascontiguousarray(data)))
        os.replace(part, chunk)


def _hand_read(folder: Path, index: int, arrays: list[np.ndarray]) -> None:
    codec = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
    for k, like in enumerate(arrays):
        raw = codec.decode((folder / f"v{k}" / "c" / str(index) / "0").read_bytes())
        np.frombuffer(raw, like.dtype).reshape(like.shape)


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def blocks(repeats: int) -> None:
    view = View()  # the seed default: 8192 x 6144 samples
    bs = graph.blocks(view)
    b = bs[len(bs) // 2]
    it, norm, _ = graph.compute_block(view, 800, b)
    template = graph.fractal_dataset(view, 800)
    print(f"1. one block: {b.nrows} x {view.sample_width} samples ({(it.nbytes + norm.nbytes) / 1e6:.1f} MB raw)")
    with tempfile.TemporaryDirectory() as tmp:
        hand = Path(tmp, "hand")
        local = st.create_store(Path(tmp, "local.zarr"), template, len(bs), store_id="bench")
        targets = {"hand-written, local disk": None, "zarr pipeline, local disk": local}
        s3 = _s3()
        if s3 is not None:
            server, stack = s3
            server.make_bucket("bench")
            targets["zarr pipeline, S3 server"] = st.create_store(
                as_location("s3://bench/b.zarr", server.storage_options), template, len(bs), store_id="bench"
            )
        results = {name: [float("inf"), float("inf")] for name in targets}
        for _ in range(repeats):  # interleaved: each path in turn, best kept
            for name, loc in targets.items():
                if loc is None:
                    w = _best(lambda: _hand_write(hand, b.index, [it, norm]), 1)
                    r = _best(lambda: _hand_read(hand, b.index, [it, norm]), 1)
                else:
                    w = _best(lambda loc=loc: st.write_block(loc, b, it, norm, store_id="bench"), 1)
                    ds = st.open_render(loc, allow_incomplete=True)
                    r = _best(lambda ds=ds: (ds.iterations.data.blocks[b.index].compute(scheduler="sync"),
                                             ds.norm.data.blocks[b.index].compute(scheduler="sync")), 1)  # fmt: skip
                results[name] = [min(results[name][0], w), min(results[name][1], r)]
        base_w, base_r = results["hand-written, local disk"]
        print(f"   {'path':<28} {'write ms':>9} {'ratio':>6} {'read ms':>8} {'ratio':>6}")
        for name, (w, r) in results.items():
            print(f"   {name:<28} {w * 1e3:9.1f} {w / base_w:6.2f} {r * 1e3:8.1f} {r / base_r:6.2f}")
        if s3 is not None:
            stack.close()


def _s3():
    """A moto S3 server on 127.0.0.1 (tests/s3server.py), or None without s3fs/moto."""
    import contextlib

    sys.path.insert(0, str(ROOT / "tests"))
    try:
        from s3server import s3_server
    except ImportError:
        print("   (no S3 server: pip install -e '.[test]' for s3fs and moto)")
        return None
    stack = contextlib.ExitStack()
    return stack.enter_context(s3_server()), stack


def _render(python_path: Path | None, workdir: Path) -> float:
    env = dict(os.environ)
    if python_path is not None:  # the baseline's package, not this checkout's
        env["PYTHONPATH"] = str(python_path)
    t0 = time.perf_counter()
    code = "import sys; from dfractal_dask.cli import main; sys.exit(main())"
    p = subprocess.run([sys.executable, "-c", code, "render", "-q", "--overwrite"], cwd=workdir, env=env,
                       capture_output=True, text=True)  # fmt: skip
    if p.returncode:
        sys.exit(f"dfractal render failed ({'baseline' if python_path else 'this checkout'}): {p.stderr.strip()}")
    return time.perf_counter() - t0


def renders(n: int, baseline: str) -> None:
    print(f"2. dfractal render, seed default, fresh process, embedded 2 workers (best of {n}, in turn)")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp, "baseline")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", tree, baseline], check=True,
                       capture_output=True)  # fmt: skip
        try:
            here, there = Path(tmp, "now"), Path(tmp, "then")
            here.mkdir()
            there.mkdir()
            now = then = float("inf")
            for _ in range(n):
                then = min(then, _render(tree, there))
                now = min(now, _render(None, here))
            print(f"   baseline {baseline} (hand-written chunks): {then:6.2f} s")
            print(f"   this checkout (zarr pipeline, crc32c):   {now:6.2f} s   ratio {now / then:.2f} (goal <= 1.10)")
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", tree], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--renders", type=int, default=3)
    ap.add_argument("--baseline", default=BASELINE)
    ap.add_argument("--skip-renders", action="store_true")
    args = ap.parse_args()
    blocks(args.repeats)
    if not args.skip_renders:
        renders(args.renders, args.baseline)


if __name__ == "__main__":
    main()
