"""render(picture=...) and dfractal render --overlap: each block coloured and
PNG-compressed on its kernel's worker as it is done (dfractal_dask.overlap)."""

import json
import pickle
import re

import dask
import numpy as np
import pytest
import zarr
from distributed import get_task_stream
from PIL import Image

from dfractal_dask import (
    RenderStats,
    View,
    color_picture,
    colorize,
    open_render,
    render,
    save_png,
    seed_colors,
    seed_lut,
)
from dfractal_dask.cli import main
from dfractal_dask.colorize import block_coloring
from dfractal_dask.graph import template_of
from dfractal_dask.overlap import PictureFile
from dfractal_dask.spec import RenderSpec

VIEW = View(xpos=-0.7436, ypos=0.1318, span=0.02, width=60, height=45, supersample=2)
ITERS = 400


def _pixels(path):
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
        return np.asarray(im)


def _from_store(client, store, path, **colouring):
    # today's path: the store coloured once the render is done, streamed to a PNG
    with dask.config.set(scheduler=client):
        save_png(color_picture(open_render(store), **colouring), path)
    return path.read_bytes()


@pytest.mark.parametrize(
    "colouring",
    [
        {},
        {"mode": "smooth", "palette": "Viridis256", "interior": "#102030"},
        {"mode": "distance"},
        {"mode": "seed", "step": 50, "palette": "Hippi_r"},
    ],
    ids=["seed", "smooth", "distance", "seed-step"],
)
def test_the_overlapped_png_is_the_picture_coloured_from_the_store(client, tmp_path, colouring):
    stats = RenderStats()
    pic = tmp_path / "sub" / "o.png"
    distance = colouring.get("mode") == "distance"
    ds = render(VIEW, ITERS, store_path=tmp_path / "o.zarr", client=client, chunk_rows=10, stats=stats,
                distance=distance, picture=PictureFile(pic, **colouring))  # fmt: skip
    # byte for byte the file the store's colouring writes, and pixel for pixel its picture
    assert pic.read_bytes() == _from_store(client, tmp_path / "o.zarr", tmp_path / "s.png", **colouring)
    expected = np.asarray(colorize(ds.compute(), **colouring))
    assert expected.shape == (45, 60, 4) and len(np.unique(expected.reshape(-1, 4), axis=0)) > 10
    np.testing.assert_array_equal(_pixels(pic), expected)
    assert not list(pic.parent.glob("*.part"))
    assert 0 < stats.last_block_at <= stats.picture_at


def test_each_block_is_coloured_on_its_kernels_worker(client, tmp_path):
    with get_task_stream(client) as ts:
        stats = RenderStats()
        render(VIEW, ITERS, store_path=tmp_path / "w.zarr", client=client, chunk_rows=6, stats=stats,
               picture=PictureFile(tmp_path / "w.png"))  # fmt: skip
    where = {t["key"]: t["worker"] for t in ts.data}
    rid = stats.render_id
    picture_keys = [k for k in where if isinstance(k, str) and k.startswith(f"dfractal-picture-{rid}-")]
    assert len(picture_keys) == 15
    assert len(set(where.values())) == 2  # both workers worked
    for key in picture_keys:
        assert where[key] == where[key.replace("-picture-", "-kernel-")]


def test_block_size_order_and_worker_count_do_not_change_the_picture(client, client1, tmp_path):
    pngs = {}
    runs = [("2w-10", client, 10, True), ("2w-10-dask-order", client, 10, False), ("1w-10", client1, 10, True),
            ("2w-2", client, 2, True), ("2w-90", client, 90, True)]  # fmt: skip
    for name, c, rows, balance in runs:
        pic = tmp_path / f"{name}.png"
        render(VIEW, ITERS, store_path=tmp_path / f"{name}.zarr", client=c, chunk_rows=rows, balance=balance,
               picture=PictureFile(pic, palette="Hippi"))  # fmt: skip
        pngs[name] = pic
    ref = _pixels(pngs["2w-10"])
    for pic in pngs.values():
        np.testing.assert_array_equal(_pixels(pic), ref)
    # the same blocks give the same file, whatever the order or the workers
    assert pngs["2w-10"].read_bytes() == pngs["2w-10-dask-order"].read_bytes() == pngs["1w-10"].read_bytes()


def test_a_resumed_render_gives_the_same_png(client, tmp_path):
    full = tmp_path / "full.png"
    render(VIEW, ITERS, store_path=tmp_path / "full.zarr", client=client, chunk_rows=10, picture=PictureFile(full))
    path = tmp_path / "cut.zarr"
    render(VIEW, ITERS, store_path=path, client=client, chunk_rows=10)
    group = zarr.open_group(str(path), mode="r+")  # an interrupted render: blocks 2 and 5 never finished
    group["block_done"][2] = 0
    group["block_done"][5] = 0
    group["iterations"][50:55, :] = 7  # block 5 half-written
    pic, stats = tmp_path / "cut.png", RenderStats()
    render(VIEW, ITERS, store_path=path, client=client, chunk_rows=10, resume=True, stats=stats,
           picture=PictureFile(pic))  # fmt: skip
    assert (stats.resumed, stats.blocks) == (7, 2)
    assert pic.read_bytes() == full.read_bytes()
    # nothing left to compute: every block coloured from the store
    again = tmp_path / "again.png"
    render(VIEW, ITERS, store_path=path, client=client, chunk_rows=10, resume=True, picture=PictureFile(again))
    assert again.read_bytes() == full.read_bytes()


def test_histogram_mode_is_coloured_from_the_store_after_the_render(client, tmp_path):
    pic, stats = tmp_path / "h.png", RenderStats()
    render(VIEW, ITERS, store_path=tmp_path / "h.zarr", client=client, stats=stats,
           picture=PictureFile(pic, mode="histogram"))  # fmt: skip
    assert pic.read_bytes() == _from_store(client, tmp_path / "h.zarr", tmp_path / "s.png", mode="histogram")
    assert stats.picture_at >= stats.last_block_at > 0


@pytest.mark.parametrize(
    ("make", "exc", "words"),
    [
        (lambda p: PictureFile(p / "x.jpg"), ValueError, "picture path must be a local path ending in .png"),
        (lambda p: PictureFile("s3://bucket/x.png"), ValueError, "picture path must be a local path"),
        (lambda p: PictureFile(3), TypeError, "picture path must be a local path, got int"),
        (lambda p: PictureFile(p / "x.png", mode="histogramm"), ValueError, "did you mean histogram?"),
        (lambda p: PictureFile(p / "x.png", step=0), ValueError, "picture step must be a positive integer"),
        (lambda p: PictureFile(p / "x.png", palette="NoSuchPalette"), ValueError, "NoSuchPalette"),
        (lambda p: PictureFile(p / "x.png", interior="red"), ValueError, "red"),
        (lambda p: render(VIEW, 10, picture=PictureFile(p / "x.png")), ValueError, "picture needs a store_path"),
        (
            lambda p: render(VIEW, 10, store_path=p / "x.zarr", picture=str(p / "x.png")),
            TypeError,
            "picture must be a PictureFile",
        ),
        (
            lambda p: render(VIEW, 10, store_path=p / "x.zarr", picture=PictureFile(p / "x.png", mode="distance")),
            ValueError,
            "needs a render made with distance estimation",
        ),
    ],
)
def test_bad_pictures_are_refused_before_any_work(tmp_path, make, exc, words):
    with pytest.raises(exc, match=re.escape(words)):
        make(tmp_path)
    assert not list(tmp_path.iterdir())


def test_cli_overlap_writes_the_no_overlap_png_and_reports_its_timing(tmp_path):
    argv = ["render", "--width", "48", "--height", "36", "--smoothness", "2", "--iters", "200", "--chunk-rows", "8",
            "--workers", "2", "-q"]  # fmt: skip
    files = {}
    for flag in ("--overlap", "--no-overlap"):
        out = tmp_path / f"{flag[2:]}.png"
        assert main([*argv, flag, "--outfile", str(out), "--metrics-json", str(tmp_path / f"{flag}.json")]) == 0
        files[flag] = out.read_bytes()
        doc = json.loads((tmp_path / f"{flag}.json").read_text())
        assert doc["picture"]["overlapped"] is (flag == "--overlap")
        assert 0 <= doc["picture"]["after_last_block_seconds"] < 60
        # the colouring tasks' time is their own in the render's metrics, not the kernel's
        total = doc["render"]["total"]
        assert total["tasks"] == (3 if flag == "--overlap" else 2) * 9  # kernel, write (and picture) per block
        assert (total["picture_seconds"] > 0) is (flag == "--overlap") and total["kernel_seconds"] > 0
    assert files["--overlap"] == files["--no-overlap"]
    assert len(np.unique(_pixels(tmp_path / "overlap.png").reshape(-1, 4), axis=0)) > 10


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        ("--overlap=yes", "--overlap/--no-overlap: ignored explicit argument 'yes'"),
        ("--overlap --mode 'seed\x1b[31m'", "unknown --mode 'seed\\x1b[31m'"),
        ("--no-overlap --mode bogus", "unknown --mode 'bogus'"),
    ],
)
def test_bad_overlap_flags_one_line_exit_2(tmp_path, capsys, flags, words):
    import shlex

    argv = ["render", "--outfile", str(tmp_path / "x.png"), *shlex.split(flags)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dfractal: error: ") and words in err, err
    assert "\x1b" not in err
    assert not list(tmp_path.iterdir())


def test_a_deep_limits_colouring_travels_as_its_palette_not_its_table():
    # at a 1 000 000 limit the seed table has 1 000 001 entries (3 MB): a piece task
    # carries the palette and step, and the table is made (once) where it colours
    view = View(xpos=-0.75, ypos=0.0, span=3.0, width=40, height=30, supersample=1)
    coloring = block_coloring(template_of(RenderSpec.make(view, 1_000_000)), mode="seed")
    assert len(pickle.dumps(coloring)) < 20_000
    it = np.array([[3, 999_999, 1_000_000]], np.uint32)
    norm = np.array([[5.0, 7.0, 1.0]], np.float32)
    want = seed_colors(it, norm, 1_000_000, seed_lut("Hippi", 1_000_000))
    assert np.array_equal(pickle.loads(pickle.dumps(coloring))(it, norm), want)
