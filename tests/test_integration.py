"""A real cluster: `dask scheduler` and two `dask worker` processes on
127.0.0.1, rendered to through `dfractal render --scheduler`."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfractal_dask import View, colorize, fractal_dataset, open_render

BIN = Path(sys.executable).parent


def _wait_for(predicate, what, timeout=60.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if predicate():
            return
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cluster")
    sched_file = tmp / "scheduler.json"
    env = {**os.environ, "DASK_DISTRIBUTED__WORKER__DAEMON": "False"}
    logs = contextlib.ExitStack()
    procs = [
        subprocess.Popen(
            [
                BIN / "dask",
                "scheduler",
                "--preload",
                "dfractal_dask.metrics",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                sched_file,
            ],
            stdout=subprocess.DEVNULL,
            stderr=logs.enter_context((tmp / "scheduler.log").open("w")),
            env=env,
        )
    ]
    try:
        _wait_for(sched_file.exists, "the scheduler file")
        address = json.loads(sched_file.read_text())["address"]
        for name in ("w1", "w2"):
            procs.append(
                subprocess.Popen(
                    [
                        BIN / "dask",
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--name",
                        name,
                        "--dashboard-address",
                        "127.0.0.1:0",
                        "--local-directory",
                        tmp / name,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=logs.enter_context((tmp / f"{name}.log").open("w")),
                    env=env,
                )
            )
        from distributed import Client

        with Client(address, timeout="30s") as c:
            c.wait_for_workers(2, timeout=60)
            # --preload loaded the metrics plugin before any render asked for it
            assert c.run_on_scheduler(lambda dask_scheduler: "dfractal-metrics" in dask_scheduler.plugins)
        yield address
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        logs.close()


def test_dfractal_render_on_a_real_scheduler_and_two_workers(real_cluster, tmp_path):
    out = tmp_path / "img" / "real.png"
    cmd = [
        BIN / "dfractal",
        "render",
        "--scheduler",
        real_cluster,
        "--width",
        "80",
        "--height",
        "60",
        "--smoothness",
        "2",
        "--iters",
        "300",
        "--palette",
        "Plan9",
        "--step",
        "600",
        "--outfile",
        out,
        "--chunk-rows",
        "8",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "on 2 workers" in done.stderr and "100.0%" in done.stderr

    ds = open_render(tmp_path / "img" / "real.zarr")
    assert int(ds.block_done.sum()) == ds.attrs["n_blocks"] == 15
    view = View.from_attrs(ds.attrs)
    assert view == View(-0.00275, 0.78912, 0.125689, 80, 60, 2)
    # the workers' counts equal a local computation of the same view
    local = fractal_dataset(view, 300).compute(scheduler="sync")
    assert np.array_equal(ds.iterations.values, local.iterations.values)
    assert np.array_equal(ds.norm.values, local.norm.values)
    # and the PNG is the store coloured by the seed's rule
    with Image.open(out) as im:
        assert im.size == (80, 60)
        png = np.asarray(im)
    assert np.array_equal(png, colorize(local, "Plan9", 600))
    assert len(np.unique(png.reshape(-1, 4), axis=0)) > 20


def test_unreachable_scheduler_exits_2(tmp_path):
    done = subprocess.run(
        [BIN / "dfractal", "render", "--scheduler", "tcp://127.0.0.1:9", "--outfile", tmp_path / "x.png"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "cannot reach dask scheduler" in done.stderr
    assert not (tmp_path / "x.zarr").exists()


def test_recolor_on_the_real_cluster(real_cluster, tmp_path):
    render_cmd = [BIN / "dfractal", "render", "--scheduler", real_cluster, "--width", "40", "--height", "30",
                  "--smoothness", "2", "--iters", "200", "--outfile", tmp_path / "r.png", "--quiet"]  # fmt: skip
    assert subprocess.run(render_cmd, capture_output=True, timeout=300).returncode == 0
    out = tmp_path / "smooth.png"
    cmd = [BIN / "dfractal", "recolor", tmp_path / "r.zarr", "--scheduler", real_cluster, "--palette", "Magma256",
           "--mode", "smooth", "--outfile", out]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with Image.open(out) as im:
        assert np.array_equal(np.asarray(im), colorize(open_render(tmp_path / "r.zarr"), "Magma256", mode="smooth"))


def test_preloaded_plugin_reports_both_named_workers(real_cluster, tmp_path):
    import urllib.request

    from distributed import Client

    cmd = [BIN / "dfractal", "render", "--scheduler", real_cluster, "--width", "64", "--height", "64",
           "--smoothness", "2", "--iters", "300", "--chunk-rows", "4", "--outfile", tmp_path / "m.png",
           "--metrics", "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    named = {line.split()[3] for line in lines if line.startswith("METRICS WORKER ")}
    assert named == {"w1", "w2"}  # every worker reports, by its --name
    assert lines[-1].startswith("METRICS TOTAL tasks=64 rows=128 samples=16384 ")
    with Client(real_cluster, timeout="30s") as c:
        base = c.dashboard_link.rsplit("/status", 1)[0]
    with urllib.request.urlopen(base + "/fractal/data.json", timeout=10) as r:
        data = json.loads(r.read())
    assert data["blocks_done"] == 32 and {w["name"] for w in data["workers"].values()} == {"w1", "w2"}
