"""Issue 27: a store that knows what it owns.  Every piece verified (blocks,
coordinates, metadata, metrics, every pyramid tile), damage named in one line,
resume repairing exactly the damaged pieces, and nothing foreign ever deleted.
Real stores rendered on a cluster of worker processes."""

from __future__ import annotations

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


def test_a_symlink_in_the_store_is_foreign(pristine, tmp_path):
    copy = _copy(pristine, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (copy / "norm" / "c" / "9").symlink_to(outside)
    with pytest.raises(StoreError, match=r"norm/c/9/"):
        check_writable(copy, overwrite=True)
    assert (outside / "keep.txt").read_text() == "keep"


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
    assert layout.foreign_keys(None, ["pyramid/9/norm/c/0/0", "distance/zarr.json"]) == []


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


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
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
