"""Perturbation past float64's exponent: spans below :data:`~dfractal_dask.view.EXTENDED_SPAN`.

At a span of 1e-1000 a sample's ``δc`` (about 1e-1003) is far below the
smallest float64 (about 1e-308), and so is its ``δz`` for most of its orbit.
Here every such number is a float64 *mantissa pair* with an *exponent* of its
own, ``(a + i b) 2**e`` with ``2**-64 <= max(|a|, |b|) <= 2**64`` (a "floatexp", as
Kalles Fraktaler and Fractalshades' ``Xrange`` call it): products add the
exponents, sums align them.  The reference orbit ``Z_n`` is one too (it passes
near 0, below float64, near every minibrot it approaches); its mantissas round
to 53 bits as float64 ``Z_n`` does, so the relative precision of every step is
float64's, exactly as in :mod:`dfractal_dask.perturbation`, whose kernel this
one follows step for step (rebasing, the periodic wrap, glitch flags, interior
detection) with the same escape rule.

The BLA table (:mod:`dfractal_dask.bla`) is built here in floatexp too: at such
depths ``B ≈ dZ/dC`` is about ``1/span`` (1e1000) and the radii about the span.
The cubic series is left out (the table skips the same steps).  Each step costs
several float64 operations more than a float64 one (``frexp``/``ldexp`` to keep
the mantissas normal), which BLA mostly hides.

Pure Numba and numpy; no dask here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from .bla import level_layout

__all__ = ["ExtendedTable", "ZERO_EXPONENT", "build_extended_table", "normalise", "perturb_extended"]

#: The exponent of zero (any value far below every other keeps sums right).
ZERO_EXPONENT = -(1 << 40)

_J = numba.njit(cache=True, nogil=True, fastmath=False, inline="always")

#: 2**k for k = -1074 .. 1023 at [k + 1074]: scaling by a table look-up, not a
#: libm ldexp per operation (the kernel's steps took 2x as long with ldexp).
_POW2 = np.array([math.ldexp(1.0, k) for k in range(-1074, 1024)])


@_J
def _norm(a, b, e):  # pragma: no cover
    # (a + i b) 2**e with max(|a|, |b|) within 2**±64 (frexp, a libm call, only when it leaves
    # that: 6x faster than normalising every result, same roundings), or zero at ZERO_EXPONENT
    m = max(abs(a), abs(b))
    if 5.421010862427522e-20 <= m <= 1.8446744073709552e19:
        return a, b, e
    if m == 0.0:
        return 0.0, 0.0, ZERO_EXPONENT
    x = math.frexp(m)[1]
    return math.ldexp(a, -x), math.ldexp(b, -x), e + x


@_J
def _shift(a, d):  # pragma: no cover
    # a * 2**d for an integer d <= 0 of any size
    if d == 0:
        return a
    return 0.0 if d < -1074 else a * _POW2[d + 1074]


@_J
def _add(a1, b1, e1, a2, b2, e2):  # pragma: no cover
    if e1 >= e2:
        d = e2 - e1
        return _norm(a1 + _shift(a2, d), b1 + _shift(b2, d), e1)
    d = e1 - e2
    return _norm(a2 + _shift(a1, d), b2 + _shift(b1, d), e2)


@_J
def _mul(a1, b1, e1, a2, b2, e2):  # pragma: no cover
    return _norm(a1 * a2 - b1 * b2, a1 * b2 + b1 * a2, e1 + e2)


@_J
def _float(a, e):  # pragma: no cover
    # a * 2**e as a float64 (0 below its range)
    if e < -1074:
        return 0.0
    if e > 1023:
        return math.ldexp(a, min(e, 1100))
    return a * _POW2[e + 1074]


@_J
def _less(m1, e1, m2, e2):  # pragma: no cover
    # m1 2**e1 < m2 2**e2 for m1, m2 >= 0, each 0 or within 2**±130 (squares of _norm's mantissas)
    if m2 <= 0.0:
        return False
    if m1 <= 0.0:
        return True
    d = e1 - e2
    if d < -300:
        return True
    if d > 300:
        return False
    return m1 * _POW2[d + 1074] < m2


@_J
def _real(m, e):  # pragma: no cover
    # a non-negative real floatexp, normalised
    if m == 0.0 or not math.isfinite(m):
        return (0.0, ZERO_EXPONENT) if m == 0.0 else (m, e)
    f, x = math.frexp(m)
    return f, e + x


@numba.njit(cache=True, nogil=True, fastmath=False)
def _normalise(zr, zi, ze, outr, outi, oute):  # pragma: no cover
    for n in range(len(zr)):
        outr[n], outi[n], oute[n] = _norm(zr[n], zi[n], ze[n])


def normalise(
    zr: np.ndarray, zi: np.ndarray, ze: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(zr + i zi) 2**ze`` (``ze`` 0 if ``None``) as normal floatexp arrays
    ``(mantissa re, mantissa im, exponent)``."""
    zr = np.ascontiguousarray(zr, np.float64)
    zi = np.ascontiguousarray(zi, np.float64)
    ze = np.zeros(len(zr), np.int64) if ze is None else np.ascontiguousarray(ze, np.int64)
    outr, outi, oute = np.empty_like(zr), np.empty_like(zi), np.empty(len(zr), np.int64)
    _normalise(zr, zi, ze, outr, outi, oute)
    return outr, outi, oute


@dataclass(frozen=True)
class ExtendedTable:
    """A BLA table (:class:`dfractal_dask.bla.BlaTable`'s layout) in floatexp:
    entry ``k`` maps ``δz`` to ``A δz + B δc`` while ``|δz| < R``, with
    ``A = (ar + i ai) 2**ae``, ``B = (br + i bi) 2**be``, ``R = rm 2**re``."""

    ar: np.ndarray
    ai: np.ndarray
    ae: np.ndarray
    br: np.ndarray
    bi: np.ndarray
    be: np.ndarray
    rm: np.ndarray
    re: np.ndarray
    offsets: np.ndarray
    low: int
    eps: float

    @property
    def levels(self) -> int:
        """How many levels the table holds."""
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        """The size of its arrays."""
        return sum(getattr(self, f).nbytes for f in ("ar", "ai", "ae", "br", "bi", "be", "rm", "re", "offsets"))


@_J
def _radius_back(rym, rye, bxr, bxi, bxe, dcm, dce, axr, axi, axe):  # pragma: no cover
    # max(0, (R_y - |B_x| dc_max) / |A_x|), a real floatexp
    bm, be = _real(math.hypot(bxr, bxi) * dcm, bxe + dce)
    if not _less(bm, be, rym, rye):
        return 0.0, ZERO_EXPONENT
    if be < rye - 1100:
        room, roome = rym, rye
    else:
        room, roome = _real(rym - math.ldexp(bm, be - rye), rye)
    am = math.hypot(axr, axi)
    if am == 0.0:
        return 0.0, ZERO_EXPONENT
    return _real(room / am, roome - axe)


@_J
def _rmin(m1, e1, m2, e2):  # pragma: no cover
    return (m1, e1) if _less(m1, e1, m2, e2) else (m2, e2)


@numba.njit(cache=True, nogil=True, fastmath=False)
def _build_x(zr, zi, ze, dcm, dce, eps, low, ar, ai, ae, br, bi, be, rm, re, starts, counts):  # pragma: no cover
    span = 1 << low
    for k in range(counts[0]):
        xar, xai, xae = 0.5, 0.0, 1  # A = 1
        xbr, xbi, xbe = 0.0, 0.0, ZERO_EXPONENT  # B = 0
        xrm, xre = math.inf, 0
        for m in range(1 + k * span, 1 + (k + 1) * span):
            am, ae_ = _real(math.hypot(zr[m], zi[m]), ze[m])
            # R_y = min(2 eps |Z_m|, 2 - |Z_m|)
            r1m, r1e = _real(2.0 * eps * am, ae_)
            r2 = 2.0 - _float(am, ae_)
            r2m, r2e = _real(max(r2, 0.0), 0)
            rym, rye = _rmin(r1m, r1e, r2m, r2e)
            if math.isinf(xrm):
                xrm, xre = rym, rye  # the first step: nothing before it
            else:
                bm, bk = _radius_back(rym, rye, xbr, xbi, xbe, dcm, dce, xar, xai, xae)
                xrm, xre = _rmin(xrm, xre, bm, bk)
            # A_y = 2 Z_m, B_y = 1: A = A_y A, B = A_y B + 1
            xar, xai, xae = _mul(zr[m], zi[m], ze[m] + 1, xar, xai, xae)
            tbr, tbi, tbe = _mul(zr[m], zi[m], ze[m] + 1, xbr, xbi, xbe)
            xbr, xbi, xbe = _add(tbr, tbi, tbe, 0.5, 0.0, 1)
        ar[k], ai[k], ae[k], br[k], bi[k], be[k], rm[k], re[k] = xar, xai, xae, xbr, xbi, xbe, xrm, xre
    for lv in range(1, len(counts)):
        src, dst = starts[lv - 1], starts[lv]
        for k in range(counts[lv - 1] // 2):
            x = src + 2 * k
            y = x + 1
            e = dst + k
            bm, bk = _radius_back(rm[y], re[y], br[x], bi[x], be[x], dcm, dce, ar[x], ai[x], ae[x])
            rm[e], re[e] = _rmin(rm[x], re[x], bm, bk)
            ar[e], ai[e], ae[e] = _mul(ar[y], ai[y], ae[y], ar[x], ai[x], ae[x])
            tbr, tbi, tbe = _mul(ar[y], ai[y], ae[y], br[x], bi[x], be[x])
            br[e], bi[e], be[e] = _add(tbr, tbi, tbe, br[y], bi[y], be[y])


def build_extended_table(
    zr: np.ndarray, zi: np.ndarray, ze: np.ndarray, dc_max: tuple[float, int], eps: float, low: int
) -> ExtendedTable:
    """The BLA table of the floatexp orbit ``(zr + i zi) 2**ze`` (normal, see
    :func:`normalise`) for samples with ``|δc| <= dc_max = m 2**e``, as
    :func:`dfractal_dask.bla.build_table` builds it in float64 (same levels,
    same radii), every number a floatexp."""
    counts_a, offsets = level_layout(len(zr), low)  # the float64 table's levels
    n = int(offsets[-1])
    f = [np.empty(n) for _ in range(6)]
    x = [np.empty(n, np.int64) for _ in range(3)]
    if len(counts_a):
        dcm, dce = _real(float(dc_max[0]), int(dc_max[1]))
        _build_x(zr, zi, ze, dcm, dce, float(eps), int(low), f[0], f[1], x[0], f[2], f[3], x[1], f[4], x[2],
                 offsets, counts_a)  # fmt: skip
    return ExtendedTable(f[0], f[1], x[0], f[2], f[3], x[1], f[4], x[2], offsets, int(low), float(eps))


@numba.njit(cache=True, nogil=True, fastmath=False)
def perturb_extended(
    it_out, norm_out, flag, zr, zi, ze, iref, jref, stepm, stepe, row0, rstride, col0, cstride, iters,
    tar, tai, tae, tbr, tbi, tbe, trm, tre, toff, tlow, interior2, periodic,
):  # pragma: no cover  # fmt: skip
    """:func:`dfractal_dask.perturbation._perturb` in floatexp (the module
    docstring): the orbit ``(zr + i zi) 2**ze`` normal, the sample step
    ``stepm 2**stepe``; no series.  Returns ``(steps executed, steps BLA
    skipped beyond those)``."""
    nrows, ncols = it_out.shape
    last = len(zr) - 1
    nlev = len(toff) - 1
    lowmask = (1 << tlow) - 1
    total = 0
    saved = 0
    for r in range(nrows):
        ui = iref - (row0 + r * rstride)
        for c in range(ncols):
            if flag[r, c] != 1:
                continue
            ur = (col0 + c * cstride) - jref
            dcr, dci, dce = _norm(ur * stepm, ui * stepm, stepe)
            dzr, dzi, dze = 0.0, 0.0, ZERO_EXPONENT
            m = 0
            n = 0
            glitch = False
            n2 = 0.0
            extra = 0
            d2m, d2e = 1.0, 0  # |dz_n / dz_1|² (as the float64 kernel: sizes multiply)
            inside = False
            while True:
                wr, wi, we = _add(zr[m], zi[m], ze[m], dzr, dzi, dze)  # z = Z + δz
                fr, fi = _float(wr, we), _float(wi, we)
                n2 = fr * fr + fi * fi
                if n2 > 4.0 or n == iters:
                    break
                if interior2 > 0.0 and _less(d2m, d2e, interior2, 0):
                    inside = True  # attracted: the orbit contracts onto a cycle
                    break
                if m == last and not periodic:
                    glitch = True
                if _less(wr * wr + wi * wi, 2 * we, dzr * dzr + dzi * dzi, 2 * dze) or m == last:
                    dzr, dzi, dze = wr, wi, we  # rebase onto Z_0 = 0
                    m = 0
                if nlev > 0 and m > 0 and ((m - 1) & lowmask) == 0:
                    off = m - 1
                    mag = abs(dzr) + abs(dzi)
                    done = False
                    for lv in range(nlev - 1, -1, -1):
                        lvl = tlow + lv
                        span = 1 << lvl
                        if (off & (span - 1)) != 0 or n + span > iters:
                            continue
                        e = toff[lv] + (off >> lvl)
                        if e >= toff[lv + 1] or not _less(mag, dze, trm[e], tre[e]):
                            continue
                        ar, ai, ae = _mul(tar[e], tai[e], tae[e], dzr, dzi, dze)
                        br, bi, be = _mul(tbr[e], tbi[e], tbe[e], dcr, dci, dce)
                        dzr, dzi, dze = _add(ar, ai, ae, br, bi, be)
                        if interior2 > 0.0:
                            d2m, d2e = _real(d2m * (tar[e] * tar[e] + tai[e] * tai[e]), d2e + 2 * tae[e])
                        m += span
                        n += span
                        extra += span - 1
                        done = True
                        break
                    if done:
                        continue
                if interior2 > 0.0 and n > 0:  # d z_{n+1} = 2 z_n d z_n
                    d2m, d2e = _real(d2m * 4.0 * (wr * wr + wi * wi), d2e + 2 * we)
                # δz ← 2 Z δz + δz² + δc
                ar, ai, ae = _mul(zr[m], zi[m], ze[m] + 1, dzr, dzi, dze)
                sr, si, se = _mul(dzr, dzi, dze, dzr, dzi, dze)
                ar, ai, ae = _add(ar, ai, ae, sr, si, se)
                dzr, dzi, dze = _add(ar, ai, ae, dcr, dci, dce)
                m += 1
                n += 1
            if inside:
                it_out[r, c] = iters
                norm_out[r, c] = np.nan
            else:
                it_out[r, c] = n
                norm_out[r, c] = n2 if n < iters else 0.5 * n2
            flag[r, c] = 2 if glitch else 0
            total += n - extra
            saved += extra
    return total, saved
