"""Issue 20 point 2: gigapixel renders with their pyramid, each measured against
the seed default render in this same run (not a test: these machines are shared
and noisy).

    python benchmarks/gigapixel.py [--sizes 4096,16384] [--repeats 3] [--setups embedded,remote]

The seed default view (its centre and span, 800 iterations) at 1 sample per
pixel (``--smoothness 1``) and ``--pyramid``, square pictures of each of
``--sizes`` (16384 is 268 M samples), ``dfractal render`` in a fresh process,
writing the store and its pyramid and no picture (``--no-picture``: a gigapixel
render's pictures come from its pyramid, ``dfractal recolor --dzi``; ``--picture``
makes them write their PNG as well), in two setups:

(a) ``embedded``: its own 2-worker LocalCluster in worker processes
    (``--cluster processes``, so the client is a process of its own), the store
    on local disk;
(b) ``remote``: a real ``dask scheduler`` and 2 ``dask worker`` processes
    (one thread each) in working folders of their own, the store on an
    S3-compatible server with authentication on (moto's, started here, or
    ``--s3-endpoint`` with the credentials in ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY``); client and workers know it from the
    environment only.

For each render: the client's peak RSS (its process sampled with psutil every
50 ms; for (a) also the peak of its whole process tree, the workers with it),
the wall time end to end, the render's own seconds (``--metrics-json``) and
the pyramid's (its line, "built its pyramid ... in X s"), and the throughput per core: samples / (seconds x cores)
and iterations likewise, where the seconds are the render's with its pyramid
(and, to show the pyramid's share, without it).
The baseline is the seed default render (``dfractal render`` with the seed's
defaults: 1024x768 at 8x8 samples) on the same kind of cluster, the runs of a
setup interleaved (baseline, then each size, ``--repeats`` times) and the best
of each kept.  Printed ratios: throughput / the baseline's (goal >= 0.9), and
the client's peak RSS at the largest size against the smallest (goal: under
400 MiB and flat).  After each size's last render the store is opened again
and its pyramid's levels printed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the real cluster and S3 server of the tests

from daskprocs import BIN, dask_processes  # noqa: E402
from render import _tree_rss  # noqa: E402  (benchmarks/render.py: the process tree's resident memory)
from s3server import s3_server  # noqa: E402

CORES = 2  # two workers of one thread each, in both setups
SETUPS = ("embedded", "remote")
MIB = 2**20


@dataclass(frozen=True)
class Run:
    """One ``dfractal render``: what its process and its metrics said."""

    wall: float
    render: float
    pyramid: float | None
    samples: int
    iterations: int
    client_peak: int
    tree_peak: int
    tasks: dict[str, float]  # the workers' seconds in the render's tasks: kernel, write, picture

    @property
    def busy(self) -> float:
        """Seconds of the render with its pyramid."""
        return self.render + (self.pyramid or 0.0)

    def per_core(self) -> tuple[float, float]:
        """Samples and iterations per second per core."""
        return self.samples / (self.busy * CORES), self.iterations / (self.busy * CORES)


@dataclass(frozen=True)
class Setup:
    """Where the renders of one setup run and store."""

    label: str
    cluster: list[str]
    env: dict[str, str]
    store: str  # a folder or an s3:// prefix, without the trailing slash
    storage_options: dict[str, Any] | None


def _render(argv: list[str], cwd: Path, env: dict[str, str]) -> Run:
    """``dfractal render argv`` in a fresh process, its client sampled every 50 ms."""
    metrics = cwd / "m.json"
    metrics.unlink(missing_ok=True)
    t0 = time.perf_counter()
    p = subprocess.Popen([BIN / "dfractal", "render", "--overwrite", "--metrics-json", metrics, *argv],
                         cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    proc, client_peak, tree_peak = psutil.Process(p.pid), 0, 0
    try:
        while p.poll() is None:
            with contextlib.suppress(psutil.Error):
                client_peak = max(client_peak, proc.memory_info().rss)
            tree_peak = max(tree_peak, _tree_rss(proc))
            time.sleep(0.05)
    finally:  # interrupted: the render (and its workers) with it
        if p.poll() is None:
            p.terminate()
    wall = time.perf_counter() - t0
    out, err = p.communicate()
    if p.returncode:
        sys.exit(f"dfractal render {' '.join(map(str, argv))} failed: {err.strip()}")
    doc = json.loads(metrics.read_text())
    total = doc["render"]["total"]
    # the pyramid's seconds: from the metrics if they have them, else from its line on stderr
    built = re.search(r"built its pyramid .* in ([0-9.]+) s", out + err)
    pyramid = (doc.get("pyramid") or {}).get("seconds", float(built.group(1)) if built else None)
    return Run(
        wall=wall,
        render=doc["render"]["ended"] - doc["render"]["started"],
        pyramid=pyramid,
        samples=int(total["samples"]),
        iterations=int(total["iterations"]),
        client_peak=max(client_peak, int(doc["client"]["peak_rss_bytes"])),
        tree_peak=max(tree_peak, client_peak),
        tasks={k: float(total.get(f"{k}_seconds", 0.0)) for k in ("kernel", "write", "picture")},
    )


def _list(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def _line(what: str, runs: list[Run], tree: bool) -> str:
    best = min(runs, key=lambda r: r.busy)
    samples, iterations = best.per_core()
    pyramid = f"  pyramid {best.pyramid:.2f} s" if best.pyramid is not None else ""
    peak = f"  client peak {max(r.client_peak for r in runs) / MIB:.0f} MiB"
    if tree:
        peak += f"  tree peak {max(r.tree_peak for r in runs) / MIB:.0f} MiB"
    return (f"    {what}: wall {best.wall:.2f} s  render {best.render:.2f} s{pyramid}"
            f"  {best.samples / 1e6:.1f} M samples  {samples / 1e6:.2f} M samples/s/core"
            f"  {iterations / 1e9:.2f} G it/s/core{peak}"
            f"  (best of {len(runs)}: {_list([r.busy for r in runs])})\n"
            f"      the workers' seconds in its tasks: {'  '.join(f'{k} {v:.2f}' for k, v in best.tasks.items())}"
            f" of {CORES * best.render:.2f} core-seconds")  # fmt: skip


def _levels(store: str, storage_options: dict[str, Any] | None) -> str:
    from dfractal_dask.pyramid import pyramid_levels

    levels = pyramid_levels(store, storage_options=storage_options)
    return " ".join(f"{lv.width}x{lv.height}" for lv in levels) or "none"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run_setup(setup: Setup, sizes: list[int], repeats: int, pyramid: bool, cwd: Path, picture: bool = False) -> None:
    """Time the baseline and every size of one setup, interleaved, and print them."""
    print(f"{setup.label} (load average before {_load()})")
    seed = [*setup.cluster, "--outfile", "seed.png", "--store", f"{setup.store}/seed.zarr"]
    extra = (["--pyramid"] if pyramid else []) + ([] if picture else ["--no-picture"])
    big = {n: [*setup.cluster, "--width", str(n), "--height", str(n), "--smoothness", "1", *extra,
               "--outfile", f"g{n}.png", "--store", f"{setup.store}/g{n}.zarr"] for n in sizes}  # fmt: skip
    base: list[Run] = []
    runs: dict[int, list[Run]] = {n: [] for n in sizes}
    for _ in range(repeats):
        base.append(_render(seed, cwd, setup.env))
        for n in sizes:
            runs[n].append(_render(big[n], cwd, setup.env))
    tree = setup.label.startswith("(a)")
    print(_line("seed default 1024x768 at 8x8", base, tree))
    b_samples, b_iterations = min(base, key=lambda r: r.busy).per_core()
    for n in sizes:
        what = f"{n}x{n} at 1x1{' with pyramid' if pyramid else ''}{'' if picture else ', no picture'}"
        print(_line(what, runs[n], tree))
        best = min(runs[n], key=lambda r: r.busy)
        samples, iterations = best.per_core()
        # the same without the pyramid's seconds: how much of the gap is the pyramid's
        alone = best.render / best.busy
        print(f"      ratio to the seed default per core: samples {samples / b_samples:.3f}  "
              f"iterations {iterations / b_iterations:.3f}  (goal >= 0.9); the render alone: samples "
              f"{samples / alone / b_samples:.3f}  iterations {iterations / alone / b_iterations:.3f}")  # fmt: skip
        if pyramid:
            store = f"{setup.store}/g{n}.zarr"
            print(f"      store {store} levels: {_levels(store, setup.storage_options)}")
    lo, hi = min(sizes), max(sizes)
    rss_lo, rss_hi = (max(r.client_peak for r in runs[n]) / MIB for n in (lo, hi))
    print(f"    client peak RSS {hi}x{hi} vs {lo}x{lo}: {rss_hi:.0f} vs {rss_lo:.0f} MiB, ratio {rss_hi / rss_lo:.3f}"
          f"  (goal < 400 MiB and flat)")  # fmt: skip
    print(f"    load average after {_load()}")


@contextlib.contextmanager
def _s3(endpoint: str | None, bucket: str) -> Iterator[tuple[dict[str, str], dict[str, Any]]]:
    """The S3 server's environment and storage options: ``endpoint``'s (the
    bucket must exist, the credentials are the environment's) or a moto server's."""
    if endpoint:
        env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ENDPOINT_URL_S3": endpoint}
        yield env, {"client_kwargs": {"endpoint_url": endpoint}}
        return
    with s3_server() as server:
        server.make_bucket(bucket)
        yield server.env, server.storage_options


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="4096,16384", help="picture sides, comma-separated (%(default)s)")
    p.add_argument("--repeats", type=int, default=3, help="renders of each to take the best of (%(default)s)")
    p.add_argument("--setups", default=",".join(SETUPS), help="embedded, remote or both (%(default)s)")
    p.add_argument("--pyramid", action=argparse.BooleanOptionalAction, default=True,
                   help="render with --pyramid (default)")  # fmt: skip
    p.add_argument("--picture", action=argparse.BooleanOptionalAction, default=False,
                   help="the big renders write their PNG too (default --no-picture: the store and its pyramid, "
                        "what a gigapixel render is for; the baseline always writes its PNG)")  # fmt: skip
    p.add_argument("--workdir", default=None, help="keep the local stores and pictures here (default: a temp dir)")
    p.add_argument("--s3-endpoint", default=None, help="an S3-compatible server to use (default: start moto's)")
    p.add_argument("--bucket", default="gigapixel", help="the bucket of the remote stores (%(default)s)")
    args = p.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
        if not sizes or min(sizes) < 1:
            raise ValueError
    except ValueError:
        p.error(f"--sizes: positive integers separated by commas, not {args.sizes!r}")
    setups = args.setups.split(",")
    if not setups or not set(setups) <= set(SETUPS):
        p.error(f"--setups: one or more of {', '.join(SETUPS)}, not {args.setups!r}")
    if args.repeats < 1:
        p.error(f"--repeats: at least 1, not {args.repeats}")

    tmp = Path(args.workdir or tempfile.mkdtemp(prefix="dfractal-giga-")).resolve()
    tmp.mkdir(parents=True, exist_ok=True)
    print(f"gigapixel: {', '.join(f'{n}x{n}' for n in sizes)} at 1 sample per pixel, the seed default view, "
          f"{CORES} cores; baseline the seed default render; best of {args.repeats}, interleaved; "
          f"load average {_load()}")  # fmt: skip
    try:
        if "embedded" in setups:
            cwd = tmp / "embedded"
            cwd.mkdir(exist_ok=True)
            flags = ["--workers", str(CORES), "--cluster", "processes"]
            embedded = Setup("(a) embedded 2-worker cluster in processes, local store", flags, dict(os.environ),
                             str(cwd), None)  # fmt: skip
            run_setup(embedded, sizes, args.repeats, args.pyramid, cwd, args.picture)
        if "remote" in setups:
            remote_dir = tmp / "remote"
            (remote_dir / "client").mkdir(parents=True, exist_ok=True)
            with contextlib.ExitStack() as stack:
                s3_env, options = stack.enter_context(_s3(args.s3_endpoint, args.bucket))
                address, _ = stack.enter_context(dask_processes(remote_dir, env=s3_env))
                label = f"(b) dask scheduler + {CORES} dask workers in folders of their own, store on S3"
                remote = Setup(
                    label, ["--scheduler", address], {**os.environ, **s3_env}, f"s3://{args.bucket}", options
                )
                run_setup(remote, sizes, args.repeats, args.pyramid, remote_dir / "client", args.picture)
    finally:
        if not args.workdir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
