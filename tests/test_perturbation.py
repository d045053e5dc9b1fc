"""Deep zoom by perturbation, checked against direct arbitrary-precision arithmetic."""

from decimal import Decimal

import numpy as np
import pytest

from dfractal_dask import Fractal, View, kernels, places
from dfractal_dask import perturbation as P
from dfractal_dask.nucleus import mpc_of

# A Misiurewicz point (preperiod 3, period 1: the branch point of the 1/3 limb),
# to 45 digits: at any depth its neighbourhood has structure, and few iterations.
MIS_X, MIS_Y = places.BRANCH_POINT_45
# Seahorse valley, a classic deep-zoom target (thousands of iterations)
SEA_X, SEA_Y = places.SEAHORSE


def deep_view(span=1e-30, width=48, height=36, x=MIS_X, y=MIS_Y):
    return View(x, y, span=span, width=width, height=height, supersample=1)


def whole(view, iters, orbit=None, **kw):
    orbit = P.choose_reference(view, iters) if orbit is None else orbit
    return P.perturbation_block(view, iters, 0, view.sample_height, orbit, **kw)


def test_span_1e30_counts_equal_direct_arbitrary_precision():
    v = deep_view()
    assert v.deep
    orbit = P.choose_reference(v, 1000)
    it, norm, work, _ = whole(v, 1000, orbit)
    assert work == int(it.astype(np.int64).sum()) - orbit.skip * it.size  # the steps iterated
    assert len(np.unique(it)) > 30  # a picture with structure, not one flat colour
    checked = 0
    for i in range(0, v.sample_height, 3):
        for j in range(1, v.sample_width, 3):
            count, nrm = P.escape_exact(v, i, j, 1000)  # mpmath, straight from the definition
            assert it[i, j] == count, (i, j)
            assert norm[i, j] == pytest.approx(nrm, rel=1e-6)
            checked += 1
    assert checked == 192


def test_high_iteration_view_agrees_with_direct_arbitrary_precision():
    # 1e4+ iterations near a minibrot, the reference orbit never escaping
    v = deep_view(1e-22, 48, 32, SEA_X, SEA_Y)
    it, *_ = whole(v, 30000)
    assert it.min() > 9000
    for i in range(0, 32, 6):
        for j in range(2, 48, 7):
            assert it[i, j] == P.reference_orbit(v, 30000, i, j).length == P.escape_exact(v, i, j, 30000)[0]


def test_where_float64_coordinates_blur_perturbation_stays_exact():
    # span 1e-7 is not "deep", yet 2000 iterations of float64 z go wrong on some
    # samples; perturbation does not
    v = View(-0.7436438870371587, 0.131825904205312, span=1e-7, width=64, height=48, supersample=1)
    assert not v.deep
    it, *_ = whole(v, 2000)
    direct, *_ = kernels.escape_block(v.re0, v.im0, v.step, 0, 48, 64, 2000, kernels.BRUTE, None)
    ok_pert = ok_direct = 0
    for k in range(0, 48 * 64, 41):
        i, j = divmod(k, 64)
        exact = P.escape_exact(v, i, j, 2000)[0]
        ok_pert += it[i, j] == exact
        ok_direct += direct[i, j] == exact
    assert ok_pert == 75 and ok_direct < ok_pert


def test_reference_orbit_is_the_escape_rule_in_fixed_point():
    v = deep_view()
    for i, j in ((0, 0), (17, 23), (35, 47), (17.5, 23.5)):
        orbit = P.reference_orbit(v, 1000, i, j)
        if float(i).is_integer():
            count, nrm = P.escape_exact(v, int(i), int(j), 1000)
            assert (orbit.length, orbit.norm) == (count, pytest.approx(nrm, rel=1e-12))
        assert orbit.zr[0] == orbit.zi[0] == 0.0 and orbit.escaped
        assert orbit.zr[-1] ** 2 + orbit.zi[-1] ** 2 > 4 >= orbit.zr[-2] ** 2 + orbit.zi[-2] ** 2
    bounded = P.reference_orbit(View(-0.1, 0.1, span=1e-3, width=4, height=4, supersample=1), 50, 1.5, 1.5)
    assert not bounded.escaped and bounded.length == 50 and len(bounded.zr) == 51


def test_a_reference_that_escapes_first_is_detected_and_replaced():
    v = deep_view()
    good, *_ = whole(v, 1000)
    i, j = np.unravel_index(np.argmin(good), good.shape)  # the quickest escape: a poor reference
    poor = P.reference_orbit(v, 1000, i, j)
    assert poor.length == good.min()
    # samples still running when it ends are flagged
    it = np.empty_like(good)
    flag = np.ones(good.shape, np.uint8)
    P._run(it, np.empty(good.shape, np.float32), flag, poor, v, 0)
    glitched = flag == 2
    assert glitched.sum() > 50 and (good[glitched] > poor.length).all()
    assert np.array_equal(it[~glitched], good[~glitched])  # (rebasing carried many past it unflagged)
    # fixed: new references among them, or each computed exactly
    for references in (16, 0):
        fixed, _, _, used = whole(v, 1000, poor, references=references)
        assert used >= 1
        assert np.array_equal(fixed, good)


def test_choose_reference_prefers_the_longest_lived_sample():
    # seahorse valley moved right by one span: the centre escapes early
    # (without a nucleus: with one, see tests/test_nucleus.py)
    off = deep_view(1e-22, 48, 32, str(Decimal(SEA_X) + Decimal("1e-22")), SEA_Y)
    centre = P.reference_orbit(off, 30000, 15.5, 23.5)
    chosen = P.choose_reference(off, 30000, nucleus=False)
    assert centre.escaped and chosen.length > centre.length + 1000
    it, _, _, used = whole(off, 30000, chosen)
    assert used == 0 and it.max() <= chosen.length


def test_blocks_do_not_change_results():
    v = deep_view(1e-30, 40, 30)
    orbit = P.choose_reference(v, 1000)
    it, norm, *_ = P.perturbation_block(v, 1000, 0, 30, orbit)
    parts = [P.perturbation_block(v, 1000, r0, min(7, 30 - r0), orbit)[:2] for r0 in range(0, 30, 7)]
    assert np.array_equal(np.concatenate([p[0] for p in parts]), it)
    assert np.array_equal(np.concatenate([p[1] for p in parts]), norm)


def test_bounded_samples_follow_the_escape_rule():
    v = View(-0.1, 0.1, span=1e-3, width=16, height=12, supersample=1)  # inside the main cardioid
    it, norm, *_ = whole(v, 200)
    assert (it == 200).all()
    direct_it, direct_norm, _ = kernels.escape_block(v.re0, v.im0, v.step, 0, 12, 16, 200, kernels.BRUTE, None)
    assert np.array_equal(it, direct_it)
    np.testing.assert_allclose(norm, direct_norm, rtol=1e-5)


def test_only_the_mandelbrot_set():
    assert P.check_deep_fractal(None) == Fractal()
    assert P.check_deep_fractal(Fractal("multibrot", power=2)).power == 2
    for f in (Fractal("julia"), Fractal("burning_ship"), Fractal("multibrot", power=3)):
        with pytest.raises(ValueError, match="renders the Mandelbrot set only"):
            P.check_deep_fractal(f)


def test_precision_follows_the_step():
    assert P.precision_bits(View()) == 16 + 64  # the seed view: a step of 1.5e-5, just above 2**-16
    assert P.precision_bits(deep_view(1e-30)) >= 100 + 64
    assert P.precision_bits(deep_view(1e-200)) >= 664 + 64


DEEP_X, DEEP_Y = places.BRANCH_POINT


@pytest.mark.parametrize(("span", "iters"), [(1e-30, 1000), (1e-60, 2000), (1e-15, 1000)])
def test_series_approximation_skips_the_shared_start_and_changes_no_count(span, iters):
    v = View(DEEP_X, DEEP_Y, span=span, width=96, height=72, supersample=1)
    plain = P.choose_reference(v, iters, series=False)
    skipping = P.choose_reference(v, iters)
    assert plain.skip == 0 and skipping.skip > 50
    a = P.perturbation_block(v, iters, 0, 72, plain)
    b = P.perturbation_block(v, iters, 0, 72, skipping)
    assert skipping.skip < a[0].min()  # no sample escapes in the skipped steps
    np.testing.assert_array_equal(a[0], b[0])
    close = np.isclose(a[1], b[1], rtol=1e-5)
    assert close.mean() > 0.999  # (the odd ill-conditioned sample's norm, see the module docstring)
    assert b[2] < a[2] - 50 * a[0].size  # the skipped steps are not iterated
    for i, j in ((0, 0), (71, 95), (30, 50)):
        assert b[0][i, j] == P.escape_exact(v, i, j, iters)[0]


def test_the_series_is_the_iterated_delta_at_the_skip():
    v = View(DEEP_X, DEEP_Y, span=1e-40, width=64, height=48, supersample=1)
    orbit = P.choose_reference(v, 1000)
    a, b, c = orbit.series
    for i, j in ((0, 0), (47, 63), (10, 40), (47, 0)):
        u = complex(j - orbit.j, orbit.i - i)
        dc = u * v.step
        dz = 0j
        for n in range(orbit.skip):  # δz_{n+1} = 2 Z_n δz_n + δz_n² + δc, no rebase needed here
            z = complex(orbit.zr[n], orbit.zi[n])
            assert (n == 0 or abs(z + dz) > abs(dz)) and abs(z + dz) <= 2
            dz = 2 * z * dz + dz * dz + dc
        assert abs((a * u + b * u**2 + c * u**3) - dz) <= 1e-9 * abs(dz)


@pytest.mark.parametrize(
    ("orbit", "most"),
    [
        ([0.0, 0.1, 2.0, 0.1, 0.1, 0.1], 1),  # |Z_2| = 2: a sample beside it could escape there
        ([0.0, 0.1, 1e-45, 0.1, 0.1, 0.1], 1),  # Z_2 is within reach of δz: a sample could need rebasing
        ([0.0, 0.1, 0.1, 0.1, 0.1, 0.1], 5),  # nothing in the way: up to the orbit's last step but one
    ],
)
def test_the_series_stops_before_any_sample_could_escape_or_rebase(orbit, most):
    v = View(DEEP_X, DEEP_Y, span=1e-30, width=8, height=6, supersample=1)
    zr = np.array(orbit)
    ref = P.Orbit(zr, np.zeros_like(zr), 2.5, 3.5, 100, 0.0)
    skip = P.series_skip(v, ref).skip
    assert skip <= most and (most == 1 or skip == len(zr) - 2)


@pytest.mark.parametrize(
    ("x", "y", "span", "iters"),
    [
        (MIS_X, MIS_Y, 1e-30, 1000),
        (SEA_X, SEA_Y, 1e-22, 30000),
        (DEEP_X, DEEP_Y, 1e-60, 2000),
        ("-0.1", "0.1", 1e-3, 5000),
    ],
)
def test_the_mpc_reference_orbit_is_the_fixed_point_one_or_closer_to_the_truth(x, y, span, iters):
    # The former fixed-point orbit (truncating to `bits`, then rounding to float64 from 60 bits: a
    # double rounding) and the MPC one (8 bits more, rounded once) are both within an ulp of the
    # true orbit while it is well conditioned; where they differ, the MPC one is at least as close
    # to the orbit at twice the bits, and equal to it on all but a few steps.
    v = View(x, y, span=span, width=48, height=36, supersample=1)
    bits = P.precision_bits(v)
    same = total = 0
    for i, j in ((0, 0), (5, 7), (35, 3), (17, 40)):
        cr, ci = P.sample_point(v, i, j)
        old, old_norm = P.fixed_point_orbit(cr, ci, bits, iters)
        new = P.reference_orbit(v, iters, i, j)
        truth, _ = P.orbit(mpc_of(cr, ci, 2 * bits), iters)
        z = new.zr + 1j * new.zi
        assert len(z) == len(old) == len(truth) and new.norm == pytest.approx(old_norm, rel=1e-12)
        assert np.abs(z - truth).max() <= np.abs(old - truth).max()
        assert (z != truth).sum() <= 3
        same += int((z == old).sum())
        total += len(z)
    assert same / total > 0.97
