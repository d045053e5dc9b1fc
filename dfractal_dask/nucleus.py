"""Minibrots near a deep view: their period, nucleus and size, in ``gmpy2``.

A *minibrot* (a hyperbolic component of the Mandelbrot set) of period ``p``
has a *nucleus*: the ``c`` whose critical orbit is exactly periodic,
``z_p(c) = 0`` (``z_0 = 0``, ``z_{n+1} = z_n² + c``).  Its orbit, one period
long, is a reference for perturbation that never escapes
(:func:`dfractal_dask.perturbation.choose_reference`).  Three steps find it:

* :func:`find_period`: the *ball method* (first order).  The disc of radius
  ``r`` around the centre maps at step ``n`` to about the disc of radius
  ``r |dz_n/dc|`` around ``z_n``; the first ``n`` at which that disc holds 0
  (``|z_n| < r |dz_n/dc|``) is the lowest period of a component meeting the
  disc, about.  One orbit and its derivative, against four orbits for
  Munafo's box method (the image of the square's corners, and a
  point-in-polygon test); at deep zooms the disc is tiny and its image a disc
  to many digits, so the second-order term changes nothing.
* :func:`find_nucleus`: Newton's method on ``z_p(c) = 0``,
  ``c ← c - z_p / (dz_p/dc)``, from the view's centre; quadratic, so a few
  steps of ``p`` iterations each.
* :func:`atom_size`: the minibrot's size, Claude Heiland-Allen's estimate.
  Near the nucleus ``c = c₀ + δ`` and near ``z = 0``, ``p`` steps of the map
  are, to first order after the first, ``z ↦ λ (z² + β δ)`` with
  ``λ = ∏_{k=1}^{p-1} 2 z_k`` (``dz_p/dz_1``) and
  ``β = Σ_{k=1}^{p} 1/λ_k`` (``λ_k = dz_k/dz_1``; ``λ β = dz_p/dc``).
  With ``z = w / λ`` this is ``w ↦ w² + λ² β δ``: the whole Mandelbrot set
  again, in ``δ`` scaled by ``1 / (β λ²)``, whose modulus is the size (the
  whole set's is 1: a minibrot spans about 2.5 sizes, from its cusp to the
  tip of its antenna) and argument its orientation.

No dask, no numba: ``gmpy2`` numbers on each context's own methods.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from fractions import Fraction

import gmpy2

__all__ = ["NEWTON_STEPS", "atom_size", "exact_period", "find_nucleus", "find_period", "mpc_of", "newton_steps"]

#: At most this many Newton steps :func:`find_nucleus` takes.
NEWTON_STEPS = 64

#: :func:`find_period` keeps ``dz/dc`` as a float64 times ``2**e``, rescaled past this.
_RESCALE = 2.0**256


def mpc_of(cr: Fraction | Decimal | str | int, ci: Fraction | Decimal | str | int, bits: int) -> gmpy2.mpc:
    """``cr + i ci`` as a ``gmpy2.mpc`` of ``bits`` bits, each part correctly rounded."""

    def part(v: Fraction | Decimal | str | int) -> gmpy2.mpfr:
        f = Fraction(v)
        return gmpy2.mpfr(gmpy2.mpq(f.numerator, f.denominator), bits)

    return gmpy2.mpc(part(cr), part(ci), precision=bits)


def _check(period: int, bits: int) -> None:
    if not isinstance(period, int) or period < 1:
        raise ValueError(f"period must be a positive integer, got {period!r}")
    if not isinstance(bits, int) or bits < 53:
        raise ValueError(f"bits must be an integer of at least 53, got {bits!r}")


def find_period(centre: gmpy2.mpc, radius: float | gmpy2.mpfr, max_period: int, bits: int) -> int | None:
    """The period of the minibrot nearest ``centre`` within about ``radius``,
    by the ball method (first order, see the module docstring): the first
    ``n <= max_period`` with ``|z_n| < radius |dz_n/dc|``, ``z_n`` the orbit of
    ``centre`` at ``bits`` bits.  ``None`` if there is none, or the orbit of
    ``centre`` escapes first.

    Parameters
    ----------
    centre : gmpy2.mpc
        The disc's centre (e.g. the view's, :func:`mpc_of`).
    radius : float or gmpy2.mpfr
        The disc's radius (e.g. half the view's diagonal), positive; an
        ``mpfr`` for one below float64's range (the derivative is then kept
        in 53-bit MPFR numbers, whose exponent does not end).
    max_period : int
        The longest period looked for.
    bits : int
        The precision of the orbit.
    """
    _check(max_period, bits)
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    if isinstance(radius, gmpy2.mpfr):
        return _find_period_wide(centre, radius, max_period, bits)
    ctx = gmpy2.context(precision=bits)
    sq, add = ctx.square, ctx.add
    c = ctx.add(centre, 0)
    z = c  # z_1
    d = 1 + 0j  # dz_1/dc = d * 2**e
    e = 0
    rs, one = radius, 1.0  # radius * 2**e, 2**-e
    for n in range(1, max_period + 1):
        w = complex(z)
        a = abs(w)
        if a < rs * abs(d):
            return n
        if a > 2.0:
            return None
        d = 2.0 * w * d + one
        if abs(d) > _RESCALE:  # float64 would overflow at deep zooms
            d /= _RESCALE
            e += 256
            rs, one = math.ldexp(radius, e), math.ldexp(1.0, -e)
        z = add(sq(z), c)
    return None


def _find_period_wide(centre: gmpy2.mpc, radius: gmpy2.mpfr, max_period: int, bits: int) -> int | None:
    # find_period with z and dz/dc rounded to 53-bit MPFR numbers for the test (no float64 underflow)
    ctx = gmpy2.context(precision=bits)
    low = gmpy2.context(precision=53)
    sq, add = ctx.square, ctx.add
    lmul, ladd, labs = low.mul, low.add, low.abs
    c = ctx.add(centre, 0)
    z = c
    d = gmpy2.mpc(1, precision=53)
    r = gmpy2.mpfr(radius, 53)
    for n in range(1, max_period + 1):
        w = ladd(z, 0)
        a = labs(w)
        if a < lmul(r, labs(d)):
            return n
        if a > 2:
            return None
        d = ladd(lmul(ladd(w, w), d), 1)
        z = add(sq(z), c)
    return None


def newton_steps(c0: gmpy2.mpc, period: int, bits: int) -> Iterator[tuple[gmpy2.mpc, gmpy2.mpfr]]:
    """Newton's method on ``z_period(c) = 0`` from ``c0`` at ``bits`` bits:
    yields each new ``c`` with the size of the step that led to it, forever
    (the caller stops it); ends early if the derivative vanishes."""
    _check(period, bits)
    ctx = gmpy2.context(precision=bits)
    sq, add, fma = ctx.square, ctx.add, ctx.fma
    c = ctx.add(c0, 0)
    one = gmpy2.mpc(1, precision=bits)
    while True:
        z = gmpy2.mpc(0, precision=bits)
        dz = gmpy2.mpc(0, precision=bits)
        for _ in range(period):
            dz = fma(add(z, z), dz, one)  # dz_{n+1} = 2 z_n dz_n + 1, before z moves on
            z = add(sq(z), c)
        if dz == 0 or not gmpy2.is_finite(dz) or not gmpy2.is_finite(z):
            return
        step = ctx.div(z, dz)
        c = ctx.sub(c, step)
        yield c, ctx.abs(step)


def find_nucleus(c0: gmpy2.mpc, period: int, bits: int, max_steps: int = NEWTON_STEPS) -> gmpy2.mpc | None:
    """The nucleus of the period-``period`` minibrot nearest ``c0`` (Newton's
    method on ``z_period(c) = 0``, :func:`newton_steps`, at ``bits`` bits):
    the ``c`` where a step falls below ``2**-(bits - 8)``, i.e. at 8 bits of
    the working precision (for a view at
    :func:`~dfractal_dask.perturbation.precision_bits`, ``2**-56`` of its
    sample step).  ``None`` if that takes more than ``max_steps`` steps, or
    Newton leaves the set's disc ``|c| <= 2``.

    The result may be the nucleus of a divisor of ``period`` (its orbit is
    periodic with ``period`` too); :func:`find_period`'s first ``n`` makes
    that rare.
    """
    _check(period, bits)
    tol = gmpy2.mpfr(2, 53) ** (8 - bits)
    for k, (c, step) in enumerate(newton_steps(c0, period, bits)):
        if step <= tol:
            return c
        if k + 1 >= max_steps or abs(complex(c)) > 2.0:
            return None
    return None


def exact_period(nucleus: gmpy2.mpc, period: int) -> int:
    """The least ``d`` dividing ``period`` at which the orbit of ``nucleus``
    returns to 0 (Newton for ``period`` can land on the nucleus of a divisor):
    where the Newton step for ``d`` would be below ``2**-(bits/2)``, half the
    nucleus' precision (rounding leaves ``z_d`` about ``2**-bits |dz_d/dc|``;
    anywhere else it is the distance to that nucleus times ``|dz_d/dc|``)."""
    bits = max(nucleus.precision)
    _check(period, bits)
    ctx = gmpy2.context(precision=bits)
    sq, add, fma = ctx.square, ctx.add, ctx.fma
    tol = gmpy2.mpfr(2, 53) ** (-(bits // 2))
    one = gmpy2.mpc(1, precision=bits)
    z = gmpy2.mpc(0, precision=bits)
    dz = gmpy2.mpc(0, precision=bits)
    for n in range(1, period):
        dz = fma(add(z, z), dz, one)
        z = add(sq(z), nucleus)
        if period % n == 0 and ctx.abs(z) < tol * ctx.abs(dz):
            return n
    return period


def atom_size(nucleus: gmpy2.mpc, period: int) -> float:
    """The size of the minibrot of period ``period`` at ``nucleus``: Claude
    Heiland-Allen's estimate ``|1 / (β λ²)|`` (module docstring); the orbit at
    the nucleus' precision, ``λ`` and ``β`` at 53 bits with MPFR's exponent
    range (``λ`` passes float64's long before deep views do).  A float64
    (0.0 below its range)."""
    bits = max(nucleus.precision)
    _check(period, bits)
    ctx = gmpy2.context(precision=bits)
    low = gmpy2.context(precision=53)
    sq, add = ctx.square, ctx.add
    mul, div, ladd = low.mul, low.div, low.add
    one = gmpy2.mpc(1, precision=53)
    z = gmpy2.mpc(0, precision=bits)
    lam = one
    beta = one
    for _ in range(1, period):
        z = add(sq(z), nucleus)
        lam = mul(add(z, z), lam)
        beta = ladd(beta, div(one, lam))
    return float(low.abs(div(one, mul(beta, mul(lam, lam)))))
