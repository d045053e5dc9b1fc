"""Named places in the Mandelbrot set: centres given as decimal strings with
more digits than float64 holds, for deep views (``View(*places.FLAKE, span=...)``).
The tests, benchmarks and notebooks zoom into these; each says where it is from."""

from __future__ import annotations

import math

import gmpy2

from .nucleus import mpc_of

__all__ = ["BRANCH_POINT", "BRANCH_POINT_45", "FLAKE", "FLAKE_SPAN", "SEAHORSE", "branch_point"]

#: The branch point of the 1/3 limb (a Misiurewicz point), to 90 digits: the
#: README's deep zoom down to span 1e-60.
BRANCH_POINT = (
    "-0.101096363845622161025785445738622565463805442826253483876931177660780840740470584274821220",
    "0.956286510809141500771096057729977435809833336510529170034314321500524659065716732526978411",
)
#: The same point rounded to 45 digits: enough for spans down to about 1e-40.
BRANCH_POINT_45 = (
    "-0.101096363845622161025785445738622565463805443",
    "0.956286510809141500771096057729977435809833337",
)
#: A point of seahorse valley, to 34 digits.
SEAHORSE = ("-0.743643887037158704752191506114774", "0.131825904205311970493132056385139")
#: Fractalshades' "flake" (its example ``09-run_flake_DEM.py``), at :data:`FLAKE_SPAN`.
FLAKE = (
    "-1.99996619445037030418434688506350579675531241540724851511761922944801584242342684381376129778868913812287046406"
    "560949864353810575744772166485672496092803920095332",
    "-0.00000000000000000000000000000000030013824367909383240724973039775924987346831190773335270174257280120474975614"
    "823581185647299288414075519224186504978181625478529",
)
FLAKE_SPAN = 1.7e-157


def branch_point(digits: int) -> tuple[str, str]:
    """:data:`BRANCH_POINT` to ``digits`` decimals, for views of any depth
    (a span of ``10**-d`` needs about ``d + 20``): the Misiurewicz point
    ``z_5 = z_4`` (preperiod 4, period 1) by Newton's method from the
    90-digit value, each step doubling the digits (a few ms at 1 500)."""
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    bits = math.ceil((digits + 10) * math.log2(10))
    ctx = gmpy2.context(precision=bits)
    sq, add, mul, sub, div = ctx.square, ctx.add, ctx.mul, ctx.sub, ctx.div
    c = mpc_of(*BRANCH_POINT, bits)
    tol = gmpy2.mpfr(2, 53) ** (12 - bits)
    for _ in range(64):
        z, dz = gmpy2.mpc(0, precision=bits), gmpy2.mpc(0, precision=bits)
        for _ in range(4):  # z_4 and dz_4/dc
            z, dz = add(sq(z), c), add(mul(add(z, z), dz), 1)
        g, dg = sub(add(sq(z), c), z), sub(add(mul(add(z, z), dz), 1), dz)  # z_5 - z_4 and its derivative
        step = div(g, dg)
        c = sub(c, step)
        if ctx.abs(step) < tol:
            break
    return _decimal(ctx, c.real, digits), _decimal(ctx, c.imag, digits)


def _decimal(ctx: gmpy2.context, x: gmpy2.mpfr, digits: int) -> str:
    # x with `digits` decimals after the point, as a plain decimal string (at ctx's precision)
    q = int(ctx.rint(ctx.mul(x, gmpy2.mpz(10) ** digits)))
    sign, q = ("-" if q < 0 else ""), abs(q)
    s = str(q).rjust(digits + 1, "0")
    return f"{sign}{s[:-digits]}.{s[-digits:]}"
