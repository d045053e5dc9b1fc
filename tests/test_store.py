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


@pytest.mark.parametrize("chunk_rows", [8, 10])  # 10: the last block is short
def test_stores_are_plain_zarr_with_checksummed_chunks(tmp_path, chunk_rows):
    """Written through zarr's own codec pipeline: zarr and xarray read the
    store as they are, every chunk ends in a CRC-32C that zarr checks, and
    open_render reads the same values, a never-written block included."""
    import xarray as xr
    import zarr

    template = graph.fractal_dataset(VIEW, 50, chunk_rows)
    bs = graph.blocks(VIEW, chunk_rows)
    store.create_store(tmp_path / "r.zarr", template, len(bs))
    for b in bs[1:]:  # block 0 never written
        it, norm, _ = graph.compute_block(VIEW, 50, b)
        store.write_block(tmp_path / "r.zarr", b, it, norm)
    for name in ("iterations", "norm"):
        codecs = [c["name"] for c in json.loads((tmp_path / "r.zarr" / name / "zarr.json").read_text())["codecs"]]
        assert codecs == ["bytes", "blosc", "crc32c"]
    ds = open_render(tmp_path / "r.zarr", allow_incomplete=True)
    ref = xr.open_zarr(str(tmp_path / "r.zarr"), consolidated=False)
    for name in ("iterations", "norm"):
        assert ds[name].data.name.startswith(f"read-{name}-")  # checked against the block records
        assert ds[name].chunks == ref[name].chunks and ds[name].attrs == ref[name].attrs
        np.testing.assert_array_equal(ds[name].values, ref[name].values)
        np.testing.assert_array_equal(ds[name].values, zarr.open_array(str(tmp_path / "r.zarr" / name))[:])
    assert (ds.iterations.values[: bs[0].nrows] == 0).all()
    assert (ds.iterations.values[bs[0].nrows :] > 0).all()
    record = zarr.open_array(str(tmp_path / "r.zarr" / "block_crc"))[:]
    assert record.shape == (len(bs), 2) and (record[0] == 0).all() and (record[1:] != 0).all()
    assert "block_crc" not in ds  # the record stays in the store


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
    assert store.default_store_path("img/test2.png") == "img/test2.zarr"


@pytest.mark.parametrize("damage", ["truncated", "garbled", "missing", "swapped"])
def test_a_damaged_chunk_of_a_done_block_is_named_never_read_as_fill(tmp_path, damage, capsys):
    from dfractal_dask.cli import main

    path = tmp_path / "r.zarr"
    _make(path)
    chunk = path / "iterations" / "c" / "1" / "0"
    data = chunk.read_bytes()
    if damage == "truncated":
        chunk.write_bytes(data[:20])
    elif damage == "garbled":
        chunk.write_bytes(bytes(b ^ 0x5A for b in data))
    elif damage == "missing":
        chunk.unlink()
    else:  # a valid chunk, of another block: zarr's own checksum passes
        chunk.write_bytes((path / "iterations" / "c" / "0" / "0").read_bytes())
    ds = open_render(path)  # complete by its flags: the damage shows when read
    with pytest.raises(StoreError, match=r"r\.zarr: block 1 of iterations .*; a resume computes it again"):
        ds.iterations.values  # noqa: B018
    assert [index for index, _ in store.verify(path)] == [(1,)]
    assert main(["recolor", str(path), "--outfile", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "block 1 of iterations" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
    assert main(["info", str(path)]) == 2
    out, err = capsys.readouterr()
    assert "damaged: " in out and "block 1 of iterations" in out
    assert err.count("\n") == 1 and "1 damaged blocks (block 1)" in err and "--resume" in err
    # resume=True computes that block again, and only that one
    template = graph.fractal_dataset(VIEW, 50, 8)
    assert store.blocks_to_resume(path, template, 3).tolist() == [True, False, True]


def test_info_says_a_sound_store_is_verified(tmp_path, capsys):
    from dfractal_dask.cli import main

    _make(tmp_path / "r.zarr")
    assert main(["info", str(tmp_path / "r.zarr")]) == 0
    assert (
        "verified: 3 blocks, 2 coordinates, 6 arrays' metadata: every one matches its record" in capsys.readouterr().out
    )


def test_a_store_replaced_meanwhile_is_not_written(tmp_path):
    """A block write checks the store's identity first: one made by another
    render (or none at all, for a worker that cannot see it) gets nothing."""
    path = tmp_path / "r.zarr"
    template = graph.fractal_dataset(VIEW, 50, 8)
    store.create_store(path, template, 3, store_id="first")
    b = graph.blocks(VIEW, 8)[0]
    it, norm, _ = graph.compute_block(VIEW, 50, b)
    store.write_block(path, b, it, norm, store_id="first")
    store.create_store(path, template, 3, overwrite=True, store_id="second")
    with pytest.raises(StoreError, match="was replaced while this render ran"):
        store.write_block(path, b, it, norm, store_id="first")
    assert not (path / "iterations" / "c").exists()
    with pytest.raises(StoreError, match="cannot see the store"):
        store.write_block(tmp_path / "elsewhere.zarr", b, it, norm, store_id="second")
    assert not (tmp_path / "elsewhere.zarr").exists()


def test_overwrite_refuses_a_store_holding_files_of_someone_else(tmp_path):
    path = tmp_path / "r.zarr"
    _make(path)
    (path / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=r"holds files that are not the store's own \(notes\.txt\)"):
        _make(path, overwrite=True)
    assert (path / "notes.txt").read_text() == "mine" and store.is_render_store(path)


def test_relative_paths_are_made_absolute(tmp_path, monkeypatch):
    from dfractal_dask.location import as_location

    monkeypatch.chdir(tmp_path)
    assert as_location("m.zarr").url == str(tmp_path / "m.zarr")
    assert as_location(f"file://{tmp_path}/x.zarr").url == str(tmp_path / "x.zarr")
    assert as_location("s3://bucket/m.zarr/").url == "s3://bucket/m.zarr"


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


def test_resume_computes_a_damaged_block_again(client, tmp_path):
    from dfractal_dask import render
    from dfractal_dask.pipeline import RenderStats

    path = tmp_path / "r.zarr"
    render(VIEW, 50, store_path=path, client=client, chunk_rows=8)
    want = open_render(path).iterations.values
    chunk = path / "norm" / "c" / "2" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-3])  # truncated
    stats = RenderStats()
    ds = render(VIEW, 50, store_path=path, client=client, chunk_rows=8, resume=True, stats=stats)
    assert (stats.resumed, stats.blocks) == (2, 1)  # only the damaged block was computed
    assert store.verify(path) == []
    np.testing.assert_array_equal(ds.iterations.values, want)


def test_a_damaged_zoom_chunk_is_named_by_frame_and_block(tmp_path, capsys):
    from dfractal_dask.cli import main
    from dfractal_dask.view import zoom_views

    views = zoom_views(View(-0.745, 0.1, 2.0, 16, 12, 1), 3, 0.05)
    template = graph.zoom_dataset(views, 60, 4)
    path = store.create_zoom_store(tmp_path / "z.zarr", template)
    for k, v in enumerate(views):
        sizes = [store.write_zoom_block(path, k, b, *graph.compute_block(v, 60, b)[:2]) for b in graph.blocks(v, 4)]
        store.mark_frame_done(path, k, *sizes)
    (tmp_path / "z.zarr" / "iterations" / "c" / "1" / "2" / "0").unlink()
    with pytest.raises(StoreError, match=r"frame 1 block 2 of iterations is missing"):
        store.open_zoom(path).iterations.values  # noqa: B018
    assert [index for index, _ in store.verify(path)] == [(1, 2)]
    assert main(["info", str(tmp_path / "z.zarr")]) == 2
    assert "1 damaged frames (frame 1 block 2)" in capsys.readouterr().err


def test_resume_clears_what_killed_writes_left(client, tmp_path):
    """zarr writes a chunk to <chunk>.<uuid>.partial and renames it: a worker
    killed in between (or a full disk) leaves that file; a resume removes it."""
    from dfractal_dask import render

    path = tmp_path / "r.zarr"
    render(VIEW, 50, store_path=path, client=client, chunk_rows=8)
    leftover = path / "iterations" / "c" / "1" / "0.3f2a.partial"
    leftover.write_bytes(b"half a chunk")
    render(VIEW, 50, store_path=path, client=client, chunk_rows=8, resume=True)
    assert not leftover.exists() and store.verify(path) == []
    assert store.clear_leftovers(path) == 0
