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

import os
from pathlib import Path

import numpy as np
import xarray as xr
from PIL import Image

from .palettes import pack, seed_lut

__all__ = ["seed_colours", "colorize", "save_png"]


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


def colorize(ds: xr.Dataset, palette: str = "Hippi", step: int = 6000) -> np.ndarray:
    """Colour a render with the seed's rule and average its supersamples.

    Works on an in-memory or lazy Dataset (from :func:`dfractal_dask.open_render`
    or :func:`dfractal_dask.render`); a lazy one is coloured block by block on the
    current dask scheduler (through xarray), so memory stays bounded by a block
    and only the ``height × width`` picture comes back.

    Parameters
    ----------
    ds
        A render: ``iterations`` and ``norm`` variables, ``iters`` and
        ``supersample`` attrs.
    palette
        A seed palette name.
    step
        Colour table size; the seed uses ``max(step, iters)``.

    Returns
    -------
    numpy.ndarray
        ``(height, width, 4)`` uint8 RGBA.
    """
    if not isinstance(ds, xr.Dataset) or "iterations" not in ds or "norm" not in ds:
        raise TypeError("colorize needs a render Dataset with 'iterations' and 'norm' (see open_render)")
    iters = int(ds.attrs["iters"])
    n = int(ds.attrs.get("supersample", 1))
    lut = seed_lut(palette, max(int(step), iters))
    it, norm = ds["iterations"], ds["norm"]
    if it.chunks is not None and any(r % n for r in it.chunks[0][:-1]):
        # every block must hold whole pixel rows for the n×n average
        rows = max(n, max(it.chunks[0]) // n * n)
        it, norm = it.chunk({"im": rows}), norm.chunk({"im": rows})
    samples = xr.apply_ufunc(
        seed_colours,
        it,
        norm,
        kwargs={"iters": iters, "lut": lut},
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
