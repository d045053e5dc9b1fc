"""Deep zoom by perturbation against the plain kernel, as ratios measured in
this same run (not a test: these machines are shared and noisy).

    python benchmarks/deep.py [--repeats 3]

1. Baseline: the plain lockstep kernel (``escape_into``, brute force) on a
   view float64 still resolves (the seahorse valley, span 0.02, 2000
   iterations), one core.
2. The perturbation kernel (:func:`dfractal_dask.perturbation.perturbation_block`)
   on the same samples, one core: iterations per second and the ratio of its
   time to (1).  Also: how many of its counts equal (1)'s.
3. The series approximation: a 1e-60 view (256x192, 2000 iterations) with
   and without it, its time as a ratio of the time without.
4. The reference orbit (fixed point, gmpy2) of a point that never escapes,
   for spans 1e-30 and 1e-100, 10 000 iterations, against (2)'s rate for a
   1024-sample row at the same iteration count: the one serial step of a
   deep render, before any block can start.
5. The reference orbit at 1 000 bits, 1 000 000 iterations, of a point of the
   main cardioid given to 300 digits (it never escapes): the former fixed-point
   loop (``fixed_point_orbit``: gmpy2 integers, a Python int and ``_to_float``
   per step) against the MPC one (``orbit``), interleaved in this run; and
   whether the two orbits are equal bit for bit.
6. Fractalshades' flake view (span 1.7e-157, limit 1 000 000): the time of the
   period search (ball method) and of Newton for its nucleus, the period and
   where the nucleus lies.
7. BLA (:mod:`dfractal_dask.bla`): the kernel with the table against the
   exact kernel, one core, on Fractalshades' flake view (200x150, limit
   1 000 000) and on the 1e-60 view of (3) with and without the series:
   the time ratio, the steps executed and how many counts agree.

8. Extended exponents (:mod:`dfractal_dask.extended`): the floatexp kernel
   against the float64 one on the same orbit and samples where both work
   (the 1e-60 view, 256x192, 2000 iterations, no series; exact and with
   BLA), one core, interleaved: the time ratio and whether the counts are
   equal; then a view at span 1e-1000 (160x120, limit 30 000): the reference,
   the table and the block.

    python benchmarks/deep.py --reference-only   # (5) and (6) alone
"""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from fractions import Fraction

from dfractal_dask import View, places
from dfractal_dask import nucleus as N
from dfractal_dask import perturbation as P
from dfractal_dask.kernels import BRUTE, escape_block

# a Misiurewicz point (the 1/3 limb's branch point) to 90 digits
MIS_X, MIS_Y = places.BRANCH_POINT
# Fractalshades' "flake" (its example 09-run_flake_DEM.py), span 1.7e-157
FLAKE_X, FLAKE_Y = places.FLAKE
# inside the main cardioid: the reference orbit never escapes, so it runs all its iterations
INSIDE_X = "-0.1000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001"
# the same, to 300 digits
INSIDE_300 = (Fraction(Decimal("-0.1" + "0" * 298 + "1")), Fraction(Decimal("0.1" + "3" * 299)))


def best(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference-only", action="store_true", help="only (5) and (6)")
    args = parser.parse_args()
    if not args.reference_only:
        kernels(args.repeats)
    references(args.repeats)


def references(repeats: int) -> None:
    bits, n = 1000, 1_000_000
    cr, ci = INSIDE_300
    fixed_t, mpc_t = [], []
    for _ in range(repeats):  # interleaved: the two loops see the same machine load
        t, (fixed, _) = best(lambda: P.fixed_point_orbit(cr, ci, bits, n), 1)
        fixed_t.append(t)
        t, (new, _) = best(lambda: P.orbit(N.mpc_of(cr, ci, bits + 8), n), 1)
        mpc_t.append(t)
    diff = int((fixed != new).sum())
    print(f"(5) reference orbit, {bits} bits, {n:,} iterations (never escapes): fixed point {min(fixed_t):.2f} s "
          f"({min(fixed_t) / n * 1e6:.2f} us/step), mpc {min(mpc_t):.2f} s ({min(mpc_t) / n * 1e6:.2f} us/step), "
          f"ratio {min(mpc_t) / min(fixed_t):.2f}; steps that differ: {diff} of {n + 1}")  # fmt: skip
    flake = View(FLAKE_X, FLAKE_Y, span=1.7e-157, width=1000, height=1000, supersample=1)
    fbits = P.precision_bits(flake) + 8
    centre = N.mpc_of(*flake.centre, fbits)
    t_period, period = best(lambda: N.find_period(centre, flake.step * 999 / 2**0.5, 1_000_000, fbits), repeats)
    t_newton, nucleus = best(lambda: N.find_nucleus(centre, period, fbits), repeats)
    t_ref, orbit = best(lambda: P.nucleus_reference(flake, 1_000_000), repeats)
    size = N.atom_size(nucleus, period)
    print(f"(6) flake, {fbits} bits: period {period} in {t_period:.3f} s, Newton {t_newton:.3f} s; nucleus "
          f"{float(abs(nucleus - centre)) / flake.span:.2g} spans from the centre, size {size:.3g}; "
          f"nucleus_reference (all of it, the orbit too) {t_ref:.3f} s, {orbit.length} steps")  # fmt: skip


def kernels(repeats: int) -> None:

    v = View(-0.7436, 0.1318, span=0.02, width=512, height=256, supersample=1)
    iters = 2000
    orbit = P.choose_reference(v, iters)
    h, w = v.sample_height, v.sample_width
    P.perturbation_block(v, iters, 0, 2, orbit)  # compile / load from cache
    escape_block(v.re0, v.im0, v.step, 0, 2, w, iters, BRUTE, None)
    # interleaved: the two kernels see the same machine load
    plain_t, pert_t = [], []
    for _ in range(repeats):
        t, plain = best(lambda: escape_block(v.re0, v.im0, v.step, 0, h, w, iters, BRUTE, None), 1)
        plain_t.append(t)
        t, pert = best(lambda: P.perturbation_block(v, iters, 0, h, orbit), 1)
        pert_t.append(t)
    work = int(pert[2])
    print(f"view: seahorse valley span 0.02, {w}x{h} samples, {iters} iterations, {work / 1e6:.0f} M iterations")
    print(f"(1) plain kernel:        {min(plain_t):7.3f} s  {plain[2] / min(plain_t) / 1e6:6.0f} M it/s")
    print(f"(2) perturbation kernel: {min(pert_t):7.3f} s  {work / min(pert_t) / 1e6:6.0f} M it/s"
          f"   ratio {min(pert_t) / min(plain_t):.2f} of (1)")  # fmt: skip
    same = float((pert[0] == plain[0]).mean())
    print(
        f"    counts equal to (1)'s: {100 * same:.2f}% (the rest: float64 drift of the plain kernel,"
        " see tests/test_perturbation.py)"
    )
    mis = View(MIS_X, MIS_Y, span=1e-60, width=256, height=192, supersample=1)
    plain_ref = P.choose_reference(mis, 2000, series=False)
    series_ref = P.choose_reference(mis, 2000)
    t_plain, a = best(lambda: P.perturbation_block(mis, 2000, 0, 192, plain_ref), repeats)
    t_series, b = best(lambda: P.perturbation_block(mis, 2000, 0, 192, series_ref), repeats)
    print(f"(3) span 1e-60, 256x192, counts {a[0].min()}..{a[0].max()}: series skips {series_ref.skip} steps; "
          f"{t_plain:.3f} s -> {t_series:.3f} s, ratio {t_series / t_plain:.2f}; "
          f"counts equal: {bool((a[0] == b[0]).all())}")  # fmt: skip
    for span in (1e-30, 1e-100):
        deep = View(INSIDE_X, "0.1", span=span, width=1024, height=1, supersample=1)
        t_orbit, _ = best(lambda deep=deep: P.reference_orbit(deep, 10_000, 0, 511), repeats)
        print(f"(4) reference orbit, span {span:g}, 10 000 iterations, {P.precision_bits(deep)} bits: "
              f"{t_orbit:.3f} s = {t_orbit / (1024 * 10_000 / (work / min(pert_t))):.1f} rows of 1024 samples"
              " at 10 000 iterations")  # fmt: skip

    bla_section(repeats)
    extended_section(repeats)


def extended_section(repeats: int) -> None:
    """(8): the floatexp kernel against the float64 one, and a span of 1e-1000."""
    from dataclasses import replace

    from dfractal_dask import extended, places

    v, iters = View(MIS_X, MIS_Y, span=1e-60, width=256, height=192, supersample=1), 2000
    orbit = P.choose_reference(v, iters, series=False)
    wide = replace(orbit, **dict(zip(("zr", "zi", "ze"), extended.normalise(orbit.zr, orbit.zi), strict=True)))
    h = v.sample_height
    for name, tables in (("exact", (None, None)), ("BLA", (P.bla_table(v, orbit), P.bla_table(v, wide)))):
        times: dict[str, list[float]] = {"float64": [], "floatexp": []}
        out = {}
        for _ in range(repeats):  # interleaved
            for kind, o, t in (("float64", orbit, tables[0]), ("floatexp", wide, tables[1])):
                t0 = time.perf_counter()
                out[kind] = P.perturbation_block(v, iters, 0, h, o, table=t)
                times[kind].append(time.perf_counter() - t0)
        same = (out["float64"][0] == out["floatexp"][0]).all()
        a, b = min(times["float64"]), min(times["floatexp"])
        print(f"(8) floatexp vs float64, 1e-60 {name}: {a:.3f} s -> {b:.3f} s, ratio {b / a:.2f}; counts equal: {same}")
    far, iters = View(*places.branch_point(1030), "1e-1000", 160, 120, 1), 30_000
    t_ref, orbit = best(lambda: P.choose_reference(far, iters), 1)
    t_table, table = best(lambda: P.bla_table(far, orbit), 1)
    t_block, b = best(lambda: P.perturbation_block(far, iters, 0, 120, orbit, table=table,
                                                   interior=P.INTERIOR_DERIVATIVE), repeats)  # fmt: skip
    print(
        f"(8) span 1e-1000, 160x120, limit {iters}: {P.precision_bits(far)} bits, reference {t_ref:.3f} s "
        f"(period {orbit.length}), table {t_table:.3f} s, block {t_block:.3f} s, counts {b[0].min()}..{b[0].max()}"
    )


def bla_section(repeats: int) -> None:
    """(7): BLA against the exact kernel."""
    flake = View(FLAKE_X, FLAKE_Y, span=1.7e-157, width=200, height=150, supersample=1)
    mis = View(MIS_X, MIS_Y, span=1e-60, width=256, height=192, supersample=1)
    for name, v, iters, series in (
        ("flake 1.7e-157", flake, 1_000_000, True),
        ("1e-60", mis, 2000, True),
        ("1e-60, no series", mis, 2000, False),
    ):
        orbit = P.choose_reference(v, iters, series=series)
        t_table, table = best(lambda v=v, orbit=orbit: P.bla_table(v, orbit), 1)
        h = v.sample_height
        t_exact, a = best(lambda v=v, o=orbit, it=iters, h=h: P.perturbation_block(v, it, 0, h, o), repeats)
        t_bla, b = best(
            lambda v=v, o=orbit, it=iters, h=h, t=table: P.perturbation_block(v, it, 0, h, o, table=t), repeats
        )
        same = 100 * (a[0] == b[0]).mean()
        print(f"(7) BLA, {name}, {v.sample_width}x{h}, counts {a[0].min()}..{a[0].max()}: table {t_table:.3f} s, "
              f"{table.nbytes / 1e6:.2f} MB; {t_exact:.3f} s -> {t_bla:.3f} s, ratio {t_bla / t_exact:.3f}; steps "
              f"{a[2] / 1e6:.1f} M -> {b[2] / 1e6:.1f} M; counts equal: {same:.3f}%")  # fmt: skip


if __name__ == "__main__":
    main()
