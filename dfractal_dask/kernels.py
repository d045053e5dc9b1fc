"""Numba escape-time kernels.  Pure functions on numpy arrays: no dask here.

The escape rule is the seed's (SEED.md, "Escape iteration"): for each sample
``c``, ``z`` starts at 0; at step ``i = 0 .. iters-1`` first test ``|z|² > 4``
(escaped: ``it = i``, ``norm = |z|²``), else ``z = z² + c``.  A sample that never
escapes has ``it = iters`` and ``norm = |z|² / 2``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["LANES", "escape_into", "escape_scalar_into", "escape_block", "count_dtype", "escape_reference", "warm_up"]

#: Samples computed in lockstep by :func:`escape_into`, and iterations between
#: its "all escaped?" checks.  16 lanes = four AVX2 vectors of float64, enough
#: independent chains to hide the multiply/add latency.
LANES = 16
_CHECK_EVERY = 16


def count_dtype(iters: int) -> np.dtype:
    """The smallest unsigned dtype that holds counts up to ``iters``."""
    return np.dtype(np.uint16) if iters <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


@numba.njit(cache=True, nogil=True, fastmath=False)
def escape_into(it_out, norm_out, re0, im0, step, row0, iters):  # pragma: no cover - compiled
    """Fill ``it_out``/``norm_out`` (shape ``(rows, cols)``) for sample rows
    ``row0 .. row0+rows-1`` of the grid ``re = re0 + j*step``, ``im = im0 - i*step``.

    :data:`LANES` neighbouring samples run in lockstep with no branch in the
    lane loop (escapes are caught by selects), so LLVM vectorises it; the
    arithmetic per sample is the scalar rule's, in the same order, with no
    fused multiply-add (``fastmath=False``), so every count and ``norm`` equals
    :func:`escape_scalar_into`'s bit for bit.

    Returns the number of counted ``z ← z² + c`` updates (the sum of the counts),
    the same as the scalar kernel's.
    """
    nrows, ncols = it_out.shape
    total = 0
    fit = float(iters)  # counts are kept as float64 (exact below 2**53): one vector type
    zr = np.empty(LANES)
    zi = np.empty(LANES)
    cr = np.empty(LANES)
    cnt = np.empty(LANES)
    nrm = np.empty(LANES)
    for r in range(nrows):
        ci = im0 - (row0 + r) * step
        for j0 in range(0, ncols, LANES):
            m = min(LANES, ncols - j0)
            for lane in range(LANES):
                cr[lane] = re0 + (j0 + min(lane, m - 1)) * step  # a short last group repeats its last sample
                zr[lane] = 0.0
                zi[lane] = 0.0
                cnt[lane] = fit  # iters: not escaped (yet)
                nrm[lane] = 0.0
            n = 0
            while n < iters:
                k = min(_CHECK_EVERY, iters - n)
                fi = float(n)
                for _ in range(k):
                    for lane in range(LANES):
                        x = zr[lane]
                        y = zi[lane]
                        x2 = x * x
                        y2 = y * y
                        s = x2 + y2
                        newly = (s > 4.0) & (cnt[lane] == fit)
                        cnt[lane] = fi if newly else cnt[lane]
                        nrm[lane] = s if newly else nrm[lane]
                        # escaped lanes run on (to inf/nan): their result is already kept
                        zi[lane] = 2.0 * x * y + ci
                        zr[lane] = x2 - y2 + cr[lane]
                    fi += 1.0
                n += k
                alive = 0.0
                for lane in range(LANES):
                    alive += cnt[lane] == fit
                if alive == 0.0:
                    break
            for lane in range(m):
                c = int(cnt[lane])
                total += c
                it_out[r, j0 + lane] = c
                if c < iters:
                    norm_out[r, j0 + lane] = nrm[lane]
                else:
                    norm_out[r, j0 + lane] = 0.5 * (zr[lane] * zr[lane] + zi[lane] * zi[lane])
    return total


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
    re0: float, im0: float, step: float, row0: int, nrows: int, ncols: int, iters: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Allocate and compute one row block.

    Returns
    -------
    it : ndarray of :func:`count_dtype` ``(nrows, ncols)``
        Escape iteration per sample (``iters`` for samples that never escaped).
    norm : ndarray of float32 ``(nrows, ncols)``
        ``|z|²`` at escape (``|z|²/2`` for interior samples).
    work : int
        Number of fractal iterations executed.
    """
    it = np.empty((nrows, ncols), dtype=count_dtype(iters))
    norm = np.empty((nrows, ncols), dtype=np.float32)
    work = escape_into(it, norm, float(re0), float(im0), float(step), int(row0), int(iters))
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
        escape_into(np.empty((1, 1), dtype), np.empty((1, 1), np.float32), 0.0, 0.0, 1.0, 0, 1)
