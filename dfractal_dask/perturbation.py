"""Deep zoom by perturbation: one exact reference orbit, float64 deltas.

Below a span of about 1e-13 float64 cannot tell neighbouring samples apart
(:attr:`dfractal_dask.view.View.deep`).  Perturbation theory computes them
anyway: the orbit ``Z_n`` of one reference point ``C`` is computed once in
arbitrary precision (:func:`reference_orbit`, ``gmpy2.mpc``: MPC's own
operations, three calls a step) and rounded to float64; each sample ``c = C + δc`` then only iterates its small
difference ``δz_n = z_n - Z_n`` in float64::

    δz_{n+1} = 2 Z_n δz_n + δz_n² + δc

which keeps its relative precision however small ``δc`` is.  ``δc`` comes from
the sample's global index (``(j - j_ref) * step``), so results do not depend on
the blocks.  Two things make it correct everywhere:

* **Rebasing** (Zhuoran, 2021): when ``|z_n| < |δz_n|`` the sample is closer to
  0 than to the reference, so its delta is restarted against the start of the
  reference orbit (``δz ← z``, ``n_ref ← 0``).  This removes the classic
  "glitches" without detecting them.
* **A reference that lasts**: a reference orbit that escapes after ``M``
  steps cannot carry a sample further.  Such a sample is rebased at ``M`` too,
  which may lose ``δc`` against ``z``, so it is flagged (a *glitch*), and
  :func:`perturbation_block` computes the flagged samples again against a new
  reference taken among them, until none is left (each new reference settles
  at least its own sample, exactly).  :func:`choose_reference` picks the main
  reference among a probe's longest-lived samples, so this is rare; and in
  every case measured the flagged samples had already been right (by then
  ``z`` has left the reference, so ``δz`` is large): the check is a safety
  net that costs one more reference orbit when it fires.
* **A reference that never runs out**: where a minibrot lies in or near the
  view, its nucleus (:mod:`dfractal_dask.nucleus`: the period by the ball
  method, the nucleus by Newton) is the reference, one period ``p`` long
  (:func:`nucleus_reference`): ``Z_p ≈ 0``, so a sample at the end of it
  wraps to ``Z_0`` (a rebase, ``δz ← z``) with nothing lost and no glitch,
  and one period serves every sample whatever its count.

Two things make it fast:

* **Bilinear approximation** (:mod:`dfractal_dask.bla`): while ``δz`` is
  small against ``Z`` the step is linear, and many steps merge into one
  ``δz ← A δz + B δc``; :func:`bla_table` builds the table of merged steps
  once per reference, and the kernel takes the longest that holds at the
  start, after every skip and after every rebase (Fractalshades' flake view,
  counts ~32 000: 3% of the steps executed, every count the exact kernel's).
  Without a table the kernel iterates every step, as it did before.
* **Interior detection** (``interior``, :data:`INTERIOR_DERIVATIVE`): a
  sample whose derivative ``dz_n/dz_1`` shrinks below a threshold is being
  attracted to a cycle and stops with ``iters`` (its norm NaN, not computed).

Float64 deltas have limits too.  Once a sample has left its reference
(``|δz|`` near 1) and then lingers near the set, float64 no longer holds its
position: in views needing 10⁴+ iterations near a minibrot, about 0.5% of
samples were measured 1 to 80 counts off the exact count (mpmath at 143 and
at 400 bits agrees on them), and the deepest sample of a 1e-60 view had the
right count but a norm 30% off with the reference 100 samples away, 0.2% with
one a sample away.  Every sample of the tests' 1e-30 view is exact.

The escape rule is the seed's, as in :mod:`dfractal_dask.kernels` (counts and
``|z|²`` at escape; ``|z|²/2`` for samples that never escape), for the
Mandelbrot set.  :func:`escape_exact` states it with ``mpmath`` numbers for the
tests.  No dask here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction

import gmpy2
import numba
import numpy as np

from . import extended
from .bla import BLA_TOLERANCE, LOWEST_LEVEL, BlaTable, build_table, empty_table
from .fractals import Fractal
from .kernels import count_dtype
from .nucleus import exact_period, find_nucleus, find_period, mpc_of
from .view import View

__all__ = [
    "Orbit",
    "INTERIOR_DERIVATIVE",
    "REFERENCES",
    "bla_table",
    "check_deep_fractal",
    "choose_reference",
    "NUCLEUS_SPANS",
    "nucleus_reference",
    "escape_exact",
    "fixed_point_orbit",
    "orbit",
    "perturbation_block",
    "precision_bits",
    "reference_orbit",
    "sample_point",
    "series_skip",
    "SERIES_TOLERANCE",
]

#: A BLA table of either kind: :class:`~dfractal_dask.bla.BlaTable` for a
#: float64 orbit, :class:`~dfractal_dask.extended.ExtendedTable` for an extended one.
AnyTable = BlaTable | extended.ExtendedTable

#: At most this many extra references a block takes for its glitched samples
#: before it computes the rest one by one in full precision.
REFERENCES = 16

#: :func:`perturbation_block` with ``interior``: a sample whose derivative
#: ``|dz_n/dz_1| = ∏ |2 z_k|`` falls below this is attracted to a cycle,
#: inside the set: it stops there with ``iters`` (and a NaN norm, not
#: computed, as :data:`kernels.INTERIOR` leaves it).  The derivative is kept
#: as a float64 times a power of 1e100, so it neither overflows nor forgets
#: how large it grew (an exterior sample passing near 0 divides it by a lot).
INTERIOR_DERIVATIVE = 1e-2  # (Fractalshades' epsilon_stationnary default)

#: Probe size (per axis) :func:`choose_reference` runs to look for a longer-lived reference.
PROBE = 33


@dataclass(frozen=True)
class Orbit:
    """A reference orbit: ``Z_0 .. Z_M`` rounded to float64 (``zr``, ``zi``),
    for the point at grid position ``(i, j)`` (half-integers for the centre of
    an even-sized grid, any float64 for a nucleus).  ``M = len(zr) - 1`` is
    where it escaped (``|Z_M|² > 4``), or ``iters`` if it never did, or its
    period if ``periodic``; ``norm`` is the escape rule's ``|z|²``."""

    zr: np.ndarray
    zi: np.ndarray
    i: float
    j: float
    iters: int
    norm: float
    #: Series approximation (:func:`series_skip`): every sample of the view
    #: starts at step ``skip`` with ``δz = a u + b u² + c u³`` (``u``: its
    #: offset from the reference in samples; ``series = (a, b, c)``).  0: none.
    skip: int = 0
    series: tuple[complex, complex, complex] = (0j, 0j, 0j)
    #: A minibrot's nucleus (:func:`nucleus_reference`): ``Z_M ≈ 0`` closes one
    #: period ``M``, so samples wrap from ``Z_M`` to ``Z_0`` (a rebase that
    #: loses nothing) and the orbit never runs out.
    periodic: bool = False
    #: An :attr:`~dfractal_dask.view.View.extended` view's orbit: ``Z_n =
    #: (zr[n] + i zi[n]) 2**ze[n]``, normal floatexps
    #: (:mod:`dfractal_dask.extended`); ``None``: ``zr``, ``zi`` are ``Z_n``.
    ze: np.ndarray | None = None

    def value(self, n: int) -> complex:
        """``Z_n`` rounded to complex128 (0 below its range)."""
        if self.ze is None:
            return complex(self.zr[n], self.zi[n])
        return complex(math.ldexp(self.zr[n], int(self.ze[n])), math.ldexp(self.zi[n], int(self.ze[n])))

    @property
    def length(self) -> int:
        """``M``: the steps the orbit lasts (its period, if periodic)."""
        return len(self.zr) - 1

    @property
    def escaped(self) -> bool:
        """Whether the reference escaped before ``iters`` (never, if periodic)."""
        return not self.periodic and self.length < self.iters


def check_deep_fractal(fractal: Fractal | None) -> Fractal:
    """``fractal`` if perturbation can render it (the Mandelbrot set, or
    Multibrot of power 2, which is the same map), else a ``ValueError``."""
    f = Fractal() if fractal is None else fractal
    if not (f.family == "mandelbrot" or (f.family == "multibrot" and f.power == 2)):
        raise ValueError(
            f"deep zoom (perturbation) renders the Mandelbrot set only, not {f.describe()}; "
            "use a larger span for this family"
        )
    return f


def sample_point(view: View, i: float, j: float) -> tuple[Fraction, Fraction]:
    """The exact coordinate of grid position ``(i, j)`` of ``view``:
    ``centre + ((j - (W-1)/2) * step, ((H-1)/2 - i) * step)``, with the
    view's exact centre and its float64 ``step`` taken as the exact binary
    fraction it is."""
    xr, xi = view.centre
    step = view.step_exact
    cx = Fraction(view.sample_width - 1, 2)
    cy = Fraction(view.sample_height - 1, 2)
    fi, fj = Fraction(float(i)), Fraction(float(j))  # exact: grid positions are (half-)integers
    return Fraction(xr) + (fj - cx) * step, Fraction(xi) - (fi - cy) * step


def precision_bits(view: View) -> int:
    """Bits after the binary point for the reference orbit: 64 more than the
    sample step needs."""
    if view.extended:
        return max(64, 1 - view.step_parts[1] + 64)
    return max(64, math.ceil(-math.log2(view.step)) + 64)


def _to_float(x: int, bits: int) -> float:
    # x / 2**bits rounded to float64 (float(x) alone overflows past 2**1024)
    shift = max(0, x.bit_length() - 60) if x >= 0 else max(0, (-x).bit_length() - 60)
    return math.ldexp(float(x >> shift), shift - bits)


def fixed_point_orbit(cr: Fraction, ci: Fraction, bits: int, iters: int) -> tuple[np.ndarray, float]:
    """The escape rule's orbit of ``c = cr + i ci`` in fixed point with ``bits``
    bits after the binary point (``gmpy2`` integers, converted to Python ints
    at every step): ``(Z_0 .. Z_M as complex128, norm)``.  The former
    :func:`reference_orbit`, kept as the statement :func:`orbit` is checked
    against (tests, ``benchmarks/deep.py``)."""
    one = gmpy2.mpz(1) << bits
    cr, ci = gmpy2.mpz(round(cr * one)), gmpy2.mpz(round(ci * one))
    four = 4 * one
    zr = zi = gmpy2.mpz(0)
    out = np.empty(iters + 1, np.complex128)
    n = 0
    while True:
        out[n] = complex(_to_float(int(zr), bits), _to_float(int(zi), bits))
        r2 = (zr * zr) >> bits
        i2 = (zi * zi) >> bits
        if r2 + i2 > four:  # escaped at step n
            norm = _to_float(int(r2 + i2), bits)
            break
        if n == iters:
            norm = 0.5 * _to_float(int(r2 + i2), bits)
            break
        zr, zi = r2 - i2 + cr, ((zr * zi) >> (bits - 1)) + ci
        n += 1
    return out[: n + 1].copy(), norm


#: Steps :func:`orbit` keeps as Python complexes before it moves them into an array.
_CHUNK = 1 << 16


def orbit(c: gmpy2.mpc, iters: int, tiny: list | None = None) -> tuple[np.ndarray, float]:
    """The escape rule's orbit of ``c`` in ``gmpy2.mpc`` arithmetic at ``c``'s
    precision, until it escapes (``|Z_M|² > 4``) or for ``iters`` steps:
    ``(Z_0 .. Z_M`` each rounded to complex128, ``norm)``, ``norm`` the rule's
    ``|z|²`` (``|z|²/2`` if it never escaped).  With a list ``tiny``, each
    ``Z_n`` (n > 0) below :data:`TINY` (where complex128 loses digits or all
    of it) is appended to it as ``(n, mantissa re, mantissa im, exponent)``.

    Three calls into MPC/MPFR per step (square, add, round to a complex), on
    the context's methods (no context look-up); the exact test ``|z|² > 4``
    only where the rounded ``|Z_n|`` is within a hair of 2."""
    ctx = gmpy2.context(precision=max(c.precision))
    sq, add, nrm = ctx.square, ctx.add, ctx.norm
    z = gmpy2.mpc(0, precision=ctx.precision)
    near = 2.0 - 2.0**-30  # rounding to float64 moves |z| by far less
    small = -1.0 if tiny is None else TINY
    chunks: list[np.ndarray] = []
    n = 0
    while n < iters:
        out: list[complex] = []
        put = out.append
        for _ in range(min(_CHUNK, iters - n)):
            w = complex(z)
            put(w)
            a = abs(w)
            if a > near and nrm(z) > 4:
                chunks.append(np.array(out, np.complex128))
                return np.concatenate(chunks), float(nrm(z))
            if a < small and n + len(out) > 1:
                tiny.append((n + len(out) - 1, *_split(z)))  # type: ignore[union-attr]
            z = add(sq(z), c)
        chunks.append(np.array(out, np.complex128))
        n += len(out)
    a2 = nrm(z)
    w = complex(z)
    if abs(w) < small:
        tiny.append((n, *_split(z)))  # type: ignore[union-attr]
    chunks.append(np.array([w], np.complex128))
    return np.concatenate(chunks), float(a2) if a2 > 4 else 0.5 * float(a2)


#: :func:`orbit` keeps the exact exponent of values below this (float64's
#: normal range ends at 2.2e-308; its products with a δz must not lose digits).
TINY = 1e-290


def _split(z: gmpy2.mpc) -> tuple[float, float, int]:
    # z as (a + i b) 2**e, exactly to 53 bits, any exponent
    parts = [(0, 0.0) if x == 0 else gmpy2.frexp(x) for x in (z.real, z.imag)]
    e = max(p[0] for p in parts if p[1] != 0) if any(p[1] != 0 for p in parts) else 0
    a, b = (math.ldexp(float(m), k - e) if m != 0 else 0.0 for k, m in parts)
    return a, b, int(e)


def reference_orbit(view: View, iters: int, i: float, j: float) -> Orbit:
    """The orbit of grid position ``(i, j)`` with :func:`precision_bits` bits
    (:func:`orbit`), until it escapes or for ``iters`` steps; each ``Z_n``
    rounded to float64."""
    bits = precision_bits(view)
    tiny: list | None = [] if view.extended else None
    z, norm = orbit(mpc_of(*sample_point(view, i, j), bits + 8), iters, tiny)  # (+8: the integer part's bits)
    if tiny is None:
        return Orbit(np.ascontiguousarray(z.real), np.ascontiguousarray(z.imag), float(i), float(j), int(iters), norm)
    zr, zi, ze = extended.normalise(z.real, z.imag)
    for n, a, b, e in tiny:
        zr[n], zi[n], ze[n] = a, b, e
    return Orbit(zr, zi, float(i), float(j), int(iters), norm, ze=ze)


@numba.njit(cache=True, nogil=True, fastmath=False, inline="always")
def _rescale(dr, di, de, d2):  # pragma: no cover
    # (dr + i di) * 1e100**de, its mantissa kept between 1e-100 and 1e100 (de >= 0), never overflowing
    if d2 > 1e200:
        return dr * 1e-100, di * 1e-100, de + 1
    if d2 < 1e-200 and de > 0:
        return dr * 1e100, di * 1e100, de - 1
    return dr, di, de


@numba.njit(cache=True, nogil=True, fastmath=False)
def _perturb(
    it_out,
    norm_out,
    flag,
    zr_ref,
    zi_ref,
    iref,
    jref,
    step,
    row0,
    rstride,
    col0,
    cstride,
    iters,
    skip,
    sa,
    tar,
    tai,
    tbr,
    tbi,
    trr,
    toff,
    tlow,
    interior2,
    periodic,
):  # pragma: no cover
    # Sample (r, c) of the output is grid position (row0 + r*rstride, col0 + c*cstride).
    # flag: 1 = compute; set to 2 where the reference ran out (a glitch), else 0.
    # skip > 0: start at step `skip` from the series δz = a u + b u² + c u³ (sa = a, b, c)
    # periodic: Z_last ≈ 0 closes a period, so the wrap to Z_0 at m == last is no glitch
    # t*: the BLA table (dfractal_dask.bla.BlaTable; no levels: every step exact).
    # interior2 > 0: stop a sample as interior (it = iters, norm NaN) once |dz_n/dz_s|² < interior2
    # Returns (steps executed, a skip counting 1; steps skipped by BLA on top of those).
    nrows, ncols = it_out.shape
    last = len(zr_ref) - 1
    nlev = len(toff) - 1
    # the derivative over the series' steps 1 .. skip-1, the reference's (δz is negligible there)
    d0r, d0i, d0e = 1.0, 0.0, 0
    for k in range(1, skip):
        t = 2.0 * (d0r * zr_ref[k] - d0i * zi_ref[k])
        d0i = 2.0 * (d0r * zi_ref[k] + d0i * zr_ref[k])
        d0r = t
        d0r, d0i, d0e = _rescale(d0r, d0i, d0e, d0r * d0r + d0i * d0i)
    lowmask = (1 << tlow) - 1
    total = 0
    saved = 0
    for r in range(nrows):
        ui = iref - (row0 + r * rstride)
        dci = ui * step
        for c in range(ncols):
            if flag[r, c] != 1:
                continue
            ur = (col0 + c * cstride) - jref
            dcr = ur * step
            dzr = 0.0
            dzi = 0.0
            if skip > 0:
                u = complex(ur, ui)
                dz = ((sa[2] * u + sa[1]) * u + sa[0]) * u
                dzr = dz.real
                dzi = dz.imag
            m = skip
            glitch = False
            n = skip
            n2 = 0.0
            extra = 0  # steps BLA skipped beyond the one each skip counts
            der_r = d0r  # dz_n / dz_1 (z_0 = 0 has none) = (der_r + i der_i) * 1e100**der_e
            der_i = d0i
            der_e = d0e
            inside = False
            while True:
                zr = zr_ref[m] + dzr
                zi = zi_ref[m] + dzi
                n2 = zr * zr + zi * zi
                if n2 > 4.0 or n == iters:
                    break
                if interior2 > 0.0:
                    d2 = der_r * der_r + der_i * der_i
                    if d2 < interior2 and der_e <= 0:  # attracted: the orbit contracts onto a cycle
                        inside = True
                        break
                    der_r, der_i, der_e = _rescale(der_r, der_i, der_e, d2)
                if m == last and not periodic:  # the reference escaped: δc is lost against z
                    glitch = True
                if n2 < dzr * dzr + dzi * dzi or m == last:  # rebase onto Z_0 = 0
                    dzr = zr
                    dzi = zi
                    m = 0
                if nlev > 0 and m > 0 and ((m - 1) & lowmask) == 0:
                    # the longest entry starting at m that holds δz (|δz| <= |re| + |im| < R)
                    off = m - 1
                    mag = abs(dzr) + abs(dzi)
                    done = False
                    top = nlev - 1  # the highest level starting at off: 2**(tlow + lv) divides off
                    if off != 0:
                        x = off >> tlow
                        k = 0
                        while (x & 1) == 0 and k < top:
                            x >>= 1
                            k += 1
                        top = k
                    for lv in range(top, -1, -1):
                        lvl = tlow + lv
                        span = 1 << lvl
                        if n + span > iters:
                            continue
                        e = toff[lv] + (off >> lvl)
                        if e >= toff[lv + 1] or not mag < trr[e]:
                            continue
                        t = tar[e] * dzr - tai[e] * dzi + tbr[e] * dcr - tbi[e] * dci
                        dzi = tar[e] * dzi + tai[e] * dzr + tbr[e] * dci + tbi[e] * dcr
                        dzr = t
                        if interior2 > 0.0:  # A = ∏ 2 Z_k: ∏ 2 z_k within eps a step
                            t = der_r * tar[e] - der_i * tai[e]
                            der_i = der_r * tai[e] + der_i * tar[e]
                            der_r = t
                        m += span
                        n += span
                        extra += span - 1
                        done = True
                        break
                    if done:
                        continue
                if interior2 > 0.0 and n > 0:  # d z_{n+1} = 2 z_n d z_n
                    t = 2.0 * (der_r * zr - der_i * zi)
                    der_i = 2.0 * (der_r * zi + der_i * zr)
                    der_r = t
                ar = zr_ref[m]
                ai = zi_ref[m]
                t = 2.0 * (ar * dzr - ai * dzi) + (dzr * dzr - dzi * dzi) + dcr
                dzi = 2.0 * (ar * dzi + ai * dzr) + 2.0 * dzr * dzi + dci
                dzr = t
                m += 1
                n += 1
            if inside:
                it_out[r, c] = iters
                norm_out[r, c] = np.nan  # not computed (as kernels.INTERIOR's)
            else:
                it_out[r, c] = n
                norm_out[r, c] = n2 if n < iters else 0.5 * n2
            flag[r, c] = 2 if glitch else 0
            total += n - skip - extra  # the steps executed here
            saved += extra
    return total, saved


def _run(
    it, norm, flag, orbit: Orbit, view: View, row0: int, rstride: int = 1, col0: int = 0, cstride: int = 1,
    table: AnyTable | None = None, interior: float = 0.0,
) -> tuple[int, int]:  # fmt: skip
    # the kernel on (strided) samples of view: (steps executed, steps BLA skipped beyond those)
    if table is not None and (orbit.ze is not None) != isinstance(table, extended.ExtendedTable):
        raise TypeError("an extended orbit takes an ExtendedTable, a float64 orbit a BlaTable")
    if orbit.ze is not None:
        x = _NO_EXTENDED_TABLE if not isinstance(table, extended.ExtendedTable) else table
        m, e = view.step_parts
        return extended.perturb_extended(
            it, norm, flag, orbit.zr, orbit.zi, orbit.ze, orbit.i, orbit.j, m, e, row0, rstride, col0, cstride,
            orbit.iters, x.ar, x.ai, x.ae, x.br, x.bi, x.be, x.rm, x.re, x.offsets, x.low, interior**2, orbit.periodic,
        )  # fmt: skip
    sa = np.array(orbit.series, np.complex128)
    t = table if isinstance(table, BlaTable) else _NO_TABLE
    return _perturb(
        it, norm, flag, orbit.zr, orbit.zi, orbit.i, orbit.j, view.step, row0, rstride, col0, cstride, orbit.iters,
        orbit.skip, sa, t.ar, t.ai, t.br, t.bi, t.r, t.offsets, t.low, interior**2, orbit.periodic,
    )  # fmt: skip


_NO_TABLE = empty_table()
_NO_EXTENDED_TABLE = extended.build_extended_table(np.zeros(1), np.zeros(1), np.zeros(1, np.int64), (0.0, 0), 0.1, 3)


def _reach(view: View, orbit: Orbit) -> float:
    # the farthest sample of view from the reference, in samples (at least 1)
    h, w = view.sample_height, view.sample_width
    return max(1.0, math.hypot(max(orbit.j, w - 1 - orbit.j), max(orbit.i, h - 1 - orbit.i)))


def bla_table(view: View, orbit: Orbit, eps: float = BLA_TOLERANCE) -> AnyTable:
    """The BLA table (:func:`dfractal_dask.bla.build_table`) of ``orbit`` for
    the samples of ``view``: ``dc_max`` is the distance from the reference to
    the view's farthest sample (an :attr:`~dfractal_dask.view.View.extended`
    view's: :func:`dfractal_dask.extended.build_extended_table`)."""
    if orbit.ze is not None:
        m, e = view.step_parts
        return extended.build_extended_table(orbit.zr, orbit.zi, orbit.ze, (_reach(view, orbit) * m, e), eps,
                                             LOWEST_LEVEL)  # fmt: skip
    return build_table(orbit.zr, orbit.zi, _reach(view, orbit) * view.step, eps)


#: :func:`nucleus_reference` takes a minibrot's nucleus within this many spans
#: of the view's centre (farther, its one period serves the view's samples less).
NUCLEUS_SPANS = 2.0


def nucleus_reference(view: View, iters: int) -> Orbit | None:
    """The orbit of the nucleus of the minibrot in or near ``view``, one period
    long and ``periodic``: the period by the ball method over the disc around
    the view's centre through its corners (:func:`~dfractal_dask.nucleus.find_period`,
    at most ``iters``), the nucleus by Newton from the centre
    (:func:`~dfractal_dask.nucleus.find_nucleus`); ``None`` if either fails
    or the nucleus is more than :data:`NUCLEUS_SPANS` spans from the centre.

    The orbit is that of the grid position nearest the nucleus that float64
    ``(i, j)`` hold (within about 1e-13 of a step), so every sample's ``δc``
    is exact as before; its ``Z_p`` is then of the order of ``dz_p/dc`` times
    that distance, far below any sample's ``δz`` there, and the wrap to ``Z_0``
    (a rebase) exact.
    """
    h, w = view.sample_height, view.sample_width
    bits = precision_bits(view) + 8
    x, y = view.centre
    centre = mpc_of(x, y, bits)
    reach = math.hypot(w - 1, h - 1) / 2
    radius = gmpy2.mpfr(view.step_exact * Fraction(reach), 53) if view.extended else view.step * reach
    period = find_period(centre, radius, iters, bits)
    if period is None:
        return None
    nucleus = find_nucleus(centre, period, bits)
    if nucleus is None:
        return None
    period = exact_period(nucleus, period)
    # its grid position: sample_point's inverse
    j = Fraction(w - 1, 2) + (Fraction(gmpy2.mpq(nucleus.real)) - Fraction(x)) / view.step_exact
    i = Fraction(h - 1, 2) - (Fraction(gmpy2.mpq(nucleus.imag)) - Fraction(y)) / view.step_exact
    if math.hypot(j - Fraction(w - 1, 2), i - Fraction(h - 1, 2)) > NUCLEUS_SPANS * max(w - 1, h - 1, 1):
        return None
    orbit = reference_orbit(view, period, float(i), float(j))
    if orbit.length < period:  # (cannot happen at a nucleus: a safety net)
        return None
    z = orbit.value(iters % period)  # where the rule stops
    return replace(orbit, iters=int(iters), norm=0.5 * abs(z) ** 2, periodic=True)


def choose_reference(view: View, iters: int, tries: int = 3, series: bool = True, nucleus: bool = True) -> Orbit:
    """The main reference orbit of ``view``: with ``nucleus``, a minibrot's
    nucleus in or near the view, one period long (:func:`nucleus_reference`);
    failing that its centre, or if that escapes before ``iters``, the
    longest-lived sample of a :data:`PROBE`² probe run against it (up to
    ``tries`` times), so few samples outlive it; with ``series``, the steps
    all samples skip (:func:`series_skip`)."""
    orbit = nucleus_reference(view, iters) if nucleus else None
    if orbit is None:
        orbit = _probe_reference(view, iters, tries)
    return series_skip(view, orbit) if series else orbit


def _probe_reference(view: View, iters: int, tries: int) -> Orbit:
    h, w = view.sample_height, view.sample_width
    orbit = reference_orbit(view, iters, (h - 1) / 2, (w - 1) / 2)
    rs, cs = max(1, h // PROBE), max(1, w // PROBE)
    r0, c0 = rs // 2, cs // 2
    nr, nc = len(range(r0, h, rs)), len(range(c0, w, cs))
    for _ in range(tries):
        if not orbit.escaped:
            break
        it = np.empty((nr, nc), count_dtype(iters))
        norm = np.empty((nr, nc), np.float32)
        flag = np.ones((nr, nc), np.uint8)
        _run(it, norm, flag, orbit, view, r0, rs, c0, cs)
        k = int(np.argmax(it))
        if it.flat[k] <= orbit.length:
            break
        r, c = divmod(k, nc)
        better = reference_orbit(view, iters, r0 + r * rs, c0 + c * cs)
        if better.length <= orbit.length:
            break
        orbit = better
    return orbit


#: :func:`series_skip` ends where the series' cubic term reaches this fraction
#: of its linear term anywhere in the view (the terms it leaves out are then
#: below float64's rounding).
SERIES_TOLERANCE = 2.0**-50


@numba.njit(cache=True, nogil=True, fastmath=False)
def _series(zr, zi, step, umax, tol):  # pragma: no cover
    # a_{n+1} = 2 Z_n a_n + step, b_{n+1} = 2 Z_n b_n + a_n², c_{n+1} = 2 Z_n c_n + 2 a_n b_n:
    # δz_n = a_n u + b_n u² + c_n u³ for a sample u samples from the reference
    a = 0j
    b = 0j
    c = 0j
    for n in range(len(zr) - 1):
        z = complex(zr[n], zi[n])
        a2 = 2.0 * z * a + step
        b2 = 2.0 * z * b + a * a
        c2 = 2.0 * z * c + 2.0 * a * b
        bound = abs(a2) * umax + abs(b2) * umax**2 + abs(c2) * umax**3
        zn = abs(complex(zr[n + 1], zi[n + 1]))
        if (
            abs(c2) * umax**3 > tol * abs(a2) * umax  # the series stops being exact
            or zn + bound >= 2.0  # a sample could escape
            or zn <= 4.0 * bound  # a sample could be rebased (|z| < |δz|)
        ):
            return n, a, b, c
        a, b, c = a2, b2, c2
    return len(zr) - 1, a, b, c


def series_skip(view: View, orbit: Orbit, tol: float = SERIES_TOLERANCE) -> Orbit:
    """``orbit`` with the series approximation for ``view``: the steps every
    sample can skip, and the cubic series in the sample's offset ``u`` (in
    samples) that gives its ``δz`` there.

    The series ``δz_n = a_n u + b_n u² + c_n u³`` follows the reference orbit;
    it is used up to the first step where, for the sample farthest from the
    reference, the cubic term reaches ``tol`` of the linear one, or any sample
    could escape or need rebasing.  Deep views whose samples share a long
    start (most of them) skip most of their iterations.
    """
    if orbit.ze is not None:  # (extended: no series; BLA skips the same steps)
        return orbit
    skip, a, b, c = _series(orbit.zr, orbit.zi, view.step, _reach(view, orbit), tol)
    skip = min(skip, orbit.iters, orbit.length - 1) if skip > 1 else 0
    return replace(orbit, skip=int(skip), series=(complex(a), complex(b), complex(c)) if skip else (0j, 0j, 0j))


def perturbation_block(
    view: View,
    iters: int,
    row0: int,
    nrows: int,
    orbit: Orbit,
    references: int = REFERENCES,
    table: AnyTable | None = None,
    interior: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Rows ``row0 .. row0 + nrows`` of ``view`` by perturbation around ``orbit``
    (e.g. :func:`choose_reference`): ``(iterations, norm, work, references)``;
    ``work``: the steps executed (not those the series skipped; a BLA skip
    counts one).  ``table``: ``orbit``'s BLA table (:func:`bla_table`), or
    ``None`` (or an empty one) to iterate every step exactly.  ``interior``
    (e.g. :data:`INTERIOR_DERIVATIVE`; 0: never): stop a sample as interior
    once its derivative falls below it.

    Glitched samples (the reference escaped before them) are computed again
    against a reference taken among them, the one nearest their centroid, up
    to ``references`` times; any still left are then computed one by one in
    full precision (:func:`reference_orbit`).  ``references`` in the result:
    the extra reference orbits used.
    """
    w = view.sample_width
    it = np.empty((nrows, w), count_dtype(iters))
    norm = np.empty((nrows, w), np.float32)
    flag = np.ones((nrows, w), np.uint8)
    work = _run(it, norm, flag, orbit, view, row0, table=table, interior=interior)[0]
    used = 0
    while (flag == 2).any():
        rr, cc = np.nonzero(flag == 2)
        if used < references:
            k = int(np.argmin((rr - rr.mean()) ** 2 + (cc - cc.mean()) ** 2))
            ref = reference_orbit(view, iters, row0 + int(rr[k]), int(cc[k]))
            flag[flag == 2] = 1
            ref_table = None if table is None or not table.levels else bla_table(view, ref, table.eps)
            work += _run(it, norm, flag, ref, view, row0, table=ref_table, interior=interior)[0]
        else:  # the last few, exactly: each is its own reference orbit
            for r, c in zip(rr, cc, strict=True):
                ref = reference_orbit(view, iters, row0 + int(r), int(c))
                it[r, c], norm[r, c], flag[r, c] = ref.length, ref.norm, 0
                work += ref.length
        used += 1
    return it, norm, int(work), used


def escape_exact(view: View, i: int, j: int, iters: int, bits: int | None = None) -> tuple[int, float]:
    """The escape rule for sample ``(i, j)`` of ``view`` with ``mpmath``
    numbers of ``bits`` bits (default :func:`precision_bits`), written
    directly from the definition, for tests (slow): ``(count, norm)``."""
    import mpmath

    ctx = mpmath.MPContext()
    ctx.prec = precision_bits(view) if bits is None else bits
    re, im = sample_point(view, i, j)
    c = ctx.mpc(ctx.mpf(re.numerator) / re.denominator, ctx.mpf(im.numerator) / im.denominator)
    z = ctx.mpc(0)
    for n in range(iters):
        a2 = z.real**2 + z.imag**2
        if a2 > 4:
            return n, float(a2)
        z = z * z + c
    return iters, float(0.5 * (z.real**2 + z.imag**2))
