"""render() on real dask clusters (worker processes, see conftest.py)."""

import re

import numpy as np
import pytest

from dfractal_dask import RenderStats, View, open_render, render
from dfractal_dask.fractals import Fractal
from dfractal_dask.store import StoreError

VIEW = View(xpos=-0.7436, ypos=0.1318, span=0.02, width=60, height=45, supersample=2)
ITERS = 400


def _counts(ds):
    return ds.iterations.values, ds.norm.values


def test_same_counts_for_any_block_size_and_worker_count(client, client1, tmp_path):
    results = {}
    for rows in (2, 18, 90):
        results[("2 workers", rows)] = _counts(
            render(VIEW, ITERS, store_path=tmp_path / f"w2-{rows}.zarr", client=client, chunk_rows=rows)
        )
    assert len(client1.scheduler_info()["workers"]) == 1 and len(client.scheduler_info()["workers"]) == 2
    results[("1 worker", 18)] = _counts(
        render(VIEW, ITERS, store_path=tmp_path / "w1.zarr", client=client1, chunk_rows=18)
    )
    ref_it, ref_norm = results[("2 workers", 2)]
    assert ref_it.shape == (90, 120)
    assert len(np.unique(ref_it)) > 20  # a real picture, not a constant
    for it, norm in results.values():
        assert np.array_equal(it, ref_it)
        assert np.array_equal(norm, ref_norm)


def test_render_writes_the_store_from_the_workers(client, tmp_path):
    stats = RenderStats()
    seen = []
    ds = render(
        VIEW,
        ITERS,
        store_path=tmp_path / "r.zarr",
        client=client,
        chunk_rows=10,
        stats=stats,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[0] == (0, 9) and seen[-1] == (9, 9)
    assert stats.blocks == 9 and stats.rows == 90 and stats.samples == 90 * 120
    # the kernel's own work count equals the stored counts (one update per step)
    assert stats.iterations == int(ds.iterations.values.astype(np.int64).sum())
    assert stats.bytes_written == sum(
        p.stat().st_size
        for name in ("iterations", "norm")
        for p in (tmp_path / "r.zarr" / name / "c").rglob("*")
        if p.is_file()
    )
    # every block ran on a worker, not on the client
    workers = set(client.scheduler_info()["workers"])
    assert workers
    reopened = open_render(tmp_path / "r.zarr")
    assert np.array_equal(reopened.iterations.values, ds.iterations.values)


def test_in_memory_render_equals_stored(client, tmp_path):
    mem = render(VIEW, ITERS, client=client, chunk_rows=30)
    stored = render(VIEW, ITERS, store_path=tmp_path / "s.zarr", client=client)
    assert np.array_equal(mem.iterations.values, stored.iterations.values)


def test_existing_store_refused_before_any_work(client, tmp_path):
    path = tmp_path / "r.zarr"
    render(VIEW, 50, store_path=path, client=client)
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match="already exists"):
        render(View(width=8, height=8, supersample=1), 50, store_path=path, client=client)
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    ds = render(View(width=8, height=8, supersample=1), 50, store_path=path, client=client, overwrite=True)
    assert ds.iterations.shape == (8, 8)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"view": "x"}, TypeError),
        ({"iters": 0}, ValueError),
        ({"retries": -1}, ValueError),
        ({"chunk_rows": 3}, ValueError),
        ({"fractal": "julia"}, TypeError),
    ],
)
def test_bad_arguments(kwargs, exc, tmp_path):
    args = {"view": VIEW, "iters": 10, **kwargs}
    with pytest.raises(exc):
        render(args.pop("view"), args.pop("iters"), store_path=tmp_path / "x.zarr", **args)
    assert not (tmp_path / "x.zarr").exists()


def test_resume_computes_only_the_missing_blocks(client, tmp_path):
    import zarr

    ref = render(VIEW, ITERS, store_path=tmp_path / "ref.zarr", client=client, chunk_rows=10)
    path = tmp_path / "cut.zarr"
    render(VIEW, ITERS, store_path=path, client=client, chunk_rows=10)
    # an interrupted render: blocks 2 and 5 never finished; block 5 is half-written (garbage, no flag)
    group = zarr.open_group(str(path), mode="r+")
    group["block_done"][2] = 0
    group["block_done"][5] = 0
    group["iterations"][50:55, :] = 7
    stats = RenderStats()
    ds = render(VIEW, ITERS, store_path=path, client=client, chunk_rows=10, resume=True, stats=stats)
    assert (stats.resumed, stats.blocks, stats.rows) == (7, 2, 20)
    assert sorted(r["block"] for r in stats.per_block) == [2, 5]
    np.testing.assert_array_equal(ds.iterations.values, ref.iterations.values)
    np.testing.assert_array_equal(ds.norm.values, ref.norm.values)
    # nothing left to do: resuming again computes nothing
    stats = RenderStats()
    render(VIEW, ITERS, store_path=path, client=client, chunk_rows=10, resume=True, stats=stats)
    assert (stats.resumed, stats.blocks) == (9, 0)
    # resume with no store yet: a fresh render
    stats = RenderStats()
    render(VIEW, ITERS, store_path=tmp_path / "new.zarr", client=client, chunk_rows=10, resume=True, stats=stats)
    assert (stats.resumed, stats.blocks) == (0, 9)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"iters": 401}, "iters 401 here, 400 in the store"),
        ({"view": View(xpos=-0.7, ypos=0.1318, span=0.02, width=60, height=45, supersample=2)}, "xpos -0.7 here"),
        ({"view": View(xpos=-0.7436, ypos=0.1318, span=0.02, width=60, height=46, supersample=2)}, "height 46"),
        ({"chunk_rows": 20}, "chunk_rows 20 here, 10 in the store"),
        ({"fractal": Fractal("burning_ship")}, "fractal 'burning_ship' here, 'mandelbrot' in the store"),
        ({"fractal": Fractal("multibrot", 3)}, "power 3 here, 2 in the store"),
        ({"overwrite": True}, "resume=True and overwrite=True exclude each other"),
        ({"perturbation": True}, "perturbation True here, False in the store"),
    ],
)
def test_resume_refuses_a_store_of_another_render(client, tmp_path, change, words):
    path = tmp_path / "s.zarr"
    render(VIEW, ITERS, store_path=path, client=client, chunk_rows=10)
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    kwargs = {"view": VIEW, "iters": ITERS, "chunk_rows": 10, **change}
    with pytest.raises(ValueError, match=words):
        render(kwargs.pop("view"), kwargs.pop("iters"), store_path=path, client=client, resume=True, **kwargs)
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before


def test_twenty_concurrent_renders_on_one_cluster_all_complete_correctly(client, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    from dfractal_dask import fractal_dataset
    from dfractal_dask.metrics import scheduler_report

    views = [View(xpos=-0.75 + 0.01 * k, ypos=0.1 + 0.005 * k, span=0.05, width=40, height=30, supersample=2)
             for k in range(20)]  # fmt: skip

    def one(k):
        stats = RenderStats()
        ds = render(views[k], 300, store_path=tmp_path / f"c{k}.zarr", client=client, chunk_rows=10, stats=stats)
        return ds, stats

    with ThreadPoolExecutor(20) as pool:  # 20 renders in flight at once, one client, one cluster
        results = list(pool.map(one, range(20)))
    assert len({s.render_id for _, s in results}) == 20
    for k, (ds, stats) in enumerate(results):
        local = fractal_dataset(views[k], 300).compute(scheduler="sync")
        np.testing.assert_array_equal(ds.iterations.values, local.iterations.values)
        np.testing.assert_array_equal(ds.norm.values, local.norm.values)
        assert stats.blocks == 6 and int(ds.block_done.sum()) == 6
        report = client.run_on_scheduler(scheduler_report, render_id=stats.render_id)
        assert report["blocks_done"] == 6 and report["total"]["iterations"] == stats.iterations


def test_balance_starts_the_costliest_blocks_first(client, tmp_path):
    """On an interior-heavy view the workers start on the blocks that cost the
    most (real per-block work reported by the workers), not in row order."""
    from distributed import get_task_stream

    view = View(-0.6, 0.0, 2.8, 120, 90, 2)  # 180 sample rows: 18 blocks, the middle ones ~100x the edges
    stats = RenderStats()
    with get_task_stream(client) as ts:
        render(view, 3000, store_path=tmp_path / "b.zarr", client=client, chunk_rows=10, stats=stats)
    work = {row["block"]: row["iterations"] for row in stats.per_block}
    starts = sorted(
        (min(s["start"] for s in t["startstops"] if s["action"] == "compute"), int(str(t["key"]).rsplit("-", 1)[1]))
        for t in ts.data
        if "dfractal-kernel" in str(t["key"])
    )
    assert len(starts) == 18
    costliest = sorted(work, key=work.get)[-4:]
    assert {b for _, b in starts[:2]} <= set(costliest), (starts[:4], costliest)
    assert starts[0][1] not in (0, 17)  # dask's own order would begin at an edge


@pytest.mark.parametrize(
    "fractal", [Fractal("julia", c=-0.1226 + 0.7449j), Fractal("burning_ship"), Fractal("multibrot", 4)], ids=str
)
def test_render_a_family_on_the_cluster(client, tmp_path, fractal):
    """A family renders on the workers to the same counts as the kernel here,
    in memory and in a store whose attrs name it; resuming it with another
    Julia parameter is refused."""
    from dfractal_dask.graph import Block, compute_block

    view = View(0.0, 0.0, 3.2, 40, 30, 2)
    mem = render(view, 200, client=client, chunk_rows=10, fractal=fractal)
    it, norm, _ = compute_block(view, 200, Block(0, 0, view.sample_height), fractal=fractal)
    np.testing.assert_array_equal(mem.iterations.values, it)
    np.testing.assert_array_equal(mem.norm.values, norm)
    ds = render(view, 200, client=client, chunk_rows=10, fractal=fractal, store_path=tmp_path / "f.zarr")
    assert Fractal.from_attrs(ds.attrs) == fractal
    np.testing.assert_array_equal(ds.iterations.values, it)
    if fractal.family == "julia":
        with pytest.raises(ValueError, match=r"julia_re -0\.1 here, -0\.1226 in the store"):
            other = Fractal("julia", c=-0.1 + 0.7449j)
            render(view, 200, client=client, chunk_rows=10, fractal=other, store_path=tmp_path / "f.zarr", resume=True)


def test_render_with_distance_stores_the_estimate(client, tmp_path):
    """render(distance=True): the workers store each escaped sample's distance
    estimate beside its count (the same as computed here), the attrs say so,
    and a store without it cannot be resumed into one with it."""
    from dfractal_dask import colorize
    from dfractal_dask.graph import Block, compute_block
    from dfractal_dask.kernels import distance_block

    view = View(-0.7436, 0.1318, 0.02, 40, 30, 2)
    ds = render(view, 400, client=client, chunk_rows=10, store_path=tmp_path / "d.zarr", distance=True)
    assert ds.attrs["distance"] is True and ds.distance.dtype == np.float32
    it, _, _ = compute_block(view, 400, Block(0, 0, view.sample_height))
    expected = distance_block(it, view.re0, view.im0, view.step, 0, 400)
    np.testing.assert_array_equal(ds.distance.values, expected)
    assert np.isnan(ds.distance.values).mean() == (it == 400).mean()
    shaded, smooth = colorize(ds, "Viridis256", mode="distance"), colorize(ds, "Viridis256", mode="smooth")
    assert (shaded[..., :3].astype(int) <= smooth[..., :3].astype(int) + 1).all()  # shading only darkens
    assert (shaded[..., :3].astype(int) < smooth[..., :3].astype(int) - 40).mean() > 0.05  # near the set
    path = tmp_path / "plain.zarr"
    render(view, 400, client=client, chunk_rows=10, store_path=path)
    with pytest.raises(ValueError, match="colour mode 'distance' needs a render made with distance"):
        colorize(open_render(path), mode="distance")
    with pytest.raises(ValueError, match="distance True here, False in the store"):
        render(view, 400, client=client, chunk_rows=10, store_path=path, resume=True, distance=True)
    with pytest.raises(ValueError, match="complex derivative"):
        render(view, 400, client=client, fractal=Fractal("burning_ship"), distance=True)


# a Misiurewicz point to 45 digits (see test_perturbation.py), viewed at span 1e-30
DEEP = View("-0.101096363845622161025785445738622565463805443", "0.956286510809141500771096057729977435809833337",
            span=1e-30, width=40, height=30, supersample=2)  # fmt: skip


def test_deep_render_on_the_cluster_one_reference_orbit(client, tmp_path):
    from distributed import get_task_stream

    from dfractal_dask import perturbation

    assert DEEP.deep
    with get_task_stream(client) as ts:
        ds = render(DEEP, 1000, store_path=tmp_path / "deep.zarr", client=client, chunk_rows=12)
    orbit = perturbation.choose_reference(DEEP, 1000)
    it, norm, *_ = perturbation.perturbation_block(DEEP, 1000, 0, DEEP.sample_height, orbit)
    np.testing.assert_array_equal(ds.iterations.values, it)
    np.testing.assert_array_equal(ds.norm.values, norm)
    assert len(np.unique(it)) > 30
    # the reference orbit was computed once, on one worker, for all 5 blocks on both workers
    names = [t["key"] for t in ts.data if isinstance(t["key"], str)]
    assert sum(k.startswith("dfractal-reference-") for k in names) == 1
    kernels_on = {t["worker"] for t in ts.data if str(t["key"]).startswith("dfractal-kernel-")}
    assert sum(str(k).startswith("dfractal-kernel-") for k in names) == 5 and len(kernels_on) == 2
    # the store keeps the exact centre; offsets from it are the coordinates
    assert ds.attrs["perturbation"]
    assert ds.attrs["centre_re"] == "-0.101096363845622161025785445738622565463805443"
    assert View.from_attrs(ds.attrs) == DEEP
    np.testing.assert_allclose(ds.re.values[[0, -1]], [-5e-31, 5e-31], rtol=1e-12)
    assert np.all(np.diff(ds.im.values) < 0)
    # in memory: the same numbers
    mem = render(DEEP, 1000, client=client, chunk_rows=12)
    np.testing.assert_array_equal(mem.iterations.values, it)


def test_deep_resume_and_a_centre_that_differs_below_float64(client, tmp_path):
    import zarr

    path = tmp_path / "d.zarr"
    ref = render(DEEP, 1000, store_path=path, client=client, chunk_rows=12)
    group = zarr.open_group(str(path), mode="r+")
    group["block_done"][1] = 0
    group["iterations"][12:24, :] = 3
    stats = RenderStats()
    ds = render(DEEP, 1000, store_path=path, client=client, chunk_rows=12, resume=True, stats=stats)
    assert (stats.resumed, stats.blocks) == (4, 1)
    np.testing.assert_array_equal(ds.iterations.values, ref.iterations.values)
    # the 46th digit is past float64's 17: the same floats, another render
    other = View("-0.1010963638456221610257854457386225654638054431", DEEP.ypos,
                 span=1e-30, width=40, height=30, supersample=2)  # fmt: skip
    assert float(other.xpos) == float(DEEP.xpos)
    words = "centre_re '-0.1010963638456221610257854457386225654638054431' here"
    with pytest.raises(ValueError, match=re.escape(words)):
        render(other, 1000, store_path=path, client=client, chunk_rows=12, resume=True)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"fractal": Fractal("julia")}, "renders the Mandelbrot set only"),
        ({"distance": True}, "distance estimation is not available"),
        ({"perturbation": "yes"}, "perturbation must be True, False or None"),
    ],
)
def test_deep_render_bad_arguments(kwargs, words, tmp_path):
    with pytest.raises((ValueError, TypeError), match=words):
        render(DEEP, 100, store_path=tmp_path / "x.zarr", **kwargs)
    assert not (tmp_path / "x.zarr").exists()


def test_zoom_frames_equal_renders_of_each_view(client, tmp_path):
    from distributed import get_task_stream

    from dfractal_dask import zoom
    from dfractal_dask.store import open_zoom
    from dfractal_dask.view import zoom_views

    start = View(DEEP.xpos, DEEP.ypos, span=0.5, width=24, height=18, supersample=2)
    seen = []
    with get_task_stream(client) as ts:
        ds = zoom(start, 600, to_span=1e-25, frames=6, store_path=tmp_path / "z.zarr", client=client,
                  chunk_rows=12, progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    assert seen[0] == (0, 6) and seen[-1] == (6, 6)
    assert ds.iterations.dims == ("frame", "im", "re") and ds.iterations.shape == (6, 36, 48)
    assert ds.iterations.data.chunks == ((1,) * 6, (12, 12, 12), (48,))
    views = zoom_views(start, 6, 1e-25)
    assert list(ds.deep.values) == [v.deep for v in views] == [False, False, False, True, True, True]
    np.testing.assert_array_equal(ds.span.values, [v.span for v in views])
    for k, v in enumerate(views):
        one = render(v, 600, client=client, chunk_rows=12)
        np.testing.assert_array_equal(ds.iterations.values[k], one.iterations.values)
        np.testing.assert_array_equal(ds.norm.values[k], one.norm.values)
    # frames x blocks kernel calls in one graph, on both workers; one reference orbit per deep frame
    keys = [str(t["key"]) for t in ts.data]
    assert sum(k.startswith("dfractal-kernel-") for k in keys) == 6 * 3
    assert sum(k.startswith("dfractal-reference-") for k in keys) == 3
    assert len({t["worker"] for t in ts.data if str(t["key"]).startswith("dfractal-kernel-")}) == 2
    # the store on disk: (frame, im, re) chunks, every frame flagged done
    assert (tmp_path / "z.zarr" / "iterations" / "c" / "5" / "2" / "0").is_file()
    again = open_zoom(tmp_path / "z.zarr")
    assert again.attrs["frames"] == 6 and again.attrs["to_span"] == 1e-25 and again.frame_done.values.all()
    np.testing.assert_array_equal(again.iterations.values, ds.iterations.values)
    # in memory: the same
    mem = zoom(start, 600, to_span=1e-25, frames=6, client=client, chunk_rows=12)
    np.testing.assert_array_equal(mem.iterations.values, ds.iterations.values)


def test_zoom_resume_computes_only_the_missing_frames(client, tmp_path):
    import zarr

    from dfractal_dask import zoom
    from dfractal_dask.store import open_zoom

    start = View(-0.7436, 0.1318, span=0.5, width=20, height=15, supersample=1)
    path = tmp_path / "z.zarr"
    ref = zoom(start, 300, to_span=1e-4, frames=5, store_path=path, client=client, chunk_rows=4)
    # the workers' chunk files (edge blocks of 3 rows included) read the same through zarr itself
    assert ref.iterations.data.chunks[1] == (4, 4, 4, 3)
    np.testing.assert_array_equal(zarr.open_array(str(path / "iterations"), mode="r")[:], ref.iterations.values)
    np.testing.assert_array_equal(zarr.open_array(str(path / "norm"), mode="r")[:], ref.norm.values)
    group = zarr.open_group(str(path), mode="r+")
    group["frame_done"][1] = 0
    group["frame_done"][3] = 0
    group["iterations"][3] = 9  # half-written garbage, not flagged
    with pytest.raises(StoreError, match="2 of 5 frames were never written"):
        open_zoom(path)
    seen = []
    ds = zoom(start, 300, to_span=1e-4, frames=5, store_path=path, client=client, resume=True, chunk_rows=4,
              progress=lambda d, t: seen.append((d, t)))  # fmt: skip
    assert seen[-1] == (2, 2)
    np.testing.assert_array_equal(ds.iterations.values, ref.iterations.values)
    # a store of another zoom, or of a render, is refused; nothing changes
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file()}
    with pytest.raises(StoreError, match="frames 6 here, 5 in the store"):
        zoom(start, 300, to_span=1e-4, frames=6, store_path=path, client=client, resume=True, chunk_rows=4)
    with pytest.raises(StoreError, match=re.escape("to_span 1e-05 here, 0.0001 in the store")):
        zoom(start, 300, to_span=1e-5, frames=5, store_path=path, client=client, resume=True, chunk_rows=4)
    with pytest.raises(StoreError, match="holds a zoom, not a render"):
        open_render(path)
    with pytest.raises(StoreError, match="it holds a zoom"):
        render(start, 300, store_path=path, client=client, resume=True)
    with pytest.raises(StoreError, match="already exists"):
        zoom(start, 300, to_span=1e-4, frames=5, store_path=path, client=client, chunk_rows=4)
    assert {p: p.read_bytes() for p in path.rglob("*") if p.is_file()} == before
    render(start, 50, store_path=tmp_path / "r.zarr", client=client)
    with pytest.raises(StoreError, match="holds a render, not a zoom"):
        zoom(start, 300, to_span=1e-4, frames=5, store_path=tmp_path / "r.zarr", client=client, resume=True)
    with pytest.raises(StoreError, match="holds a render, not a zoom"):
        open_zoom(tmp_path / "r.zarr")


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"frames": 1}, ValueError, "frames must be >= 2"),
        ({"to_span": -1.0}, ValueError, "to_span must be > 0"),
        ({"to_span": 1e-30, "fractal": Fractal("burning_ship")}, ValueError, "Mandelbrot set only"),
        ({"resume": True, "store_path": None}, ValueError, "resume needs a store_path"),
        ({"retries": -1}, ValueError, "retries must be from 0 to 100"),
    ],
)
def test_zoom_bad_arguments(kwargs, exc, words, tmp_path):
    from dfractal_dask import zoom

    args = {"to_span": 1e-3, "frames": 4, "store_path": tmp_path / "z.zarr", **kwargs}
    with pytest.raises(exc, match=words):
        zoom(View(width=8, height=6, supersample=1), 100, **args)
    assert not (tmp_path / "z.zarr").exists()
