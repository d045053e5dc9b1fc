"""Stores on object storage: a real S3-compatible server (moto's, with
authentication on) on 127.0.0.1, and a real `dask scheduler` with two
`dask worker` processes in folders of their own that know the server only
from the standard environment credentials."""

import io
import os
import subprocess

import numpy as np
import pytest
import zarr
from PIL import Image

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from daskprocs import BIN, dask_processes, wait_for
from s3server import s3_server

from dfractal_dask import View, colorize, fractal_dataset, open_render, open_zoom
from dfractal_dask.location import as_location

pytestmark = [pytest.mark.slow]

SMALL = ["--width", "48", "--height", "36", "--smoothness", "2", "--iters", "300", "--chunk-rows", "12"]
SMALL_VIEW = View(-0.00275, 0.78912, 0.125689, 48, 36, 2)
# long enough to be cut in the middle: half inside the set, a high iteration limit
SLOW = ["--xpos", "-0.5", "--ypos", "0", "--escape-radius", "3", "--width", "160", "--height", "120",
        "--smoothness", "2", "--iters", "40000", "--chunk-rows", "4"]  # fmt: skip
SLOW_VIEW, SLOW_ITERS, SLOW_BLOCKS = View(-0.5, 0.0, 3.0, 160, 120, 2), 40000, 60


@pytest.fixture(scope="module")
def s3():
    with s3_server() as server:
        server.make_bucket("renders")
        yield server


@pytest.fixture(scope="module")
def cluster(s3, tmp_path_factory):
    """Workers that reach S3 through the environment only (no storage options in the graph)."""
    with dask_processes(tmp_path_factory.mktemp("s3cluster"), env=s3.env) as (address, _):
        yield address


def _env(s3) -> dict:
    return {**os.environ, **s3.env}


def _dfractal(s3, *argv, cwd, timeout=300, env=None):
    return subprocess.run([BIN / "dfractal", *map(str, argv)], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=env or _env(s3))  # fmt: skip


def _done(s3, url: str, name: str = "block_done") -> int:
    try:
        store = as_location(url, s3.storage_options).zarr_store(read_only=True)
        return int(np.asarray(zarr.open_array(store, path=name, mode="r")[:]).sum())
    except Exception:  # not created yet
        return 0


def test_render_into_s3_equals_the_same_render_on_local_disk(s3, cluster, tmp_path):
    url = "s3://renders/small.zarr"
    done = _dfractal(s3, "render", "--scheduler", cluster, *SMALL, "--store", url, "--outfile", "s3.png",
                     cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "s3:").exists()  # no local folder named after the URL
    local = _dfractal(s3, "render", "--scheduler", cluster, *SMALL, "--outfile", "local.png", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    remote = open_render(url, storage_options=s3.storage_options)
    ondisk = open_render(tmp_path / "local.zarr")
    for name in ("iterations", "norm"):
        np.testing.assert_array_equal(remote[name].values, ondisk[name].values)
    want = fractal_dataset(SMALL_VIEW, 300, 12).compute(scheduler="sync")
    np.testing.assert_array_equal(remote.iterations.values, want.iterations.values)
    with Image.open(tmp_path / "s3.png") as a, Image.open(tmp_path / "local.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the chunks are zarr's, checksummed, in the bucket; no lease is left behind
    keys = s3.client().list_objects_v2(Bucket="renders", Prefix="small.zarr/")["Contents"]
    names = {k["Key"] for k in keys}
    assert "small.zarr/iterations/c/0/0" in names and "small.zarr/zarr.json" in names
    assert not any("lease" in n for n in names)

    # recolor and info read it from S3 (credentials from the environment)
    rec = _dfractal(s3, "recolor", url, "--palette", "Magma256", "--mode", "smooth", cwd=tmp_path)
    assert rec.returncode == 0, rec.stderr
    with Image.open(tmp_path / "small.png") as im:  # a URL's picture goes into this folder
        np.testing.assert_array_equal(np.asarray(im), colorize(ondisk, "Magma256", mode="smooth"))
    info = _dfractal(s3, "info", url, cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    assert f"store: {url}" in info.stdout and "blocks: 6 of 6 written" in info.stdout
    assert "verified: 6 blocks, 2 coordinates" in info.stdout and "every one matches its record" in info.stdout


def test_a_zoom_into_s3_equals_the_same_zoom_on_local_disk(s3, cluster, tmp_path):
    flags = ["zoom", "--scheduler", cluster, "--xpos", "-0.745", "--ypos", "0.1", "--span", "2", "--to-span", "0.01",
             "--frames", "4", "--width", "32", "--height", "24", "--iters", "300", "--chunk-rows", "16"]  # fmt: skip
    url = "s3://renders/zoom.zarr"
    done = _dfractal(s3, *flags, "--store", url, "--outfile", "s3.png", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    local = _dfractal(s3, *flags, "--outfile", "local.png", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    remote, ondisk = open_zoom(url, storage_options=s3.storage_options), open_zoom(tmp_path / "local.zarr")
    assert remote.iterations.shape == (4, 48, 64)
    for name in ("iterations", "norm"):
        np.testing.assert_array_equal(remote[name].values, ondisk[name].values)
    assert (tmp_path / "s3.png").read_bytes() == (tmp_path / "local.png").read_bytes()
    info = _dfractal(s3, "info", url, cwd=tmp_path)
    assert info.returncode == 0 and "4 of 4 frames written" in info.stdout, info.stdout + info.stderr


@pytest.fixture(scope="module")
def slow_reference():
    return fractal_dataset(SLOW_VIEW, SLOW_ITERS, 4).compute()


def test_a_killed_client_then_resume_on_s3(s3, cluster, tmp_path, slow_reference):
    url = "s3://renders/killed.zarr"
    argv = [BIN / "dfractal", "render", "--scheduler", cluster, *SLOW, "--store", url, "--outfile", "k.png", "-q"]
    client = subprocess.Popen(argv, cwd=tmp_path, env=_env(s3))
    wait_for(lambda: _done(s3, url) >= 4, "the render to be under way", timeout=120)
    client.kill()  # SIGKILL: its lease stays in the store, naming a process that is gone
    client.wait(timeout=10)
    from distributed import Client

    with Client(cluster, timeout="30s") as c:  # wait until the blocks in flight have landed
        wait_for(lambda: not c.run_on_scheduler(lambda dask_scheduler: len(dask_scheduler.tasks)), "an idle cluster")
    before = _done(s3, url)
    assert 4 <= before < SLOW_BLOCKS
    done = _dfractal(s3, *map(str, argv[1:]), "--resume", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    ds = open_render(url, storage_options=s3.storage_options)
    np.testing.assert_array_equal(ds.iterations.values, slow_reference.iterations.values)
    np.testing.assert_array_equal(ds.norm.values, slow_reference.norm.values)


@pytest.mark.cluster
def test_a_worker_killed_mid_render_into_s3_loses_nothing(s3, tmp_path, slow_reference):
    url = "s3://renders/workerkill.zarr"
    with dask_processes(tmp_path, worker_args=("--no-nanny",), env=s3.env) as (address, workers):
        argv = [BIN / "dfractal", "render", "--scheduler", address, *SLOW, "--store", url, "--outfile", "w.png", "-q"]
        client = subprocess.Popen(argv, cwd=tmp_path, env=_env(s3), stderr=subprocess.PIPE, text=True)
        wait_for(lambda: _done(s3, url) >= 4, "the render to be under way", timeout=120)
        workers["w2"].kill()
        assert workers["w2"].wait(timeout=10) == -9
        _, err = client.communicate(timeout=300)
    assert client.returncode == 0, err
    ds = open_render(url, storage_options=s3.storage_options)
    np.testing.assert_array_equal(ds.iterations.values, slow_reference.iterations.values)
    with Image.open(tmp_path / "w.png") as im:
        np.testing.assert_array_equal(np.asarray(im), colorize(slow_reference, "Hippi", 6000))


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("missing bucket", "there is no bucket 'no-such-bucket'"),
        ("wrong secret", "access denied to the store"),
        ("unreachable endpoint", "cannot reach the storage"),
        ("no credentials", "no credentials found"),
    ],
)
def test_bad_object_storage_is_one_line_and_exit_2_before_any_work(s3, cluster, tmp_path, case, words):
    from distributed import Client, get_task_stream

    env, url = _env(s3), "s3://renders/bad.zarr"
    if case == "missing bucket":
        url = "s3://no-such-bucket/m.zarr"
    elif case == "wrong secret":
        env["AWS_SECRET_ACCESS_KEY"] = "not-the-secret"
    elif case == "no credentials":
        del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    else:
        env["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL_S3"] = "http://127.0.0.1:9"
    with Client(cluster, timeout="30s") as c, get_task_stream(c) as ts:  # records every client's tasks
        for command in (["render", "--scheduler", cluster, *SMALL, "--store", url], ["recolor", url], ["info", url]):
            done = _dfractal(s3, *command, cwd=tmp_path, env=env, timeout=120)
            assert done.returncode == 2, (command, done.stderr)
            assert done.stderr.count("\n") == 1 and words in done.stderr and "Traceback" not in done.stderr
            assert "rendering" not in done.stderr  # refused before the cluster was used
    assert not [t for t in ts.data if str(t["key"]).startswith("dfractal-")]  # no block computed
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.cluster
def test_storage_options_reach_the_workers_from_the_api(s3, tmp_path):
    """render(..., storage_options=) on workers that have no credentials of their own."""
    from distributed import Client

    with dask_processes(tmp_path, names=("bare",)) as (address, _), Client(address, timeout="30s") as c:
        url = "s3://renders/api.zarr"
        view = View(-0.5, 0.0, 3.0, 24, 18, 1)
        from dfractal_dask import render

        ds = render(view, 100, store_path=url, client=c, storage_options=s3.storage_options, chunk_rows=6)
        np.testing.assert_array_equal(
            ds.iterations.values, fractal_dataset(view, 100, 6).iterations.compute(scheduler="sync").values
        )


def test_two_renders_at_once_into_one_new_s3_store_exactly_one_proceeds(s3, cluster, tmp_path):
    url = "s3://renders/race.zarr"
    argv = [BIN / "dfractal", "render", "--scheduler", cluster, *SLOW[:-2], "--iters", "3000", "--chunk-rows", "8",
            "--store", url, "-q"]  # fmt: skip
    procs = [
        subprocess.Popen(
            [*argv, "--outfile", f"r{k}.png"], cwd=tmp_path, env=_env(s3), stderr=subprocess.PIPE, text=True
        )
        for k in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert err.count("\n") == 1 and ("is being written by dfractal render" in err or "already exists" in err), err
    assert _done(s3, url) == 30


def test_the_explorer_saves_into_s3(s3, client):
    """explore --save-dir s3://...: the store and the PNG land in the bucket (the
    workers know the server only from the storage options in the graph)."""
    from dfractal_dask.widget import Explorer

    view = View(-0.5, 0.0, 3.0, 64, 48, 1)
    ex = Explorer(client, view, iters=100, save_dir=as_location("s3://renders/saves", s3.storage_options))
    try:
        ex.wait(1)
        png = ex.save("shot", supersample=2).result(timeout=120)
        assert png.url == "s3://renders/saves/shot.png"
        ds = open_render("s3://renders/saves/shot.zarr", storage_options=s3.storage_options)
        assert ds.iterations.shape == (96, 128)
        data = png.fs.cat_file(png.fs_path)
        with Image.open(io.BytesIO(data)) as im:
            np.testing.assert_array_equal(np.asarray(im), colorize(ds, "Hippi", mode="smooth"))
        with pytest.raises(ValueError, match="exists"):
            ex.save("shot")  # never replaced without overwrite
    finally:
        ex.close()
