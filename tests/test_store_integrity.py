"""Issue 27: a store that knows what it owns.  Every piece verified (blocks,
coordinates, metadata, metrics, every pyramid tile), damage named in one line,
resume repairing exactly the damaged pieces, and nothing foreign ever deleted.
Real stores rendered on a cluster of worker processes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dfractal_dask import View, open_render, render
from dfractal_dask import pyramid as pyr
from dfractal_dask.cli import main
from dfractal_dask.explorer.stored import StoredPicture
from dfractal_dask.store import StoreError, check_writable, clear_leftovers, layout
from dfractal_dask.store.integrity import verify_store

# level 1 is 550x300: two rows of tiles (two shards an array), level 2 one, level 3 one
VIEW = View(-0.5, 0.0, 3.0, 1100, 600, 1)
ITERS = 120
ROWS = 100  # six blocks


def _render(path, client, **kw) -> None:
    render(VIEW, ITERS, store_path=path, client=client, chunk_rows=ROWS, pyramid=True, **kw)


@pytest.fixture(scope="module")
def pristine(client, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("integrity") / "p.zarr"
    _render(path, client)
    assert verify_store(path).damaged == []
    return path


def _copy(pristine: Path, tmp_path: Path, name: str = "c.zarr") -> Path:
    copy = tmp_path / name
    shutil.copytree(pristine, copy)
    return copy


def _decoded(path) -> dict[str, np.ndarray]:
    """Every decoded array of a store: level 0's samples and coordinates, each pyramid level's samples."""
    ds = open_render(path)
    out = {v: ds[v].values for v in ("iterations", "norm", "re", "im")}
    for level in pyr.pyramid_levels(path)[1:]:
        lv = pyr.open_level(path, level.index)
        out |= {f"{level.index}/{v}": lv[v].values for v in ("iterations", "norm")}
    return out


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _keys(path: Path) -> set[str]:
    return {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}


def test_every_piece_is_verified_and_said(pristine):
    report = verify_store(pristine)
    assert (report.blocks, report.coordinates, report.levels) == (6, 2, 3)
    assert report.tiles == 3 * 2 + 2 + 1 and report.metadata >= 6
    assert "6 blocks, 2 coordinates" in report.summary() and "3 pyramid levels (9 tiles)" in report.summary()


def test_a_deleted_coordinate_chunk_is_named_refused_and_repaired(pristine, client, tmp_path, capsys):
    copy = _copy(pristine, tmp_path)
    (copy / "re" / "c" / "0").unlink()
    assert main(["info", str(copy)]) == 2
    out, err = capsys.readouterr()
    assert "damaged: coordinate re is not what was written" in out and err.count("\n") == 1
    with pytest.raises(StoreError, match="coordinate re is not what was written"):
        open_render(copy)
    assert main(["recolor", str(copy), "--outfile", str(tmp_path / "r.png")]) == 2
    assert "coordinate re" in capsys.readouterr().err and not (tmp_path / "r.png").exists()
    _render(copy, client, resume=True)
    assert verify_store(copy).damaged == []
    _same(_decoded(copy), _decoded(pristine))


def test_swapped_shards_are_named_everywhere_and_repaired(pristine, client, tmp_path, capsys):
    copy = _copy(pristine, tmp_path)
    a, b = copy / "pyramid/1/norm/c/0/0", copy / "pyramid/1/norm/c/1/0"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    assert main(["info", str(copy)]) == 2
    out = capsys.readouterr().out
    assert "pyramid/1/norm tile (row 0, column 0) is not what was written" in out
    assert main(["recolor", str(copy), "--dzi", str(tmp_path / "x.dzi")]) == 2
    assert "pyramid/1/norm tile" in capsys.readouterr().err and not (tmp_path / "x.dzi").exists()
    with pytest.raises(StoreError, match="pyramid/1/norm tile"):
        pyr.open_level(copy, 1)["norm"].compute()
    with pytest.raises(StoreError, match="pyramid/1/norm tile"):
        StoredPicture(copy).samples(View(-0.5, 0.0, 3.0, 550, 300, 1), pyr.pyramid_levels(copy)[1])
    _render(copy, client, resume=True)  # (without pyramid=True: a resume repairs the pyramid it finds)
    assert verify_store(copy).damaged == []
    _same(_decoded(copy), _decoded(pristine))


def test_a_lost_level_document_is_rewritten_and_no_good_tile_deleted(pristine, client, tmp_path):
    copy = _copy(pristine, tmp_path)
    (copy / "pyramid/2/iterations/zarr.json").unlink()
    before = _keys(copy)
    assert any("pyramid/2/iterations/zarr.json is missing" in d for d in verify_store(copy).damaged)
    _render(copy, client, resume=True)
    assert before <= _keys(copy)  # every tile kept
    assert verify_store(copy).damaged == []
    _same(_decoded(copy), _decoded(pristine))


def test_a_deleted_tile_is_computed_again(pristine, client, tmp_path):
    copy = _copy(pristine, tmp_path)
    (copy / "pyramid/3/iterations/c/0/0").unlink()
    assert any("pyramid/3/iterations tile (row 0, column 0) is missing" in d for d in verify_store(copy).damaged)
    _render(copy, client, resume=True)
    assert verify_store(copy).damaged == []
    _same(_decoded(copy), _decoded(pristine))


def test_overwrite_never_deletes_what_is_not_the_stores(pristine, client, tmp_path, capsys):
    copy = _copy(pristine, tmp_path)
    precious = copy / "precious"
    precious.mkdir()
    (precious / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    (precious / "thesis.txt").write_text("years of work")
    (copy / "iterations" / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match=r"holds files that are not the store's own \(iterations/notes.txt, "
                                         r"precious/thesis.txt, precious/zarr.json\)"):  # fmt: skip
        _render(copy, client, overwrite=True)
    assert (precious / "thesis.txt").read_text() == "years of work"
    assert (copy / "iterations" / "notes.txt").read_text() == "mine"
    argv = ["render", "--width", "1100", "--height", "600", "--store", str(copy), "--overwrite",
            "--outfile", str(tmp_path / "o.png"), "--scheduler", client.scheduler.address]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "precious/thesis.txt" in err and "Traceback" not in err
    assert (precious / "thesis.txt").exists() and verify_store(copy).damaged == []


def test_a_symlink_in_the_store_is_refused_never_gone_through(pristine, client, tmp_path):
    copy = _copy(pristine, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (copy / "norm" / "c" / "9").symlink_to(outside)
    with pytest.raises(StoreError, match=r"holds a symbolic link \(norm/c/9\); refusing to overwrite"):
        check_writable(copy, overwrite=True)
    with pytest.raises(StoreError, match=r"holds a symbolic link \(norm/c/9\); refusing to resume"):
        render(VIEW, ITERS, store_path=copy, client=client, chunk_rows=ROWS, pyramid=True, resume=True)
    (copy / "norm" / "c" / "9").unlink()
    # a link where a chunk goes: never written through on resume, never deleted on overwrite
    (copy / "iterations/c/2/0").unlink()
    (copy / "iterations/c/2/0").symlink_to(outside / "keep.txt")
    for call in (lambda: check_writable(copy, overwrite=True), lambda: _render(copy, client, resume=True)):
        with pytest.raises(StoreError, match=r"symbolic link \(iterations/c/2/0\)"):
            call()
    assert (outside / "keep.txt").read_text() == "keep" and (copy / "iterations/c/2/0").is_symlink()


def test_leftovers_are_cleared_only_where_the_store_writes(pristine, tmp_path):
    copy = _copy(pristine, tmp_path)
    (copy / "norm/c/2/0.0123abcd.partial").write_bytes(b"half a chunk")
    (copy / "mine").mkdir()
    (copy / "mine/draft.partial").write_text("mine")
    assert clear_leftovers(copy) == 1
    assert (copy / "mine/draft.partial").exists() and not (copy / "norm/c/2/0.0123abcd.partial").exists()


def test_damaged_metrics_are_named_and_a_resume_drops_them(pristine, client, tmp_path, capsys):
    from dfractal_dask.store import write_metrics

    copy = _copy(pristine, tmp_path)
    write_metrics(copy, {"wall_seconds": 1.5})
    assert verify_store(copy).metrics and verify_store(copy).damaged == []
    group = zarr.open_group(str(copy), mode="r+")
    group.attrs["metrics"] = {"wall_seconds": 0.001}
    assert verify_store(copy).damaged == ["the metrics are not what was written (checksum)"]
    _render(copy, client, resume=True)
    assert verify_store(copy).damaged == [] and "metrics" not in zarr.open_group(str(copy), mode="r").attrs


def test_the_layout_owns_only_its_keys():
    meta = type("M", (), {"names": ["iterations", "norm"], "zoom": False, "view": VIEW})()
    own = ["zarr.json", "iterations/zarr.json", "iterations/c/3/0", "re/c/0", "block_crc/c/1/0",
           "pyramid/zarr.json", "pyramid/3/zarr.json", "pyramid/2/norm/c/1/0", "pyramid/1/tile_crc/c/0/0/0",
           "dfractal_lease/zarr.json", "norm/c/0/0.deadbeef.partial"]  # fmt: skip
    foreign = ["precious/zarr.json", "re/notes.txt", "iterations/c/x", "distance/zarr.json", "pyramid/4/zarr.json",
               "pyramid/0/norm/c/0/0", "pyramid/1/other/zarr.json", "zarr.json.bak",
               "iterations/c/3/0/extra.txt"]  # fmt: skip
    assert layout.foreign_keys(meta, own + foreign) == foreign
    # only ASCII digits, as many as the array's dimensions; zarr's and Location's temporary names
    odd = ["iterations/c/\u0663/0", "iterations/c/7/3/1", "block_done/c/2/0", "pyramid/1/tile_crc/c/0/0"]
    assert layout.foreign_keys(meta, odd) == odd
    assert (
        layout.foreign_keys(meta, ["re/.zarr.json.k2j3hx_a", "norm/c/3/.0.ab12cd34", "norm/c/3/0.12ab.partial"]) == []
    )
    # attributes too damaged to say the store's shape: a distance array or a pyramid is not taken for its own
    gone = ["pyramid/9/norm/c/0/0", "distance/zarr.json", "pyramid/zarr.json"]
    assert layout.foreign_keys(None, [*gone, "iterations/c/0/0", "re/zarr.json"]) == gone


# -- any piece damaged any way: info names it, resume restores it -----------------

DAMAGES = ("delete", "truncate", "swap", "garble")


def _named(key: str) -> list[str]:
    """What info must say of a damaged ``key`` (any one of these)."""
    parts = key.split("/")
    if parts[0] == "pyramid" and len(parts) > 3 and parts[3] == "c":
        return [f"pyramid/{parts[1]}/", f"(row {parts[4]},"]
    if key.endswith("zarr.json"):
        return [key]
    if parts[0] in ("re", "im"):
        return [f"coordinate {parts[0]}"]
    if parts[0] in ("iterations", "norm", "block_crc", "block_done"):
        return [f"block {parts[2]}"]
    raise AssertionError(key)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_damaged_piece_is_named_and_resume_restores_it(pristine, client, tmp_path_factory, data):
    keys = sorted(k for k in _keys(pristine) if k not in ("zarr.json", layout.LEASE_KEY))
    key = data.draw(st.sampled_from(keys), label="key")
    how = data.draw(st.sampled_from(DAMAGES), label="how")
    copy = _copy(pristine, tmp_path_factory.mktemp("hyp"))
    target = copy / key
    original = target.read_bytes()
    if how == "delete":
        target.unlink()
    elif how == "truncate":
        target.write_bytes(original[: len(original) // 2])
    elif how == "garble":
        buf = bytearray(original)
        buf[len(buf) // 2] ^= 0x5A
        target.write_bytes(bytes(buf))
    else:
        head = key.rpartition("/c/")[0]
        others = [k for k in keys if k.startswith(head + "/c/") and k != key] if "/c/" in key else []
        assume(others)
        other = copy / data.draw(st.sampled_from(others), label="other")
        swapped = other.read_bytes()
        assume(swapped != original)
        other.write_bytes(original)
        target.write_bytes(swapped)
    report = verify_store(copy)
    said = "\n".join(report.damaged + report.unwritten)
    assert said, f"{how} {key} went unnoticed"
    assert any(all(w in line for w in _named(key)) for line in said.splitlines()), (how, key, said)
    _render(copy, client, resume=True)
    after = verify_store(copy)
    assert after.damaged == [] and after.unwritten == []
    _same(_decoded(copy), _decoded(pristine))


# -- object storage: the same promises on a real S3-compatible server ------------


@pytest.fixture(scope="module")
def s3():
    pytest.importorskip("s3fs")
    from s3server import s3_server

    with s3_server() as server:
        server.make_bucket("bucketroot")
        server.make_bucket("stores")
        yield server


@pytest.mark.slow
def test_s3_overwrite_at_a_bucket_root_leaves_a_zarr_array_beside_it(s3, client):
    from dfractal_dask.location import as_location

    small = View(-0.5, 0.0, 3.0, 64, 48, 1)
    url = "s3://bucketroot"
    render(small, 50, store_path=url, storage_options=s3.storage_options, client=client, chunk_rows=16)
    loc = as_location(url, s3.storage_options)
    zarr.create_array(loc.zarr_store(), name="precious", shape=(3,), dtype="i4")[:] = [1, 2, 3]
    with pytest.raises(StoreError, match=r"not the store's own \(precious/c/0, precious/zarr.json\)"):
        render(small, 50, store_path=url, storage_options=s3.storage_options, client=client, chunk_rows=16,
               overwrite=True)  # fmt: skip
    assert list(zarr.open_array(loc.zarr_store(read_only=True), path="precious", mode="r")[:]) == [1, 2, 3]
    assert verify_store(loc).damaged == []


@pytest.mark.slow
def test_s3_resume_repairs_a_coordinate_a_tile_and_metadata(s3, client, pristine):
    from dfractal_dask.location import as_location

    url = "s3://stores/m.zarr"
    _render(url, client, storage_options=s3.storage_options)
    loc = as_location(url, s3.storage_options)
    whole = _decoded(loc)
    for key in ("re/c/0", "pyramid/1/norm/c/1/0", "pyramid/2/iterations/zarr.json", "norm/c/3/0"):
        loc.delete(key)
    said = "\n".join(verify_store(loc).damaged)
    assert "coordinate re" in said and "pyramid/2/iterations/zarr.json is missing" in said
    _render(url, client, storage_options=s3.storage_options, resume=True)
    assert verify_store(loc).damaged == []
    _same(_decoded(loc), whole)
    _same(whole, _decoded(pristine))


# -- what the hostile pass found (each was a break) -------------------------------


def test_a_folder_of_someone_elses_in_the_store_is_left_out_of_reading(pristine, client, tmp_path, capsys):
    copy = _copy(pristine, tmp_path)
    (copy / "myarr").mkdir()
    (copy / "myarr" / "zarr.json").write_text("{}")  # zarr decoded it to list the root's arrays
    _same(_decoded(copy), _decoded(pristine))
    assert main(["info", str(copy)]) == 0
    assert main(["recolor", str(copy), "--outfile", str(tmp_path / "r.png")]) == 0
    _render(copy, client, resume=True)
    assert (copy / "myarr" / "zarr.json").read_text() == "{}"
    with pytest.raises(StoreError, match=r"not the store's own \(myarr/zarr.json\)"):
        check_writable(copy, overwrite=True)


def test_keys_that_only_look_like_the_stores_are_never_deleted(pristine, tmp_path):
    copy = _copy(pristine, tmp_path)
    for name in ("iterations/c/\u0663/0", "iterations/c/7/3/1/2"):
        (copy / name).parent.mkdir(parents=True, exist_ok=True)
        (copy / name).write_text("mine")
    with pytest.raises(StoreError, match="not the store's own"):
        check_writable(copy, overwrite=True)
    # attributes too damaged to read: a pyramid or a distance array is not taken for the store's
    copy2 = _copy(pristine, tmp_path, "g.zarr")
    meta = json.loads((copy2 / "zarr.json").read_text())
    meta["attributes"]["width"] = "x"
    (copy2 / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match=r"not the store's own \(pyramid/1/"):
        check_writable(copy2, overwrite=True)
    # a temporary file of dfractal's own (killed before its rename) is the store's: it does not block an overwrite
    copy3 = _copy(pristine, tmp_path, "t.zarr")
    (copy3 / "re" / ".zarr.json.k2j3hx_a").write_text("half")
    assert check_writable(copy3, overwrite=True)


@pytest.mark.parametrize("record", ["coords", "metadata", "all"])
def test_a_wrong_or_missing_record_is_named_and_written_again(pristine, client, tmp_path, record):
    copy = _copy(pristine, tmp_path)
    meta = json.loads((copy / "zarr.json").read_text())
    records = meta["attributes"]["dfractal_records"]
    if record == "all":  # (a store of this format always has them)
        del meta["attributes"]["dfractal_records"]
    else:
        records[record][next(iter(records[record]))] = 1
    (copy / "zarr.json").write_text(json.dumps(meta))
    assert verify_store(copy).damaged
    _render(copy, client, resume=True)  # (it advised itself, then refused: "made again differs from its record")
    assert verify_store(copy).damaged == []

    def kept(path):
        return json.loads((path / "zarr.json").read_text())["attributes"]["dfractal_records"]

    assert kept(copy) == kept(pristine)
    _same(_decoded(copy), _decoded(pristine))


def test_a_zoom_resume_removes_a_chunk_that_does_not_belong_to_a_coordinate(client, tmp_path):
    from dfractal_dask import open_zoom, zoom

    view = View(-0.5, 0.0, 3.0, 80, 60, 1)
    path = tmp_path / "z.zarr"
    zoom(view, 100, to_span=0.3, frames=3, store_path=path, client=client, chunk_rows=20)
    whole = {v: open_zoom(path)[v].values for v in ("iterations", "norm", "span", "deep")}
    copy = tmp_path / "d.zarr"
    shutil.copytree(path, copy)
    (copy / "deep" / "c").mkdir(parents=True, exist_ok=True)
    shutil.copy(copy / "frame" / "c" / "0", copy / "deep" / "c" / "0")
    assert any("coordinate deep" in d for d in verify_store(copy).damaged)
    with pytest.raises(StoreError, match=r"`dfractal zoom --resume` repairs it"):
        open_zoom(copy)
    zoom(view, 100, to_span=0.3, frames=3, store_path=copy, client=client, chunk_rows=20, resume=True)
    assert verify_store(copy).damaged == []
    _same({v: open_zoom(copy)[v].values for v in whole}, whole)


def test_second_hostile_pass(pristine, client, tmp_path):
    # a file of someone else's beside a damaged coordinate's chunk stays
    copy = _copy(pristine, tmp_path)
    (copy / "re/c/notes.txt").write_text("notes")
    (copy / "re/c/0").write_bytes(b"garbage")
    # a tile of a full row of tiles garbled in its shard's index (zarr read the shard back to update it)
    shard = copy / "pyramid/1/iterations/c/0/0"
    shard.write_bytes(b"junk")
    # a coordinate's record gone: named, not "1 coordinates verified"
    meta = json.loads((copy / "zarr.json").read_text())
    del meta["attributes"]["dfractal_records"]["coords"]["im"]
    (copy / "zarr.json").write_text(json.dumps(meta))
    # a level's record document lost and a tile of another level damaged: both named
    (copy / "pyramid/1/tile_crc/zarr.json").unlink()
    (copy / "pyramid/2/norm/c/0/0").write_bytes(b"junk")
    said = "\n".join(verify_store(copy).damaged)
    for words in ("coordinate re", "coordinate im has no record", "pyramid/1/tile_crc/zarr.json is missing",
                  "pyramid/2/norm tile (row 0, column 0)", "pyramid/1/iterations tile (row 0, column 0)"):  # fmt: skip
        assert words in said, said
    _render(copy, client, resume=True)
    assert (copy / "re/c/notes.txt").read_text() == "notes"
    after = verify_store(copy)
    assert after.damaged == [] and after.coordinates == 2
    _same(_decoded(copy), _decoded(pristine))
    # level 0's metadata altered: named alone, not blamed on the pyramid's documents made from it
    copy2 = _copy(pristine, tmp_path, "m.zarr")
    doc = json.loads((copy2 / "iterations/zarr.json").read_text())
    doc["attributes"] = {"x": 1}
    (copy2 / "iterations/zarr.json").write_text(json.dumps(doc))
    assert verify_store(copy2).damaged == ["iterations/zarr.json is not what was written (checksum)"]
    # zarr's temporary file of a document (killed before its rename) is the store's; leading zeros are not
    meta3 = type("M", (), {"names": ["iterations", "norm"], "zoom": False, "view": VIEW})()
    assert layout.foreign_keys(meta3, ["zarr.4e74ab.partial", "pyramid/zarr.00ff.partial"]) == []
    assert layout.foreign_keys(meta3, ["iterations/c/00/0", "norm/c/007/0"]) == ["iterations/c/00/0", "norm/c/007/0"]


def test_third_hostile_pass(pristine, tmp_path, capsys):
    # a store's own attribute edited (a limit that would recolour it wrongly): named by info and every reader
    copy = _copy(pristine, tmp_path)
    meta = json.loads((copy / "zarr.json").read_text())
    meta["attributes"]["iters"] = 300
    (copy / "zarr.json").write_text(json.dumps(meta))
    assert main(["info", str(copy)]) == 2
    assert "its attributes are not what was written" in capsys.readouterr().err
    assert main(["recolor", str(copy), "--outfile", str(tmp_path / "r.png")]) == 2
    assert "its attributes are not what was written" in capsys.readouterr().err
    with pytest.raises(StoreError, match="its attributes are not what was written"):
        open_render(copy)
    # a folder that is no store is refused as such, not with advice to overwrite it
    other = tmp_path / "other"
    other.mkdir()
    (other / "data.bin").write_text("mine")
    with pytest.raises(StoreError, match="exists and is not a dfractal render store"):
        check_writable(other, overwrite=False)
