import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfractal_dask import kernels
from dfractal_dask.fractals import Fractal


def test_matches_plain_python_reference_on_random_samples():
    rng = np.random.default_rng(1)
    re0, im0, step = -2.2, 1.3, 2.6 / 199
    it, norm, work = kernels.escape_block(re0, im0, step, row0=11, nrows=37, ncols=200, iters=300)
    assert it.dtype == np.uint16 and norm.dtype == np.float32
    for r, j in zip(rng.integers(0, 37, 400), rng.integers(0, 200, 400), strict=True):
        ref_it, ref_norm = kernels.escape_reference(re0 + j * step, im0 - (11 + r) * step, 300)
        assert it[r, j] == ref_it
        assert norm[r, j] == np.float32(ref_norm)
    assert work == int(it.astype(np.int64).sum())  # one update per counted step


def test_escape_rule_edge_cases():
    # c = 0 never escapes: it = iters, norm = |0|^2 / 2 = 0
    it, norm, _ = kernels.escape_block(0.0, 0.0, 1.0, 0, 1, 1, 50)
    assert (it[0, 0], norm[0, 0]) == (50, 0.0)
    # c = 3: z1 = 3, tested at i = 1: |z|^2 = 9 > 4 -> it = 1, norm = 9
    it, norm, work = kernels.escape_block(3.0, 0.0, 1.0, 0, 1, 1, 50)
    assert (it[0, 0], norm[0, 0], work) == (1, 9.0, 1)
    # c = -2 stays on the boundary (|z| = 2 is not > 2): bounded
    it, norm, _ = kernels.escape_block(-2.0, 0.0, 1.0, 0, 1, 1, 64)
    assert (it[0, 0], norm[0, 0]) == (64, 2.0)  # z = 2 at the end: |z|^2/2


def test_bounded_sample_keeps_half_norm():
    ref_it, ref_norm = kernels.escape_reference(-0.1, 0.1, 100)
    it, norm, _ = kernels.escape_block(-0.1, 0.1, 1.0, 0, 1, 1, 100)
    assert ref_it == 100 and it[0, 0] == 100
    assert norm[0, 0] == np.float32(ref_norm)


@pytest.mark.parametrize(("iters", "dtype"), [(1, np.uint16), (65535, np.uint16), (65536, np.uint32)])
def test_count_dtype(iters, dtype):
    assert kernels.count_dtype(iters) == dtype


def test_large_iteration_counts_use_uint32():
    it, _, _ = kernels.escape_block(-0.5, 0.0, 1.0, 0, 1, 1, 70000)
    assert it.dtype == np.uint32 and it[0, 0] == 70000


def test_kernel_module_does_not_import_dask():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(kernels))
    names = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom) for a in n.names
    }
    mods = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert "dask" not in names | mods and "distributed" not in names | mods


VIEWS = {  # (re0, im0, step, rows, cols, iters): each with a short last lane group
    "seed default": (-0.00275 - 0.125689 / 2, 0.78912 + 0.0471, 0.125689 / 1022, 40, 1023, 800),
    "whole set": (-2.2, 1.3, 2.6 / 199, 37, 201, 300),
    "seahorse": (-0.7456, 0.1338, 4e-6, 25, 77, 5000),
    "outside |c| > 2": (2.5, 3.0, 0.01, 3, 19, 50),
    "one iteration": (-1.0, 0.5, 0.01, 4, 33, 1),
    "odd limit": (-0.75, 0.1, 0.001, 6, 50, 17),
    "one column": (-0.5, 0.0, 1.0, 5, 1, 100),
    "deep counts (uint32)": (-0.7436, 0.1318, 1e-7, 2, 20, 70000),
}


@pytest.mark.parametrize("name", list(VIEWS))
def test_lockstep_kernel_equals_the_scalar_kernel_bit_for_bit(name):
    re0, im0, step, rows, cols, iters = VIEWS[name]
    dtype = kernels.count_dtype(iters)
    out = [(np.empty((rows, cols), dtype), np.empty((rows, cols), np.float32)) for _ in range(2)]
    work = [fn(it, nm, re0, im0, step, 3, iters)
            for fn, (it, nm) in zip((kernels.escape_into, kernels.escape_scalar_into), out, strict=True)]  # fmt: skip
    np.testing.assert_array_equal(out[0][0], out[1][0])
    assert out[0][1].tobytes() == out[1][1].tobytes()  # norms identical to the bit
    assert work[0] == work[1] == int(out[0][0].astype(np.int64).sum())


@pytest.mark.parametrize("shortcuts", [kernels.BRUTE, kernels.CYCLES, kernels.INTERIOR])
@pytest.mark.parametrize("name", list(VIEWS))
def test_shortcuts_never_change_a_count(name, shortcuts):
    """BRUTE and CYCLES equal the scalar kernel bit for bit, counts and norms;
    INTERIOR has the same counts and leaves norm NaN exactly where it did not
    iterate (the cardioid and bulb), bit-identical elsewhere."""
    re0, im0, step, rows, cols, iters = VIEWS[name]
    dtype = kernels.count_dtype(iters)
    ref = np.empty((rows, cols), dtype), np.empty((rows, cols), np.float32)
    got = np.empty((rows, cols), dtype), np.empty((rows, cols), np.float32)
    kernels.escape_scalar_into(*ref, re0, im0, step, 3, iters)
    stats = np.zeros(2, np.int64)
    work = kernels.escape_into(*got, re0, im0, step, 3, iters, shortcuts, stats)
    np.testing.assert_array_equal(got[0], ref[0])
    assert work == int(ref[0].astype(np.int64).sum())
    skipped = np.isnan(got[1])
    assert int(skipped.sum()) == stats[1]
    assert got[1][~skipped].tobytes() == ref[1][~skipped].tobytes()
    assert (got[0][skipped] == iters).all()
    if shortcuts < kernels.INTERIOR:
        assert stats[1] == 0
    if shortcuts == kernels.BRUTE:
        assert stats[0] == 0


def test_shortcuts_fire_on_interior_views():
    """On a view mostly inside the set the shortcuts finish most interior
    samples (counted by the kernel), still with brute force's counts."""
    re0, im0, step, rows, cols, iters = -1.6, 0.9, 2.2 / 160, 130, 160, 3000
    ref = np.empty((rows, cols), np.uint16), np.empty((rows, cols), np.float32)
    kernels.escape_scalar_into(*ref, re0, im0, step, 0, iters)
    interior = int((ref[0] == iters).sum())
    assert interior > 3000
    for shortcuts in (kernels.CYCLES, kernels.INTERIOR):
        got = np.empty((rows, cols), np.uint16), np.empty((rows, cols), np.float32)
        stats = np.zeros(2, np.int64)
        kernels.escape_into(*got, re0, im0, step, 0, iters, shortcuts, stats)
        np.testing.assert_array_equal(got[0], ref[0])
        assert stats.sum() <= interior
        assert stats.sum() > 0.8 * interior, (shortcuts, stats, interior)
        if shortcuts == kernels.INTERIOR:
            assert stats[1] > 0.5 * interior
    # a cycle of period 2 (c = -1) and of period 1 (c = -0.1+0.1i), far past any
    # feasible brute force: only an exactly repeating orbit can finish these
    for c in (-1.0 + 0.0j, -0.1 + 0.1j):
        it = np.empty((1, 1), np.uint32)
        nm = np.empty((1, 1), np.float32)
        stats = np.zeros(2, np.int64)
        kernels.escape_into(it, nm, c.real, c.imag, 1.0, 0, 4_000_000_000, kernels.CYCLES, stats)
        assert it[0, 0] == 4_000_000_000 and stats[0] == 1
        for iters in (100_000, 100_001, 100_002):  # the replayed phase of the cycle sets norm
            a = np.empty((1, 1), np.uint32), np.empty((1, 1), np.float32)
            b = np.empty((1, 1), np.uint32), np.empty((1, 1), np.float32)
            kernels.escape_scalar_into(*a, c.real, c.imag, 1.0, 0, iters)
            kernels.escape_into(*b, c.real, c.imag, 1.0, 0, iters, kernels.CYCLES, stats)
            assert a[0][0, 0] == b[0][0, 0] == iters and a[1].tobytes() == b[1].tobytes()


# -- the other families -------------------------------------------------------
FAMILY_VIEWS = {  # fractal, (re0, im0, step, rows, cols, iters): each with a short last lane group
    "julia dendrite-ish": (Fractal("julia", c=-0.8 + 0.156j), (-1.6, 0.95, 3.2 / 57, 34, 58, 300)),
    "julia rabbit": (Fractal("julia", c=-0.1226 + 0.7449j), (-1.5, 1.1, 3.0 / 49, 44, 50, 400)),
    "julia c=-1 (period 2)": (Fractal("julia", c=-1 + 0j), (-1.7, 0.9, 3.4 / 61, 36, 62, 300)),
    "burning ship": (Fractal("burning_ship"), (-2.3, 1.1, 3.6 / 59, 46, 60, 300)),
    "burning ship, the ship": (Fractal("burning-ship"), (-1.82, 0.01, 0.1 / 41, 30, 42, 500)),
    "multibrot d=3": (Fractal("multibrot", power=3), (-1.4, 1.4, 2.8 / 53, 54, 54, 300)),
    "multibrot d=4": (Fractal("multibrot", power=4), (-1.3, 1.3, 2.6 / 45, 46, 46, 300)),
    "multibrot d=7": (Fractal("multibrot", power=7), (-1.25, 1.25, 2.5 / 37, 38, 38, 200)),
}


@pytest.mark.parametrize("name", FAMILY_VIEWS)
def test_each_family_matches_its_plain_python_reference(name):
    """Every sample of a small view, at every shortcut level: the count (and,
    where computed, the norm) equal the plain-Python statement of the family."""
    fractal, (re0, im0, step, rows, cols, iters) = FAMILY_VIEWS[name]
    ref_it = np.empty((rows, cols), np.int64)
    ref_norm = np.empty((rows, cols), np.float32)
    for r in range(rows):
        for j in range(cols):
            ref_it[r, j], ref_norm[r, j] = kernels.escape_reference(re0 + j * step, im0 - r * step, iters, fractal)
    # the views hold both escaping and bounded samples
    assert 0.01 < (ref_it == iters).mean() < 0.95
    for level in (kernels.BRUTE, kernels.CYCLES, kernels.INTERIOR):
        it, norm, work = kernels.escape_block(re0, im0, step, 0, rows, cols, iters, level, fractal)
        np.testing.assert_array_equal(it, ref_it, err_msg=f"{name} level {level}")
        np.testing.assert_array_equal(norm, ref_norm, err_msg=f"{name} level {level}")  # no cardioid test here
        assert work == ref_it.sum()


def test_multibrot_of_power_two_is_the_mandelbrot_set():
    args = (-2.2, 1.3, 2.6 / 99, 0, 60, 100, 300)
    a = kernels.escape_block(*args, kernels.BRUTE, Fractal("multibrot", power=2))
    b = kernels.escape_block(*args, kernels.BRUTE)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert kernels.escape_reference(-0.75, 0.1, 500, Fractal("multibrot", power=2)) == kernels.escape_reference(
        -0.75, 0.1, 500
    )


def test_families_differ_and_julia_starts_at_the_sample():
    """Not one kernel under four names: on the same grid each family gives
    other counts, and a Julia sample outside radius 2 escapes at step 0."""
    grid = (-2.0, 1.5, 3.0 / 63, 0, 48, 64, 200)
    counts = {
        f: kernels.escape_block(*grid, kernels.CYCLES, Fractal(*f))[0]
        for f in [("mandelbrot",), ("julia",), ("burning_ship",), ("multibrot", 3)]
    }
    keys = list(counts)
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            assert (counts[a] != counts[b]).mean() > 0.1, (a, b)
    it, norm, _ = kernels.escape_block(2.5, 0.0, 1.0, 0, 1, 1, 50, kernels.BRUTE, Fractal("julia", c=0j))
    assert (it[0, 0], norm[0, 0]) == (0, 6.25)


def test_escape_into_refuses_a_fractal_that_is_not_one():
    it, norm = np.empty((1, 1), np.uint16), np.empty((1, 1), np.float32)
    with pytest.raises(TypeError, match="fractal must be a Fractal"):
        kernels.escape_into(it, norm, 0.0, 0.0, 1.0, 0, 10, kernels.CYCLES, None, "julia")


# -- distance estimation --------------------------------------------------------
@pytest.mark.parametrize("fractal", [Fractal(), Fractal("julia"), Fractal("multibrot", 3)], ids=str)
def test_distance_equals_its_plain_python_reference(fractal):
    re0, im0, step = -2.0, 1.4, 2.8 / 40
    it, _, _ = kernels.escape_block(re0, im0, step, 0, 30, 41, 200, kernels.BRUTE, fractal)
    de = kernels.distance_block(it, re0, im0, step, 0, 200, fractal)
    assert np.isnan(de[it == 200]).all() and (de[it < 200] > 0).all()
    for r, j in zip(*np.nonzero(it < 200), strict=True):
        ref = kernels.distance_reference(re0 + j * step, im0 - r * step, int(it[r, j]), fractal)
        assert de[r, j] == np.float32(ref)


@pytest.mark.parametrize("c", [-2.5, -2.1, -2.01, -2.001])
def test_distance_estimate_brackets_the_true_distance(c):
    """Left of -2 the set's nearest point is -2: the true distance |c| - 2 lies
    between half and twice the estimate (Koebe's quarter theorem)."""
    n, _ = kernels.escape_reference(c, 0.0, 10_000)
    de = kernels.distance_reference(c, 0.0, n)
    assert 0.5 * de * (1 - 1e-9) <= abs(c) - 2 <= 2 * de


def test_distance_estimate_never_reaches_into_the_set():
    """Soundness where the true distance is unknown: every point within 0.45
    of the estimate of an escaped sample escapes too (the set is at least half
    the estimate away)."""
    rng = np.random.default_rng(11)
    checked = 0
    for cr, ci in zip(rng.uniform(-2.2, 0.6, 300), rng.uniform(-1.2, 1.2, 300), strict=True):
        n, _ = kernels.escape_reference(cr, ci, 3000)
        if n == 3000:
            continue
        de = kernels.distance_reference(cr, ci, n)
        for angle in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            p = complex(cr, ci) + 0.45 * de * np.exp(1j * angle)
            assert kernels.escape_reference(p.real, p.imag, 3000)[0] < 3000, (cr, ci, de, angle)
        checked += 1
    assert checked > 100


def test_distance_needs_a_complex_derivative():
    it = np.zeros((1, 1), np.uint16)
    with pytest.raises(ValueError, match=r"complex derivative.*not burning_ship"):
        kernels.distance_block(it, 0.0, 0.0, 1.0, 0, 10, Fractal("burning_ship"))


# -- the whole seed default picture, smaller --------------------------------------
SEED_LIKE = {  # (re0, im0, step, rows, cols, iters): all of the seed default's span (1024x768 at 8x8) and 4x it
    "seed default, whole": (-0.00275 - 0.125689 / 2, 0.78912 + 0.0471, 0.125689 / 255, 192, 257, 800),
    "seed default x4, cardioid and bulbs": (-0.00275 - 0.251378, 0.78912 + 0.1885, 0.502756 / 255, 192, 257, 800),
}


@pytest.mark.parametrize("name", SEED_LIKE)
def test_whole_seed_default_view_is_bit_identical_at_every_level(name):
    """Every sample of the seed default's picture (coarser), from the rows that
    escape in a few steps to the period-3 component, and a view 4x as wide
    that reaches the main cardioid and its bulbs: counts and norms are the
    scalar reference's bit for bit (INTERIOR: NaN norms where it skipped)."""
    re0, im0, step, rows, cols, iters = SEED_LIKE[name]
    ref = np.empty((rows, cols), np.uint16), np.empty((rows, cols), np.float32)
    work = kernels.escape_scalar_into(*ref, re0, im0, step, 0, iters)
    means = ref[0].astype(np.int64).mean(axis=1)
    assert means[:8].max() < 25 and (ref[0] == iters).mean() > 0.1  # fast-escaping rows, and the set's inside
    assert ((ref[0] > 0) & (ref[0] < iters)).mean() > 0.5  # and the boundary between
    for level in (kernels.BRUTE, kernels.CYCLES, kernels.INTERIOR):
        got = np.empty((rows, cols), np.uint16), np.empty((rows, cols), np.float32)
        stats = np.zeros(2, np.int64)
        assert kernels.escape_into(*got, re0, im0, step, 0, iters, level, stats) == work
        np.testing.assert_array_equal(got[0], ref[0])
        kept = ~np.isnan(got[1])
        assert got[1][kept].tobytes() == ref[1][kept].tobytes()
        assert int((~kept).sum()) == stats[1]
        if level == kernels.INTERIOR and "cardioid" in name:
            assert stats[1] > 1000  # the cardioid and bulb shortcut fired
        elif level < kernels.INTERIOR:
            assert kept.all()


@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(-2.5, 1.0),
    y=st.floats(-1.5, 1.5),
    step=st.floats(1e-9, 0.05),
    rows=st.integers(1, 5),
    cols=st.integers(1, 80),
    iters=st.integers(1, 400),
    level=st.sampled_from([kernels.BRUTE, kernels.CYCLES]),
)
def test_random_views_are_bit_identical(x, y, step, rows, cols, iters, level):
    ref = np.empty((rows, cols), np.uint16), np.empty((rows, cols), np.float32)
    got = np.empty((rows, cols), np.uint16), np.empty((rows, cols), np.float32)
    work = kernels.escape_scalar_into(*ref, x, y, step, 7, iters)
    assert kernels.escape_into(*got, x, y, step, 7, iters, level) == work
    np.testing.assert_array_equal(got[0], ref[0])
    assert got[1].tobytes() == ref[1].tobytes()
