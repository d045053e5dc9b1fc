import json

import numpy as np
import pytest

from dfractal_dask import graph, store
from dfractal_dask.store import StoreError, open_render
from dfractal_dask.view import View

VIEW = View(xpos=-0.5, ypos=0.0, span=3.0, width=16, height=12, supersample=2)


def _make(path, *, complete=True, overwrite=False):
    template = graph.fractal_dataset(VIEW, 50, 8)
    bs = graph.blocks(VIEW, 8)
    store.create_store(path, template, len(bs), overwrite=overwrite)
    for b in bs if complete else bs[:1]:
        it, norm, _ = graph.compute_block(VIEW, 50, b)
        assert store.write_block(path, b, it, norm) > 0
    return template.compute(scheduler="sync")


def test_round_trip(tmp_path):
    expected = _make(tmp_path / "r.zarr")
    ds = open_render(tmp_path / "r.zarr")
    assert ds.iterations.chunks[0] == (8, 8, 8)  # one chunk per block
    assert np.array_equal(ds.iterations.values, expected.iterations.values)
    assert np.array_equal(ds.norm.values, expected.norm.values)
    assert View.from_attrs(ds.attrs) == VIEW and ds.attrs["iters"] == 50
    assert store.store_view(tmp_path / "r.zarr") == (VIEW, 50)
    assert ds.block_done.values.tolist() == [1, 1, 1]


@pytest.mark.parametrize("chunk_rows", [8, 10])  # 10: the last block is short, its chunk padded
def test_block_chunks_are_the_bytes_zarr_writes(tmp_path, chunk_rows):
    import zarr

    template = graph.fractal_dataset(VIEW, 50, chunk_rows)
    bs = graph.blocks(VIEW, chunk_rows)
    for name in ("direct.zarr", "zarr.zarr"):
        store.create_store(tmp_path / name, template, len(bs))
    for b in bs:
        it, norm, _ = graph.compute_block(VIEW, 50, b)
        store.write_block(tmp_path / "direct.zarr", b, it, norm)
        for var, data in (("iterations", it), ("norm", norm)):
            zarr.open_array(str(tmp_path / "zarr.zarr" / var), mode="r+")[b.row0 : b.row1] = data
    assert bs[-1].nrows == (4 if chunk_rows == 10 else 8)
    for var in ("iterations", "norm"):
        direct = sorted((tmp_path / "direct.zarr" / var / "c").rglob("*"))
        assert [p.relative_to(tmp_path / "direct.zarr") for p in direct] == [
            p.relative_to(tmp_path / "zarr.zarr") for p in sorted((tmp_path / "zarr.zarr" / var / "c").rglob("*"))
        ]
        for p in direct:
            if p.is_file():
                assert p.read_bytes() == (tmp_path / "zarr.zarr" / p.relative_to(tmp_path / "direct.zarr")).read_bytes()
    ds = open_render(tmp_path / "direct.zarr")
    expected = template.compute(scheduler="sync")
    assert np.array_equal(ds.iterations.values, expected.iterations.values)
    assert np.array_equal(ds.norm.values, expected.norm.values, equal_nan=True)
    assert not list((tmp_path / "direct.zarr").rglob("*.part"))


@pytest.mark.parametrize("chunk_rows", [8, 10])
def test_open_render_reads_chunks_as_zarr_does(tmp_path, chunk_rows):
    """open_render's own chunk reader (one task per block) gives what xarray's
    zarr reader gives, a never-written chunk included (the fill value)."""
    import xarray as xr

    template = graph.fractal_dataset(VIEW, 50, chunk_rows)
    bs = graph.blocks(VIEW, chunk_rows)
    store.create_store(tmp_path / "r.zarr", template, len(bs))
    for b in bs[1:]:  # block 0 never written
        it, norm, _ = graph.compute_block(VIEW, 50, b)
        store.write_block(tmp_path / "r.zarr", b, it, norm)
    ds = open_render(tmp_path / "r.zarr", allow_incomplete=True)
    ref = xr.open_zarr(str(tmp_path / "r.zarr"), consolidated=False)
    for name in ("iterations", "norm"):
        assert ds[name].data.name.startswith(f"read-{name}-")  # not zarr's reader
        assert ds[name].chunks == ref[name].chunks and ds[name].attrs == ref[name].attrs
        np.testing.assert_array_equal(ds[name].values, ref[name].values)
    assert (ds.iterations.values[: bs[0].nrows] == 0).all()
    assert (ds.iterations.values[bs[0].nrows :] > 0).all()


def test_block_that_does_not_fit_the_chunks_is_refused(tmp_path):
    _make(tmp_path / "r.zarr", complete=False)
    it, norm, _ = graph.compute_block(VIEW, 50, graph.Block(1, 8, 16))
    with pytest.raises(ValueError, match="does not match the chunks"):
        store.write_block(tmp_path / "r.zarr", graph.Block(1, 7, 15), it, norm)
    assert open_render(tmp_path / "r.zarr", allow_incomplete=True).block_done.values.tolist() == [1, 0, 0]


def test_incomplete_store_is_refused_unless_asked(tmp_path):
    _make(tmp_path / "r.zarr", complete=False)
    with pytest.raises(StoreError, match="incomplete: 2 of 3 blocks"):
        open_render(tmp_path / "r.zarr")
    ds = open_render(tmp_path / "r.zarr", allow_incomplete=True)
    assert ds.block_done.values.tolist() == [1, 0, 0]


def test_existing_store_is_never_replaced_without_overwrite(tmp_path):
    path = tmp_path / "r.zarr"
    _make(path)
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match="already exists"):
        _make(path)
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    _make(path, overwrite=True)  # a render store may be replaced when asked
    open_render(path)


def test_overwrite_never_deletes_something_else(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "cat.jpg").write_bytes(b"meow")
    with pytest.raises(StoreError, match="not a dfractal render store"):
        store.create_store(other, graph.fractal_dataset(VIEW, 50, 8), 3, overwrite=True)
    assert (other / "cat.jpg").read_bytes() == b"meow"


@pytest.mark.parametrize("kind", ["missing", "file", "plain_dir", "other_zarr", "no_meta", "format"])
def test_bad_stores_give_clear_errors(tmp_path, kind):
    import zarr

    path = tmp_path / "s.zarr"
    words = {
        "missing": "no render store",
        "file": "is a file",
        "plain_dir": "not a dfractal render store",
        "other_zarr": "not a dfractal render store",
        "no_meta": "damaged",
        "format": "store format 99",
    }[kind]
    if kind == "file":
        path.write_text("hello")
    elif kind == "plain_dir":
        path.mkdir()
    elif kind == "other_zarr":
        zarr.open_group(str(path), mode="w").attrs["x"] = 1
    elif kind == "no_meta":
        _make(path)
        (path / "iterations" / "zarr.json").unlink()
    elif kind == "format":
        _make(path)
        meta = json.loads((path / "zarr.json").read_text())
        meta["attributes"]["dfractal_format"] = 99
        (path / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=words):
        open_render(path)


def test_default_store_path():
    assert str(store.default_store_path("img/test2.png")) == "img/test2.zarr"


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_chunk_is_a_clear_error_when_read(tmp_path, damage, capsys):
    from dfractal_dask.cli import main

    path = tmp_path / "r.zarr"
    _make(path)
    chunk = path / "iterations" / "c" / "1" / "0"
    data = chunk.read_bytes()
    if damage == "truncated":
        chunk.write_bytes(data[:20])
    else:
        chunk.write_bytes(bytes(b ^ 0x5A for b in data))
    ds = open_render(path)  # complete by its flags: the damage shows only when read
    with pytest.raises(StoreError, match=r"r\.zarr is damaged .*--overwrite"), store.reading(path):
        ds.iterations.values  # noqa: B018
    assert main(["recolor", str(path), "--outfile", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is damaged" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_a_store_opened_again_after_more_blocks_are_written_gets_new_keys(tmp_path):
    """Its lazy arrays must not share dask keys with the earlier opening (a
    persisted old copy would otherwise stand in for the new data)."""
    _make(tmp_path / "r.zarr", complete=False)
    before = open_render(tmp_path / "r.zarr", allow_incomplete=True)
    b = graph.blocks(VIEW, 8)[1]
    it, norm, _ = graph.compute_block(VIEW, 50, b)
    store.write_block(tmp_path / "r.zarr", b, it, norm)
    after = open_render(tmp_path / "r.zarr", allow_incomplete=True)
    assert before.iterations.data.name != after.iterations.data.name
    assert open_render(tmp_path / "r.zarr", allow_incomplete=True).iterations.data.name == after.iterations.data.name
    np.testing.assert_array_equal(after.iterations.values[8:16], it)
