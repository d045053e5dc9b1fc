"""Bilinear approximation (BLA): many perturbation steps in one.

Around a reference orbit ``Z_m`` a sample's delta follows
``δz_{m+1} = 2 Z_m δz_m + δz_m² + δc`` (:mod:`dfractal_dask.perturbation`).
While ``δz_m`` is small enough the square is negligible and the step is
linear, ``δz_{m+1} = A δz_m + B δc`` with ``A = 2 Z_m``, ``B = 1``; linear
steps compose, so ``l`` of them are again one ``(A, B)``, applied in one
multiplication (Zhuoran 2021; Claude Heiland-Allen, "Deep zoom theory and
practice (again)", mathr.co.uk 2022).

**One step.**  The neglected ``δz²`` is at most ``eps`` times the kept
``A δz`` when ``|δz|² ≤ eps |2 Z_m| |δz|``, i.e. ``|δz| ≤ 2 eps |Z_m|``.  The
step must not hide an escape or a rebase either: a sample with
``|δz_m| < 2 - |Z_m|`` has ``|z_m| < 2`` (it would not have escaped at
``m``), and with ``eps < 1/4`` it has ``|z_m| > |δz_m|`` (it would not have
been rebased).  So the single-step radius is::

    R_m = min(2 eps |Z_m|, 2 - |Z_m|)

``δc`` needs no term of its own: ``B δc`` is kept exactly, and it only
enters the radii of merged steps, through ``dc_max``.

**Merging** step ``x`` (first) then ``y``: ``A = A_y A_x``,
``B = A_y B_x + B_y``, valid while ``x`` is and while ``x``'s result stays
inside ``y``'s radius for every sample (``|δc| ≤ dc_max``)::

    R = min(R_x, max(0, (R_y - |B_x| dc_max) / |A_x|))

so each step a merged entry stands for stays inside its own radius: the
error is at most ``eps`` relative per step, no sample escapes or is rebased
within it.

**The table.**  Level ``l`` holds entries of ``2**l`` steps, entry ``k``
covering steps ``1 + k 2**l .. (k + 1) 2**l`` of the reference (step ``m``
takes ``δz_m`` to ``δz_{m+1}``), the steps of the orbit ``1 .. M - 1`` cut
into whole pieces.  The alignment at 1 suits the perturbation loop: after a
rebase it does step 0 exactly (``Z_0 = 0``: nothing to skip) and stands at
``m = 1``, where every level starts; after a skip of ``2**l`` it stands
where level ``l`` starts again.  At ``m`` the entries that start there are
those of the levels ``l`` with ``2**l`` dividing ``m - 1``, found in
O(levels).  Level ``low`` is composed step by step from the orbit, each
level above from pairs of the one below; levels below ``low`` are left out (a one-step entry saves
nothing over the exact step, short ones little): a table is about
``M / 2**(low - 1)`` entries of five float64 (``A``, ``B``, ``R``), 10 MB
for a 1 000 000-step orbit at the default ``low = 3``.

Pure Numba and numpy; no dask here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

__all__ = ["BLA_TOLERANCE", "LOWEST_LEVEL", "BlaTable", "build_table", "empty_table", "level_layout"]

#: The default ``eps`` of :func:`build_table`: each skipped step's neglected
#: ``δz²`` is below this fraction of the step's linear term.  Chaotic samples
#: (1e4+ iterations lingering near a minibrot) amplify the errors: in seahorse
#: valley at 1e-22, 2**-40 got 393 of 400 sampled counts right, 2**-48 398 as
#: the exact kernel did; on Fractalshades' flake view 2**-48 executes 3% of the
#: steps and every count equals the exact kernel's.
BLA_TOLERANCE = 2.0**-48

#: The default shortest level :func:`build_table` keeps (entries of ``2**LOWEST_LEVEL`` steps).
LOWEST_LEVEL = 3


@dataclass(frozen=True)
class BlaTable:
    """Merged bilinear steps of one reference orbit (see the module docstring).

    Entry ``e`` maps ``δz`` to ``(ar[e] + i ai[e]) δz + (br[e] + i bi[e]) δc``
    while ``|δz| < r[e]``.  Level ``low + k`` (entries of ``2**(low + k)``
    steps) is ``offsets[k] .. offsets[k + 1]``, its ``n``-th entry starting at
    reference step ``1 + n 2**(low + k)``.  No levels: no skips (exact
    iteration)."""

    ar: np.ndarray
    ai: np.ndarray
    br: np.ndarray
    bi: np.ndarray
    r: np.ndarray
    offsets: np.ndarray
    low: int
    eps: float
    dc_max: float

    @property
    def levels(self) -> int:
        """How many levels the table holds."""
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        """The size of its arrays."""
        return sum(a.nbytes for a in (self.ar, self.ai, self.br, self.bi, self.r, self.offsets))


def empty_table() -> BlaTable:
    """A table with no entries: the kernel then iterates every step exactly."""
    z = np.zeros(0)
    return BlaTable(z, z, z, z, z, np.zeros(1, np.int64), LOWEST_LEVEL, 0.0, 0.0)


@numba.njit(cache=True, nogil=True, fastmath=False)
def _merge(ar, ai, br, bi, r, src, n_src, dst, dc_max):  # pragma: no cover
    # entries dst .. dst + n_src // 2 from the pairs (src + 2k, src + 2k + 1): x then y
    for k in range(n_src // 2):
        x = src + 2 * k
        y = x + 1
        e = dst + k
        # A = A_y A_x, B = A_y B_x + B_y
        ar[e] = ar[y] * ar[x] - ai[y] * ai[x]
        ai[e] = ar[y] * ai[x] + ai[y] * ar[x]
        br[e] = ar[y] * br[x] - ai[y] * bi[x] + br[y]
        bi[e] = ar[y] * bi[x] + ai[y] * br[x] + bi[y]
        ax = math.hypot(ar[x], ai[x])
        room = r[y] - math.hypot(br[x], bi[x]) * dc_max
        back = room / ax if ax > 0.0 and room > 0.0 else 0.0
        rr = min(r[x], back)
        r[e] = rr if math.isfinite(rr) and math.isfinite(ar[e]) and math.isfinite(br[e]) else 0.0


@numba.njit(cache=True, nogil=True, fastmath=False)
def _build(zr, zi, dc_max, eps, low, ar, ai, br, bi, r, starts, counts):  # pragma: no cover
    # level `low` (at 0 here) step by step from the orbit: x = the entry so far, y = the single step at m
    span = 1 << low
    for k in range(counts[0]):
        xar, xai, xbr, xbi, xr = 1.0, 0.0, 0.0, 0.0, np.inf
        for m in range(1 + k * span, 1 + (k + 1) * span):
            a = math.hypot(zr[m], zi[m])
            ry = max(0.0, min(2.0 * eps * a, 2.0 - a))  # the single step's radius
            ax = math.hypot(xar, xai)
            room = ry - math.hypot(xbr, xbi) * dc_max
            xr = min(xr, room / ax if ax > 0.0 and room > 0.0 else 0.0)
            yr, yi = 2.0 * zr[m], 2.0 * zi[m]  # A_y = 2 Z_m, B_y = 1
            xar, xai = yr * xar - yi * xai, yr * xai + yi * xar
            xbr, xbi = yr * xbr - yi * xbi + 1.0, yr * xbi + yi * xbr
        ar[k], ai[k], br[k], bi[k] = xar, xai, xbr, xbi
        r[k] = xr if math.isfinite(xr) and math.isfinite(xar) and math.isfinite(xbr) else 0.0
    for lv in range(1, len(counts)):
        _merge(ar, ai, br, bi, r, starts[lv - 1], counts[lv - 1], starts[lv], dc_max)


def level_layout(orbit_length: int, low: int) -> tuple[np.ndarray, np.ndarray]:
    """A table's levels for an orbit of ``orbit_length`` values ``Z_0 .. Z_M``:
    ``(counts, offsets)``, level ``low + k`` holding ``counts[k]`` whole
    entries of ``2**(low + k)`` of the steps ``1 .. M - 1``, at
    ``offsets[k] .. offsets[k + 1]`` (no levels: ``counts`` empty, ``offsets`` ``[0]``)."""
    steps = max(0, orbit_length - 2)  # steps 1 .. M-1
    counts: list[int] = []
    while (steps >> (low + len(counts))) > 0:
        counts.append(steps >> (low + len(counts)))
    counts_a = np.array(counts, np.int64)
    return counts_a, np.concatenate([[0], np.cumsum(counts_a)]).astype(np.int64)


def build_table(
    zr: np.ndarray, zi: np.ndarray, dc_max: float, eps: float = BLA_TOLERANCE, low: int = LOWEST_LEVEL
) -> BlaTable:
    """The BLA table of the reference orbit ``Z_m = zr[m] + i zi[m]``
    (``m = 0 .. M``, e.g. :attr:`dfractal_dask.perturbation.Orbit.zr`).

    Parameters
    ----------
    zr, zi : numpy.ndarray
        The reference orbit, float64.
    dc_max : float
        The largest ``|δc|`` of any sample that will use the table (the
        view's sample farthest from the reference).
    eps : float
        The tolerance: each skipped step's neglected ``δz²`` is below ``eps``
        of its linear term (0 < eps < 1/4).
    low : int
        The shortest level kept (entries of ``2**low`` steps), at least 1.

    Returns
    -------
    BlaTable
        Levels ``low`` up to the longest that fits in the orbit's steps
        ``1 .. M - 1``; empty if none fits.
    """
    zr = np.ascontiguousarray(zr, np.float64)
    zi = np.ascontiguousarray(zi, np.float64)
    if zr.shape != zi.shape or zr.ndim != 1:
        raise ValueError(f"zr and zi must be one-dimensional arrays of one length, got {zr.shape} and {zi.shape}")
    if not (isinstance(eps, float | int) and 0 < eps < 0.25):
        raise ValueError(f"eps must be between 0 and 1/4, got {eps!r}")
    if not (math.isfinite(dc_max) and dc_max >= 0):
        raise ValueError(f"dc_max must be a finite number >= 0, got {dc_max!r}")
    if isinstance(low, bool) or not isinstance(low, int) or low < 1:
        raise ValueError(f"low must be an integer >= 1, got {low!r}")
    counts_a, offsets = level_layout(len(zr), low)
    if not len(counts_a):
        return empty_table()
    ar, ai, br, bi, r = (np.empty(int(offsets[-1])) for _ in range(5))
    _build(zr, zi, float(dc_max), float(eps), int(low), ar, ai, br, bi, r, offsets, counts_a)
    return BlaTable(ar, ai, br, bi, r, offsets, int(low), float(eps), float(dc_max))
