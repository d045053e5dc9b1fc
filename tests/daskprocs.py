"""Real cluster processes for tests: `dask scheduler` and `dask worker` on
127.0.0.1, the workers in folders of their own (as on a real cluster, where a
worker's working folder is never the client's)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import zarr

from dfractal_dask import View

BIN = Path(sys.executable).parent

# A render long enough to be under way when a test interferes with it, by its
# kernels' work alone: Fractalshades' flake (span 1.7e-157) iterated exactly
# (--exact: no BLA, every sample ~31 000 perturbation steps), ~18 s on two
# workers, 90 blocks.  (It was seahorse valley at 3 000 000 iterations, whose
# 20-30 s were mostly its 3 000 001-entry colour table pickled into each of
# the 90 picture tasks: its kernels took 0.5 s.)
_FLAKE_X = ("-1.99996619445037030418434688506350579675531241540724851511761922944801584242342684381376129778868913"
            "812287046406560949864353810575744772166485672496092803920095332")  # fmt: skip
_FLAKE_Y = ("-0.000000000000000000000000000000000300138243679093832407249730397759249873468311907733352701742572801"
            "20474975614823581185647299288414075519224186504978181625478529")  # fmt: skip
SLOW = ["--xpos", _FLAKE_X, "--ypos", _FLAKE_Y, "--escape-radius", "1.7e-157", "--width", "480", "--height", "180",
        "--smoothness", "2", "--exact", "--iters", "1000000", "--chunk-rows", "4", "-q"]  # fmt: skip
SLOW_VIEW = View(_FLAKE_X, _FLAKE_Y, "1.7e-157", 480, 180, 2)


def done_blocks(store: Path) -> int:
    """Blocks a local render store marks done (0 before it exists)."""
    try:
        return int(np.asarray(zarr.open_array(str(store / "block_done"), mode="r")[:]).sum())
    except Exception:  # not created yet
        return 0


def wait_for(predicate: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate`` until true, or raise ``TimeoutError`` after ``timeout`` s."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


@contextlib.contextmanager
def dask_processes(
    tmp: Path,
    names: Sequence[str] = ("w1", "w2"),
    worker_args: Sequence[str] = (),
    scheduler_args: Sequence[str] = (),
    security=None,
    env: dict[str, str] | None = None,
    wrap: Sequence[str] = (),
) -> Iterator[tuple[str, dict[str, subprocess.Popen]]]:
    """A `dask scheduler` (with the metrics preload) and one `dask worker` per
    name, all on 127.0.0.1; yields the scheduler address and the processes by
    name (the workers', and the scheduler's as ``"scheduler"``).

    Each worker runs in its own folder ``tmp/<name>`` (its working directory
    and local directory); ``env`` is added to every process's environment;
    ``wrap`` is put before each worker's command (e.g. ``unshare -m ...``)."""
    sched_file = tmp / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False", **(env or {})}
    logs = contextlib.ExitStack()
    procs = [
        subprocess.Popen(
            [BIN / "dask", "scheduler", "--preload", "dfractal_dask.metrics", "--host", "127.0.0.1", "--port", "0",
             "--dashboard-address", "127.0.0.1:0", "--scheduler-file", sched_file, *scheduler_args],
            stdout=subprocess.DEVNULL, stderr=logs.enter_context((tmp / "scheduler.log").open("w")), env=env,
        )
    ]  # fmt: skip
    try:
        wait_for(sched_file.exists, "the scheduler file")
        address = json.loads(sched_file.read_text())["address"]
        workers = {"scheduler": procs[0]}
        for name in names:
            folder = tmp / name
            folder.mkdir(exist_ok=True)
            workers[name] = subprocess.Popen(
                [*wrap, BIN / "dask", "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--nworkers", "1",
                 "--name", name, "--dashboard-address", "127.0.0.1:0", "--local-directory", folder, *worker_args],
                stdout=subprocess.DEVNULL, stderr=logs.enter_context((tmp / f"{name}.log").open("w")), env=env,
                cwd=folder,
            )  # fmt: skip
            procs.append(workers[name])
        from distributed import Client

        with Client(address, timeout="30s", security=security) as c:
            c.wait_for_workers(len(names), timeout=60)
            # --preload loaded the metrics plugin before any render asked for it
            assert c.run_on_scheduler(lambda dask_scheduler: "dfractal-metrics" in dask_scheduler.plugins)
        yield address, workers
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds: a test's server process, stopped."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
