"""Palettes: the seed's seven (gobrot's colour stops) and their colour tables.

The seed's table ("step colours", SEED.md) is rebuilt exactly, quirks included:
colours are packed into 32-bit numbers and interpolated *as numbers*, so
channels bleed into each other.  That is the seed's look, so we keep it.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np

__all__ = [
    "SEED_PALETTES",
    "Stop",
    "seed_palette",
    "seed_palette_names",
    "resolve_seed_name",
    "seed_lut",
    "pack",
    "unpack",
]

#: The seed's palette names, in the seed's order.
SEED_PALETTES = ("Hippi", "Plan9", "Vivid", "AfternoonBlue", "SummerBeach", "Biochemist", "Fiesta")

# gobrot spells one palette "Biochimist"; accept both.
_ALIASES = {"biochimist": "Biochemist"}


@dataclass(frozen=True)
class Stop:
    """One colour stop: position in [0, 1] (None: evenly placed) and RGBA."""

    position: float | None
    rgba: tuple[int, int, int, int]


@cache
def _stops_table() -> dict[str, tuple[Stop, ...]]:
    raw = json.loads(resources.files("dfractal_dask").joinpath("data/seed_palettes.json").read_text())
    out = {}
    for name, stops in raw["palettes"].items():
        out[name] = tuple(Stop(s["step"], tuple(int(s["rgba"][i : i + 2], 16) for i in (1, 3, 5, 7))) for s in stops)
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


def _channel(c: np.ndarray | int) -> np.ndarray | int:
    # Go's colour API hands over c*257 (16 bit); the seed divides by 255.
    return (np.asarray(c, dtype=np.uint64) * 257) // 255


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
def _seed_lut_cached(name: str, n: int) -> np.ndarray:
    stops = seed_palette(name)
    pos = _positions(stops)
    packed = pack(np.array([s.rgba for s in stops], dtype=np.uint8)).astype(np.float64)
    # t = 0, 1/n, 2/n, ... accumulated in float64 exactly as the seed does
    # (np.add.accumulate is sequential), kept while t <= 1.
    t = np.add.accumulate(np.concatenate([[0.0], np.full(n + 1, 1.0 / n)]))
    t = t[t <= 1.0]
    rows, segs, vals = [], [], []
    for j in range(len(stops) - 1):
        lo, hi = pos[j], pos[j + 1]
        idx = np.nonzero((lo <= t) & (t < hi))[0]
        if idx.size == 0:
            continue
        mu = (t[idx] - lo) / (hi - lo)
        w = (1.0 - np.cos(mu * math.pi)) / 2.0
        # note: the segment starts at the *next* stop's colour (seed quirk)
        vals.append(np.trunc(packed[j + 1] * (1.0 - w) + packed[j] * w))
        rows.append(idx)
        segs.append(np.full(idx.size, j))
    if not vals:
        raise ValueError(f"palette {name!r} has no colour table at step {n}")
    order = np.lexsort((np.concatenate(segs), np.concatenate(rows)))
    table = np.concatenate(vals)[order].astype(np.uint64).astype(np.uint32)
    lut = unpack(table)
    lut.flags.writeable = False
    return lut


def seed_lut(name: str, step: int) -> np.ndarray:
    """The seed's colour table of palette ``name`` with ``step`` entries.

    Returns a read-only ``(n, 3)`` uint8 array of RGB (alpha is always 255);
    ``n`` is about ``step + 1`` (the seed's float accumulation decides).

    Parameters
    ----------
    name
        A seed palette name (see :data:`SEED_PALETTES`).
    step
        Number of interpolation steps; the seed uses ``max(step, iters)``.
    """
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        raise TypeError(f"step must be an integer, got {step!r}")
    if not 1 <= step <= 10_000_000:
        raise ValueError(f"step must be between 1 and 10000000, got {step}")
    return _seed_lut_cached(resolve_seed_name(name), int(step))
