"""The multiscale pyramid (issue 20): real stores rendered on a cluster of worker
processes, every level checked against an independent numpy reduction of level 0."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import dask
import numpy as np
import pytest
import zarr
from shards import drop_tile, garble_tile

from dfractal_dask import RenderStats, View, color_picture, open_render, render
from dfractal_dask import pyramid as pyr
from dfractal_dask.cli import main
from dfractal_dask.deepzoom import write_deep_zoom
from dfractal_dask.explorer.stored import StoredPicture
from dfractal_dask.store import StoreError
from dfractal_dask.store.integrity import verify_store

# odd sizes on purpose: every level has an edge row and column of half squares
VIEW = View(-0.5, 0.0, 3.0, 601, 299, 1)
ITERS = 200


def _numpy_reduce(it: np.ndarray, norm: np.ndarray, iters: int, de: np.ndarray | None = None) -> tuple:
    """The contract's reduction, written again in plain numpy (float64 throughout)."""
    h, w = it.shape
    ph, pw = -h % 2, -w % 2
    interior = np.pad(it >= iters, ((0, ph), (0, pw)))
    present = np.pad(np.ones_like(it, bool), ((0, ph), (0, pw)))
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = it + 1.0 - np.log2(0.5 * np.log2(norm.astype(np.float64)))
    mu = np.pad(np.where(it >= iters, 0.0, mu), ((0, ph), (0, pw)))
    nrm = np.pad(np.where(it >= iters, norm.astype(np.float64), 0.0), ((0, ph), (0, pw)))

    def sq(a):  # the sum over each 2x2 square
        return a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]

    n, n_in = sq(present.astype(int)), sq(interior.astype(int))
    out_interior = 2 * n_in >= n
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_mu = sq(mu) / (n - n_in)
        mean_norm = sq(nrm) / n_in
    out = {"interior": out_interior, "mu": np.where(out_interior, np.nan, mean_mu), "norm_in": mean_norm}
    if de is not None:
        esc = np.pad(~(it >= iters) & np.isfinite(de), ((0, ph), (0, pw)))
        d = np.pad(np.where(np.isfinite(de) & (it < iters), de, 0.0), ((0, ph), (0, pw)))
        with np.errstate(divide="ignore", invalid="ignore"):
            out["distance"] = np.where(out_interior, np.nan, sq(d) / sq(esc.astype(int)))
    return out


def _encode(red: dict, iters: int) -> tuple[np.ndarray, np.ndarray]:
    # a reduced level back as counts and norms (what the next step of the test starts from)
    it = np.where(red["interior"], iters, np.clip(np.floor(np.nan_to_num(red["mu"])), 0, iters - 1))
    e = np.where(red["interior"], 0.0, 2.0 * 2.0 ** (it + 1.0 - np.nan_to_num(red["mu"])))
    norm = np.where(red["interior"], red["norm_in"], 2.0**e)
    return it.astype(np.uint16), norm.astype(np.float32)


def _mu(it: np.ndarray, norm: np.ndarray, iters: int) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(it >= iters, np.nan, it + 1.0 - np.log2(0.5 * np.log2(norm.astype(np.float64))))


@pytest.fixture(scope="module")
def rendered(client, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pyr") / "m.zarr"
    render(VIEW, ITERS, store_path=path, client=client, chunk_rows=37, distance=True)
    pyr.build_pyramid(path, client=client)
    return path


def test_levels_halve_down_to_one_tile(rendered):
    levels = pyr.pyramid_levels(rendered)
    assert [(lv.index, lv.height, lv.width, lv.scale, lv.path) for lv in levels] == [
        (0, 299, 601, 1, ""),
        (1, 150, 301, 2, "pyramid/1"),
        (2, 75, 151, 4, "pyramid/2"),
    ]
    assert levels[0].chunks == (37, 601) and levels[1].chunks == (256, 256)
    assert pyr.level_shapes(1000, 3000) == [(1000, 3000), (500, 1500), (250, 750), (125, 375), (63, 188)]
    assert pyr.level_shapes(256, 10) == [(256, 10)]
    meta = zarr.open_group(str(rendered / "pyramid"), mode="r").attrs[pyr.PYRAMID_ATTR]
    assert meta == {"tile": 256, "levels": 2, "store_id": open_render(rendered).attrs["store_id"], "done": [1, 2]}
    for k in (1, 2):
        arr = zarr.open_array(str(rendered), path=f"pyramid/{k}/norm", mode="r")
        base = zarr.open_array(str(rendered), path="norm", mode="r")
        assert arr.metadata.dimension_names == ("im", "re") and arr.dtype == base.dtype
        assert [type(c).__name__ for c in arr.compressors] == [type(c).__name__ for c in base.compressors]


def test_each_level_is_the_numpy_reduction_of_the_one_below(rendered):
    ds = open_render(rendered)
    it, norm, de = (ds[v].values for v in ("iterations", "norm", "distance"))
    assert (it >= ITERS).any() and (it < ITERS).any()
    for k in (1, 2):
        red = _numpy_reduce(it, norm, ITERS, de)
        lv = pyr.open_level(rendered, k)
        got_it, got_norm, got_de = (lv[v].values for v in ("iterations", "norm", "distance"))
        np.testing.assert_array_equal(got_it >= ITERS, red["interior"])
        np.testing.assert_allclose(_mu(got_it, got_norm, ITERS), red["mu"], rtol=0, atol=2e-5, equal_nan=True)
        np.testing.assert_allclose(got_norm[red["interior"]], red["norm_in"][red["interior"]], rtol=1e-6)
        np.testing.assert_allclose(got_de, red["distance"], rtol=1e-5, equal_nan=True)
        it, norm = _encode(red, ITERS)
        de = got_de


def test_interior_majority_and_half():
    it = np.array([[9, 9, 9, 1], [9, 2, 3, 1]], np.uint16)
    norm = np.array([[0.5, 0.25, 0.5, 8.0], [1.0, 10.0, 20.0, 30.0]], np.float32)
    out = pyr.reduce_level(it, norm, 9)
    # 3 of 4 interior; 1 of 4 (an escaped majority): the mean smooth value of the three escaped
    assert out["iterations"][0, 0] == 9 and out["norm"][0, 0] == pytest.approx((0.5 + 0.25 + 1.0) / 3)
    assert out["iterations"][0, 1] < 9
    mu = _mu(it, norm, 9)
    assert _mu(out["iterations"], out["norm"], 9)[0, 1] == pytest.approx(np.nanmean(mu[:, 2:]), abs=1e-5)
    # exactly half interior: interior; a lone edge sample keeps its kind
    half = pyr.reduce_level(np.array([[9, 1, 9]], np.uint16), np.array([[1.0, 5.0, 0.5]], np.float32), 9)
    assert half["iterations"].tolist() == [[9, 9]] and half["norm"].tolist() == [[1.0, 0.5]]
    alone = pyr.reduce_level(np.array([[3]], np.uint16), np.array([[7.0]], np.float32), 9)
    assert _mu(alone["iterations"], alone["norm"], 9)[0, 0] == pytest.approx(_mu(np.array([3]), np.array([7.0]), 9)[0])


def test_a_level_is_a_store_to_the_colouring(rendered):
    """Level 1 coloured smoothly is close to the 2x2 mean of level 0's colours where those are smooth."""
    lv = pyr.open_level(rendered, 1)
    assert (lv.attrs["pyramid_level"], lv.attrs["pyramid_scale"]) == (1, 2)
    view = View.from_attrs(lv.attrs)
    assert (view.sample_width, view.sample_height, view.supersample) == (301, 150, 1)
    assert view.step == pytest.approx(2 * VIEW.step, rel=1e-12)
    # coordinates: the centre of each square of level-0 samples
    re0 = VIEW.re()
    np.testing.assert_allclose(lv["re"].values[:300], (re0[0:600:2] + re0[1:600:2]) / 2, rtol=0, atol=1e-12)
    im0 = VIEW.im()
    np.testing.assert_allclose(lv["im"].values[:149], (im0[0:298:2] + im0[1:298:2]) / 2, rtol=0, atol=1e-12)
    pic1 = color_picture(lv, "Hippi", mode="smooth").values.astype(float)
    pic0 = color_picture(open_render(rendered), "Hippi", mode="smooth").values.astype(float)
    mean0 = (pic0[0:298:2, 0:600:2] + pic0[1:298:2, 0:600:2] + pic0[0:298:2, 1:600:2] + pic0[1:298:2, 1:600:2]) / 4
    spread = np.max([np.abs(pic0[a:298:2, b:600:2] - mean0) for a in (0, 1) for b in (0, 1)], axis=0).max(axis=-1)
    smooth = spread < 4  # squares whose four colours nearly agree
    assert smooth.mean() > 0.5
    diff = np.abs(pic1[:149, :300] - mean0)[smooth]
    assert diff.max() <= 6 and diff.mean() < 1, (diff.max(), diff.mean())
    assert np.abs(pic1[:149, :300] - mean0)[~smooth].mean() > diff.mean()  # (the test can tell)
    color_picture(lv, "Hippi", mode="distance").values  # the level's step shades it  # noqa: B018


def test_levels_do_not_depend_on_blocks_or_workers(rendered, client1, tmp_path):
    other = tmp_path / "o.zarr"
    render(VIEW, ITERS, store_path=other, client=client1, chunk_rows=64, distance=True)
    pyr.build_pyramid(other, client=client1)
    for k in (1, 2):
        a, b = pyr.open_level(rendered, k), pyr.open_level(other, k)
        for v in ("iterations", "norm", "distance"):
            np.testing.assert_array_equal(a[v].values, b[v].values)


def test_ome_metadata(rendered):
    ome = zarr.open_group(str(rendered), mode="r").attrs["ome"]
    assert ome["version"] == "0.5"
    assert [m["name"] for m in ome["multiscales"]] == ["iterations", "norm"]
    for m in ome["multiscales"]:
        assert [a["type"] for a in m["axes"]] == ["space", "space"]
        shapes = []
        for k, dataset in enumerate(m["datasets"]):
            shapes.append(zarr.open_array(str(rendered), path=dataset["path"], mode="r").shape)
            transforms = {t["type"]: t for t in dataset["coordinateTransformations"]}
            assert transforms["scale"]["scale"] == [2.0**k] * 2
            assert transforms.get("translation", {"translation": [0.0, 0.0]})["translation"] == [(2**k - 1) / 2] * 2
        assert shapes == [(299, 601), (150, 301), (75, 151)]


def test_read_window_reads_only_its_chunks(rendered, tmp_path):
    copy = tmp_path / "w.zarr"
    shutil.copytree(rendered, copy)
    whole = pyr.open_level(copy, 1).compute()  # (read before the garbling)
    # level 1 is 150x301 in tiles of 256 (one shard, a row of tiles): garble the second tile's bytes
    for v in ("iterations", "norm", "distance"):
        garble_tile(copy / "pyramid" / "1" / v, 0, 1)
    got = pyr.read_window(copy, 1, 10, 40, 20, 250)  # reads the first tile only: its checksum holds
    for v in ("iterations", "norm", "distance"):
        np.testing.assert_array_equal(got[v], whole[v].values[10:40, 20:250])
    with pytest.raises(StoreError):  # the second one's does not
        pyr.read_window(copy, 1, 10, 40, 200, 260)
    # a tile never written (dropped from its shard's index): one line naming it, never fill values as samples
    for v in ("iterations", "norm", "distance"):
        drop_tile(copy / "pyramid" / "1" / v, 0, 1)
    with pytest.raises(StoreError, match=r"damaged pyramid: pyramid/1/iterations tile \(row 0, column 1\) is missing"):
        pyr.read_window(copy, 1, 10, 40, 200, 260)
    with pytest.raises(StoreError, match="is missing"):
        pyr.open_level(copy, 1)["norm"].compute()
    w0 = pyr.read_window(copy, 0, 5, 8, 0, 601)
    np.testing.assert_array_equal(w0["norm"], open_render(copy)["norm"].values[5:8])


def test_bad_input(rendered, tmp_path):
    with pytest.raises(TypeError, match="k must be an integer"):
        pyr.open_level(rendered, 1.0)
    with pytest.raises(TypeError, match="k must be an integer"):
        pyr.open_level(rendered, True)
    with pytest.raises(ValueError, match=r"k must be a level of 0\.\.2, got 3"):
        pyr.open_level(rendered, 3)
    with pytest.raises(ValueError, match="k must be a level"):
        pyr.read_window(rendered, -1, 0, 1, 0, 1)
    with pytest.raises(ValueError, match=r"y1 must be in 0\.\.150"):
        pyr.read_window(rendered, 1, 0, 151, 0, 1)
    with pytest.raises(ValueError, match="empty"):
        pyr.read_window(rendered, 1, 5, 5, 0, 1)
    with pytest.raises(TypeError, match="x0 must be an integer"):
        pyr.read_window(rendered, 1, 0, 1, 0.5, 1)
    with pytest.raises(StoreError, match="no render store"):
        pyr.pyramid_levels(tmp_path / "none.zarr")
    bare = tmp_path / "bare.zarr"
    shutil.copytree(rendered, bare, ignore=shutil.ignore_patterns("pyramid"))
    assert pyr.pyramid_levels(bare) == []
    with pytest.raises(ValueError, match=r"path .* has no pyramid"):
        pyr.open_level(bare, 0)


def test_an_interrupted_build_resumes(rendered, client, tmp_path):
    copy = tmp_path / "r.zarr"
    shutil.copytree(rendered, copy)
    group = zarr.open_group(str(copy / "pyramid"), mode="r+")
    group.attrs[pyr.PYRAMID_ATTR] = {**group.attrs[pyr.PYRAMID_ATTR], "done": [1]}
    want = {v: pyr.open_level(rendered, 2)[v].values for v in ("iterations", "norm")}
    for v in ("iterations", "norm", "distance"):  # level 2 half-written: its tiles gone
        shutil.rmtree(copy / "pyramid" / "2" / v / "c")
    kept = (copy / "pyramid" / "1" / "norm" / "c" / "0" / "0").stat().st_mtime_ns
    assert pyr.pyramid_levels(copy) == []  # not finished
    calls = []
    levels = pyr.build_pyramid(copy, client=client, progress=lambda d, t: calls.append((d, t)))
    assert len(levels) == 3 and calls[-1] == (1, 1)  # one row of tiles of level 2 to do
    assert (copy / "pyramid" / "1" / "norm" / "c" / "0" / "0").stat().st_mtime_ns == kept  # level 1 kept
    for v, arr in want.items():
        np.testing.assert_array_equal(pyr.open_level(copy, 2)[v].values, arr)


def test_render_builds_the_pyramid_after_a_resume(rendered, client, tmp_path):
    path = tmp_path / "res.zarr"
    view, iters = VIEW, ITERS
    render(view, iters, store_path=path, client=client, chunk_rows=37, distance=True)
    # interrupted: two blocks never marked done (their chunks gone)
    flags = zarr.open_array(str(path), path="block_done", mode="r+")
    flags[2:4] = 0
    for v in ("iterations", "norm", "distance"):
        shutil.rmtree(path / v / "c" / "2")
        shutil.rmtree(path / v / "c" / "3")
    stats, calls = RenderStats(), []
    render(view, iters, store_path=path, client=client, chunk_rows=37, distance=True, resume=True, pyramid=True,
           stats=stats, pyramid_progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert stats.blocks == 2 and stats.pyramid_levels == 2 and stats.pyramid_seconds > 0
    assert calls[0] == (0, 2) and calls[-1] == (2, 2)  # a row of tiles for each of levels 1 and 2
    assert len(pyr.pyramid_levels(path)) == 3
    for k in (1, 2):
        for v in ("iterations", "norm", "distance"):
            np.testing.assert_array_equal(pyr.open_level(path, k)[v].values, pyr.open_level(rendered, k)[v].values)
    # an overwrite replaces a store with a pyramid (its files are the store's own) and the new one has none yet
    render(View(-0.5, 0.0, 3.0, 40, 30, 1), 50, store_path=path, client=client, overwrite=True)
    assert pyr.pyramid_levels(path) == [] and not (path / "pyramid").exists()


def test_render_pyramid_bad_input(tmp_path):
    with pytest.raises(TypeError, match="pyramid must be True or False"):
        render(View(0, 0, 1, 8, 8, 1), 10, store_path=tmp_path / "a.zarr", pyramid=1)
    with pytest.raises(ValueError, match="pyramid needs a store_path"):
        render(View(0, 0, 1, 8, 8, 1), 10, pyramid=True)
    with pytest.raises(TypeError, match="pyramid_progress must be callable"):
        render(View(0, 0, 1, 8, 8, 1), 10, store_path=tmp_path / "a.zarr", pyramid=True, pyramid_progress=3)
    assert not (tmp_path / "a.zarr").exists()


def test_build_pyramid_refuses_what_is_no_finished_render(tmp_path, client):
    with pytest.raises(StoreError, match="no render store"):
        pyr.build_pyramid(tmp_path / "none.zarr", client=client)
    with pytest.raises(TypeError, match="client must be"):
        pyr.build_pyramid(tmp_path / "none.zarr", client=3)
    half = tmp_path / "half.zarr"
    render(View(-0.5, 0.0, 3.0, 40, 30, 1), 50, store_path=half, client=client, chunk_rows=10)
    zarr.open_array(str(half), path="block_done", mode="r+")[1] = 0
    with pytest.raises(StoreError, match="incomplete"):
        pyr.build_pyramid(half, client=client)
    assert not (half / "pyramid").exists()


def test_a_replaced_store_refuses_the_tiles(rendered, tmp_path):
    copy = tmp_path / "id.zarr"
    shutil.copytree(rendered, copy)
    from dfractal_dask.location import as_location

    with pytest.raises(StoreError, match="was replaced"):
        pyr._build_band(as_location(copy), 1, 0, ["iterations", "norm"], ITERS, 2, "another-store", 299)


@pytest.mark.cluster
def test_cli_render_pyramid_and_info(tmp_path, capsys):
    out = tmp_path / "m.png"
    argv = ["render", "--xpos", "-0.5", "--ypos", "0", "--escape-radius", "3", "--width", "300", "--height", "200",
            "--smoothness", "1", "--iters", "100", "--outfile", str(out), "--workers", "2", "--pyramid"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "pyramid [" in err and "1/1 tile rows" in err and "built its pyramid (1 levels" in err
    store = tmp_path / "m.zarr"
    levels = pyr.pyramid_levels(store)
    assert [(lv.height, lv.width) for lv in levels] == [(200, 300), (100, 150)]
    red = _numpy_reduce(*(open_render(store)[v].values for v in ("iterations", "norm")), 100)
    lv = pyr.open_level(store, 1)
    np.testing.assert_allclose(_mu(lv.iterations.values, lv.norm.values, 100), red["mu"], atol=2e-5, equal_nan=True)
    assert main(["info", str(store)]) == 0
    assert "pyramid: 1 levels above the samples (1: 150x100; tiles of 256)" in capsys.readouterr().out
    # an unfinished one says so
    group = zarr.open_group(str(store / "pyramid"), mode="r+")
    group.attrs[pyr.PYRAMID_ATTR] = {**group.attrs[pyr.PYRAMID_ATTR], "done": []}
    assert main(["info", str(store)]) == 0
    assert "pyramid: unfinished, levels [] of 1..1 done" in capsys.readouterr().out
    # and its readers say so, and what finishes it (they said "has no pyramid")
    for read in (lambda: pyr.open_level(store, 1), lambda: write_deep_zoom(store, tmp_path / "p.dzi")):
        with pytest.raises(
            ValueError,
            match=r"has no finished pyramid: unfinished, levels \[\] of 1\.\.1 done "
            r"\(build_pyramid, or `dfractal render --resume --pyramid`, finishes it\)",
        ):
            read()
    assert main(["recolor", str(store), "--dzi", str(tmp_path / "p.dzi")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no finished pyramid: unfinished" in err, err
    assert not (tmp_path / "p.dzi").exists()


def test_cli_render_no_picture(tmp_path, capsys):
    # --no-picture: the store and its pyramid only; nothing is checked of the picture (an unwritable
    # format would be refused otherwise), and a later recolour makes the PNG from the store
    out = tmp_path / "big.bmp"
    argv = ["render", "--width", "300", "--height", "200", "--smoothness", "1", "--iters", "100", "--outfile",
            str(out), "--workers", "2", "--pyramid", "--no-picture"]  # fmt: skip
    assert main(argv) == 0
    err = capsys.readouterr().err
    store = tmp_path / "big.zarr"
    assert not out.exists() and f"wrote {store} (" in err and "big.bmp" not in err
    assert [lv.index for lv in pyr.pyramid_levels(store)] == [0, 1]
    assert main(["recolor", str(store), "--outfile", str(tmp_path / "r.png")]) == 0
    assert (tmp_path / "r.png").stat().st_size > 0
    capsys.readouterr()
    assert main(argv[:-1]) == 2  # without it, that format is refused in one line
    assert capsys.readouterr().err.count("\n") == 1


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    from s3server import s3_server

    with s3_server() as server:
        server.make_bucket("renders")
        yield server


@pytest.mark.slow
def test_an_s3_store_builds_and_reads_its_pyramid(s3, client, rendered):
    url = "s3://renders/pyr.zarr"
    render(VIEW, ITERS, store_path=url, client=client, chunk_rows=37, distance=True, storage_options=s3.storage_options,
           pyramid=True)  # fmt: skip
    levels = pyr.pyramid_levels(url, s3.storage_options)
    assert [(lv.height, lv.width) for lv in levels] == [(299, 601), (150, 301), (75, 151)]
    for k in (1, 2):
        remote = pyr.open_level(url, k, s3.storage_options)
        with dask.config.set(scheduler="sync"):
            for v in ("iterations", "norm", "distance"):
                np.testing.assert_array_equal(remote[v].values, pyr.open_level(rendered, k)[v].values)
    window = pyr.read_window(url, 1, 100, 150, 250, 301, s3.storage_options)
    np.testing.assert_array_equal(window["norm"], pyr.open_level(rendered, 1).norm.values[100:150, 250:301])


OMEZARR_PYTHON = os.environ.get("DFRACTAL_OMEZARR_PYTHON", "/work/venvs/omezarr/bin/python")

_READ_WITH_OME_ZARR = """
import sys, json
import numpy as np
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader, Multiscales

node = next(iter(Reader(parse_url(sys.argv[1]))()))
assert node.load(Multiscales) is not None, "not read as multiscales"
for k, level in enumerate(node.data):
    np.save(f"{sys.argv[2]}/{k}.npy", np.asarray(level))
print(json.dumps({"axes": node.metadata["axes"], "shapes": [list(d.shape) for d in node.data]}))
"""


def test_ome_zarr_py_reads_the_pyramid(rendered, tmp_path):
    if not os.path.exists(OMEZARR_PYTHON):
        pytest.skip(f"no ome-zarr-py virtualenv at {OMEZARR_PYTHON} (set DFRACTAL_OMEZARR_PYTHON)")
    done = subprocess.run([OMEZARR_PYTHON, "-c", _READ_WITH_OME_ZARR, str(rendered), str(tmp_path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["shapes"] == [[299, 601], [150, 301], [75, 151]]
    assert [a["name"] for a in got["axes"]] == ["im", "re"]
    for k in range(3):
        np.testing.assert_array_equal(np.load(tmp_path / f"{k}.npy"), pyr.open_level(rendered, k).iterations.values)


def test_level_view_of_a_deep_view_keeps_its_digits():
    deep = View("-1.749957683706093503602214506", "0.000000000000000000000000001", 1e-20, 301, 150, 1)
    assert deep.deep
    lv = pyr.level_view(deep, 1)
    assert (lv.sample_width, lv.sample_height) == (151, 75) and lv.deep
    assert lv.step == pytest.approx(2 * deep.step, rel=1e-12)
    # an odd width: the level's centre is half a level-0 step right of the view's; an even height: on it
    re, im = (a - b for a, b in zip(lv.centre, deep.centre, strict=True))
    assert float(re) == pytest.approx(deep.step / 2, rel=1e-9) and im == 0
    plain = pyr.level_view(VIEW, 2)
    level0 = VIEW.re()
    np.testing.assert_allclose(plain.re()[:150], level0[:600].reshape(150, 4).mean(axis=1), rtol=0, atol=1e-12)


# tall enough for 8 blocks of 2 * TILE rows: its blocks write level 1 themselves
TALL = View(-0.75, 0.1, 2.5, 40, 8 * 2 * pyr.TILE + 3, 1)
TALL_LEVELS = len(pyr.level_shapes(TALL.sample_height, TALL.sample_width)) - 1  # 5: 4099 rows down to 129


def test_blocks_write_level_one_as_the_separate_build_would(client, tmp_path):
    assert pyr.block_rows(TALL) == 2 * pyr.TILE and pyr.block_rows(VIEW) is None
    assert pyr.block_rows(View(-0.75, 0.1, 2.5, 40, 8 * 2 * pyr.TILE, 3)) is None  # 512 rows: no whole pixels of 3
    inblock, apart = tmp_path / "in.zarr", tmp_path / "apart.zarr"
    calls: list[tuple[int, int]] = []
    render(TALL, 120, store_path=inblock, client=client, pyramid=True, distance=True,
           pyramid_progress=lambda d, t: calls.append((d, t)))  # fmt: skip
    assert open_render(inblock).attrs["chunk_rows"] == 2 * pyr.TILE
    meta = zarr.open_group(str(inblock), path=pyr.GROUP, mode="r").attrs[pyr.PYRAMID_ATTR]
    assert meta["in_blocks"] is True and meta["done"] == list(range(1, TALL_LEVELS + 1))
    # the separate build made only levels 2-5: level 1's rows of tiles came from the blocks
    assert calls[-1] == (len(calls) - 1, len(calls) - 1) and calls[-1][1] == sum(
        -(-h // pyr.TILE) for h, _ in pyr.level_shapes(TALL.sample_height, TALL.sample_width)[2:]
    )
    render(TALL, 120, store_path=apart, client=client, chunk_rows=100, distance=True)
    pyr.build_pyramid(apart, client=client)
    assert zarr.open_group(str(apart), path=pyr.GROUP, mode="r").attrs[pyr.PYRAMID_ATTR].get("in_blocks") is None
    for k in range(1, TALL_LEVELS + 1):
        a, b = pyr.open_level(inblock, k), pyr.open_level(apart, k)
        for v in ("iterations", "norm", "distance"):
            np.testing.assert_array_equal(a[v].values, b[v].values)


def test_a_resume_of_blocks_that_write_level_one(client, tmp_path):
    path, whole = tmp_path / "r.zarr", tmp_path / "w.zarr"
    render(TALL, 120, store_path=whole, client=client, pyramid=True)
    render(TALL, 120, store_path=path, client=client, pyramid=True)
    # killed: two blocks never marked done, their level 1 rows garbled, the pyramid not finished
    flags = zarr.open_array(str(path), path="block_done", mode="r+")
    flags[3:5] = 0
    lvl = zarr.open_array(str(path), path=f"{pyr.GROUP}/1/iterations", mode="r+")
    lvl[3 * pyr.TILE : 5 * pyr.TILE] = 7
    g = zarr.open_group(str(path), path=pyr.GROUP, mode="r+")
    g.attrs[pyr.PYRAMID_ATTR] = {**dict(g.attrs[pyr.PYRAMID_ATTR]), "done": []}
    stats = RenderStats()
    render(TALL, 120, store_path=path, client=client, pyramid=True, resume=True, stats=stats)
    assert stats.blocks == 2
    for k in range(1, TALL_LEVELS + 1):
        for v in ("iterations", "norm"):
            np.testing.assert_array_equal(pyr.open_level(path, k)[v].values, pyr.open_level(whole, k)[v].values)
    # a plain render resumed with pyramid=True: its done blocks have no level 1, so the build makes it
    plain = tmp_path / "p.zarr"
    render(TALL, 120, store_path=plain, client=client, chunk_rows=2 * pyr.TILE)
    zarr.open_array(str(plain), path="block_done", mode="r+")[0] = 0
    render(TALL, 120, store_path=plain, client=client, pyramid=True, resume=True)
    meta = zarr.open_group(str(plain), path=pyr.GROUP, mode="r").attrs[pyr.PYRAMID_ATTR]
    assert meta["in_blocks"] is True  # the blocks computed now wrote their level 1; the rest was checked
    for k in range(1, TALL_LEVELS + 1):
        np.testing.assert_array_equal(pyr.open_level(plain, k)["norm"].values, pyr.open_level(whole, k)["norm"].values)


def _edit_meta(store: Path, **changes) -> None:
    group = zarr.open_group(str(store / "pyramid"), mode="r+")
    group.attrs[pyr.PYRAMID_ATTR] = {**group.attrs[pyr.PYRAMID_ATTR], **changes}


def _edit_json(path: Path, change) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


# each a damage done by hand, and words of the one line that must say so (a tile size of 0 made
# level_shapes loop for ever; done ['a'] a TypeError in info; a junk group, dtype or chunk size and a
# missing ome attribute were taken for a sound pyramid, or for none)
DAMAGES = {
    "tile 0": (lambda p: _edit_meta(p, tile=0), "its tile size is 0"),
    "tile 'big'": (lambda p: _edit_meta(p, tile="big"), "its tile size is 'big'"),
    "done junk": (lambda p: _edit_meta(p, done=["a", None]), "its list of levels done is"),
    "done 5": (lambda p: _edit_meta(p, done=5), "its list of levels done is 5"),
    "levels 3": (lambda p: _edit_meta(p, levels=3), "it says 3 levels, the store's size makes 2"),
    "group junk": (lambda p: (p / "pyramid" / "zarr.json").write_text("{not json"), "pyramid/zarr.json is no"),
    "no ome": (lambda p: _edit_json(p / "zarr.json", lambda d: d["attributes"].pop("ome")), "OME-Zarr metadata"),
    "dtype": (lambda p: _edit_json(p / "pyramid/1/iterations/zarr.json", lambda d: d.update(data_type="float64")),
              "pyramid/1/iterations/zarr.json is not what was written"),
    # (a level is sharded: its tiles are the sharding codec's inner chunks)
    "chunks": (lambda p: _edit_json(p / "pyramid/2/norm/zarr.json",
                                    lambda d: d["codecs"][0]["configuration"].update(chunk_shape=[128, 128])),
               "pyramid/2/norm/zarr.json is not what was written"),
    "shape": (lambda p: _edit_json(p / "pyramid/1/norm/zarr.json", lambda d: d.update(shape=[100, 301])),
              "pyramid/1/norm/zarr.json is not what was written"),
}  # fmt: skip


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_pyramid_metadata_are_said_in_one_line_and_a_build_repairs_them(rendered, client, tmp_path, damage):
    copy = tmp_path / "d.zarr"
    shutil.copytree(rendered, copy)
    edit, words = DAMAGES[damage]
    edit(copy)
    calls = [lambda: pyr.pyramid_levels(copy), lambda: pyr.open_level(copy, 1),
             lambda: pyr.read_window(copy, 2, 0, 1, 0, 1), lambda: StoredPicture(copy)]  # fmt: skip
    for call in calls:
        with pytest.raises(StoreError, match="damaged") as err:
            call()
        assert words in str(err.value) and "\n" not in str(err.value)
    assert pyr.pyramid_summary(copy).startswith("pyramid: damaged (") and words in pyr.pyramid_summary(copy)
    assert main(["recolor", str(copy), "--dzi", str(tmp_path / "d.dzi")]) == 2
    assert not (tmp_path / "d.dzi").exists() and not (tmp_path / "d_files").exists()
    # the samples are sound whatever the pyramid's state (a junk pyramid/zarr.json made open_render fail:
    # zarr decoded it to list the root's arrays), and recolour as before
    np.testing.assert_array_equal(open_render(copy).iterations.values, open_render(rendered).iterations.values)
    assert main(["recolor", "-q", str(copy), "--outfile", str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "d.png").exists()
    # build_pyramid, as the message says, makes it sound again: its levels equal the original's
    assert [lv.index for lv in pyr.build_pyramid(copy, client=client)] == [0, 1, 2]
    for k in (1, 2):
        for v in ("iterations", "norm"):
            np.testing.assert_array_equal(pyr.open_level(copy, k)[v].values, pyr.open_level(rendered, k)[v].values)


@pytest.mark.parametrize("how", ["garbled", "missing"])
def test_a_garbled_or_missing_tile_is_a_store_error_everywhere(rendered, tmp_path, capsys, how):
    if how == "garbled":
        sound = tmp_path / "sound.zarr"
        shutil.copytree(rendered, sound)
        assert main(["info", str(sound)]) == 0
        assert "pyramid levels" in capsys.readouterr().out
    copy = tmp_path / f"{how}.zarr"
    shutil.copytree(rendered, copy)
    tile = copy / "pyramid" / "2" / "norm" / "c" / "0" / "0"
    if how == "garbled":  # one byte flipped: zarr's crc32c codec raised a bare ValueError
        data = bytearray(tile.read_bytes())
        data[len(data) // 2] ^= 0xFF
        tile.write_bytes(bytes(data))
        words = "Stored and computed checksum do not match"
    else:  # its fill values were read as samples
        tile.unlink()
        words = "is missing"
    screen = View(-0.5, 0.0, 3.0, 40, 20, 1)
    for call in (lambda: pyr.read_window(copy, 2, 0, 10, 0, 10), lambda: pyr.open_level(copy, 2)["norm"].compute(),
                 lambda: StoredPicture(copy).samples(screen, pyr.pyramid_levels(copy)[2])):  # fmt: skip
        with pytest.raises(StoreError, match=r"damaged pyramid: pyramid/2/norm tile \(row 0, column 0\)") as err:
            call()
        assert words in str(err.value) and "\n" not in str(err.value)
    # info reads every tile: exit 2, the tile named
    assert main(["info", str(copy)]) == 2
    out, err = capsys.readouterr()
    assert "damaged: " in out and "pyramid/2/norm tile (row 0, column 0)" in out and words in out
    assert err.count("\n") == 1 and "1 damaged pieces (pyramid/2/norm tile (row 0, column 0)): " in err
    assert main(["recolor", str(copy), "--dzi", str(tmp_path / f"{how}.dzi")]) == 2
    assert words in capsys.readouterr().err and not (tmp_path / f"{how}.dzi").exists()
    assert not (tmp_path / f"{how}_files").exists()


def test_a_build_repairs_a_missing_tile_below_before_the_levels_above(rendered, client, tmp_path):
    # level 2 is built from level 1: a tile of level 1 gone is computed again from level 0 first,
    # never reduced from its fill values; the sound tiles are kept
    copy = tmp_path / "b.zarr"
    shutil.copytree(rendered, copy)
    _edit_meta(copy, done=[1])
    drop_tile(copy / "pyramid" / "1" / "iterations", 0, 1)  # (a row of tiles a shard: its index says it is gone)
    assert any("pyramid/1/iterations tile (row 0, column 1) is missing" in d for d in verify_store(copy).damaged)
    pyr.build_pyramid(copy, client=client)
    assert verify_store(copy).damaged == []
    for k in range(1, len(pyr.pyramid_levels(rendered))):
        for v in ("iterations", "norm"):
            np.testing.assert_array_equal(pyr.open_level(copy, k)[v].values, pyr.open_level(rendered, k)[v].values)


def test_cli_no_picture_refuses_picture_flags(tmp_path, capsys):
    base = ["render", "--width", "30", "--height", "20", "--smoothness", "1", "--iters", "50", "--no-picture",
            "--outfile", str(tmp_path / "n.png"), "--scheduler", "tcp://127.0.0.1:1"]  # fmt: skip
    cases = ((["--palette", "Plan9"], "so --palette would do nothing; drop it"),
             (["--mode", "histogram", "--no-overlap"], "so --no-overlap, --mode histogram would"),
             (["--step", "10"], "so --step would"), (["--interior", "#ffffff"], "so --interior would"))  # fmt: skip
    for extra, words in cases:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and words in err, err
    assert not (tmp_path / "n.zarr").exists()
    # --mode distance stores the distances: not a picture flag (it fails here on the missing scheduler only)
    assert main([*base, "--mode", "distance"]) == 2
    assert "would do nothing" not in capsys.readouterr().err
