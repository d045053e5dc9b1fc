"""Numba escape-time kernels.  Pure functions on numpy arrays: no dask here.

The escape rule is the seed's (SEED.md, "Escape iteration"): for each sample
``c``, ``z`` starts at 0; at step ``i = 0 .. iters-1`` first test ``|z|² > 4``
(escaped: ``it = i``, ``norm = |z|²``), else ``z = z² + c``.  A sample that never
escapes has ``it = iters`` and ``norm = |z|² / 2``.
"""

from __future__ import annotations

import numba
import numpy as np

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
    "warm_up",
]

#: Samples computed in lockstep by :func:`escape_into` (four AVX2 vectors of
#: float64: enough independent chains to hide the multiply/add latency),
#: iterations run on a lane while its state is in registers, and iterations
#: between two looks at which lanes escaped (a multiple of ``_UNROLL``).
LANES = 16
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


def _make_escape(shortcuts: int):
    """:func:`escape_into` compiled for one ``shortcuts`` level: the level is a
    constant of the closure, so the code of the other levels is not in it."""
    cycles = shortcuts >= CYCLES
    interior = shortcuts >= INTERIOR

    @numba.njit(cache=True, nogil=True, fastmath=False)
    def kernel(it_out, norm_out, re0, im0, step, row0, iters, stats):  # pragma: no cover - compiled
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
            ci = im0 - (row0 + r) * step
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
                    cr[lane] = re0 + cols[g0 + min(lane, m - 1)] * step  # a short group repeats its last sample
                    zr[lane] = 0.0
                    zi[lane] = 0.0
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
                                    y = 2.0 * x * y + ci
                                    x = x2 - y2 + a
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
                                zi[lane] = 2.0 * x * y + ci
                                zr[lane] = x2 - y2 + cr[lane]
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
                                y = 2.0 * x * y + ci
                                x = x2 - y2 + cr[lane]
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
                                    x2 = x * x
                                    y2 = y * y
                                    y = 2.0 * x * y + ci
                                    x = x2 - y2 + cr[lane]
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


_ESCAPE = {level: _make_escape(level) for level in (BRUTE, CYCLES, INTERIOR)}


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
    finished: ``[cycles, cardioid or bulb]``.

    Returns the sum of the counts (the ``z ← z² + c`` updates brute force
    would count), the same as the scalar kernel's.
    """
    kernel = _ESCAPE.get(shortcuts)
    if kernel is None:
        raise ValueError(f"shortcuts must be BRUTE (0), CYCLES (1) or INTERIOR (2), not {shortcuts!r}")
    return kernel(it_out, norm_out, re0, im0, step, row0, iters, stats)


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
    re0: float, im0: float, step: float, row0: int, nrows: int, ncols: int, iters: int, shortcuts: int = CYCLES
) -> tuple[np.ndarray, np.ndarray, int]:
    """Allocate and compute one row block (``shortcuts``: see :func:`escape_into`).

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
    work = escape_into(it, norm, float(re0), float(im0), float(step), int(row0), int(iters), int(shortcuts))
    return it, norm, int(work)


def escape_reference(cr: float, ci: float, iters: int) -> tuple[int, float]:
    """Plain-Python statement of the escape rule, for tests (slow)."""
    zr = zi = 0.0
    for i in range(iters):
        if zr * zr + zi * zi > 4.0:
            return i, zr * zr + zi * zi
        zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
    return iters, 0.5 * (zr * zr + zi * zi)


def warm_up() -> None:
    """Compile (or load from cache) every kernel signature used by renders."""
    for dtype in (np.uint16, np.uint32):
        escape_into(np.empty((1, 1), dtype), np.empty((1, 1), np.float32), 0.0, 0.0, 1.0, 0, 1, CYCLES)
