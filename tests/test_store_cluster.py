"""Stores on a real cluster: `dask scheduler` and `dask worker` processes,
each worker in a folder of its own, as on machines that share a filesystem
but not a working folder."""

import os
import shutil
import subprocess

import numpy as np
import pytest
from daskprocs import BIN, SLOW, dask_processes, done_blocks, wait_for

from dfractal_dask import View, fractal_dataset, open_render
from dfractal_dask import store as st

pytestmark = [pytest.mark.slow]

SMALL = ["--width", "40", "--height", "30", "--smoothness", "2", "--iters", "200", "--chunk-rows", "10", "-q"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("storecluster")
    with dask_processes(tmp) as (address, _):
        yield address, tmp


def test_a_relative_store_is_the_clients_not_a_workers(cluster, tmp_path):
    """The seed default `mandelbrot.zarr` is relative: each worker runs in a
    folder holding an unrelated store of that name, which must stay untouched."""
    address, workers_tmp = cluster
    decoys = []
    for name in ("w1", "w2"):
        decoy = workers_tmp / name / "mandelbrot.zarr"
        st.create_store(decoy, fractal_dataset(View(0.0, 0.0, 1.0, 8, 8, 1), 20, 8), 1)
        decoys.append((decoy, {p: p.read_bytes() for p in decoy.rglob("*") if p.is_file()}))
    here = tmp_path / "client"
    here.mkdir()
    done = subprocess.run([BIN / "dfractal", "render", "--scheduler", address, *SMALL], cwd=here,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    ds = open_render(here / "mandelbrot.zarr")
    want = fractal_dataset(View(-0.00275, 0.78912, 0.125689, 40, 30, 2), 200, 10).compute(scheduler="sync")
    np.testing.assert_array_equal(ds.iterations.values, want.iterations.values)
    for decoy, before in decoys:
        assert {p: p.read_bytes() for p in decoy.rglob("*") if p.is_file()} == before
    # and recolor of a relative STORE on the cluster reads the client's store too
    argv = [BIN / "dfractal", "recolor", "mandelbrot.zarr", "--scheduler", address, "--mode", "smooth",
            "--outfile", "smooth.png"]  # fmt: skip
    rec = subprocess.run(argv, cwd=here, capture_output=True, text=True, timeout=300)
    assert rec.returncode == 0, rec.stderr
    from PIL import Image

    from dfractal_dask import colorize

    with Image.open(here / "smooth.png") as im:
        np.testing.assert_array_equal(np.asarray(im), colorize(want, "Hippi", mode="smooth"))


def test_a_store_replaced_under_a_running_render_stops_it(cluster, tmp_path):
    """Someone moves the store away (ignoring its lease) and puts another in
    its place: the running render's next block write sees another identity
    and writes nothing; the client says so in one line."""
    address, _ = cluster
    store = tmp_path / "swap.zarr"
    other = tmp_path / "other.zarr"
    st.create_store(other, fractal_dataset(View(-0.5, 0.0, 3.0, 16, 12, 1), 50, 4), 3, store_id="someone-else")
    first = subprocess.Popen([BIN / "dfractal", "render", "--scheduler", address, *SLOW, "--store", store,
                              "--outfile", tmp_path / "a.png"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: done_blocks(store) >= 2, "the render to be under way", timeout=120)
        os.rename(store, tmp_path / "moved.zarr")
        os.rename(other, store)
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 2, err
    assert err.count("\n") == 1 and "was replaced while this render ran" in err and "someone-else" in err
    assert done_blocks(store) == 0 and not (store / "iterations" / "c").exists()  # nothing written into the new one
    assert not (tmp_path / "a.png").exists()


def _can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.cluster
@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -m (mount namespaces)")
def test_a_worker_that_cannot_see_the_store_is_named(tmp_path):
    """A worker whose filesystem is not the client's (here: an empty tmpfs
    mounted over the store's folder in its own mount namespace)."""
    folder = tmp_path / "shared"
    folder.mkdir()
    wrap = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs tmpfs "{folder}" && exec "$@"', "sh"]
    with dask_processes(tmp_path, names=("blind",), wrap=wrap) as (address, _):
        done = subprocess.run([BIN / "dfractal", "render", "--scheduler", address, *SMALL, "--store",
                               folder / "m.zarr", "--outfile", tmp_path / "m.png"],
                              capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "cannot see the store" in done.stderr and "worker tcp://" in done.stderr
    assert done_blocks(folder / "m.zarr") == 0 and not (tmp_path / "m.png").exists()
    shutil.rmtree(folder)
