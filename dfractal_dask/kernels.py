"""Numba escape-time kernels.  Pure functions on numpy arrays: no dask here.

The escape rule is the seed's (SEED.md, "Escape iteration"): for each sample
``c``, ``z`` starts at 0; at step ``i = 0 .. iters-1`` first test ``|z|² > 4``
(escaped: ``it = i``, ``norm = |z|²``), else ``z = z² + c``.  A sample that never
escapes has ``it = iters`` and ``norm = |z|² / 2``.  The other families
(:mod:`dfractal_dask.fractals`) change the step, and Julia sets the start
(``z = the sample``, ``c`` fixed); the rule is otherwise the same.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from .fractals import Fractal

__all__ = [
    "BRUTE",
    "CYCLES",
    "INTERIOR",
    "LANES",
    "escape_into",
    "escape_scalar_into",
    "escape_block",
    "count_dtype",
    "escape_reference",
    "DERIVATIVE_FAMILIES",
    "check_distance_fractal",
    "distance_block",
    "distance_reference",
    "warm_up",
]

#: Samples computed in lockstep by :func:`escape_into` (eight AVX2 or four
#: AVX-512 vectors of float64: a step is a chain of about 4 dependent
#: operations, so 16 lanes waited on its latency; 32 measured 1.5-1.8x faster
#: over the seed default, 64 slower),
#: iterations run on a lane while its state is in registers, and iterations
#: between two looks at which lanes escaped (a multiple of ``_UNROLL``).
LANES = 32
_UNROLL = 4
_BLOCK = 16

#: ``shortcuts`` levels of :func:`escape_into`.  Every level gives the same
#: counts; ``BRUTE`` and ``CYCLES`` also the same ``norm`` bit for bit.
BRUTE = 0  #: iterate every sample to escape or to ``iters``
CYCLES = 1  #: stop an orbit that repeats a point exactly; its end is replayed
INTERIOR = 2  #: CYCLES, and the main cardioid and period-2 bulb are not iterated


def count_dtype(iters: int) -> np.dtype:
    """The smallest unsigned dtype that holds counts up to ``iters``."""
    return np.dtype(np.uint16) if iters <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


#: Samples closer than this (in the tests' own units) to the edge of the
#: cardioid or bulb are iterated: rounding in the test cannot misfile them.
_EDGE = 1e-9


@numba.njit(cache=True, nogil=True, fastmath=False, inline="always")
def _in_cardioid_or_bulb(x, y):  # pragma: no cover - compiled
    y2 = y * y
    xq = x - 0.25
    q = xq * xq + y2
    if q * (q + xq) < 0.25 * y2 - _EDGE:
        return True
    return (x + 1.0) * (x + 1.0) + y2 < 0.0625 - _EDGE


@numba.njit(cache=True, nogil=True, fastmath=False, inline="always")
def _step(x, y, x2, y2, a, b, family, power):  # pragma: no cover - compiled
    """One step ``z ← f(z) + (a + ib)`` of ``family`` (codes of
    :data:`dfractal_dask.fractals.FAMILIES`), given ``x2 = x*x``, ``y2 = y*y``.
    ``family`` and ``power`` are constants where it is inlined, so only one
    branch is compiled."""
    if family == 3 and power > 2:
        zr = x
        zi = y
        for _ in range(power - 1):
            zr, zi = zr * x - zi * y, zr * y + zi * x
        return zr + a, zi + b
    if family == 2:
        return x2 - y2 + a, 2.0 * abs(x * y) + b
    return x2 - y2 + a, 2.0 * x * y + b


def _make_escape(shortcuts: int, family: int = 0, power: int = 2):
    """:func:`escape_into` compiled for one ``shortcuts`` level and one family
    (and Multibrot power): they are constants of the closure, so the code of
    the others is not in it."""
    cycles = shortcuts >= CYCLES
    interior = shortcuts >= INTERIOR and family == 0  # the cardioid and bulb are Mandelbrot's
    julia = family == 1

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def kernel(it_out, norm_out, re0, im0, step, row0, iters, stats, jr, ji):  # pragma: no cover - compiled
        nrows, ncols = it_out.shape
        total = 0
        cols = np.empty(ncols, np.int64)  # the row's samples to iterate
        zr = np.empty(LANES)
        zi = np.empty(LANES)
        cr = np.empty(LANES)
        top = np.empty(LANES)  # running max of |z|² this block: > 4 once escaped
        # z at the start of each run of _UNROLL steps, and the running max of
        # |z|² at its end: a replay starts at the run where the max passed 4
        sr = np.empty((_BLOCK // _UNROLL, LANES))
        si = np.empty((_BLOCK // _UNROLL, LANES))
        tops = np.empty((_BLOCK // _UNROLL, LANES))
        kr = np.empty(LANES)  # checkpoint for cycle detection (at step kn)
        ki = np.empty(LANES)
        cnt = np.empty(LANES, np.int64)  # -1: still running
        nrm = np.empty(LANES)
        for r in range(nrows):
            ci = im0 - (row0 + r) * step  # the row's imaginary part
            b = ji if julia else ci  # the imaginary part of c
            ncol = 0
            for j in range(ncols):
                if interior and _in_cardioid_or_bulb(re0 + j * step, ci):
                    it_out[r, j] = iters
                    norm_out[r, j] = np.nan  # not computed
                    total += iters
                    if stats is not None:
                        stats[1] += 1
                else:
                    cols[ncol] = j
                    ncol += 1
            for g0 in range(0, ncol, LANES):
                m = min(LANES, ncol - g0)
                left = LANES
                for lane in range(LANES):
                    x = re0 + cols[g0 + min(lane, m - 1)] * step  # a short group repeats its last sample
                    cr[lane] = jr if julia else x  # the real part of c
                    zr[lane] = x if julia else 0.0
                    zi[lane] = ci if julia else 0.0
                    kr[lane] = np.nan  # never equal: no checkpoint yet
                    ki[lane] = np.nan
                    cnt[lane] = -1
                n = 0
                kn = 0
                nblock = 0
                while n < iters and left > 0:
                    k = min(_BLOCK, iters - n)
                    for lane in range(LANES):
                        top[lane] = 0.0
                    runs = 1
                    if k == _BLOCK:
                        runs = _BLOCK // _UNROLL
                        for q in range(_BLOCK // _UNROLL):
                            for lane in range(LANES):
                                x = zr[lane]
                                y = zi[lane]
                                sr[q, lane] = x
                                si[q, lane] = y
                                t = top[lane]
                                a = cr[lane]
                                for _u in range(_UNROLL):
                                    x2 = x * x
                                    y2 = y * y
                                    s = x2 + y2
                                    t = s if s > t else t  # a max LLVM can vectorise; NaN only after inf > 4
                                    x, y = _step(x, y, x2, y2, a, b, family, power)
                                zr[lane] = x
                                zi[lane] = y
                                top[lane] = t
                                tops[q, lane] = t
                    else:
                        for lane in range(LANES):
                            sr[0, lane] = zr[lane]
                            si[0, lane] = zi[lane]
                        for _ in range(k):
                            for lane in range(LANES):
                                x = zr[lane]
                                y = zi[lane]
                                x2 = x * x
                                y2 = y * y
                                s = x2 + y2
                                top[lane] = s if s > top[lane] else top[lane]
                                zr[lane], zi[lane] = _step(x, y, x2, y2, cr[lane], b, family, power)
                    n += k
                    nblock += 1
                    for lane in range(LANES):
                        if cnt[lane] >= 0:
                            continue
                        if top[lane] > 4.0:
                            # escaped in this block: replay the run it escaped in
                            # by the scalar rule (a partial block is one run)
                            q = 0
                            while q < runs - 1 and not tops[q, lane] > 4.0:
                                q += 1
                            x = sr[q, lane]
                            y = si[q, lane]
                            i = n - k + q * _UNROLL
                            while True:
                                x2 = x * x
                                y2 = y * y
                                if x2 + y2 > 4.0:
                                    break
                                x, y = _step(x, y, x2, y2, cr[lane], b, family, power)
                                i += 1
                            cnt[lane] = i
                            nrm[lane] = x * x + y * y
                            left -= 1
                        elif cycles and nblock & 3 == 0 and zr[lane] == kr[lane] and zi[lane] == ki[lane]:
                            # (looked for every 4th block: the look costs as much as
                            # a tenth of a block's arithmetic, a cycle is still found)
                            # z_n == z_kn: periodic from kn with a period dividing
                            # n - kn, never escapes; z_iters is (iters - n) mod that
                            # many steps on.  Worth it if that replay is cheaper than
                            # iterating on in lockstep (about 8 times as fast)
                            rest = (iters - n) % (n - kn)
                            if rest * 8 <= iters - n:
                                x = zr[lane]
                                y = zi[lane]
                                for _ in range(rest):
                                    x, y = _step(x, y, x * x, y * y, cr[lane], b, family, power)
                                cnt[lane] = iters
                                nrm[lane] = 0.5 * (x * x + y * y)
                                left -= 1
                                if stats is not None and lane < m:
                                    stats[0] += 1
                    if cycles and nblock & (nblock - 1) == 0:
                        # Brent: checkpoints at blocks 1, 2, 4, 8, ... catch a
                        # cycle of any period within about twice its length
                        for lane in range(LANES):
                            kr[lane] = zr[lane]
                            ki[lane] = zi[lane]
                        kn = n
                for lane in range(m):
                    c = cnt[lane]
                    if c < 0:
                        c = iters
                        nrm[lane] = 0.5 * (zr[lane] * zr[lane] + zi[lane] * zi[lane])
                    j = cols[g0 + lane]
                    total += c
                    it_out[r, j] = c
                    norm_out[r, j] = nrm[lane]
        return total

    return kernel


_ESCAPE: dict[tuple[int, int, int], Any] = {}


def _kernel(shortcuts: int, fractal: Fractal) -> Any:
    """The compiled kernel of a level and a family, made on first use."""
    family, power = fractal.code, fractal.power
    if family == 3 and power == 2:  # Multibrot of power 2 is the Mandelbrot set
        family = 0
    key = (shortcuts, family, power)
    if key not in _ESCAPE:
        _ESCAPE[key] = _make_escape(*key)
    return _ESCAPE[key]


_MANDELBROT = Fractal()


def escape_into(
    it_out: np.ndarray,
    norm_out: np.ndarray,
    re0: float,
    im0: float,
    step: float,
    row0: int,
    iters: int,
    shortcuts: int = CYCLES,
    stats: np.ndarray | None = None,
    fractal: Fractal | None = None,
) -> int:
    """Fill ``it_out``/``norm_out`` (shape ``(rows, cols)``) for sample rows
    ``row0 .. row0+rows-1`` of the grid ``re = re0 + j*step``, ``im = im0 - i*step``.

    :data:`LANES` neighbouring samples run in lockstep, ``_BLOCK`` iterations at
    a time with no branch and no per-lane bookkeeping beyond a running maximum
    of ``|z|²`` (kept, with ``z``, every ``_UNROLL`` steps), so LLVM keeps them
    in AVX2 registers.  After each block a lane whose maximum passed 4 is
    replayed from the start of the ``_UNROLL`` steps it escaped in, one step at
    a time by the scalar rule, which finds its exact count and ``norm``.  The
    arithmetic is the scalar rule's, in the same order, with no fused
    multiply-add (``fastmath=False``), so at ``shortcuts=BRUTE`` or ``CYCLES``
    every count and ``norm`` equals :func:`escape_scalar_into`'s bit for bit.

    ``shortcuts``: :data:`BRUTE`, :data:`CYCLES` (default: an orbit that comes
    back to a point it visited, bit for bit, is periodic from there; its last
    steps are replayed, so ``norm`` is still exact) or :data:`INTERIOR` (also
    gives samples in the main cardioid or the period-2 bulb ``it = iters``
    without iterating; their ``norm`` is NaN: not computed).  ``stats``, an
    int64 array of 2 or None, is incremented by the samples each shortcut
    finished: ``[cycles, cardioid or bulb]``.  ``fractal``: the family
    (:class:`dfractal_dask.fractals.Fractal`, default Mandelbrot); the cardioid
    and bulb test is the Mandelbrot set's only (``INTERIOR`` is ``CYCLES`` for
    the others).

    Returns the sum of the counts (the ``z ← z² + c`` updates brute force
    would count), the same as the scalar kernel's.
    """
    if shortcuts not in (BRUTE, CYCLES, INTERIOR):
        raise ValueError(f"shortcuts must be BRUTE (0), CYCLES (1) or INTERIOR (2), not {shortcuts!r}")
    fractal = _MANDELBROT if fractal is None else fractal
    if not isinstance(fractal, Fractal):
        raise TypeError(f"fractal must be a Fractal, got {type(fractal).__name__}")
    jr, ji = fractal.c_parts
    return _kernel(shortcuts, fractal)(it_out, norm_out, re0, im0, step, row0, iters, stats, jr, ji)


@numba.njit(cache=True, nogil=True, fastmath=False)
def escape_scalar_into(it_out, norm_out, re0, im0, step, row0, iters):  # pragma: no cover - compiled
    """The escape rule one sample at a time: the reference :func:`escape_into`
    must equal bit for bit (and the baseline of the kernel benchmark)."""
    nrows, ncols = it_out.shape
    total = 0
    for r in range(nrows):
        ci = im0 - (row0 + r) * step
        for j in range(ncols):
            cr = re0 + j * step
            zr = 0.0
            zi = 0.0
            n = 0
            escaped = False
            while n < iters:
                zr2 = zr * zr
                zi2 = zi * zi
                if zr2 + zi2 > 4.0:
                    escaped = True
                    break
                zi = 2.0 * zr * zi + ci
                zr = zr2 - zi2 + cr
                n += 1
            total += n
            it_out[r, j] = n
            if escaped:
                norm_out[r, j] = zr * zr + zi * zi
            else:
                norm_out[r, j] = 0.5 * (zr * zr + zi * zi)
    return total


def escape_block(
    re0: float,
    im0: float,
    step: float,
    row0: int,
    nrows: int,
    ncols: int,
    iters: int,
    shortcuts: int = CYCLES,
    fractal: Fractal | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Allocate and compute one row block (``shortcuts``, ``fractal``: see :func:`escape_into`).

    Returns
    -------
    it : ndarray of :func:`count_dtype` ``(nrows, ncols)``
        Escape iteration per sample (``iters`` for samples that never escaped).
    norm : ndarray of float32 ``(nrows, ncols)``
        ``|z|²`` at escape (``|z|²/2`` for interior samples; NaN for those
        :data:`INTERIOR` did not iterate).
    work : int
        Sum of the counts: the iterations brute force executes.
    """
    it = np.empty((nrows, ncols), dtype=count_dtype(iters))
    norm = np.empty((nrows, ncols), dtype=np.float32)
    work = escape_into(
        it, norm, float(re0), float(im0), float(step), int(row0), int(iters), int(shortcuts), None, fractal
    )
    return it, norm, int(work)


def escape_reference(cr: float, ci: float, iters: int, fractal: Fractal | None = None) -> tuple[int, float]:
    """Plain-Python statement of the escape rule of ``fractal`` (default
    Mandelbrot) for the sample ``cr + i ci``, for tests (slow): ``(count, norm)``.

    Written from the definitions (:mod:`dfractal_dask.fractals`) with Python
    floats, each product and sum in the kernels' order, so counts and norms
    must agree bit for bit.
    """
    f = _MANDELBROT if fractal is None else fractal
    if f.family == "julia":
        zr, zi, (a, b) = cr, ci, f.c_parts
    else:
        zr, zi, a, b = 0.0, 0.0, cr, ci
    for i in range(iters):
        if zr * zr + zi * zi > 4.0:
            return i, zr * zr + zi * zi
        if f.family == "burning_ship":
            zr, zi = zr * zr - zi * zi + a, 2.0 * abs(zr * zi) + b
        elif f.family == "multibrot":
            pr, pi = zr, zi  # z**d as d - 1 complex products
            for _ in range(f.power - 1):
                pr, pi = pr * zr - pi * zi, pr * zi + pi * zr
            zr, zi = pr + a, pi + b
        else:
            zr, zi = zr * zr - zi * zi + a, 2.0 * zr * zi + b
    return iters, 0.5 * (zr * zr + zi * zi)


@numba.njit(cache=True, nogil=True, fastmath=False)
def _distance_kernel(it, out, re0, im0, step, row0, iters, family, power, jr, ji):  # pragma: no cover
    nrows, ncols = it.shape
    julia = family == 1
    for r in range(nrows):
        ci = im0 - (row0 + r) * step
        for j in range(ncols):
            n = it[r, j]
            if n >= iters:  # never escaped: no distance to estimate
                out[r, j] = np.nan
                continue
            cr = re0 + j * step
            x = cr if julia else 0.0
            y = ci if julia else 0.0
            a = jr if julia else cr
            b = ji if julia else ci
            dr = 1.0 if julia else 0.0  # dz/dz0 of Julia starts at 1, dz/dc at 0
            di = 0.0
            k = 0
            while k < n + _DE_EXTRA:  # on past the escape, out to the DE bailout
                if k >= n and x * x + y * y > _DE_BAILOUT2:
                    break
                k += 1
                pr = 1.0  # z**(d-1)
                pi = 0.0
                for _k in range(power - 1):
                    pr, pi = pr * x - pi * y, pr * y + pi * x
                # dz <- d z**(d-1) dz (+ 1 for dz/dc)
                tr = power * (pr * dr - pi * di)
                ti = power * (pr * di + pi * dr)
                dr = tr if julia else tr + 1.0
                di = ti
                x, y = _step(x, y, x * x, y * y, a, b, family, power)
            zz = x * x + y * y
            out[r, j] = 0.5 * np.sqrt(zz) * np.log(zz) / np.sqrt(dr * dr + di * di)


#: Families with a complex derivative (the Burning Ship's map is not analytic).
DERIVATIVE_FAMILIES = ("mandelbrot", "julia", "multibrot")
#: The distance estimate is taken where |z| first passes 1000 (|z|² > 1e6),
#: at most 64 steps past the escape (|z| > 2) the count records: at radius 2
#: the estimate is off by 5-20x near the set, at 1000 within 2x.
_DE_BAILOUT2 = 1e6
_DE_EXTRA = 64


def check_distance_fractal(fractal: Fractal | None) -> Fractal:
    """``fractal`` (default Mandelbrot) if distance estimation applies to it;
    a ``ValueError`` for the Burning Ship, whose map has no complex derivative."""
    f = _MANDELBROT if fractal is None else fractal
    if f.family not in DERIVATIVE_FAMILIES:
        raise ValueError(f"distance estimation needs a complex derivative: {', '.join(DERIVATIVE_FAMILIES)}, "
                         f"not {f.family}")  # fmt: skip
    return f


def distance_block(
    it: np.ndarray, re0: float, im0: float, step: float, row0: int, iters: int, fractal: Fractal | None = None
) -> np.ndarray:
    """The distance estimate ``|z| ln|z| / |dz|`` of each sample of a computed
    block (``it``, its counts) to the set, in units of the complex plane:
    ``dz`` is the derivative of ``z`` by ``c`` (by the start ``z0`` for Julia),
    carried along the orbit past the escape out to ``|z| > 1000``.  float32,
    NaN where the sample never escaped.  The true distance lies between about
    half and twice the estimate (Koebe's quarter theorem; tested).

    A second pass over the escaped samples only, with the kernels' arithmetic
    (so each orbit is the one that was counted); the interior, most of a
    render's iterations, costs nothing here.

    Raises
    ------
    ValueError
        For the Burning Ship, whose map has no complex derivative.
    """
    f = check_distance_fractal(fractal)
    de = np.empty(it.shape, np.float32)
    code = 0 if f.family == "multibrot" and f.power == 2 else f.code
    jr, ji = f.c_parts
    _distance_kernel(it, de, float(re0), float(im0), float(step), int(row0), int(iters), code, f.power, jr, ji)
    return de


def distance_reference(cr: float, ci: float, n: int, fractal: Fractal | None = None) -> float:
    """Plain-Python :func:`distance_block` of one sample that escaped at step
    ``n`` (the kernel's order of operations), for tests:
    ``dz ← d z^(d-1) dz + 1`` (no ``+ 1`` for Julia) alongside ``z``, out to
    ``|z| > 1000``, then ``|z| ln|z| / |dz|``."""
    f = _MANDELBROT if fractal is None else fractal
    julia = f.family == "julia"
    zr, zi = (cr, ci) if julia else (0.0, 0.0)
    a, b = f.c_parts if julia else (cr, ci)
    dr, di = (1.0, 0.0) if julia else (0.0, 0.0)
    k = 0
    while k < n + _DE_EXTRA and not (k >= n and zr * zr + zi * zi > _DE_BAILOUT2):
        k += 1
        pr, pi = 1.0, 0.0
        for _ in range(f.power - 1):
            pr, pi = pr * zr - pi * zi, pr * zi + pi * zr
        tr, ti = f.power * (pr * dr - pi * di), f.power * (pr * di + pi * dr)
        dr, di = (tr if julia else tr + 1.0), ti
        if f.family == "multibrot" and f.power > 2:
            qr, qi = zr, zi
            for _ in range(f.power - 1):
                qr, qi = qr * zr - qi * zi, qr * zi + qi * zr
            zr, zi = qr + a, qi + b
        else:
            zr, zi = zr * zr - zi * zi + a, 2.0 * zr * zi + b
    zz = zr * zr + zi * zi
    return 0.5 * math.sqrt(zz) * math.log(zz) / math.sqrt(dr * dr + di * di)


def warm_up() -> None:
    """Compile (or load from cache) every kernel signature used by renders."""
    for dtype in (np.uint16, np.uint32):
        escape_into(np.empty((1, 1), dtype), np.empty((1, 1), np.float32), 0.0, 0.0, 1.0, 0, 1, CYCLES)
