"""Where the picture looks and how finely: the :class:`View`.

A view is centred on ``(xpos, ypos)`` and spans ``span`` units of the real axis
(the seed called this ``--escape-radius``).  Pixels are square.  Each output
pixel is made of ``supersample × supersample`` samples laid on one regular
grid, so sample ``(i, j)`` of the whole grid sits at::

    re = re0 + j * step
    im = im0 - i * step

computed from the *global* index, never by accumulating offsets, so a sample's
value does not depend on how the grid is cut into blocks or spread over workers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = ["View", "MAX_SAMPLES"]

#: Refuse views with more samples than this (2**36 ≈ 69 G samples, ~400 GB
#: of counts and norms): a typo such as ``--width 10000000`` fails fast.
MAX_SAMPLES = 2**36


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


@dataclass(frozen=True)
class View:
    """A rectangular view of the complex plane, sampled on a square grid.

    Parameters
    ----------
    xpos, ypos
        Centre of the view (real and imaginary part).
    span
        Width of the view on the real axis, from the first to the last sample
        column.  The seed's ``--escape-radius``.
    width, height
        Size of the output picture in pixels.
    supersample
        Samples per pixel along each axis (the seed's ``--smoothness``):
        each pixel averages ``supersample**2`` samples.

    Raises
    ------
    TypeError
        If a value has the wrong type (e.g. a float width).
    ValueError
        If a value is out of range (non-positive size, non-finite coordinate,
        ``span <= 0``, or more than :data:`MAX_SAMPLES` samples).
    """

    xpos: float = -0.00275
    ypos: float = 0.78912
    span: float = 0.125689
    width: int = 1024
    height: int = 768
    supersample: int = 8

    def __post_init__(self) -> None:
        # frozen dataclass: normalise through object.__setattr__
        for name in ("xpos", "ypos", "span"):
            object.__setattr__(self, name, _check_float(name, getattr(self, name)))
        for name in ("width", "height", "supersample"):
            object.__setattr__(self, name, _check_int(name, getattr(self, name)))
        if self.span <= 0:
            raise ValueError(f"span must be > 0, got {self.span}")
        if self.n_samples > MAX_SAMPLES:
            raise ValueError(
                f"view has {self.n_samples:,} samples "
                f"({self.sample_width}x{self.sample_height}); the limit is {MAX_SAMPLES:,}"
            )
        # neighbouring samples must differ in float64 (origin + index * step), or the
        # picture silently collapses into copies of a few values
        scale = max(abs(self.xpos), abs(self.ypos)) + self.span
        if not math.isfinite(self.step) or not math.isfinite(scale) or self.step <= 2 * math.ulp(scale):
            raise ValueError(
                f"span {self.span} is too small to separate {self.sample_width} samples in float64 "
                f"around ({self.xpos}, {self.ypos})"
            )

    # -- the sample grid -------------------------------------------------
    @property
    def sample_width(self) -> int:
        """Samples per row (``width * supersample``)."""
        return self.width * self.supersample

    @property
    def sample_height(self) -> int:
        """Sample rows (``height * supersample``)."""
        return self.height * self.supersample

    @property
    def n_samples(self) -> int:
        """Total number of samples."""
        return self.sample_width * self.sample_height

    @property
    def step(self) -> float:
        """Distance between neighbouring samples, the same on both axes."""
        return self.span / max(self.sample_width - 1, 1)

    @property
    def re0(self) -> float:
        """Real part of sample column 0 (the left edge)."""
        return self.xpos - 0.5 * (self.sample_width - 1) * self.step

    @property
    def im0(self) -> float:
        """Imaginary part of sample row 0 (the top edge)."""
        return self.ypos + 0.5 * (self.sample_height - 1) * self.step

    def re(self, cols: np.ndarray | None = None) -> np.ndarray:
        """Real coordinate of sample columns (all of them by default)."""
        j = np.arange(self.sample_width) if cols is None else np.asarray(cols)
        return self.re0 + j * self.step

    def im(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Imaginary coordinate of sample rows (all of them by default)."""
        i = np.arange(self.sample_height) if rows is None else np.asarray(rows)
        return self.im0 - i * self.step

    # -- conversions -----------------------------------------------------
    @classmethod
    def from_seed_flags(
        cls,
        xpos: float = -0.00275,
        ypos: float = 0.78912,
        escape_radius: float = 0.125689,
        width: int = 1024,
        height: int = 768,
        smoothness: int = 8,
    ) -> View:
        """Build a view from the seed leader's flags (same names, same defaults)."""
        return cls(xpos, ypos, escape_radius, width, height, smoothness)

    def to_attrs(self) -> dict[str, Any]:
        """JSON-safe dict (floats round-trip exactly through JSON)."""
        return asdict(self)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> View:
        """Inverse of :meth:`to_attrs`."""
        try:
            return cls(**{k: attrs[k] for k in ("xpos", "ypos", "span", "width", "height", "supersample")})
        except KeyError as exc:
            raise ValueError(f"view attributes are missing {exc.args[0]!r}") from None
