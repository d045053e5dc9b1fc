import itertools

import dask
import numpy as np
import pytest

from dfractal_dask import graph
from dfractal_dask.view import View


@pytest.mark.parametrize(
    "view",
    [View(), View(width=10, height=3, supersample=1), View(width=1920, height=1080, supersample=10), View(width=1)],
)
def test_blocks_tile_the_rows(view):
    bs = graph.blocks(view)
    assert bs[0].row0 == 0 and bs[-1].row1 == view.sample_height
    assert all(a.row1 == b.row0 for a, b in itertools.pairwise(bs))
    assert [b.index for b in bs] == list(range(len(bs)))
    assert all(b.nrows % view.supersample == 0 for b in bs)


def test_default_block_size():
    v = View()  # 8192 x 6144 samples
    rows = graph.default_chunk_rows(v)
    assert rows % v.supersample == 0
    target = dask.config.get("dfractal.block-samples")
    assert 0.5 * target <= rows * v.sample_width <= 2 * target
    # a short picture is still cut into several blocks so workers share it
    short = View(width=4096, height=64, supersample=1)
    assert len(graph.blocks(short)) >= 8


@pytest.mark.parametrize(
    ("rows", "exc", "words"), [(0, ValueError, "> 0"), (3, ValueError, "multiple"), (2.0, TypeError, "integer")]
)
def test_bad_chunk_rows(rows, exc, words):
    with pytest.raises(exc, match=words):
        graph.blocks(View(width=8, height=8, supersample=2), rows)


@pytest.mark.parametrize(("iters", "exc"), [(0, ValueError), (-1, ValueError), (2**32, ValueError), (5.0, TypeError)])
def test_bad_iters(iters, exc):
    with pytest.raises(exc, match="iters"):
        graph.fractal_dataset(View(width=4, height=4, supersample=1), iters)


def test_dataset_is_lazy_one_chunk_per_block():
    v = View(xpos=-0.5, ypos=0.1, span=2.5, width=30, height=20, supersample=2)
    ds = graph.fractal_dataset(v, 100, chunk_rows=8)
    assert ds.iterations.chunks == ((8, 8, 8, 8, 8), (60,))
    assert ds.norm.dtype == np.float32 and ds.iterations.dtype == np.uint16
    assert np.array_equal(ds.re.values, v.re()) and np.array_equal(ds.im.values, v.im())
    assert ds.attrs["iters"] == 100 and View.from_attrs(ds.attrs) == v
    assert len(ds.iterations.data.dask) > 0  # nothing computed yet


def test_counts_do_not_depend_on_block_size():
    v = View(xpos=-0.7436, ypos=0.1318, span=0.01, width=50, height=37, supersample=1)
    results = [graph.fractal_dataset(v, 500, rows).compute(scheduler="threads") for rows in (1, 7, 37)]
    for other in results[1:]:
        assert np.array_equal(results[0].iterations.values, other.iterations.values)
        assert np.array_equal(results[0].norm.values, other.norm.values)


def test_block_costs_track_the_real_work_of_each_block():
    """The sparse probe ranks blocks as the kernel's real work does."""
    from dfractal_dask.graph import block_costs, blocks, compute_block

    view = View(-0.6, 0.1, 2.8, 200, 150, 2)  # the cardioid's rows cost ~iters per sample, the edges a few
    bs = blocks(view, 20)
    real = np.array([compute_block(view, 1500, b)[2] for b in bs], float)
    est = block_costs(view, 1500, bs, probe_samples=2000)
    assert est.shape == real.shape and (est > 0).all()
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731
    spearman = np.corrcoef(rank(est), rank(real))[0, 1]
    assert spearman > 0.9, (spearman, est, real)
    assert np.argmax(est) in np.argsort(real)[-2:]
    assert 0.5 < est.sum() / real.sum() < 2.0


def test_block_priorities_put_the_costliest_first():
    from dfractal_dask.graph import block_priorities

    pr = block_priorities(np.array([5.0, 90.0, 1.0, 90.0, 30.0]))
    assert sorted(pr) == [0, 1, 2, 3, 4]
    assert pr[1] == 4 and pr[3] == 3 and pr[4] == 2 and pr[0] == 1 and pr[2] == 0  # ties keep block order


def test_block_shortcuts_look_for_cycles_only_where_the_probe_finds_interior():
    from dfractal_dask import kernels
    from dfractal_dask.graph import CYCLES_FROM, block_shortcuts, blocks, compute_block, probe_blocks

    view = View(-0.6, 0.1, 2.8, 200, 150, 2)
    bs = blocks(view, 20)
    levels = block_shortcuts(view, 1500, bs, probe_samples=2000)
    _, interior = probe_blocks(view, 1500, bs, probe_samples=2000)
    assert set(levels) == {kernels.BRUTE, kernels.CYCLES}  # edge rows brute force, cardioid rows cycles
    for b, level, frac in zip(bs, levels, interior, strict=True):
        assert (level == kernels.CYCLES) == (frac >= CYCLES_FROM)
        got, ref = compute_block(view, 1500, b, level), compute_block(view, 1500, b, kernels.BRUTE)
        np.testing.assert_array_equal(got[0], ref[0])
        assert got[1].tobytes() == ref[1].tobytes() and got[2] == ref[2]
