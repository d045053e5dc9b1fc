"""Numba escape-time kernels.  Pure functions on numpy arrays: no dask here.

The escape rule is the seed's (SEED.md, "Escape iteration"): for each sample
``c``, ``z`` starts at 0; at step ``i = 0 .. iters-1`` first test ``|z|² > 4``
(escaped: ``it = i``, ``norm = |z|²``), else ``z = z² + c``.  A sample that never
escapes has ``it = iters`` and ``norm = |z|² / 2``.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["escape_into", "escape_block", "count_dtype", "escape_reference", "warm_up"]


def count_dtype(iters: int) -> np.dtype:
    """The smallest unsigned dtype that holds counts up to ``iters``."""
    return np.dtype(np.uint16) if iters <= np.iinfo(np.uint16).max else np.dtype(np.uint32)


@numba.njit(cache=True, nogil=True, fastmath=False)
def escape_into(it_out, norm_out, re0, im0, step, row0, iters):  # pragma: no cover - compiled
    """Fill ``it_out``/``norm_out`` (shape ``(rows, cols)``) for sample rows
    ``row0 .. row0+rows-1`` of the grid ``re = re0 + j*step``, ``im = im0 - i*step``.

    Returns the number of ``z ← z² + c`` updates executed (the work done).
    """
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
