"""Where the picture looks and how finely: the :class:`View`.

A view is centred on ``(xpos, ypos)`` and spans ``span`` units of the real axis
(the seed called this ``--escape-radius``).  Pixels are square.  Each output
pixel is made of ``supersample × supersample`` samples laid on one regular
grid, so sample ``(i, j)`` of the whole grid sits at::

    re = re0 + j * step
    im = im0 - i * step

computed from the *global* index, never by accumulating offsets, so a sample's
value does not depend on how the grid is cut into blocks or spread over workers.

Deep views.  A centre may be given as a decimal string (or ``Decimal``) with
more digits than a float64 holds, e.g. ``View("-1.7499576837060935036022145",
"0.0000000000000000000000000001", span=1e-20)``: the view keeps it exactly
(:attr:`View.centre`), and where float64 cannot resolve the samples
(:attr:`View.deep`) the picture is computed by perturbation around it
(:mod:`dfractal_dask.perturbation`), each sample's offset from the centre
again from its global index: ``(j - (W-1)/2) * step`` and ``((H-1)/2 - i) * step``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from fractions import Fraction
from numbers import Integral, Real
from typing import Any

import numpy as np

__all__ = [
    "View",
    "MAX_COORDINATE",
    "MAX_FRAMES",
    "MAX_SAMPLES",
    "MIN_SPAN",
    "EXTENDED_SPAN",
    "CENTRE_QUANTUM",
    "DEEP_ULPS",
    "divide_span",
    "parse_coordinate",
    "parse_span",
    "shown",
    "span_attr",
    "zoom_views",
]

#: Refuse views with more samples than this (2**36 ≈ 69 G samples, ~400 GB
#: of counts and norms): a typo such as ``--width 10000000`` fails fast.
MAX_SAMPLES = 2**36

#: The largest |coordinate| + span of a view: a sample's square, and a deep
#: view's reference orbit, must stay finite in float64 (~1.3e154).
MAX_COORDINATE = 1e150

#: The most frames a zoom may have (7 minutes at 24 frames a second): a zoom
#: of that many is checked in a fraction of a second (~35 µs a frame).
MAX_FRAMES = 10_000

#: The smallest span (a ``Decimal``: float64 ends near 1e-308).  Below
#: :data:`EXTENDED_SPAN` a view's span is kept as the decimal it was given as
#: and perturbation carries each sample's offset with an exponent of its own
#: (:mod:`dfractal_dask.extended`); the reference orbit needs about
#: ``3.3 × digits`` bits, 5 000 bits at this span.
MIN_SPAN = Decimal("1e-1500")

#: Spans below this are *extended* (:attr:`View.extended`): float64 offsets
#: and their squares would underflow, so such views carry exponents apart.
EXTENDED_SPAN = 1e-250

#: A centre coordinate given as a decimal is rounded (half to even) to a
#: multiple of this, ``1e-1540``: 40 decimal places past :data:`MIN_SPAN`, so
#: ~1e-29 of the finest step any view has (:data:`MIN_SPAN` over up to
#: :data:`MAX_SAMPLES` samples a row).  Digits past it change no sample of
#: any view (of a zoom's deepest frame either), and without them a centre
#: below :data:`MAX_COORDINATE` has at most ~1 700 digits whatever it was
#: given as: ``"1e-99999999999"`` is 0 and a 100 000-digit centre its first
#: 1 540 decimal places, each parsed and checked in microseconds (the exact
#: fraction of ``1e-99999999999`` would never be built).
CENTRE_QUANTUM = Decimal(1).scaleb(MIN_SPAN.adjusted() - 40)

#: Digits a rounded centre may have (below :data:`MAX_COORDINATE`, a multiple
#: of :data:`CENTRE_QUANTUM`), with room to spare: the precision it is rounded with.
_CENTRE_DIGITS = 160 - CENTRE_QUANTUM.adjusted()

#: A view is deep (:attr:`View.deep`) when neighbouring samples are fewer than
#: this many float64 ulps of its coordinates apart: a float64 grid would round
#: each sample by more than 1/2048 of a step, and iterating in float64 loses
#: the rest, so such views are computed by perturbation.
DEEP_ULPS = 1024


class _Exact(float):
    """A float that remembers the decimal it was made from (a deep centre):
    arithmetic sees the nearest float64, :func:`exact` the decimal."""

    decimal: Decimal

    def __new__(cls, decimal: Decimal) -> _Exact:
        self = super().__new__(cls, float(decimal))
        self.decimal = decimal
        return self

    def __reduce__(self):
        return (_Exact, (self.decimal,))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Exact) and self.decimal == other.decimal

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.decimal)

    def __repr__(self) -> str:
        return f"'{self.decimal}'"

    def __dask_tokenize__(self):
        return ("dfractal-exact", str(self.decimal))


def shown(value: Any, show: Any = repr, limit: int = 60) -> str:
    """A value as an error message shows it: its ``repr`` (or ``show``), a long one cut (a 100 000-digit centre)."""
    text = show(value)
    return text if len(text) <= limit else f"{text[: limit - 20]}... ({len(text):,} characters)"


def _decimal(name: str, value: str | Decimal) -> Decimal:
    # a finite Decimal from a decimal string (a typographic minus allowed) or a Decimal
    try:
        d = Decimal(value.strip().replace("\u2212", "-")) if isinstance(value, str) else value
    except InvalidOperation:
        raise ValueError(f"{name} must be a decimal number, got {shown(value)}") from None
    if not d.is_finite():
        raise ValueError(f"{name} must be finite, got {shown(value)}")
    return d


def _round_centre(name: str, d: Decimal, value: Any) -> Decimal:
    # d refused past MAX_COORDINATE, else rounded to a multiple of CENTRE_QUANTUM (d itself if it is
    # one): Decimal compares and quantizes by exponents, never building 10**exponent
    if d and d.adjusted() >= 0 and d.copy_abs() >= Decimal(repr(MAX_COORDINATE)):
        raise ValueError(
            f"{name} must be finite and below {MAX_COORDINATE:g} in magnitude (every fractal lies within 2 of 0, and a "
            f"sample's square must stay finite in float64), got {shown(value)}"
        )
    exponent, finest = d.as_tuple().exponent, CENTRE_QUANTUM.as_tuple().exponent
    assert isinstance(exponent, int) and isinstance(finest, int)  # (both finite)
    if exponent >= finest:
        return d
    with localcontext() as ctx:
        ctx.prec, ctx.rounding = _CENTRE_DIGITS, ROUND_HALF_EVEN
        return d.quantize(CENTRE_QUANTUM).normalize()


def parse_coordinate(name: str, value: Any) -> float:
    """A centre coordinate from a real number, a decimal string or a ``Decimal``.

    A decimal whose digits a float64 holds (its shortest repr reads back as the
    same number, e.g. ``"-0.00275"``) becomes that plain float; one with more
    digits keeps them (a ``float`` subclass whose :func:`exact` is the decimal).

    The rule for digits and exponents: a decimal is rounded (half to even) to
    a multiple of :data:`CENTRE_QUANTUM` (``1e-1540``, 40 places past the
    smallest span :data:`MIN_SPAN`: digits past it change no sample of any
    view), so ``"1e-99999999999"`` is 0 and a centre of any length keeps its
    first 1 540 decimal places; one of magnitude :data:`MAX_COORDINATE`
    (``1e150``) or more is refused.  Either way the answer takes microseconds
    to milliseconds, however many digits or however large an exponent.

    Raises
    ------
    TypeError
        For anything else (e.g. ``None`` or a complex number).
    ValueError
        For a string that is not a finite decimal number, or a decimal of
        magnitude :data:`MAX_COORDINATE` or more.
    """
    if isinstance(value, _Exact):
        d = _round_centre(name, value.decimal, value)
        return value if d == value.decimal else parse_coordinate(name, d)
    if isinstance(value, str | Decimal):
        d = _round_centre(name, _decimal(name, value), value)
        f = float(d)
        if not math.isfinite(f):
            raise ValueError(f"{name} must be finite, got {shown(value)}")
        return f if Decimal(repr(f)) == d else _Exact(d)
    return _check_float(name, value)


def span_attr(span: float) -> float | str:
    """A view's span for JSON attributes: the float, or for an extended span
    (below :data:`EXTENDED_SPAN`, whose float64 would be 0) its decimal string."""
    return str(span.decimal) if isinstance(span, _Exact) else float(span)


def divide_span(span: float, factor: float) -> float:
    """``span / factor`` as a span: the float quotient, or the decimal one
    (a float that keeps its decimal, as a deep centre does) where it or
    ``span`` is below :data:`EXTENDED_SPAN`."""
    if not isinstance(span, _Exact) and span / factor >= EXTENDED_SPAN:
        return span / factor
    return _Exact(exact(span) / Decimal(repr(float(factor))))


def exact(x: float) -> Decimal:
    """The decimal value of a coordinate: the one it was given as, or the
    shortest decimal that reads back as the float."""
    return x.decimal if isinstance(x, _Exact) else Decimal(repr(float(x)))


def _check_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{name} must be a real number, got {shown(value)}")
    try:
        value = float(value)
    except OverflowError:  # an int (or Fraction) past float64's range: 10**400
        raise ValueError(f"{name} must be finite in float64, got {shown(value)}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return value


def parse_span(name: str, value: Any) -> float:
    """A view's span (its width in the complex plane) from a real number, a
    decimal string or a ``Decimal``: a finite number from :data:`MIN_SPAN` up;
    a float from :data:`EXTENDED_SPAN` up, below it the decimal (a float that
    keeps its decimal, whose own value may be 0).  ``name`` names it in errors.

    Raises
    ------
    TypeError, ValueError
        As :func:`parse_coordinate`, and for a span not above 0 or below
        :data:`MIN_SPAN`.
    """
    if isinstance(value, _Exact):
        d = value.decimal
    elif isinstance(value, str | Decimal):
        d = _decimal(name, value)
    else:
        d = None
        value = _check_float(name, value)
    if d is not None:
        if d <= 0:
            raise ValueError(f"{name} must be > 0, got {shown(value, str)}")
        if d < MIN_SPAN:
            raise ValueError(f"{name} must be at least {MIN_SPAN}, got {shown(value, str)} "
                             f"(the deepest span supported)")  # fmt: skip
        if d >= Decimal(EXTENDED_SPAN):
            value = _check_float(name, float(d))
        else:
            return _Exact(d.normalize())  # one spelling of each number (stores compare it as text)
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if value < EXTENDED_SPAN:  # a float that small: kept as its shortest decimal
        return _Exact(Decimal(repr(value)))
    return value


@dataclass(frozen=True)
class View:
    """A rectangular view of the complex plane, sampled on a square grid.

    Parameters
    ----------
    xpos, ypos
        Centre of the view (real and imaginary part): numbers, or decimal
        strings with as many digits as a deep zoom needs
        (:func:`parse_coordinate`).  A decimal is rounded to a multiple of
        :data:`CENTRE_QUANTUM` (``1e-1540``, finer than any view's step by
        ~1e-29), and refused from :data:`MAX_COORDINATE` (``1e150``) up, so
        any centre is checked in bounded time (``"1e-99999999999"`` is 0).
    span
        Width of the view on the real axis, from the first to the last sample
        column.  The seed's ``--escape-radius``.  From :data:`MIN_SPAN`
        (``1e-1500``, the deepest supported) up; a smaller one, whatever its
        exponent, is refused.
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
        ``span`` not above :data:`MIN_SPAN`, or more than :data:`MAX_SAMPLES`
        samples).
    """

    xpos: float = -0.00275
    ypos: float = 0.78912
    span: float = 0.125689
    width: int = 1024
    height: int = 768
    supersample: int = 8

    def __post_init__(self) -> None:
        # frozen dataclass: normalise through object.__setattr__
        for name in ("xpos", "ypos"):
            object.__setattr__(self, name, parse_coordinate(name, getattr(self, name)))
        object.__setattr__(self, "span", parse_span("span", self.span))
        for name in ("width", "height", "supersample"):
            object.__setattr__(self, name, _check_int(name, getattr(self, name)))
        if self.n_samples > MAX_SAMPLES:
            raise ValueError(
                f"view has {self.n_samples:,} samples "
                f"({self.sample_width}x{self.sample_height}); the limit is {MAX_SAMPLES:,}"
            )
        if not math.isfinite(self.step) or not math.isfinite(self._scale) or self._scale > MAX_COORDINATE:
            raise ValueError(
                f"span {self.span:g} and centre ({float(self.xpos):g}, {float(self.ypos):g}) reach past "
                f"{MAX_COORDINATE:g}: |centre| + span must stay below it (a sample's square overflows float64 there)"
            )

    @property
    def _scale(self) -> float:
        return max(abs(self.xpos), abs(self.ypos)) + self.span

    @property
    def deep(self) -> bool:
        """Whether float64 cannot resolve this view's samples (they are less than
        :data:`DEEP_ULPS` ulps apart): it is then computed by perturbation
        around the exact :attr:`centre`."""
        return self.extended or self.step < DEEP_ULPS * math.ulp(self._scale)

    @property
    def extended(self) -> bool:
        """Whether the span is below :data:`EXTENDED_SPAN`: the step (and the
        samples' offsets) are then kept with exponents apart
        (:attr:`step_parts`), as float64 alone would underflow."""
        return isinstance(self.span, _Exact)

    @property
    def centre(self) -> tuple[Decimal, Decimal]:
        """The exact centre: the decimals given, or the floats' shortest decimals."""
        return exact(self.xpos), exact(self.ypos)

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
        """Distance between neighbouring samples, the same on both axes (a
        float64: 0.0 or subnormal for an :attr:`extended` view, whose exact
        step is :attr:`step_exact`)."""
        if self.extended:
            m, e = self.step_parts
            return math.ldexp(m, e)
        return self.span / max(self.sample_width - 1, 1)

    @property
    def step_parts(self) -> tuple[float, int]:
        """The step as ``(m, e)``, exactly ``m * 2**e`` with ``0.5 <= m < 1``:
        :attr:`step` split (``math.frexp``), or for an :attr:`extended` view the
        exact ``span / (W - 1)`` rounded to 53 bits."""
        if not self.extended:
            return math.frexp(self.step)
        q = Fraction(exact(self.span)) / max(self.sample_width - 1, 1)
        e = q.numerator.bit_length() - q.denominator.bit_length()  # 2**(e-1) < q < 2**(e+1)
        if q >= Fraction(2) ** e:
            e += 1
        elif q < Fraction(2) ** (e - 1):
            e -= 1
        m = float(q / Fraction(2) ** e)  # correctly rounded, in [0.5, 1]
        if m == 1.0:
            m, e = 0.5, e + 1
        return m, e

    @property
    def step_exact(self) -> Fraction:
        """The step as the exact binary fraction the samples are placed with."""
        m, e = self.step_parts
        return Fraction(m) * Fraction(2) ** e

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

    def coords(self, n: int = 1) -> dict[str, tuple[str, np.ndarray, dict[str, str]]]:
        """The ``im`` and ``re`` coordinates of the centres of this view's pixels
        of ``n × n`` samples (``n = 1``: of its samples), as xarray coordinates
        (dimension, values, CF attributes ``long_name`` and ``units``).

        Pixel column ``p`` is the mean of sample columns ``p*n … p*n + n-1``, so
        sits at the sample index ``j = p*n + (n-1)/2``: ``re0 + j * step``, from
        the global index as the samples are.  For a :attr:`deep` view, offsets
        from the exact centre (``centre_re``/``centre_im`` of :meth:`to_attrs`):
        ``(j - (W-1)/2) * step``, which float64 can still tell apart.
        """
        if self.sample_width % n or self.sample_height % n:
            raise ValueError(f"supersample {n} does not divide the {self.sample_width}x{self.sample_height} samples")
        w, h = self.sample_width, self.sample_height
        j = np.arange(w // n) * n + (n - 1) / 2
        i = np.arange(h // n) * n + (n - 1) / 2
        if self.extended:  # offsets in units of 2**e: float64 alone would underflow
            m, e = self.step_parts
            units = f"2**{e}"
            return {
                "im": ("im", ((h - 1) / 2 - i) * m, {"long_name": f"offset of the imaginary part from centre_im, "
                                                     f"in units of {units}", "units": units}),
                "re": ("re", (j - (w - 1) / 2) * m, {"long_name": f"offset of the real part from centre_re, "
                                                     f"in units of {units}", "units": units}),
            }  # fmt: skip
        if not self.deep:
            return {
                "im": ("im", self.im(i), {"long_name": "imaginary part", "units": "1"}),
                "re": ("re", self.re(j), {"long_name": "real part", "units": "1"}),
            }
        return {
            "im": ("im", ((h - 1) / 2 - i) * self.step, {"long_name": "offset of the imaginary part from centre_im",
                                                         "units": "1"}),
            "re": ("re", (j - (w - 1) / 2) * self.step, {"long_name": "offset of the real part from centre_re",
                                                         "units": "1"}),
        }  # fmt: skip

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
        """JSON-safe dict (floats round-trip exactly through JSON); the exact
        centre as decimal strings ``centre_re``, ``centre_im``."""
        attrs = asdict(self)
        attrs["xpos"], attrs["ypos"] = float(self.xpos), float(self.ypos)
        attrs["span"] = span_attr(self.span)
        attrs["centre_re"], attrs["centre_im"] = (str(d) for d in self.centre)
        return attrs

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> View:
        """Inverse of :meth:`to_attrs` (attrs written before deep views, without
        ``centre_re``/``centre_im``, give the float centre)."""
        try:
            kw = {k: attrs[k] for k in ("xpos", "ypos", "span", "width", "height", "supersample")}
        except KeyError as exc:
            raise ValueError(f"view attributes are missing {exc.args[0]!r}") from None
        if "centre_re" in attrs and "centre_im" in attrs:
            kw["xpos"], kw["ypos"] = attrs["centre_re"], attrs["centre_im"]
        return cls(**kw)


def zoom_views(view: View, frames: int, to_span: float | str | Decimal) -> list[View]:
    """The frames of a zoom from ``view`` to a span of ``to_span`` about the same
    (exact) centre: ``frames`` views whose spans fall geometrically, so each
    frame magnifies the last by the same factor.  Frame ``k``'s span is
    ``span * (to_span / span) ** (k / (frames - 1))`` (the first and last exact).

    Raises
    ------
    TypeError, ValueError
        For a ``frames`` that is not an integer from 2 to :data:`MAX_FRAMES`, or a
        ``to_span`` that is not a finite number above :data:`MIN_SPAN`.
    """
    if not isinstance(view, View):
        raise TypeError(f"view must be a View, got {type(view).__name__}")
    frames = _check_int("frames", frames, 2)
    if frames > MAX_FRAMES:
        raise ValueError(f"frames must be at most {MAX_FRAMES}, got {frames}")
    to_span = parse_span("to_span", to_span)  # here: a frame before the last would name another span
    spans: list[Any]
    if isinstance(to_span, _Exact) or view.extended:  # past float64: in decimals (an _Exact's float may be 0)
        a, b = exact(view.span), exact(to_span)
        ratio_d = (b / a).ln()
        spans = [str((a.ln() + ratio_d * k / (frames - 1)).exp()) for k in range(frames)]
    else:
        ratio = math.log(to_span / view.span)
        spans = [view.span * math.exp(ratio * k / (frames - 1)) for k in range(frames)]
    spans[0], spans[-1] = view.span, to_span
    return [replace(view, span=s) for s in spans]
