"""Palettes: the seed's seven (gobrot's colour stops), every bokeh palette,
lists of hex colours, each also reversed (``_r``); and their colour tables.

The seed's table ("step colours", SEED.md) is rebuilt exactly, quirks included:
colours are packed into 32-bit numbers and interpolated *as numbers*, so
channels bleed into each other.  That is the seed's look, so we keep it; any
palette can be put through it (``mode="seed"``).  The smooth modes use
:meth:`Palette.ramp`, a plain RGB interpolation.
"""

from __future__ import annotations

import difflib
import itertools
import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

__all__ = [
    "DEFAULT_PALETTE",
    "DEFAULT_STEP",
    "MAX_STEP",
    "SEED_PALETTES",
    "Palette",
    "Stop",
    "bokeh_palette_names",
    "parse_hex",
    "palette_names",
    "resolve_palette",
    "seed_palette",
    "seed_palette_names",
    "resolve_seed_name",
    "seed_lut",
    "check_step",
    "pack",
    "unpack",
]

#: The largest seed colour table (``max(step, iters)`` entries, 4 bytes each).
MAX_STEP = 10_000_000

#: The seed's palette names, in the seed's order.
SEED_PALETTES = ("Hippi", "Plan9", "Vivid", "AfternoonBlue", "SummerBeach", "Biochemist", "Fiesta")
#: The palette used when none is named (the seed's default).
DEFAULT_PALETTE = SEED_PALETTES[0]
#: The seed's colour table size (its ``--step``): ``max(step, iters)`` entries.
DEFAULT_STEP = 6000

# gobrot spells one palette "Biochimist"; accept both.
_ALIASES = {"biochimist": "Biochemist"}


@dataclass(frozen=True)
class Stop:
    """One colour stop: position in [0, 1] (None: evenly placed) and RGBA."""

    position: float | None
    rgba: tuple[int, int, int, int]


@dataclass(frozen=True)
class Palette:
    """A named list of colour stops (hashable, so tables can be cached)."""

    name: str
    stops: tuple[Stop, ...]

    def positions(self) -> np.ndarray:
        """Stop positions in [0, 1], placed the seed's way where not given."""
        return _positions(self.stops)

    def reversed(self) -> Palette:
        """The same stops in the opposite order, named ``<name>_r``."""
        pos = self.positions()
        stops = tuple(Stop(float(1.0 - p), s.rgba) for p, s in zip(pos[::-1], self.stops[::-1], strict=True))
        name = self.name[:-2] if self.name.endswith("_r") else self.name + "_r"
        return Palette(name, stops)

    def ramp(self, n: int = 4096) -> np.ndarray:
        """``(n, 3)`` float64 RGB sampled evenly over [0, 1], linear between stops."""
        pos = self.positions()
        rgb = np.array([s.rgba[:3] for s in self.stops], dtype=np.float64)
        t = np.linspace(0.0, 1.0, n)
        return np.stack([np.interp(t, pos, rgb[:, c]) for c in range(3)], axis=-1)


@cache
def _stops_table() -> dict[str, tuple[Stop, ...]]:
    raw = json.loads(resources.files("dfractal_dask").joinpath("data/seed_palettes.json").read_text())
    out = {}
    for name, stops in raw["palettes"].items():
        out[name] = tuple(Stop(s["step"], parse_hex(s["rgba"])) for s in stops)
    return out


def seed_palette_names() -> tuple[str, ...]:
    """Names of the seed palettes."""
    return SEED_PALETTES


def resolve_seed_name(name: str) -> str:
    """Canonical seed palette name for ``name`` (case-insensitive, aliases).

    Raises
    ------
    TypeError
        If ``name`` is not a string.
    ValueError
        If no seed palette has that name; the message lists close matches.
    """
    if not isinstance(name, str):
        raise TypeError(f"palette name must be a string, got {name!r}")
    lower = {n.lower(): n for n in SEED_PALETTES}
    key = name.strip().lower()
    if key in lower:
        return lower[key]
    if key in _ALIASES:
        return _ALIASES[key]
    close = difflib.get_close_matches(name, SEED_PALETTES, n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown palette {name!r}{hint} (seed palettes: {', '.join(SEED_PALETTES)})")


def seed_palette(name: str) -> tuple[Stop, ...]:
    """The colour stops of a seed palette."""
    return _stops_table()[resolve_seed_name(name)]


def _even(colours: list[tuple[int, int, int, int]]) -> tuple[Stop, ...]:
    k = len(colours)
    return tuple(Stop(i / (k - 1) if k > 1 else 0.0, c) for i, c in enumerate(colours))


def parse_hex(text: str) -> tuple[int, int, int, int]:
    h = text.strip().removeprefix("#")
    if len(h) in (3, 4):
        h = "".join(ch * 2 for ch in h)
    if len(h) not in (6, 8) or any(ch not in "0123456789abcdefABCDEF" for ch in h):
        raise ValueError(f"malformed hex colour {text!r}; expected #rrggbb or #rrggbbaa")
    if len(h) == 6:
        h += "ff"
    r, g, b, a = (int(h[i : i + 2], 16) for i in (0, 2, 4, 6))
    return r, g, b, a


@cache
def _bokeh_table() -> dict[str, tuple[str, ...]]:
    import bokeh.palettes as bp

    out: dict[str, tuple[str, ...]] = {}
    for family, sizes in bp.all_palettes.items():
        out[family] = tuple(sizes[max(sizes)])  # a family name means its largest size
    for name in dir(bp):
        value = getattr(bp, name)
        if (
            name[0].isupper()
            and isinstance(value, tuple)
            and len(value) > 1
            and all(isinstance(c, str) and c.startswith("#") for c in value)
        ):
            out[name] = value
    return out


def bokeh_palette_names() -> tuple[str, ...]:
    """Every bokeh palette name accepted (families and sized names)."""
    return tuple(sorted(_bokeh_table()))


def palette_names() -> tuple[str, ...]:
    """Seed palettes first, then bokeh's (each also accepted with ``_r``)."""
    return SEED_PALETTES + bokeh_palette_names()


def resolve_palette(spec: str | Palette | list[str] | tuple[str, ...]) -> Palette:
    """A :class:`Palette` from a name, a list of hex colours, or a Palette.

    Accepted: a seed palette name (case-insensitive; "Biochimist" too); a bokeh
    palette name (``Viridis256``, ``Inferno256``, ``Category10_10``, or a family
    such as ``Magma`` for its largest size); a comma-separated string or a list
    of ``#rrggbb[aa]`` colours; any of these names with ``_r`` appended,
    reversed.

    Raises
    ------
    TypeError
        For anything but a string, a list of strings or a Palette.
    ValueError
        For an unknown name (the message lists close matches) or a malformed
        hex colour.
    """
    if isinstance(spec, Palette):
        return spec
    if isinstance(spec, list | tuple):
        if not all(isinstance(c, str) for c in spec):
            raise TypeError(f"a palette list must hold hex colour strings, got {spec!r}")
        if len(spec) < 2:
            raise ValueError("a palette list needs at least two colours")
        return Palette(",".join(spec), _even([parse_hex(c) for c in spec]))
    if not isinstance(spec, str):
        raise TypeError(f"palette must be a name, a list of hex colours or a Palette, got {spec!r}")
    text = spec.strip()
    if "," in text or text.startswith("#"):
        return resolve_palette([c for c in text.split(",") if c.strip()] if "," in text else [text])
    if text.lower().endswith("_r") and len(text) > 2:
        try:
            return resolve_palette(text[:-2]).reversed()
        except ValueError:
            pass  # maybe a name that itself ends in _r: report the whole name below
    lower = {n.lower(): n for n in SEED_PALETTES}
    key = text.lower()
    if key in lower or key in _ALIASES:
        name = resolve_seed_name(text)
        return Palette(name, seed_palette(name))
    bokeh = {n.lower(): n for n in _bokeh_table()}
    if key in bokeh:
        name = bokeh[key]
        return Palette(name, _even([parse_hex(c) for c in _bokeh_table()[name]]))
    close = difflib.get_close_matches(text, palette_names(), n=4, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown palette {text!r}{hint} (`dfractal palettes` lists them all)")


#: :func:`_channel` of each uint8 value: looked up, as 64-bit divisions of a 1 000 001-entry
#: table's channels took 25 ms of every deep render's start.
_CHANNELS = (np.arange(256, dtype=np.uint64) * 257) // 255


def _channel(c: np.ndarray | int) -> np.ndarray:
    # Go's colour API hands over c*257 (16 bit); the seed divides by 255.
    c = np.asarray(c)
    if c.dtype == np.uint8:
        return _CHANNELS[c]
    return (c.astype(np.uint64) * 257) // 255


def pack(rgba: np.ndarray) -> np.ndarray:
    """Pack ``(..., 4)`` uint8 RGBA into the seed's uint32 (``r<<24|g<<16|b<<8|a``
    after each channel became ``trunc(c*257/255)``, so 255 spills a bit)."""
    rgba = np.asarray(rgba)
    c = _channel(rgba)
    packed = (c[..., 0] << 24) | (c[..., 1] << 16) | (c[..., 2] << 8) | c[..., 3]
    return (packed & 0xFFFFFFFF).astype(np.uint32)


def unpack(packed: np.ndarray) -> np.ndarray:
    """uint32 → ``(..., 3)`` uint8 RGB (the seed drops the packed alpha)."""
    p = np.asarray(packed, dtype=np.uint32)
    return np.stack([(p >> 24) & 0xFF, (p >> 16) & 0xFF, (p >> 8) & 0xFF], axis=-1).astype(np.uint8)


def _positions(stops: tuple[Stop, ...]) -> np.ndarray:
    k_total = len(stops)
    return np.array(
        [
            s.position if s.position is not None else (0.0 if k == 0 else math.trunc(100 * (k + 1) / k_total) / 100)
            for k, s in enumerate(stops)
        ],
        dtype=np.float64,
    )


@cache
def _seed_lut_cached(palette: Palette, n: int) -> np.ndarray:
    name, stops = palette.name, palette.stops
    pos = _positions(stops)
    packed = pack(np.array([s.rgba for s in stops], dtype=np.uint8)).astype(np.float64)
    # t = 0, 1/n, 2/n, ... accumulated in float64 exactly as the seed does
    # (np.add.accumulate is sequential), kept while t <= 1.
    t = np.add.accumulate(np.concatenate([[0.0], np.full(n + 1, 1.0 / n)]))
    t = t[t <= 1.0]
    runs, vals = [], []  # (first row, end row, stop) of each segment's t, and its colours
    for j in range(len(stops) - 1):
        lo, hi = pos[j], pos[j + 1]
        # the t with lo <= t < hi: a run of the (non-decreasing) t
        a, b = np.searchsorted(t, lo, "left"), np.searchsorted(t, hi, "left")
        if a >= b:
            continue
        mu = (t[a:b] - lo) / (hi - lo)
        w = (1.0 - np.cos(mu * math.pi)) / 2.0
        # note: the segment starts at the *next* stop's colour (seed quirk)
        vals.append(np.trunc(packed[j + 1] * (1.0 - w) + packed[j] * w))
        runs.append((a, b, j))
    if not vals:
        raise ValueError(f"palette {name!r} has no colour table at step {n}")
    table = np.concatenate(vals)
    if any(a < end for (_, end, _), (a, _, _) in itertools.pairwise(runs)):  # stops out of order:
        # runs overlap; the seed's order is by row, then by stop
        rows = np.concatenate([np.arange(a, b) for a, b, _ in runs])
        segs = np.concatenate([np.full(b - a, j) for a, b, j in runs])
        table = table[np.lexsort((segs, rows))]
    table = table.astype(np.uint64).astype(np.uint32)
    lut = unpack(table)
    lut.flags.writeable = False
    return lut


def seed_lut(name: str | Palette, step: int) -> np.ndarray:
    """The seed's colour table of a palette with ``step`` entries.

    Returns a read-only ``(n, 3)`` uint8 array of RGB (alpha is always 255);
    ``n`` is about ``step + 1`` (the seed's float accumulation decides).

    Parameters
    ----------
    name
        A seed palette name (see :data:`SEED_PALETTES`) or anything
        :func:`resolve_palette` takes.
    step
        Number of interpolation steps; the seed uses ``max(step, iters)``.
    """
    return _seed_lut_cached(resolve_palette(name), check_step(step))


def check_step(step: object) -> int:
    """``step`` (a colour table's size) as an int; a ``TypeError`` for a
    non-integer, a ``ValueError`` outside 1 .. :data:`MAX_STEP`, naming it."""
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        raise TypeError(f"step must be an integer, got {step!r}")
    if not 1 <= step <= MAX_STEP:
        raise ValueError(f"step must be between 1 and {MAX_STEP}, got {step}")
    return int(step)
