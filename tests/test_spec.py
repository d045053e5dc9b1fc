"""The render spec (dfractal_dask.spec), and what renders and zooms write.

``data/spec_golden.json`` was captured from the code before the spec existed
(commit 0280724): a digest of every file each store holds (its ``store_id``
aside), of its arrays, its attributes, and the keys of its graph.  Renders
and zooms made today must match it byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from dfractal_dask import View, fractal_dataset, graph, render, zoom
from dfractal_dask.fractals import Fractal
from dfractal_dask.graph import zoom_dataset, zoom_template
from dfractal_dask.view import zoom_views

GOLDEN = json.loads((Path(__file__).parent / "data" / "spec_golden.json").read_text())

V = View(-0.7436, 0.1318, 0.02, 30, 20, 2)
CENTRE = ("-0.743643887037158704752191506114774", "0.131825904205311970493132056385139")
RENDERS = {
    "plain": {"view": V, "iters": 200, "chunk_rows": 8},
    "distance": {"view": V, "iters": 200, "chunk_rows": 12, "distance": True},
    "julia": {"view": View(0.0, 0.0, 3.0, 24, 16, 1), "iters": 100, "fractal": Fractal("julia", c=-0.8 + 0.156j)},
    "deep": {"view": View(*CENTRE, 1e-20, 24, 16, 1), "iters": 300, "chunk_rows": 4},
}
ZOOMS = {
    "plain": {
        "view": View(-0.7436, 0.1318, 0.5, 24, 16, 1),
        "iters": 100,
        "to_span": 0.01,
        "frames": 3,
        "chunk_rows": 4,
    },
    "deep": {"view": View(*CENTRE, 1e-10, 16, 12, 1), "iters": 200, "to_span": 1e-16, "frames": 3, "chunk_rows": 6},
}


def store_digest(path: Path) -> str:
    """SHA-256 of every file of a store but its lease, its ``store_id`` left out."""
    h = hashlib.sha256()
    for f in sorted(p for p in Path(path).rglob("*") if p.is_file()):
        rel = f.relative_to(path).as_posix()
        if rel.startswith("dfractal_lease"):
            continue
        data = f.read_bytes()
        if f.name == "zarr.json":
            meta = json.loads(data)
            meta.get("attributes", {}).pop("store_id", None)
            data = json.dumps(meta).encode()
        h.update(rel.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def arrays_digest(ds: xr.Dataset) -> str:
    """SHA-256 of a dataset's variables and coordinates, by name."""
    h = hashlib.sha256()
    for name in sorted(ds.data_vars):
        h.update(name.encode() + np.ascontiguousarray(ds[name].values).tobytes())
    for name in sorted(ds.coords):
        h.update(name.encode() + np.ascontiguousarray(ds[name].values).tobytes())
    return h.hexdigest()


def _dfractal_keys(ds: xr.Dataset) -> list[str]:
    return sorted(str(k) for k in ds.__dask_graph__() if str(k).startswith("dfractal-"))


@pytest.mark.parametrize("name", sorted(RENDERS))
def test_a_render_writes_what_it_wrote_before_the_spec(name, client1, tmp_path):
    kw, want = RENDERS[name], GOLDEN["render"][name]
    ds = render(**kw, store_path=tmp_path / "r.zarr", client=client1)
    assert store_digest(tmp_path / "r.zarr") == want["store"]
    assert {k: v for k, v in ds.attrs.items() if k != "store_id"} == want["attrs"]
    assert list(ds.attrs) == [*want["attrs"], "store_id"]  # in the same order
    assert arrays_digest(ds.drop_vars("block_done")) == want["arrays"]
    mem = render(**kw, client=client1)
    assert dict(mem.attrs) == want["mem_attrs"] and arrays_digest(mem) == want["arrays"]
    lazy = fractal_dataset(kw["view"], kw["iters"], kw.get("chunk_rows"), kw.get("fractal"), kw.get("distance", False))
    assert _dfractal_keys(lazy) == GOLDEN["keys"][f"render-{name}"]
    assert arrays_digest(lazy.compute(scheduler="sync")) == want["arrays"]


@pytest.mark.parametrize("name", sorted(ZOOMS))
def test_a_zoom_writes_what_it_wrote_before_the_spec(name, client1, tmp_path):
    kw, want = ZOOMS[name], GOLDEN["zoom"][name]
    ds = zoom(**kw, store_path=tmp_path / "z.zarr", client=client1)
    assert store_digest(tmp_path / "z.zarr") == want["store"]
    assert {k: v for k, v in ds.attrs.items() if k != "store_id"} == want["attrs"]
    assert arrays_digest(ds.drop_vars("frame_done")) == want["arrays"]
    mem = zoom(**kw, client=client1)
    assert dict(mem.attrs) == want["mem_attrs"] and arrays_digest(mem) == want["arrays"]
    views = zoom_views(kw["view"], kw["frames"], kw["to_span"])
    lazy = zoom_dataset(views, kw["iters"], kw["chunk_rows"])
    assert _dfractal_keys(lazy) == GOLDEN["keys"][f"zoom-{name}"]
    assert dict(zoom_template(views, kw["iters"], kw["chunk_rows"]).attrs) == want["template_attrs"]


def test_block_task_keys_are_unchanged():
    levels = [0, 1, 2, 0, 1]
    tasks = graph.block_tasks(V, 200, 8, shortcuts=levels)
    assert [str(t.key) for _, t in tasks] == GOLDEN["keys"]["block_tasks"]
