"""Minibrots' periods, nuclei and sizes, and the periodic reference built on them."""

import itertools
from decimal import Decimal, getcontext

import gmpy2
import numpy as np
import pytest
from dask.delayed import Delayed

from dfractal_dask import View, places
from dfractal_dask import nucleus as N
from dfractal_dask import perturbation as P
from dfractal_dask.graph import block_tasks

# the branch point of the 1/3 limb (tests/test_perturbation.py), and README's 1e-60 location
MIS_X, MIS_Y = places.BRANCH_POINT_45
DEEP_X, DEEP_Y = places.BRANCH_POINT
# Fractalshades' "flake" (its example 09-run_flake_DEM.py), span 1.7e-157
FLAKE_X, FLAKE_Y = places.FLAKE


def decimal_of(x: gmpy2.mpfr, digits: int = 80) -> Decimal:
    getcontext().prec = digits
    num, den = x.as_integer_ratio()
    return Decimal(int(num)) / Decimal(int(den))


def orbit_values(c: gmpy2.mpc, n: int) -> list[gmpy2.mpc]:
    ctx = gmpy2.context(precision=max(c.precision))
    z, out = gmpy2.mpc(0, precision=max(c.precision)), []
    for _ in range(n):
        z = ctx.add(ctx.square(z), c)
        out.append(z)
    return out  # z_1 .. z_n


def direct_count(view: View, i: int, j: int, iters: int) -> int:
    """The escape count of sample (i, j), straight from the definition in gmpy2 at the view's bits."""
    bits = P.precision_bits(view)
    c = N.mpc_of(*P.sample_point(view, i, j), bits)
    ctx = gmpy2.context(precision=bits)
    z = gmpy2.mpc(0, precision=bits)
    for n in range(iters):
        if ctx.norm(z) > 4:
            return n
        z = ctx.add(ctx.square(z), c)
    return iters


@pytest.fixture(scope="module")
def minibrot():
    """The period-127 minibrot near the branch point, and a deep view containing it
    whose centre is off its nucleus by (0.2, 0.1) spans."""
    c0 = N.mpc_of(MIS_X, MIS_Y, 300)
    p = N.find_period(c0, 1e-16, 10_000, 300)
    nucleus = N.find_nucleus(c0, p, 300)
    span = 4e-32
    x = str(decimal_of(nucleus.real) + Decimal(0.2 * span))
    y = str(decimal_of(nucleus.imag) + Decimal(0.1 * span))
    return p, nucleus, View(x, y, span=span, width=64, height=48, supersample=1)


@pytest.mark.parametrize(
    ("x", "radius", "period", "nucleus"),
    [
        ("-1.7549", 1e-3, 3, -1.7548776662466927),  # the period-3 minibrot on the real axis
        ("-1.9408", 1e-3, 4, -1.9407998065294847),  # the period-4 one
        ("-1.0", 1e-2, 2, -1.0),  # the period-2 bulb's centre
        ("-0.1", 1e-3, None, None),  # inside the main cardioid, its nucleus (0) far from the disc
        ("0.5", 1e-3, None, None),  # outside: the centre escapes first
    ],
)
def test_periods_and_nuclei_of_known_minibrots(x, radius, period, nucleus):
    c0 = N.mpc_of(x, 0, 200)
    assert N.find_period(c0, radius, 1000, 200) == period
    if period is not None:
        c = N.find_nucleus(c0, period, 200)
        assert complex(c) == pytest.approx(nucleus, abs=1e-15)
        assert N.exact_period(c, period) == period


@pytest.mark.parametrize(("x", "period"), [("-1.75", 3), ("-1.94", 4)])
def test_newton_converges_quadratically_to_a_true_nucleus(x, period):
    bits = 400
    c = N.find_nucleus(N.mpc_of(x, 0, bits), period, bits)
    zs = orbit_values(c, period)
    assert abs(zs[-1]) < 2.0 ** (8 - bits)  # z_p(c) = 0 to the working precision
    assert all(abs(z) > 1e-3 for z in zs[:-1])  # and not before: the period is p
    errors = []
    for k, (ck, _) in enumerate(N.newton_steps(N.mpc_of(x, 0, bits), period, bits)):
        errors.append(float(abs(ck - c)))
        if errors[-1] == 0 or k > 20:
            break
    assert 4 <= len(errors) <= 12
    for e0, e1 in itertools.pairwise(errors):
        if 0 < e0 < 1e-3:
            assert e1 <= 10 * e0**2  # the correct digits double


def test_newton_may_land_on_a_divisor_and_exact_period_says_so():
    # Newton for period 8 from the period-4 minibrot lands on its nucleus: z_4 = z_8 = 0 there
    c = N.find_nucleus(N.mpc_of("-1.9408", 0, 200), 8, 200)
    assert complex(c) == pytest.approx(-1.9407998065294847, abs=1e-15)
    assert N.exact_period(c, 8) == 4


def test_the_nucleus_of_a_deep_view_is_within_its_size_of_where_the_centre_says(minibrot):
    p, nucleus, _ = minibrot
    size = N.atom_size(nucleus, p)
    assert p == 127 and 1e-33 < size < 1e-31
    # a view centred on the nucleus given to 40 digits (1e-40, far within its size)
    x, y = f"{decimal_of(nucleus.real):.40f}", f"{decimal_of(nucleus.imag):.40f}"
    v = View(x, y, span=1e-31, width=64, height=48, supersample=1)
    bits = P.precision_bits(v) + 8
    centre = N.mpc_of(x, y, bits)
    assert N.find_period(centre, v.span, 10_000, bits) == 127
    found = N.find_nucleus(centre, 127, bits)
    assert float(abs(found - centre)) < size
    assert abs(found - nucleus) < 2.0 ** (8 - bits)  # the same nucleus as found from afar, to its precision


@pytest.mark.parametrize(
    ("x", "y", "span", "iters", "period", "spans"),
    [
        (FLAKE_X, FLAKE_Y, 1.7e-157, 1_000_000, 7884, 1e-4),
        (DEEP_X, DEEP_Y, 1e-60, 2000, 486, 0.5),
    ],
)
def test_the_flake_and_the_readme_views_have_a_nucleus_in_view(x, y, span, iters, period, spans):
    v = View(x, y, span=span, width=400, height=300, supersample=1)
    orbit = P.choose_reference(v, iters)
    assert orbit.periodic and orbit.length == period and not orbit.escaped
    assert abs(complex(orbit.zr[-1], orbit.zi[-1])) < 1e-15  # Z_p ≈ 0 closes the period
    assert np.hypot(orbit.i - 149.5, orbit.j - 199.5) < spans * 399  # the nucleus, near the centre
    assert 0 < orbit.skip < period  # the series ends before the wrap


def test_a_periodic_reference_renders_what_direct_iteration_does(minibrot):
    p, _, v = minibrot
    iters = 3000
    orbit = P.choose_reference(v, iters)
    assert orbit.periodic and orbit.length == p and len(orbit.zr) == p + 1
    assert 0 < orbit.skip < p  # the series stops before the wrap: a rebase it cannot follow
    it, _, _, used = P.perturbation_block(v, iters, 0, v.sample_height, orbit)
    assert used == 0  # no glitch, no second reference
    assert 0.02 < (it == iters).mean() < 0.5 and len(np.unique(it)) > 100  # the minibrot's inside and its halo
    # against a direct gmpy2 iteration of each of 300 samples
    rng = np.random.default_rng(18)
    picks = rng.choice(v.sample_height * v.sample_width, 300, replace=False)
    agree = sum(
        it[divmod(int(k), v.sample_width)] == direct_count(v, *divmod(int(k), v.sample_width), iters) for k in picks
    )
    assert agree / 300 >= 0.999
    # and against the former choice (the centre's orbit, 3000 steps), on every sample
    old = P.choose_reference(v, iters, nucleus=False)
    assert not old.periodic and old.length == iters
    old_it, *_ = P.perturbation_block(v, iters, 0, v.sample_height, old)
    assert (old_it == it).mean() >= 0.999


def test_the_kernel_wraps_a_periodic_orbit_without_a_glitch(minibrot):
    p, _, v = minibrot
    orbit = P.choose_reference(v, 3000, series=False)
    shape = (v.sample_height, v.sample_width)
    results = {}
    for periodic in (True, False):
        it, flag = np.empty(shape, np.int32), np.ones(shape, np.uint8)
        P._run(it, np.empty(shape, np.float32), flag, P.replace(orbit, periodic=periodic), v, 0)
        results[periodic] = it, flag
    assert (results[True][1] == 0).all()
    # the same orbit taken for one that escaped at p: samples that reach it are flagged
    flagged = results[False][1] == 2
    assert flagged.sum() > 100 and (results[True][0][flagged] > p).all()
    np.testing.assert_array_equal(results[True][0], results[False][0])  # (the wrap is the same rebase)


def test_the_graph_has_one_reference_task_of_one_period(minibrot):
    p, _, v = minibrot
    tasks = block_tasks(v, 3000, chunk_rows=16, perturbation=True)
    graph = dict(tasks[0][1].__dask_graph__())
    refs = [k for k in graph if str(k).startswith("dfractal-reference-")]
    assert len(refs) == 1
    orbit = Delayed(refs[0], graph).compute(scheduler="sync")
    assert orbit.periodic and orbit.length == p and len(orbit.zr) == p + 1 and orbit.iters == 3000
    it, norm, _ = tasks[1][1].compute(scheduler="sync")
    table = P.bla_table(v, orbit)  # (the graph's BLA task builds the same from this orbit)
    want, want_norm, *_ = P.perturbation_block(v, 3000, 16, 16, orbit, table=table, interior=P.INTERIOR_DERIVATIVE)
    np.testing.assert_array_equal(it, want)
    np.testing.assert_array_equal(norm, want_norm)


def test_without_a_nucleus_near_the_view_the_former_reference():
    inside = View(-0.1, 0.1, span=1e-3, width=16, height=12, supersample=1)  # the main cardioid: p = 1 is far
    assert P.nucleus_reference(inside, 200) is None
    assert not P.choose_reference(inside, 200).periodic


def test_bad_arguments_name_their_parameter():
    c = N.mpc_of(-1, 0, 100)
    with pytest.raises(ValueError, match="radius"):
        N.find_period(c, 0.0, 10, 100)
    with pytest.raises(ValueError, match="period"):
        N.find_nucleus(c, 0, 100)
    with pytest.raises(ValueError, match="bits"):
        N.find_period(c, 1e-3, 10, 8)
