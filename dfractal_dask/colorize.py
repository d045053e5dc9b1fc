"""Counts → colours.  numpy + palettes; dask only through xarray, never directly.

The seed's pixel rule (SEED.md, "The seed's pixel colour")::

    v = (iters - it) + ln(norm);  k = trunc(|v|)
    if k < len(table) - 1:  c1 + m*(c2 - c1)   (uint32 wrap-around; c = packed table[k], table[k+1];
                                               m = trunc(v) to int64, low 32 bits)
    else:                   transparent black

Supersamples are averaged per output pixel (all four channels, so a pixel
with some transparent samples is partly transparent).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image

from .palettes import Palette, pack, parse_hex, resolve_palette, seed_lut

__all__ = [
    "MODES",
    "colorize",
    "count_cdf",
    "histogram_colours",
    "save_png",
    "seed_colours",
    "smooth_colours",
    "smooth_value",
]


def seed_colours(iterations: np.ndarray, norm: np.ndarray, iters: int, lut: np.ndarray) -> np.ndarray:
    """Apply the seed's pixel rule to samples: ``(..., 4)`` uint8 RGBA.

    Parameters
    ----------
    iterations, norm
        Escape iteration and ``|z|²`` per sample (same shape).
    iters
        The render's iteration limit.
    lut
        A seed colour table from :func:`dfractal_dask.palettes.seed_lut`.
    """
    it = np.asarray(iterations)
    with np.errstate(divide="ignore"):  # norm == 0 (c = 0) gives -inf: transparent
        v = (np.float64(iters) - it.astype(np.float64)) + np.log(np.asarray(norm, dtype=np.float64))
    finite = np.isfinite(v)
    v = np.where(finite, v, 0.0)
    k = np.trunc(np.abs(v))
    valid = finite & (k < len(lut) - 1)
    k = np.where(valid, k, 0).astype(np.intp)
    packed = pack(np.concatenate([lut, np.full((len(lut), 1), 255, np.uint8)], axis=1))
    c1 = packed[k]
    c2 = packed[np.minimum(k + 1, len(lut) - 1)]
    # trunc toward zero to int64, keep the low 32 bits, then uint32 wrap-around
    m = (np.trunc(v).astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)
    p = c1 + m * (c2 - c1)
    rgba = np.zeros((*it.shape, 4), np.uint8)
    rgba[..., :3] = np.where(valid[..., None], np.stack([(p >> s) & 0xFF for s in (24, 16, 8)], axis=-1), 0)
    rgba[..., 3] = np.where(valid, 255, 0)
    return rgba


def smooth_value(iterations: np.ndarray, norm: np.ndarray, iters: int) -> np.ndarray:
    """Continuous escape time ``it + 1 - log2(log2|z| / log2 R)`` with the
    bailout ``R = 2`` (NaN for interior samples).

    ``norm`` is ``|z|²`` at escape, so ``log2|z| = log2(norm) / 2``.  The value
    lies in about ``(it - 0.4, it + 1]`` and moves smoothly across the bands
    where ``it`` jumps.
    """
    it = np.asarray(iterations).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        nu = it + 1.0 - np.log2(0.5 * np.log2(np.asarray(norm, dtype=np.float64)))
    return np.where(it < iters, nu, np.nan)


def _ramp_colours(t: np.ndarray, ramp: np.ndarray, interior: np.ndarray) -> np.ndarray:
    # t in [0, 1] (NaN: interior); linear between ramp entries: no banding
    inside = np.isnan(t)
    f = np.clip(np.where(inside, 0.0, t), 0.0, 1.0) * (len(ramp) - 1)
    lo = np.floor(f).astype(np.intp)
    hi = np.minimum(lo + 1, len(ramp) - 1)
    w = (f - lo)[..., None]
    rgb = ramp[lo] * (1.0 - w) + ramp[hi] * w
    rgba = np.empty((*t.shape, 4), np.uint8)
    rgba[..., :3] = np.where(inside[..., None], interior, np.rint(rgb)).astype(np.uint8)
    rgba[..., 3] = 255
    return rgba


def smooth_colours(
    iterations: np.ndarray, norm: np.ndarray, iters: int, ramp: np.ndarray, interior: np.ndarray
) -> np.ndarray:
    """Smooth (continuous) colouring: the palette over ``log(1+nu)/log(2+iters)``."""
    nu = smooth_value(iterations, norm, iters)
    return _ramp_colours(np.log1p(nu) / np.log1p(iters + 1.0), ramp, interior)


def histogram_colours(
    iterations: np.ndarray, norm: np.ndarray, iters: int, ramp: np.ndarray, interior: np.ndarray, cdf: np.ndarray
) -> np.ndarray:
    """Histogram-equalised colouring: the palette over the share of escaped
    samples that escaped sooner (``cdf[k]``: share with count < k)."""
    nu = smooth_value(iterations, norm, iters)
    t = np.interp(nu, np.arange(len(cdf), dtype=np.float64), cdf)
    return _ramp_colours(np.where(np.isnan(nu), np.nan, t), ramp, interior)


def count_cdf(iterations, iters: int) -> np.ndarray:
    """``cdf[k]``: share of escaped samples with count < k, ``k = 0 .. iters+1``.

    ``iterations`` is a numpy array or a DataArray; a lazy DataArray is counted
    block by block (``np.bincount`` dispatches to dask), never loaded whole.
    """
    data = iterations.data if isinstance(iterations, xr.DataArray) else np.asarray(iterations)
    hist = np.asarray(np.bincount(data.ravel(), minlength=iters + 1)).astype(np.float64)[:iters]
    total = hist.sum()
    cdf = np.concatenate([[0.0], np.cumsum(hist)]) / (total if total else 1.0)
    return np.append(cdf, 1.0)


MODES = ("seed", "smooth", "histogram")


def _rgb(colour) -> np.ndarray:
    if isinstance(colour, str):
        return np.array(parse_hex(colour)[:3], np.float64)
    arr = np.asarray(colour, dtype=np.float64)
    if arr.shape != (3,) or arr.min() < 0 or arr.max() > 255:
        raise ValueError(f"interior colour must be '#rrggbb' or three values 0-255, got {colour!r}")
    return arr


def colorize(
    ds: xr.Dataset,
    palette: str | Palette | list[str] = "Hippi",
    step: int = 6000,
    mode: str = "seed",
    *,
    interior: str | tuple[int, int, int] = "#000000",
    supersample: int | None = None,
) -> np.ndarray:
    """Colour a render and average its supersamples into pixels.

    Works on an in-memory or lazy Dataset (from :func:`dfractal_dask.open_render`
    or :func:`dfractal_dask.render`); a lazy one is coloured block by block on the
    current dask scheduler (through xarray), so memory stays bounded by a block
    and only the picture comes back.  Never runs the fractal kernel.

    Parameters
    ----------
    ds
        A render: ``iterations`` and ``norm`` variables, ``iters`` and
        ``supersample`` attrs.
    palette
        Anything :func:`dfractal_dask.palettes.resolve_palette` takes: a seed
        or bokeh palette name, a list of hex colours, ``<name>_r`` reversed.
    step
        ``seed`` mode: colour table size; the seed uses ``max(step, iters)``.
    mode
        ``"seed"`` (SEED.md's rule, banded, the seed's look), ``"smooth"``
        (continuous escape time, no banding) or ``"histogram"`` (equalised).
    interior
        Colour of samples that never escaped, in the smooth modes.
    supersample
        Samples averaged per pixel along each axis (default: the render's).

    Returns
    -------
    numpy.ndarray
        ``(rows / supersample, cols / supersample, 4)`` uint8 RGBA.
    """
    if not isinstance(ds, xr.Dataset) or "iterations" not in ds or "norm" not in ds:
        raise TypeError("colorize needs a render Dataset with 'iterations' and 'norm' (see open_render)")
    if mode not in MODES:
        close = difflib.get_close_matches(str(mode), MODES, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"unknown colour mode {mode!r}{hint} (modes: {', '.join(MODES)})")
    iters = int(ds.attrs["iters"])
    n = int(ds.attrs.get("supersample", 1)) if supersample is None else supersample
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    rows, cols = ds.sizes["im"], ds.sizes["re"]
    if rows % n or cols % n:
        raise ValueError(f"supersample {n} does not divide the {cols}x{rows} samples of this render")
    pal = resolve_palette(palette)
    it, norm = ds["iterations"], ds["norm"]
    if mode == "seed":
        func, kwargs = seed_colours, {"iters": iters, "lut": seed_lut(pal, max(int(step), iters))}
    else:
        kwargs = {"iters": iters, "ramp": pal.ramp(), "interior": _rgb(interior)}
        func = smooth_colours
        if mode == "histogram":
            func, kwargs["cdf"] = histogram_colours, count_cdf(it, iters)
    if it.chunks is not None and any(r % n for r in it.chunks[0][:-1]):
        # every block must hold whole pixel rows for the n×n average
        size = max(n, max(it.chunks[0]) // n * n)
        it, norm = it.chunk({"im": size}), norm.chunk({"im": size})
    samples = xr.apply_ufunc(
        func,
        it,
        norm,
        kwargs=kwargs,
        output_core_dims=[["channel"]],
        dask="parallelized",
        output_dtypes=[np.uint8],
        dask_gufunc_kwargs={"output_sizes": {"channel": 4}},
    )
    if n == 1:
        return np.asarray(samples)
    sums = samples.astype(np.uint32).coarsen(im=n, re=n).sum()
    return np.asarray((sums + (n * n) // 2) // (n * n)).astype(np.uint8)


def save_png(rgba: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``(h, w, 4)`` or ``(h, w, 3)`` uint8 as a PNG (parent folders made)."""
    path = Path(path)
    arr = np.asarray(rgba)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"save_png needs (h, w, 3|4) uint8, got {arr.dtype} {arr.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB").save(path, format="PNG")
    return path
