"""Which map is iterated: the :class:`Fractal` (Mandelbrot, Julia, Burning Ship,
Multibrot).  The kernels compute them (:mod:`dfractal_dask.kernels`, whose
``escape_reference`` states each in plain Python for the tests).

Every family iterates ``z ← f(z) + c`` until ``|z|² > 4`` or ``iters`` steps:

========================  ==============  ============================
family                    start, c        f(z)
========================  ==============  ============================
``mandelbrot``            0, the sample   z²
``multibrot`` (power d)   0, the sample   z**d (d - 1 complex products)
``burning_ship``          0, the sample   (|Re z| + i |Im z|)²
``julia`` (parameter c)   the sample, c   z²
========================  ==============  ============================

The Burning Ship is drawn with the imaginary axis pointing up, so the "ship"
hangs upside down around ``(-1.75, -0.03)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

__all__ = ["FAMILIES", "Fractal", "HOME", "MAX_POWER"]

#: Families by name, and the code the kernels use for each.
FAMILIES = {"mandelbrot": 0, "julia": 1, "burning_ship": 2, "multibrot": 3}

#: Highest Multibrot power (each power is its own compiled kernel).
MAX_POWER = 16

#: A view of the whole of each family: centre (x, y) and span on the real axis.
HOME = {"mandelbrot": (-0.5, 0.0, 3.0), "julia": (0.0, 0.0, 3.2), "burning_ship": (-0.5, -0.5, 3.2),
        "multibrot": (0.0, 0.0, 3.0)}  # fmt: skip


@dataclass(frozen=True)
class Fractal:
    """A fractal family and its parameters.

    Parameters
    ----------
    family
        ``"mandelbrot"`` (default), ``"julia"``, ``"burning_ship"`` or
        ``"multibrot"`` (``-`` accepted for ``_``).
    power
        Multibrot's exponent d, an integer from 2 to :data:`MAX_POWER`
        (2 for the other families; Multibrot of power 2 is the Mandelbrot set,
        bit for bit).
    c
        The Julia set's parameter (``julia`` only), ``|c| <= 2``.

    Raises
    ------
    TypeError, ValueError
        For an unknown family, a power or ``c`` that is not a number, out of
        range, or given to a family that has none.
    """

    family: str = "mandelbrot"
    power: int = 2
    c: complex | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.family, str):
            raise TypeError(f"family must be a string, got {self.family!r}")
        family = self.family.strip().lower().replace("-", "_")
        if family not in FAMILIES:
            raise ValueError(f"unknown fractal {self.family!r} (fractals: {', '.join(FAMILIES)})")
        object.__setattr__(self, "family", family)
        if isinstance(self.power, bool) or not isinstance(self.power, Integral):
            raise TypeError(f"power must be an integer, got {self.power!r}")
        power = int(self.power)
        if family == "multibrot":
            if not 2 <= power <= MAX_POWER:
                raise ValueError(f"multibrot power must be from 2 to {MAX_POWER}, got {power}")
        elif power != 2:
            raise ValueError(f"a power is for the multibrot family, not {family}")
        object.__setattr__(self, "power", power)
        if family == "julia":
            c = -0.8 + 0.156j if self.c is None else self.c
            if isinstance(c, bool) or not isinstance(c, Real | complex):
                raise TypeError(f"julia c must be a complex number, got {c!r}")
            c = complex(c)
            if not (math.isfinite(c.real) and math.isfinite(c.imag)) or abs(c) > 2:
                raise ValueError(f"julia c must be finite with |c| <= 2, got {c}")
            object.__setattr__(self, "c", c)
        elif self.c is not None:
            raise ValueError(f"c is the julia family's parameter, not {family}'s")

    @property
    def code(self) -> int:
        """The family's code in the kernels (:data:`FAMILIES`)."""
        return FAMILIES[self.family]

    @property
    def home(self) -> tuple[float, float, float]:
        """Centre and span of a view of the whole set (:data:`HOME`)."""
        return HOME[self.family]

    @property
    def c_parts(self) -> tuple[float, float]:
        """``(re, im)`` of Julia's ``c``; ``(0.0, 0.0)`` for other families."""
        return (self.c.real, self.c.imag) if self.c is not None else (0.0, 0.0)

    def describe(self) -> str:
        """A short human name, e.g. ``multibrot d=3`` or ``julia c=(-0.8+0.156j)``."""
        if self.family == "multibrot":
            return f"multibrot d={self.power}"
        if self.family == "julia":
            return f"julia c={self.c}"
        return self.family

    def to_attrs(self) -> dict[str, Any]:
        """Store attributes: ``fractal``, ``power``, ``julia_re``, ``julia_im``
        (floats round-trip exactly through JSON)."""
        re, im = self.c_parts
        return {"fractal": self.family, "power": self.power, "julia_re": re, "julia_im": im}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> Fractal:
        """Inverse of :meth:`to_attrs` (stores made before the families were
        added hold only ``fractal: mandelbrot``)."""
        family = attrs.get("fractal", "mandelbrot")
        c = complex(attrs["julia_re"], attrs["julia_im"]) if family == "julia" else None
        return cls(family, int(attrs.get("power", 2)), c)

    @classmethod
    def parse_c(cls, text: str) -> complex:
        """``"-0.8+0.156j"``, ``"-0.8+0.156i"`` or ``"-0.8,0.156"`` as a complex."""
        s = str(text).strip().replace(" ", "")
        try:
            if "," in s:
                re, im = s.split(",")
                return complex(float(re), float(im))
            return complex(s.replace("i", "j"))
        except ValueError:
            raise ValueError(f"bad julia c {text!r}; expected e.g. -0.8+0.156j or -0.8,0.156") from None
