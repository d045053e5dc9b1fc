"""The bilinear approximation (dfractal_dask.bla) in the perturbation kernel,
checked against direct arbitrary-precision iteration and against the exact kernel."""

from __future__ import annotations

import hashlib

import gmpy2
import numpy as np
import pytest

from dfractal_dask import View, fractal_dataset, open_render, places, render
from dfractal_dask import bla as B
from dfractal_dask import perturbation as P
from dfractal_dask.cli import main
from dfractal_dask.protocol import task_key
from dfractal_dask.store import StoreError

# the tests' 1e-30 view (tests/test_perturbation.py), the README's 1e-60 one, seahorse valley
MIS_X, MIS_Y = places.BRANCH_POINT_45
DEEP_X, DEEP_Y = places.BRANCH_POINT
SEA_X, SEA_Y = places.SEAHORSE


def direct_count(view: View, i: int, j: int, iters: int) -> int:
    """The escape count of sample ``(i, j)``, iterating ``z² + c`` in gmpy2
    ``mpc`` numbers of :func:`~dfractal_dask.perturbation.precision_bits` bits."""
    re, im = P.sample_point(view, i, j)
    bits = P.precision_bits(view) + 64  # bits after the point, and the integer part's
    with gmpy2.context(precision=bits):
        c = gmpy2.mpc(
            gmpy2.mpfr(gmpy2.mpq(re.numerator, re.denominator)), gmpy2.mpfr(gmpy2.mpq(im.numerator, im.denominator))
        )
        z = gmpy2.mpc(0)
        for n in range(iters):
            if gmpy2.norm(z) > 4:
                return n
            z = z * z + c
    return iters


def kernel(view: View, iters: int, orbit: P.Orbit, table: B.BlaTable | None) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The whole view against ``orbit``: ``(iterations, norm, steps executed, steps skipped)``."""
    h, w = view.sample_height, view.sample_width
    it, norm, flag = np.empty((h, w), np.uint32), np.empty((h, w), np.float32), np.ones((h, w), np.uint8)
    work, saved = P._run(it, norm, flag, orbit, view, 0, table=table)
    assert not (flag == 2).any()
    return it, norm, work, saved


VIEWS = {
    "1e-30": (View(MIS_X, MIS_Y, span=1e-30, width=48, height=36, supersample=1), 1000),
    "1e-60": (View(DEEP_X, DEEP_Y, span=1e-60, width=64, height=48, supersample=1), 2000),
    "seahorse 1e-22": (View(SEA_X, SEA_Y, span=1e-22, width=48, height=32, supersample=1), 30000),
}


@pytest.mark.parametrize("series", [True, False], ids=["after the series", "from the start"])
@pytest.mark.parametrize("name", ["1e-30", "1e-60"])
def test_counts_agree_with_direct_arbitrary_precision(name, series):
    v, iters = VIEWS[name]
    orbit = P.choose_reference(v, iters, series=series)
    table = P.bla_table(v, orbit)
    it, _, _, saved = kernel(v, iters, orbit, table)
    if not series:  # the series leaves BLA little to do on these views; without it BLA does it all
        assert saved > 0.4 * it.astype(np.int64).sum()
    rng = np.random.default_rng(18)
    picks = rng.choice(v.sample_height * v.sample_width, 200, replace=False)
    agree = sum(it.flat[k] == direct_count(v, *divmod(int(k), v.sample_width), iters) for k in picks)
    assert agree / len(picks) >= 0.999, f"{agree}/{len(picks)} = {agree / len(picks):.2%} agree"


def test_high_iterations_agree_with_direct_arbitrary_precision_as_often_as_the_exact_kernel():
    # counts of 9 000+ lingering near a minibrot: chaotic samples, where float64
    # deltas are not always right even without BLA (see dfractal_dask.perturbation)
    v, iters = VIEWS["seahorse 1e-22"]
    orbit = P.choose_reference(v, iters)
    exact = kernel(v, iters, orbit, None)
    it, _, work, saved = kernel(v, iters, orbit, P.bla_table(v, orbit))
    assert saved > 0.6 * work and work < 0.6 * exact[2]
    rng = np.random.default_rng(18)
    picks = rng.choice(v.sample_height * v.sample_width, 200, replace=False)
    direct = [direct_count(v, *divmod(int(k), v.sample_width), iters) for k in picks]
    agree = sum(it.flat[k] == d for k, d in zip(picks, direct, strict=True))
    agree_exact = sum(exact[0].flat[k] == d for k, d in zip(picks, direct, strict=True))
    assert agree >= agree_exact and agree >= 0.99 * len(picks), f"{agree}/200 agree (the exact kernel: {agree_exact})"


@pytest.mark.parametrize(
    ("name", "most", "norms"), [("1e-30", 0.999, 0.999), ("1e-60", 0.999, 0.999), ("seahorse 1e-22", 0.995, 0.95)]
)
def test_bla_agrees_with_the_exact_kernel_on_every_pixel(name, most, norms):
    # (in seahorse valley both are sometimes wrong, on different chaotic samples (see the
    # test above), and the norm at escape of a sample lingering there is ill-conditioned)
    v, iters = VIEWS[name]
    for series in (True, False):
        orbit = P.choose_reference(v, iters, series=series)
        exact = kernel(v, iters, orbit, None)
        fast = kernel(v, iters, orbit, P.bla_table(v, orbit))
        same = (exact[0] == fast[0]).mean()
        assert same >= most, f"{same:.4%} of counts agree ({name}, series={series})"
        close = np.isclose(exact[1], fast[1], rtol=1e-4).mean()
        assert close >= norms, f"{close:.4%} of norms agree"
        # executed plus skipped: at most the exact steps, but for samples whose count BLA puts later
        later = np.maximum(fast[0].astype(np.int64) - exact[0].astype(np.int64), 0).sum()
        assert fast[2] + fast[3] <= exact[2] + later
        assert fast[2] < exact[2] or series


# the exact kernel (no table) as it was before BLA: digests of iterations + norm, and the steps (commit 0de5b31)
BEFORE_BLA = [
    (DEEP_X, DEEP_Y, 1e-60, 2000, True, "3986a51e59ca4945238bddda97d80b5dfc3a663cb62f8abb4016c1714d2b72af", 113827),
    (DEEP_X, DEEP_Y, 1e-60, 2000, False, "2c90ce82c94901bbbb100f73442bebb2e7b4f41a6db886511b55b5315be7c6a0", 853411),
    (SEA_X, SEA_Y, 1e-22, 30000, True, "1b69b376e3d3bc0227e672c4871f14d260d3bea7a78833ef1efb4055b554eac7", 14350461),
]


@pytest.mark.parametrize(("x", "y", "span", "iters", "series", "digest", "work"), BEFORE_BLA)
def test_without_a_table_the_kernel_is_bit_for_bit_the_one_before_bla(
    x, y, span, iters, series, digest, work, monkeypatch
):
    # the references as they were then: the fixed-point orbit, no nucleus
    def fixed_point_reference(view, iters, i, j):
        z, norm = P.fixed_point_orbit(*P.sample_point(view, i, j), P.precision_bits(view), iters)
        return P.Orbit(np.ascontiguousarray(z.real), np.ascontiguousarray(z.imag), float(i), float(j), iters, norm)

    monkeypatch.setattr(P, "reference_orbit", fixed_point_reference)
    v = View(x, y, span=span, width=48, height=36, supersample=1)
    orbit = P.choose_reference(v, iters, series=series, nucleus=False)
    for table in (None, B.empty_table()):
        it, norm, steps, used = P.perturbation_block(v, iters, 0, 36, orbit, table=table)
        assert (hashlib.sha256(it.tobytes() + norm.tobytes()).hexdigest(), steps, used) == (digest, work, 0)


def _single(zr, zi, m):
    return 2 * complex(zr[m], zi[m]), 1.0 + 0j


def test_merged_entries_are_the_compositions_of_their_steps():
    v, iters = VIEWS["seahorse 1e-22"]
    orbit = P.choose_reference(v, iters)
    t = P.bla_table(v, orbit)
    assert t.levels >= 8 and len(t.offsets) == t.levels + 1 and t.low == B.LOWEST_LEVEL
    rng = np.random.default_rng(1)
    for lv in range(t.levels):
        span = 1 << (t.low + lv)
        count = int(t.offsets[lv + 1] - t.offsets[lv])
        assert count == (orbit.length - 1) // span  # whole pieces of steps 1 .. M-1
        for k in rng.choice(count, min(count, 3), replace=False):
            e = int(t.offsets[lv] + k)
            start = 1 + int(k) * span
            a, b, r = 1 + 0j, 0j, np.inf
            for m in range(start, start + span):  # compose x = (a, b, r) then the single step y at m
                ay, by = _single(orbit.zr, orbit.zi, m)
                z = abs(complex(orbit.zr[m], orbit.zi[m]))
                ry = max(0.0, min(2 * t.eps * z, 2 - z))
                r = min(r, max(0.0, (ry - abs(b) * t.dc_max) / abs(a)))
                a, b = ay * a, ay * b + by
            assert complex(t.ar[e], t.ai[e]) == pytest.approx(a, rel=1e-9, abs=0)
            assert complex(t.br[e], t.bi[e]) == pytest.approx(b, rel=1e-9, abs=0)
            # (the table merges pairs, this loop one step at a time: the same bound, within rounding)
            assert t.r[e] == pytest.approx(r, rel=1e-6) or t.r[e] < r


def test_a_skip_inside_its_radius_is_the_iterated_steps_within_eps():
    v, iters = VIEWS["seahorse 1e-22"]
    orbit = P.choose_reference(v, iters)
    t = P.bla_table(v, orbit)
    rng = np.random.default_rng(2)
    checked = 0
    for lv in range(t.levels):
        span = 1 << (t.low + lv)
        live = np.nonzero(t.r[t.offsets[lv] : t.offsets[lv + 1]] > 0)[0]
        for k in rng.choice(live, min(len(live), 4), replace=False) if len(live) else ():
            e = int(t.offsets[lv] + k)
            for _ in range(3):
                dz = t.r[e] * rng.uniform(0, 0.7) * np.exp(2j * np.pi * rng.uniform())
                dc = t.dc_max * rng.uniform(0, 1) * np.exp(2j * np.pi * rng.uniform())
                a, b = complex(t.ar[e], t.ai[e]), complex(t.br[e], t.bi[e])
                skipped = a * dz + b * dc
                w = dz
                for m in range(1 + int(k) * span, 1 + (int(k) + 1) * span):
                    zm = complex(orbit.zr[m], orbit.zi[m])
                    assert abs(zm + w) <= 2 and abs(zm + w) > abs(w)  # no escape, no rebase inside the skip
                    w = 2 * zm * w + w * w + dc
                scale = abs(a) * abs(dz) + abs(b) * abs(dc)
                assert abs(skipped - w) <= span * t.eps * scale, (lv, k)
                checked += 1
    assert checked > 30


def test_the_table_is_small_and_refuses_bad_input():
    zr = np.linspace(0.0, 0.5, 1_000_001)
    t = B.build_table(zr, np.zeros_like(zr), 1e-150)
    assert t.levels == 17 and t.low == 3  # levels 3 .. 19 (2**19 steps fit in 999 999, 2**20 do not)
    assert 9_900_000 < t.nbytes <= 10_100_000  # ~ M / 4 entries of 5 float64 at low = 3: 10 MB
    assert B.build_table(zr[:10], np.zeros(10), 1e-10).levels == 1  # steps 1 .. 8: one entry of 8
    assert B.build_table(zr[:9], np.zeros(9), 1e-10).levels == 0  # steps 1 .. 7: none
    with pytest.raises(ValueError, match="eps"):
        B.build_table(zr, np.zeros_like(zr), 1e-10, eps=0.5)
    with pytest.raises(ValueError, match="dc_max"):
        B.build_table(zr, np.zeros_like(zr), float("nan"))
    with pytest.raises(ValueError, match="zr and zi"):
        B.build_table(zr, np.zeros(3), 1e-10)


@pytest.mark.parametrize("chunk_rows", [1, 7, 36])
def test_results_do_not_depend_on_chunk_rows(chunk_rows):
    v, iters = VIEWS["1e-30"]
    ds = fractal_dataset(v, iters, chunk_rows).compute(scheduler="sync")
    orbit = P.choose_reference(v, iters)
    it, norm, *_ = kernel(v, iters, orbit, P.bla_table(v, orbit))
    assert np.array_equal(ds.iterations.values, it) and np.array_equal(ds.norm.values, norm)


def test_the_table_is_one_task_after_the_reference_and_exact_has_none():
    v, iters = VIEWS["1e-30"]
    lazy = fractal_dataset(v, iters, 9)
    graph = dict(lazy.__dask_graph__())
    keys = [str(k) for k in graph if str(k).startswith("dfractal-bla-")]
    assert len(keys) == 1
    rid = keys[0].split("-")[2]
    assert keys[0] == task_key("bla", rid, 0) and lazy.attrs["bla"] is True
    deps = lazy.__dask_graph__().dependencies
    assert task_key("reference", rid, 0) in {str(d) for d in deps[keys[0]]}
    kernels = [k for k in graph if str(k).startswith("dfractal-kernel-")]
    assert len(kernels) == 4 and all(keys[0] in {str(d) for d in deps[k]} for k in kernels)
    exact = fractal_dataset(v, iters, 9, exact=True)
    assert not [k for k in exact.__dask_graph__() if str(k).startswith("dfractal-bla-")]
    assert exact.attrs["bla"] is False
    assert "bla" not in fractal_dataset(View(), 100).attrs  # a render without deep views has no BLA to tell
    with pytest.raises(TypeError, match="exact must be True or False"):
        fractal_dataset(v, iters, exact="yes")


def test_exact_from_the_command_line_and_a_resume_must_match_it(client1, tmp_path, capsys):
    out, store = tmp_path / "deep.png", tmp_path / "deep.zarr"
    flags = [
        "--width",
        "24",
        "--height",
        "18",
        "--smoothness",
        "2",
        "--iters",
        "1000",
        "--xpos",
        MIS_X,
        "--ypos",
        MIS_Y,
    ]
    flags += ["--escape-radius", "1e-30", "--scheduler", client1.scheduler.address, "--outfile", str(out), "-q"]
    assert main(["render", *flags, "--exact"]) == 0
    exact = render(View(MIS_X, MIS_Y, 1e-30, 24, 18, 2), 1000, client=client1, exact=True)
    ds = open_render(store)
    assert ds.attrs["bla"] is False and np.array_equal(ds.iterations.values, exact.iterations.values)
    capsys.readouterr()
    assert main(["render", *flags, "--resume"]) == 2  # BLA asked for, the store made without
    assert "approximation (off with --exact) True here, False in the store" in capsys.readouterr().err  # as flags
    with pytest.raises(StoreError, match="bla True here, False in the store"):
        render(View(MIS_X, MIS_Y, 1e-30, 24, 18, 2), 1000, client=client1, store_path=store, resume=True)
    assert main(["render", *flags, "--resume", "--exact"]) == 0


# the nucleus of a period-8007 minibrot beside the seahorse view (Newton from its centre)
MINI_X = "-0.7436438870371587047521915061147797782152562079481812898168839018185607357837964786347878227621444619"
MINI_Y = "0.1318259042053119704931320563851406789729522793289189662091276774655134817382983372347389641803676381"


def test_interior_samples_stop_early_and_never_escape():
    v, iters = View(MINI_X, MINI_Y, span=1e-32, width=32, height=24, supersample=1), 100_000
    orbit = P.choose_reference(v, iters)
    table = P.bla_table(v, orbit)
    exact = P.perturbation_block(v, iters, 0, 24, orbit)
    plain = P.perturbation_block(v, iters, 0, 24, orbit, table=table)
    it, norm, work, _ = P.perturbation_block(v, iters, 0, 24, orbit, table=table, interior=P.INTERIOR_DERIVATIVE)
    inside = np.isnan(norm)
    assert inside.sum() > 0.3 * it.size and (it[inside] == iters).all()
    assert (exact[0][inside] == iters).all()  # every one the exact kernel says never escaped
    assert np.array_equal(it, plain[0]) and np.array_equal(norm[~inside], plain[1][~inside])  # nothing else changed
    assert work < plain[2] < exact[2] / 50
    rng = np.random.default_rng(8007)
    for k in rng.choice(np.flatnonzero(inside), 8, replace=False):
        assert direct_count(v, *divmod(int(k), v.sample_width), iters) == iters
    # in a render: NaN norms where interior, as kernels.INTERIOR leaves them; exact=True iterates them all
    ds = fractal_dataset(v, iters, 12).compute(scheduler="sync")
    assert np.array_equal(np.isnan(ds.norm.values), inside)
    assert not np.isnan(fractal_dataset(v, iters, 12, exact=True).norm.values).any()


def test_a_deep_zoom_and_the_explorer_build_one_table_per_deep_frame():
    """Everything deep takes BLA: a zoom has one reference and one table task
    per deep frame (none for its shallow first frame), an explorer frame of a
    deep view one of each; ``exact=True`` drops the tables."""
    from dfractal_dask import zoom_views
    from dfractal_dask.explorer.session import frame_tasks
    from dfractal_dask.graph import zoom_dataset

    def count(keys, kind: str) -> int:
        return sum(str(k).startswith(f"dfractal-{kind}-") for k in keys)

    v = View(DEEP_X, DEEP_Y, span=1e-5, width=32, height=24, supersample=1)
    views = zoom_views(v, 5, 1e-40)
    ds = zoom_dataset(views, 500, 8)
    assert ds["deep"].values.tolist() == [False, True, True, True, True]
    assert count(ds.__dask_graph__(), "reference") == count(ds.__dask_graph__(), "bla") == 4
    assert count(zoom_dataset(views, 500, 8, exact=True).__dask_graph__(), "bla") == 0
    frame = frame_tasks(View(DEEP_X, DEEP_Y, span=1e-30, width=32, height=24, supersample=1), 500, "Hippi", "smooth")
    keys = {k for t in frame for k in t.__dask_graph__()}
    assert count(keys, "reference") == count(keys, "bla") == 1
