"""Counts → colours.  numpy + palettes; dask only through xarray, never directly
(writing a picture to PNG is :mod:`dfractal_dask.png`).

The seed's pixel rule (SEED.md, "The seed's pixel colour")::

    v = (iters - it) + ln(norm);  k = trunc(|v|)
    if k < len(table) - 1:  c1 + m*(c2 - c1)   (uint32 wrap-around; c = packed table[k], table[k+1];
                                               m = trunc(v) to int64, low 32 bits)
    else:                   transparent black

Supersamples are averaged per output pixel (all four channels, so a pixel
with some transparent samples is partly transparent).
"""

from __future__ import annotations

import decimal
import difflib
import functools
import io
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import dask.array as da
import numba
import numpy as np
import xarray as xr

from .deprecation import warn_renamed
from .palettes import (
    DEFAULT_PALETTE,
    DEFAULT_STEP,
    Palette,
    check_step,
    pack,
    parse_hex,
    resolve_palette,
    seed_lut,
)
from .view import View, zoom_views

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "BLOCK_MODES",
    "BlockColoring",
    "DEFAULT_INTERIOR",
    "DEFAULT_MODE",
    "MODES",
    "WHOLE_PICTURE_MODES",
    "Picture",
    "block_coloring",
    "log2_power",
    "rgb_of",
    "box_mean",
    "check_mode",
    "check_picture_memory",
    "colorize",
    "color_picture",
    "color_samples",
    "count_cdf",
    "distance_colors",
    "histogram_colors",
    "seed_colors",
    "smooth_colors",
    "smooth_value",
    "warm_up",
]


# -- per-sample kernels (Numba; one pass, no temporaries) ------------------------
_MASK32 = np.uint64(0xFFFFFFFF)


@numba.njit(cache=True, nogil=True)
def _seed_kernel(it, norm, iters, packed, out):  # pragma: no cover - compiled
    n_table = packed.size
    for i in range(it.size):
        v = (iters - np.float64(it[i])) + np.log(np.float64(norm[i]))
        if not np.isfinite(v) or np.floor(np.abs(v)) >= n_table - 1:
            out[i, 0] = out[i, 1] = out[i, 2] = out[i, 3] = 0
            continue
        k = np.int64(np.abs(v))  # trunc of a non-negative value
        c1 = np.uint64(packed[k])
        c2 = np.uint64(packed[k + 1])
        # m: v truncated toward zero to int64, low 32 bits; then all mod 2**32
        m = np.uint64(np.int64(v) & 0xFFFFFFFF)
        p = (c1 + m * ((c2 - c1) & _MASK32)) & _MASK32
        out[i, 0] = (p >> 24) & 0xFF
        out[i, 1] = (p >> 16) & 0xFF
        out[i, 2] = (p >> 8) & 0xFF
        out[i, 3] = 255


@numba.njit(cache=True, nogil=True, inline="always")
def _nu(it, norm, lp):  # pragma: no cover - compiled
    # it + 1 - log_d(log2|z| / log2 R), R = 2, with log2|z| = log2(norm) / 2 and
    # lp = log2 d for the map z**d + c (1 for d = 2: the same bits as before)
    return it + 1.0 - np.log2(0.5 * np.log2(np.float64(norm))) / lp


@numba.njit(cache=True, nogil=True)
def _smooth_value_kernel(it, norm, iters, lp, out):  # pragma: no cover - compiled
    for i in range(it.size):
        out[i] = _nu(np.float64(it[i]), norm[i], lp) if it[i] < iters else np.nan


@numba.njit(cache=True, nogil=True, inline="always")
def _ramp_channel(ramp, t, c):  # pragma: no cover - compiled
    # channel c of the palette ramp at t in [0, 1], linear between entries
    top = ramp.shape[0] - 1
    f = min(max(t, 0.0), 1.0) * top
    lo = np.int64(f)
    hi = min(lo + 1, top)
    w = f - lo
    return ramp[lo, c] * (1.0 - w) + ramp[hi, c] * w


@numba.njit(cache=True, nogil=True)
def _ramp_kernel(it, norm, de, iters, lp, ramp, interior, cdf, step, out):  # pragma: no cover - compiled
    # cdf empty: smooth mode, t = log(1 + nu) / log(2 + iters);
    # else histogram mode, t = cdf interpolated at nu.  Linear between ramp entries.
    # de not empty: distance shading, the colour darkened by tanh(distance / sample spacing)
    scale = 1.0 / np.log1p(iters + 1.0)
    for i in range(it.size):
        out[i, 3] = 255
        if it[i] >= iters:
            for c in range(3):
                out[i, c] = interior[c]
            continue
        nu = _nu(np.float64(it[i]), norm[i], lp)
        if cdf.size == 0:
            t = np.log1p(nu) * scale
        elif nu <= 0.0:
            t = cdf[0]
        elif nu >= cdf.size - 1:
            t = cdf[cdf.size - 1]
        else:
            j = np.int64(nu)
            w = nu - j
            t = cdf[j] * (1.0 - w) + cdf[j + 1] * w
        shade = 1.0
        if de.size != 0:
            d = np.float64(de[i])
            shade = np.tanh(d / step) if d >= 0.0 else 1.0  # NaN (not estimated): unshaded
        for c in range(3):
            out[i, c] = np.uint8(np.rint(_ramp_channel(ramp, t, c) * shade))


def _flat(iterations, norm):
    it, nm = np.asarray(iterations), np.asarray(norm)
    if it.dtype.kind not in "ui" or it.dtype.itemsize > 8:
        raise TypeError(f"iterations must be an array of integers, got one of {it.dtype}")
    if nm.dtype.kind not in "uif":
        raise TypeError(f"norm must be an array of real numbers, got one of {nm.dtype}")
    if it.shape != nm.shape:
        raise ValueError(f"iterations {it.shape} and norm {nm.shape} differ in shape")
    if it.dtype.kind == "i" and it.size and (it.min() < 0 or it.max() > np.iinfo(np.uint32).max):
        raise ValueError("iterations must be counts from 0 to 2**32 - 1")
    with np.errstate(over="ignore"):  # a |z|^2 past float32's range is inf: escaped all the same
        nm = np.ascontiguousarray(nm, dtype=np.float32)
    it = np.ascontiguousarray(it)
    if it.dtype not in (np.uint16, np.uint32):
        it = it.astype(np.uint32)
    return it.reshape(-1), nm.reshape(-1), it.shape


#: Packed tables of read-only (cached) seed tables by id, each kept with its table (so the id stays its own).
_PACKED: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _packed(lut: np.ndarray) -> np.ndarray:
    # the seed's uint32 form of a colour table; a cached table is packed once (at a 1 000 000
    # limit the table has 1 000 001 entries: 11 ms a block, on every block, before)
    kept = _PACKED.get(id(lut))
    if kept is not None and kept[0] is lut:
        return kept[1]
    packed = pack(np.concatenate([lut, np.full((len(lut), 1), 255, np.uint8)], axis=1))
    if not lut.flags.writeable:  # (seed_lut's: cached, never changed)
        if len(_PACKED) > 16:
            _PACKED.clear()
        _PACKED[id(lut)] = (lut, packed)
    return packed


def seed_colors(iterations: np.ndarray, norm: np.ndarray, iters: int, lut: np.ndarray) -> np.ndarray:
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
    it, nm, shape = _flat(iterations, norm)
    if isinstance(iters, bool) or not isinstance(iters, int | np.integer) or not 1 <= iters < 2**32 - 1:
        raise ValueError(f"iters must be an integer from 1 to {2**32 - 2}, got {iters!r}")
    lut = np.asarray(lut)
    if lut.dtype != np.uint8 or lut.ndim != 2 or lut.shape[1] != 3 or not len(lut):
        raise ValueError(f"lut must be a seed colour table (seed_lut: n x 3 uint8), got {lut.dtype} {lut.shape}")
    out = np.empty((it.size, 4), np.uint8)
    _seed_kernel(it, nm, np.float64(iters), _packed(lut), out)
    return out.reshape((*shape, 4))


def _seed_table_colors(iterations: np.ndarray, norm: np.ndarray, iters: int, palette: Palette, step: int) -> np.ndarray:
    # seed_colors with the palette's table of ``step`` entries looked up where it runs: a colouring
    # rule carries the palette and step, not the table (1 000 001 entries, 3 MB, at a 1 000 000
    # limit: pickled into every task, unpickled and packed again on every block, ~50 ms a block);
    # seed_lut and _packed keep one table a process
    return seed_colors(iterations, norm, iters, seed_lut(palette, step))


def log2_power(power: int) -> float:
    """``log2(power)``, the smooth value's log base for ``z**power + c`` (a power below 2 refused)."""
    if isinstance(power, bool) or not isinstance(power, int | np.integer) or power < 2:
        raise ValueError(f"power must be an integer >= 2, got {power!r}")
    return float(np.log2(power))


def smooth_value(iterations: np.ndarray, norm: np.ndarray, iters: int, power: int = 2) -> np.ndarray:
    """Continuous escape time ``it + 1 - log_d(log2|z| / log2 R)`` with the
    bailout ``R = 2`` (NaN for interior samples), for the map ``z**d + c``
    (``d = power``, 2 but for Multibrot).

    ``norm`` is ``|z|²`` at escape, so ``log2|z| = log2(norm) / 2``.  The value
    lies in about ``(it - 0.4, it + 1]`` and moves smoothly across the bands
    where ``it`` jumps.
    """
    it, nm, shape = _flat(iterations, norm)
    out = np.empty(it.size, np.float64)
    _smooth_value_kernel(it, nm, iters, log2_power(power), out)
    return out.reshape(shape)


def _ramp_colors(iterations, norm, iters, ramp, interior, cdf, power, distance=None, step=1.0) -> np.ndarray:
    it, nm, shape = _flat(iterations, norm)
    de = np.empty(0, np.float32) if distance is None else np.ascontiguousarray(distance, np.float32).reshape(-1)
    if distance is not None and de.size != it.size:
        raise ValueError(f"distance {np.shape(distance)} and iterations {shape} differ in shape")
    out = np.empty((it.size, 4), np.uint8)
    ramp = np.ascontiguousarray(ramp, np.float64)
    _ramp_kernel(it, nm, de, iters, log2_power(power), ramp, np.asarray(interior, np.uint8), cdf, float(step), out)
    return out.reshape((*shape, 4))


def smooth_colors(
    iterations: np.ndarray, norm: np.ndarray, iters: int, ramp: np.ndarray, interior: np.ndarray, power: int = 2
) -> np.ndarray:
    """Smooth (continuous) colouring: the palette over ``log(1+nu)/log(2+iters)``
    (``nu``: :func:`smooth_value`)."""
    return _ramp_colors(iterations, norm, iters, ramp, interior, np.empty(0), power)


def histogram_colors(
    iterations: np.ndarray,
    norm: np.ndarray,
    iters: int,
    ramp: np.ndarray,
    interior: np.ndarray,
    cdf: np.ndarray,
    power: int = 2,
) -> np.ndarray:
    """Histogram-equalised colouring: the palette over the share of escaped
    samples that escaped sooner (``cdf[k]``: share with count < k, linear
    in between)."""
    return _ramp_colors(iterations, norm, iters, ramp, interior, np.asarray(cdf, np.float64), power)


def distance_colors(
    iterations: np.ndarray,
    norm: np.ndarray,
    distance: np.ndarray,
    iters: int,
    ramp: np.ndarray,
    interior: np.ndarray,
    step: float,
    power: int = 2,
) -> np.ndarray:
    """Distance-estimation shading: smooth colouring (:func:`smooth_colors`)
    darkened by ``tanh(distance / step)``, so the set's finest filaments,
    thinner than a sample, show as dark lines.  ``distance``: the render's
    distance estimate (:func:`dfractal_dask.kernels.distance_block`);
    ``step``: the sample spacing."""
    return _ramp_colors(iterations, norm, iters, ramp, interior, np.empty(0), power, distance, step)


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


MODES = ("seed", "smooth", "histogram", "distance")
#: Modes that need the whole picture's counts before any pixel (histogram equalisation).
WHOLE_PICTURE_MODES = ("histogram",)
#: :func:`color_picture`'s default mode and interior colour.
DEFAULT_MODE = "seed"
DEFAULT_INTERIOR = "#000000"
#: Modes that colour a block on its own (histogram equalisation needs the whole picture).
BLOCK_MODES = ("smooth", "seed")


def rgb_of(colour) -> np.ndarray:
    """An interior colour (``"#rrggbb"`` or three 0-255 numbers) as float64 RGB, or a ValueError."""
    if isinstance(colour, str):
        return np.array(parse_hex(colour)[:3], np.float64)
    arr = np.asarray(colour, dtype=np.float64)
    if arr.shape != (3,) or arr.min() < 0 or arr.max() > 255:
        raise ValueError(f"interior colour must be '#rrggbb' or three values 0-255, got {colour!r}")
    return arr


def _color_rule(pal: Palette, mode: str, iters: int, step: float, interior, cdf, power: int = 2) -> tuple:
    """The per-sample colouring function of ``mode`` and its keyword arguments
    (``step``: the colour table size, or in mode distance the sample step)."""
    rgb = rgb_of(interior)  # checked in every mode: a bad colour is bad input even where unused
    if mode == "seed":
        n = max(int(step), iters)
        _packed(seed_lut(pal, n))  # made here (cached): no table at n is bad input before any task runs
        return _seed_table_colors, {"iters": iters, "palette": pal, "step": n}
    kwargs = {"iters": iters, "ramp": pal.ramp(), "interior": rgb, "power": power}
    if mode == "distance":
        return distance_colors, {**kwargs, "step": step}
    if mode == "histogram":
        return histogram_colors, {**kwargs, "cdf": cdf}
    return smooth_colors, kwargs


def color_samples(
    iterations: np.ndarray,
    norm: np.ndarray,
    iters: int,
    palette: str | Palette | list[str] = DEFAULT_PALETTE,
    mode: str = "smooth",
    step: int = DEFAULT_STEP,
    interior: str | tuple[int, int, int] = "#000000",
    power: int = 2,
) -> np.ndarray:
    """Colour samples that stand alone (one block, no supersample average).

    For colouring a block where it was computed (e.g. on a worker, for the zoom
    explorer).  ``mode`` is ``"seed"`` or ``"smooth"``: histogram equalisation
    needs the whole picture's counts, so use :func:`colorize` for it.

    Returns
    -------
    numpy.ndarray
        ``(*iterations.shape, 4)`` uint8 RGBA.
    """
    if mode not in BLOCK_MODES:
        raise ValueError(f"color_samples takes mode 'seed' or 'smooth', got {mode!r} (histogram: use colorize)")
    func, kwargs = _color_rule(resolve_palette(palette), mode, int(iters), check_step(step), interior, None, power)
    return func(iterations, norm, **kwargs)


def check_picture_memory(width: int, height: int) -> None:
    """Refuse (ValueError) a picture that cannot be held in this machine's memory.

    The picture (RGBA, 4 bytes a pixel) is gathered once and encoded as PNG, so
    about three copies must fit in the available memory.
    """
    import psutil

    need, free = 3 * 4 * int(width) * int(height), psutil.virtual_memory().available
    if need > free:
        raise ValueError(
            f"a {width}x{height} picture needs about {need / 1e9:,.1f} GB of memory to colour and save; "
            f"{free / 1e9:,.1f} GB are available"
        )


class Picture(xr.DataArray):
    """A coloured picture: ``(im, re, rgba)`` uint8 RGBA, labelled.

    An :class:`xarray.DataArray` (as datashader's ``tf.shade`` image is) with
    the coordinates of its pixel centres (``re``, ``im``: see
    :meth:`dfractal_dask.view.View.coords`; offsets from ``centre_re`` and
    ``centre_im`` for a deep view) and in ``attrs`` the colouring (``palette``,
    ``mode``, ``iters``, ``step``, ``interior``, ``supersample``) and the view
    of its pixels (:meth:`~dfractal_dask.view.View.to_attrs`, ``pixel_step``).

    Jupyter shows it as a PNG; ``np.asarray(picture)`` is the ``(h, w, 4)``
    array (no copy once computed) and :meth:`to_pil` a PIL image.  A lazy one
    (:func:`color_picture` of a lazy render) is computed when shown or
    converted.
    """

    __slots__ = ()  # xarray's rule for subclasses: no instance dict

    def _is_picture(self) -> bool:
        # indexing or arithmetic keep the class: a channel, or floats, are not a picture
        return self.dtype == np.uint8 and self.ndim == 3 and self.shape[2] in (3, 4)

    def to_pil(self) -> PILImage.Image:
        """The picture as a PIL image (RGBA, or RGB for three channels), computed if lazy.

        Raises
        ------
        ValueError
            If this is no longer a picture (e.g. one channel of one, or floats).
        """
        from PIL import Image

        if not self._is_picture():
            raise ValueError(f"to_pil needs (h, w, 3|4) uint8, got {self.dtype} {self.shape}")
        return Image.fromarray(np.asarray(self))

    def tolist(self) -> list:
        """The pixels as nested lists, as :meth:`numpy.ndarray.tolist`."""
        return np.asarray(self).tolist()

    def _repr_png_(self) -> bytes | None:
        # Jupyter's rich display; None (not a picture any more): xarray's text repr only
        if not self._is_picture():
            return None
        buf = io.BytesIO()
        self.to_pil().save(buf, format="PNG")
        return buf.getvalue()

    def _repr_html_(self) -> str | None:
        # Jupyter ranks HTML above PNG, and xarray's HTML table would hide the picture
        return None if self._is_picture() else super()._repr_html_()


@functools.lru_cache(maxsize=8)
def _zoom_frames(view: View, frames: int, to_span: float | str) -> list[View]:
    # a zoom's frames, exactly as rendered (its "span" coordinate is float64: NaN past its range)
    return zoom_views(view, frames, to_span)


def _picture_view(ds: xr.Dataset, n: int) -> View | None:
    """The view whose ``n``×``n``-sample pixels the picture of ``ds`` has, or
    None where ``ds`` holds no whole view (no view attrs, or a slice of one)."""
    try:
        view = View.from_attrs(ds.attrs)
    except (TypeError, ValueError):
        return None
    if "frame" in ds.coords and ds["frame"].ndim == 0 and "frames" in ds.attrs:  # a frame of a zoom: its own span
        view = _zoom_frames(view, ds.attrs["frames"], ds.attrs["to_span"])[int(ds["frame"])]
    if (view.sample_height, view.sample_width) != (ds.sizes["im"], ds.sizes["re"]):
        return None
    return replace(view, width=view.sample_width // n, height=view.sample_height // n, supersample=n)


def picture_of(data: np.ndarray | da.Array, view: View, n: int = 1, **colouring: Any) -> Picture:
    """``data``, the pixels of ``view`` (``n``×``n`` samples each; not copied),
    labelled as a :class:`Picture`: its coordinates, the view and ``colouring``
    (e.g. ``palette``, ``mode``, ``iters``, ``step``) in its attrs."""
    step: float | str = n * view.step
    if view.extended:  # its float64 is 0: the exact step, in 17 digits
        q = n * view.step_exact
        with decimal.localcontext() as ctx:
            ctx.prec = 17
            step = str(decimal.Decimal(q.numerator) / q.denominator)
    attrs = {**colouring, "supersample": n, **view.to_attrs(), "pixel_step": step}
    coords = {**view.coords(n), "rgba": ("rgba", ["r", "g", "b", "a"])}
    return Picture(data, coords=coords, dims=("im", "re", "rgba"), name="picture", attrs=attrs)


def _picture(data: np.ndarray | da.Array, ds: xr.Dataset, n: int, colouring: dict) -> Picture:
    """``data`` (the pixels, not copied) labelled with the coordinates and attrs of :class:`Picture`."""
    view = _picture_view(ds, n)
    if view is not None:
        return picture_of(data, view, n, **colouring)
    # no whole view: the mean of each pixel's sample coordinates, where the Dataset has them
    attrs = {**colouring, "supersample": n}
    coords: dict[str, tuple] = {
        dim: (dim, ds[dim].values.reshape(-1, n).mean(axis=1), dict(ds[dim].attrs))
        for dim in ("im", "re")
        if dim in ds.coords and ds[dim].ndim == 1
    }
    coords["rgba"] = ("rgba", ["r", "g", "b", "a"])
    # (named: xarray would take a dask array's task name)
    return Picture(data, coords=coords, dims=("im", "re", "rgba"), name="picture", attrs=attrs)


def color_picture(
    ds: xr.Dataset,
    palette: str | Palette | list[str] = DEFAULT_PALETTE,
    step: int = DEFAULT_STEP,
    mode: str = DEFAULT_MODE,
    *,
    interior: str | tuple[int, int, int] = DEFAULT_INTERIOR,
    supersample: int | None = None,
) -> Picture:
    """Colour a render and average its supersamples into pixels, lazily.

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
    Picture
        ``(rows / supersample, cols / supersample, 4)`` uint8 RGBA on dims
        ``(im, re, rgba)``, with the pixel centres' coordinates and the
        colouring and view in attrs: over a dask array for a lazy Dataset
        (nothing computed yet: give it to :func:`save_png`, or see
        :func:`colorize`), over numpy for an in-memory one.
    """
    if not isinstance(ds, xr.Dataset) or "iterations" not in ds or "norm" not in ds:
        raise TypeError("colorize needs a render Dataset with 'iterations' and 'norm' (see open_render)")
    check_mode(mode)
    iters = int(ds.attrs["iters"])
    n = int(ds.attrs.get("supersample", 1)) if supersample is None else supersample
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    rows, cols = ds.sizes["im"], ds.sizes["re"]
    if rows % n or cols % n:
        raise ValueError(f"supersample {n} does not divide the {cols}x{rows} samples of this render")
    check_picture_memory(cols // n, rows // n)
    it, norm = ds["iterations"], ds["norm"]
    cdf = count_cdf(it, iters) if mode == "histogram" else None
    rule = _block_rule(ds, palette, step, mode, interior, n, cdf)
    func, kwargs = rule.func, rule.kwargs
    inputs = [it, norm, *([ds["distance"]] if rule.distance else [])]
    if it.chunks is not None and any(r % n for r in it.chunks[0][:-1]):
        # every block must hold whole pixel rows for the n×n average
        size = max(n, max(it.chunks[0]) // n * n)
        inputs = [x.chunk({"im": size}) for x in inputs]
    samples = xr.apply_ufunc(
        func,
        *inputs,
        kwargs=kwargs,
        output_core_dims=[["channel"]],
        dask="parallelized",
        output_dtypes=[np.uint8],
        dask_gufunc_kwargs={"output_sizes": {"channel": 4}},
    )
    return _picture(_box_means(samples.data, n), ds, n, rule.attrs)


def check_mode(mode: str) -> None:
    """Refuse (ValueError) a colour ``mode`` not of :data:`MODES`, with the nearest one."""
    if mode not in MODES:
        close = difflib.get_close_matches(str(mode), MODES, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise ValueError(f"unknown colour mode {mode!r}{hint} (modes: {', '.join(MODES)})")


@dataclass(frozen=True)
class BlockColoring:
    """The colouring of a render's samples, block by block: a block of whole
    pixel rows (``n`` sample rows each) becomes its pixels, the same ones
    :func:`color_picture` gives those rows (from :func:`block_coloring`)."""

    func: Callable[..., np.ndarray]  # the per-sample rule (e.g. seed_colors)
    kwargs: dict[str, Any]
    n: int  # samples per pixel along each axis
    distance: bool  # whether the rule takes the distance estimate too
    attrs: dict[str, Any]  # the colouring, as a Picture's attrs hold it

    def __call__(self, iterations: np.ndarray, norm: np.ndarray, distance: np.ndarray | None = None) -> np.ndarray:
        """The ``(rows / n, cols / n, 4)`` uint8 RGBA pixels of a block's samples."""
        samples = self.func(iterations, norm, *([distance] if self.distance else []), **self.kwargs)
        return box_mean(samples, self.n) if self.n > 1 else samples


def _block_rule(ds: xr.Dataset, palette, step, mode: str, interior, n: int, cdf) -> BlockColoring:
    # the colouring of ``ds`` (its attrs, and whether it has distances; cdf: histogram mode's)
    step = check_step(step)  # in every mode, as the interior colour: bad input even where unused
    iters = int(ds.attrs["iters"])
    power = int(ds.attrs.get("power", 2))  # the map z**d + c: smooth colouring's log base
    pal = resolve_palette(palette)
    colouring = {"palette": pal.name, "mode": mode, "iters": iters, "step": int(step),
                 "interior": "#{:02x}{:02x}{:02x}".format(*np.asarray(rgb_of(interior), np.uint8))}  # fmt: skip
    rule_step: float = step
    if mode == "distance":
        if "distance" not in ds:
            raise ValueError("colour mode 'distance' needs a render made with distance estimation "
                             "(render(..., distance=True))")  # fmt: skip
        rule_step = View.from_attrs(ds.attrs).step  # shading is in samples
    func, kwargs = _color_rule(pal, mode, iters, rule_step, interior, cdf, power)
    return BlockColoring(func, kwargs, n, mode == "distance", colouring)


def block_coloring(
    ds: xr.Dataset,
    palette: str | Palette | list[str] = DEFAULT_PALETTE,
    step: int = DEFAULT_STEP,
    mode: str = DEFAULT_MODE,
    *,
    interior: str | tuple[int, int, int] = DEFAULT_INTERIOR,
    cdf: np.ndarray | None = None,
) -> BlockColoring:
    """:func:`color_picture`'s colouring of ``ds``, to apply a block at a time
    (e.g. on the worker that computed the block, see :mod:`dfractal_dask.overlap`).

    Parameters
    ----------
    ds
        A render, or its template (:func:`dfractal_dask.graph.template_of`):
        only its attrs and variables' names are read.
    palette, step, mode, interior
        As for :func:`color_picture`; a mode of :data:`WHOLE_PICTURE_MODES`
        only with its ``cdf``.
    cdf
        Mode histogram's equalisation (:func:`count_cdf` of the counts that set
        it), so blocks coloured on their own share it.

    Returns
    -------
    BlockColoring
        Called with a block's ``iterations``, ``norm`` (and ``distance`` in mode
        distance) it returns the block's pixels.
    """
    if mode not in MODES or (mode in WHOLE_PICTURE_MODES and cdf is None):
        block_modes = [m for m in MODES if m not in WHOLE_PICTURE_MODES]
        raise ValueError(f"mode must be one of {', '.join(block_modes)} to colour a block on its own, got {mode!r}"
                         " (histogram: with its cdf)")  # fmt: skip
    return _block_rule(ds, palette, step, mode, interior, int(ds.attrs.get("supersample", 1)), cdf)


def _box_means(arr: np.ndarray | da.Array, n: int) -> np.ndarray | da.Array:
    # the n×n average of a picture's samples, lazily for a dask array
    if n == 1:
        return arr
    if not isinstance(arr, da.Array):
        return box_mean(arr, n)
    lazy = arr
    if any(c % n for c in lazy.chunks[1][:-1]):
        lazy = lazy.rechunk({1: max(n, max(lazy.chunks[1]) // n * n)})
    rows, cols, channels = lazy.chunks
    pixels = (tuple(r // n for r in rows), tuple(c // n for c in cols), channels)
    return da.map_blocks(box_mean, lazy, n, chunks=pixels, dtype=np.uint8)


@numba.njit(cache=True, nogil=True)
def _box_mean_kernel(samples, n, out):  # pragma: no cover - compiled
    rows, cols, channels = out.shape
    half = (n * n) // 2
    acc = np.empty((cols, channels), np.uint32)
    for i in range(rows):
        acc[:] = 0
        for di in range(n):
            row = samples[i * n + di]
            for j in range(cols):
                for dj in range(n):
                    for k in range(channels):
                        acc[j, k] += row[j * n + dj, k]
        for j in range(cols):
            for k in range(channels):
                out[i, j, k] = (acc[j, k] + half) // (n * n)


def box_mean(samples: np.ndarray, n: int) -> np.ndarray:
    """Average ``n``×``n`` squares of uint8 samples ``(rows, cols, channels)``
    into pixels, rounded half up: ``(sum + n²//2) // n²`` per channel.

    One compiled pass (~15× faster than numpy's reshape and sum, which was
    most of a picture's colouring time).
    """
    rows, cols, channels = samples.shape
    if rows % n or cols % n:
        raise ValueError(f"supersample {n} does not divide a {cols}x{rows} block of samples")
    out = np.empty((rows // n, cols // n, channels), np.uint8)
    _box_mean_kernel(np.ascontiguousarray(samples, np.uint8), n, out)
    return out


def colorize(
    ds: xr.Dataset,
    palette: str | Palette | list[str] = DEFAULT_PALETTE,
    step: int = DEFAULT_STEP,
    mode: str = "seed",
    *,
    interior: str | tuple[int, int, int] = "#000000",
    supersample: int | None = None,
) -> Picture:
    """:func:`color_picture`, computed: the ``(h, w, 4)`` uint8 RGBA picture
    in memory, a :class:`Picture` (a labelled DataArray that Jupyter shows;
    ``np.asarray(picture)`` is the numpy array, ``picture.to_pil()`` a PIL
    image).  For a picture too big to hold at once, give
    :func:`color_picture`'s lazy one to :func:`save_png`, which computes and
    writes it a strip at a time."""
    return color_picture(ds, palette, step, mode, interior=interior, supersample=supersample).compute()


def warm_up() -> None:
    """Compile (or load from Numba's cache) the colouring kernels for both count
    dtypes, so a worker's first colouring does not pay for it."""
    for dtype in (np.uint16, np.uint32):
        it, nm = np.zeros((1, 1), dtype), np.ones((1, 1), np.float32)
        seed_colors(it, nm, 1, seed_lut(DEFAULT_PALETTE, 2))
        smooth_colors(it, nm, 1, np.zeros((2, 3)), np.zeros(3), 2)
    box_mean(np.zeros((2, 2, 4), np.uint8), 2)


#: Names of the British spelling, renamed: public names spell "color" (as
#: ``colorize`` and ``recolor`` always have).  The old ones still work, with
#: a ``DeprecationWarning`` (:class:`~dfractal_dask.deprecation.RenamedWarning`).
RENAMED = {
    "colour_picture": "color_picture",
    "colour_samples": "color_samples",
    "seed_colours": "seed_colors",
    "smooth_colours": "smooth_colors",
    "histogram_colours": "histogram_colors",
    "distance_colours": "distance_colors",
}


def __getattr__(name: str) -> Any:
    if name in RENAMED:
        warn_renamed(name, RENAMED[name])
        return globals()[RENAMED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
