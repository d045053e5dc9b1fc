"""Deep Zoom Image (DZI) pictures: the tiled pyramid OpenSeadragon reads.

A DZI picture ``NAME.dzi`` is an XML header (tile size, overlap, format, full
size) beside a folder ``NAME_files/<level>/<col>_<row>.<fmt>`` of tiles.  Level
``L = ceil(log2(max(w, h)))`` is the full picture, each level below is half
(rounded up) the one above, down to level 0, one pixel.  A tile of a level
holds ``tile_size`` pixels of it in each direction plus ``overlap`` pixels of
each neighbour (none past the picture's edges).

:func:`write_dzi` takes each level it is given as RGBA strips of rows, in
order, and writes its tiles a tile row at a time; a level it is not given is
downscaled (Pillow's 2x2 box reduction) from the one above as that one's rows
arrive.  Memory stays bounded by about a tile row of each level, never a whole
level.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from xml.sax.saxutils import quoteattr

import dask
import dask.array as da
import numpy as np
from distributed import Client
from PIL import Image

from .colorize import DEFAULT_INTERIOR, DEFAULT_MODE, BlockColoring, block_coloring, box_mean, check_mode, count_cdf
from .location import Location, as_location, check_output
from .palettes import DEFAULT_PALETTE, DEFAULT_STEP, Palette, check_step
from .png import array_strips as png_strips
from .pyramid import Level, level_names, no_pyramid, open_level, pyramid_levels, read_level
from .store import reading

__all__ = [
    "DEFAULT_FORMAT", "DEFAULT_OVERLAP", "DEFAULT_TILE_SIZE", "DZI_FORMATS", "DZI_NAMESPACE", "check_dzi_target",
    "dzi_level_sizes", "pixel_means", "pyramid_of", "tile_spans", "tiles_folder", "write_deep_zoom", "write_dzi",
]  # fmt: skip

#: The XML namespace of a ``.dzi`` header.
DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"
#: Tile formats by the DZI ``Format`` (the tiles' file ending) and Pillow's name.
DZI_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}
#: A tile's own pixels a side, the pixels it holds of each neighbour, its format.
DEFAULT_TILE_SIZE, DEFAULT_OVERLAP, DEFAULT_FORMAT = 256, 1, "png"


def dzi_level_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """``(width, height)`` of each DZI level, level 0 (1x1) first, the full size last.

    Parameters
    ----------
    width, height
        The full picture's size in pixels (positive).
    """
    width, height = _check_int("width", width, 1), _check_int("height", height, 1)
    top = (max(width, height) - 1).bit_length()  # ceil(log2(max side)), exactly
    return [(-(-width // (1 << (top - k))), -(-height // (1 << (top - k)))) for k in range(top + 1)]


def tile_spans(size: int, tile_size: int, overlap: int) -> list[tuple[int, int]]:
    """The pixel span ``[start, stop)`` of each tile along one side of ``size`` pixels:
    ``tile_size`` of its own plus ``overlap`` of each neighbour (none past an edge)."""
    return [(max(0, i - overlap), min(size, i + tile_size + overlap)) for i in range(0, size, tile_size)]


def tiles_folder(path: str | os.PathLike) -> Path:
    """The tile folder of the DZI header ``path``: ``NAME.dzi`` → ``NAME_files``."""
    path = Path(path)
    return path.with_name(path.stem + "_files")


def _header(width: int, height: int, tile_size: int, overlap: int, fmt: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Image xmlns={quoteattr(DZI_NAMESPACE)} TileSize={quoteattr(str(tile_size))} "
        f"Overlap={quoteattr(str(overlap))} Format={quoteattr(fmt)}>\n"
        f"  <Size Width={quoteattr(str(width))} Height={quoteattr(str(height))}/>\n"
        "</Image>\n"
    )


class _LevelWriter:
    """Takes one level's rows in order and writes its tiles as each tile row is
    complete; hands its rows, halved, to the writer of the level below when that
    level has no source of its own."""

    def __init__(self, folder: Path, level: int, size: tuple[int, int], tile_size: int, overlap: int, fmt: str,
                 below: _LevelWriter | None) -> None:  # fmt: skip
        self.folder, self.level, (self.width, self.height) = folder / str(level), level, size
        self.tile_size, self.overlap, self.fmt, self.below = tile_size, overlap, fmt, below
        self.cols = tile_spans(self.width, tile_size, overlap)
        self.rows = tile_spans(self.height, tile_size, overlap)
        self.buf: np.ndarray | None = None  # rows [self.top, self.top + len(buf)) of the level
        self.top = 0
        self.next_row = 0  # the tile row to write next
        self.odd: np.ndarray | None = None  # a row waiting for its pair, to be halved for the level below
        self.folder.mkdir(parents=True)

    @property
    def received(self) -> int:
        return self.top + (0 if self.buf is None else len(self.buf))

    def add(self, strip: np.ndarray) -> None:
        if strip.ndim != 3 or strip.shape[1:] != (self.width, 4) or strip.dtype != np.uint8:
            raise ValueError(f"levels: a strip of DZI level {self.level} must be (rows, {self.width}, 4) uint8, "
                             f"got {strip.dtype} {strip.shape}")  # fmt: skip
        if self.received + len(strip) > self.height:
            raise ValueError(f"levels: DZI level {self.level} was given more than its {self.height} rows")
        self.buf = strip if self.buf is None else np.concatenate([self.buf, strip])
        while self.next_row < len(self.rows) and self.received >= self.rows[self.next_row][1]:
            self._write_row(self.next_row)
            self.next_row += 1
            if self.next_row < len(self.rows):  # keep only the rows tiles still to come need
                drop = self.rows[self.next_row][0] - self.top
                self.buf, self.top = self.buf[drop:], self.top + drop
        if self.below is not None:
            self._halve(strip)

    def _write_row(self, r: int) -> None:
        assert self.buf is not None
        y0, y1 = self.rows[r]
        rows = self.buf[y0 - self.top : y1 - self.top]
        for c, (x0, x1) in enumerate(self.cols):
            _save_tile(rows[:, x0:x1], self.folder / f"{c}_{r}.{self.fmt}", self.fmt)

    def _halve(self, strip: np.ndarray) -> None:
        # pairs of rows → a row of the level below (the last row of an odd height alone, in finish)
        if self.odd is not None:
            strip = np.concatenate([self.odd, strip])
            self.odd = None
        if len(strip) % 2:
            strip, self.odd = strip[:-1], strip[-1:]
        if len(strip):
            self.below.add(_reduce(strip))  # type: ignore[union-attr]

    def finish(self) -> None:
        if self.received != self.height:
            raise ValueError(f"levels: DZI level {self.level} was given {self.received} rows of its {self.height}")
        if self.below is not None:
            if self.odd is not None:
                self.below.add(_reduce(self.odd))
            self.below.finish()


def _reduce(strip: np.ndarray) -> np.ndarray:
    # Pillow's 2x2 box mean; an odd last column (or a lone row) is the mean of the pixels there
    return np.asarray(Image.fromarray(strip, "RGBA").reduce(2))


def _save_tile(pixels: np.ndarray, path: Path, fmt: str) -> None:
    image = Image.fromarray(np.ascontiguousarray(pixels), "RGBA")
    if fmt == "jpg":  # no alpha in a JPEG
        image = image.convert("RGB")
    image.save(path, format=DZI_FORMATS[fmt])


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_tiling(tile_size: object, overlap: object, fmt: object) -> tuple[int, int]:
    tile_size = _check_int("tile_size", tile_size, 1)
    overlap = _check_int("overlap", overlap, 0)
    if overlap >= tile_size:
        raise ValueError(f"overlap must be below tile_size ({tile_size}), got {overlap}")
    if fmt not in DZI_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(DZI_FORMATS)}, got {fmt!r}")
    return tile_size, overlap


def check_dzi_target(
    path: str | os.PathLike, overwrite: bool = False, *, store: Location | None = None, name: str = "path"
) -> Path:
    """Refuse (``ValueError``), before any work, a DZI picture ``path`` that
    must not be written: not ending in ``.dzi``, not a regular file, inside
    ``store`` (the render it pictures), in a folder that is a file or not
    writable, or one that exists (its header or its tile folder) unless
    ``overwrite``, and then only one whose tile folder holds nothing but DZI
    levels.  ``name``: the parameter (or flag) the messages name.  Returns ``path``."""
    path = Path(path)
    if path.suffix != ".dzi":
        raise ValueError(f"{name} must end in .dzi, got {str(path)!r}")
    folder = tiles_folder(path)
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise ValueError(f"cannot write the DZI picture {path}: it exists and is not a regular file")
    check_output(path, "DZI picture", store=store)  # (the tile folder is beside it: the same checks hold)
    if not (path.exists() or folder.exists()):
        return path
    if not overwrite:
        there = path if path.exists() else folder
        raise ValueError(f"the DZI picture {path} exists ({there}); pass overwrite=True to replace it")
    if folder.exists() and (
        not folder.is_dir() or any(not (p.is_dir() and p.name.isdigit()) for p in folder.iterdir())
    ):
        raise ValueError(f"cannot replace the DZI picture {path}: {folder} holds more than DZI levels")
    return path


def _clear_target(path: Path) -> None:
    # a picture check_dzi_target let be replaced
    path.unlink(missing_ok=True)  # first: a picture being replaced never looks finished
    shutil.rmtree(tiles_folder(path), ignore_errors=True)


def write_dzi(
    path: str | os.PathLike,
    width: int,
    height: int,
    levels: Mapping[int, Iterable[np.ndarray]],
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    fmt: str = DEFAULT_FORMAT,
    overwrite: bool = False,
) -> Path:
    """Write a Deep Zoom picture: the header ``path`` (``NAME.dzi``) and its tiles in ``NAME_files``.

    Parameters
    ----------
    path
        The ``.dzi`` header to write; the tiles go to :func:`tiles_folder` of it.
    width, height
        The full picture's size in pixels.
    levels
        RGBA pixels by DZI level (see :func:`dzi_level_sizes`): each an iterable
        of ``(rows, level_width, 4)`` uint8 strips, top to bottom, that together
        hold the level's rows.  The full level must be given; a level not given
        is downscaled from the one above (Pillow's 2x2 box mean).
    tile_size
        Pixels of a tile's own in each direction.
    overlap
        Pixels a tile holds of each neighbour.
    fmt
        The tiles' format: one of :data:`DZI_FORMATS` (``jpg`` drops alpha).
    overwrite
        Replace an existing picture (its header and a tile folder holding only levels).

    Returns
    -------
    pathlib.Path
        ``path``.  The header is written last (by way of a ``.part`` file):
        until it exists, the tile folder is not a finished picture; a failed
        write removes the tiles it wrote.
    """
    path = Path(path)
    sizes = dzi_level_sizes(width, height)
    tile_size, overlap = _check_tiling(tile_size, overlap, fmt)
    if not isinstance(levels, Mapping):
        raise TypeError(f"levels must map DZI levels to strips of rows, got {type(levels).__name__}")
    top = len(sizes) - 1
    if top not in levels or any(not (isinstance(k, int) and 0 <= k <= top) for k in levels):
        raise ValueError(f"levels must give the full level {top} and only levels 0-{top}, got {sorted(levels)}")
    check_dzi_target(path, overwrite)
    folder = tiles_folder(path)
    _clear_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        for first in sorted(levels, reverse=True):  # each given level and the levels made from it
            writer = None
            for k in range(max([j for j in levels if j < first], default=-1) + 1, first + 1):
                writer = _LevelWriter(folder, k, sizes[k], tile_size, overlap, fmt, writer)
            assert writer is not None
            for strip in _strips(levels[first]):
                writer.add(strip)
            writer.finish()
        part.write_text(_header(width, height, tile_size, overlap, fmt), encoding="utf-8")
        part.replace(path)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # ours: made above (an old one was cleared first)
        raise
    finally:
        part.unlink(missing_ok=True)
    return path


def _strips(source: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    for strip in source:
        yield np.asarray(strip)


# -- the Deep Zoom picture of a pyramid store ---------------------------------------


def pixel_means(samples: np.ndarray, n: int) -> np.ndarray:
    """:func:`~dfractal_dask.colorize.box_mean` of ``(rows, cols, channels)`` uint8
    samples over ``n``x``n`` squares, where a ragged last row or column of
    squares is the mean of the samples it has (rounded half up as box_mean):
    ``ceil(rows / n) x ceil(cols / n)`` pixels (a coarse pyramid level's sides
    need not be multiples of ``n``)."""
    rows, cols, _ = samples.shape
    if n == 1:
        return samples
    if rows % n == 0 and cols % n == 0:
        return box_mean(samples, n)
    ys, xs = np.arange(0, rows, n), np.arange(0, cols, n)
    sums = np.add.reduceat(np.add.reduceat(samples.astype(np.uint32), ys, axis=0), xs, axis=1)
    counts = np.outer(np.diff(np.append(ys, rows)), np.diff(np.append(xs, cols)))[..., None].astype(np.uint32)
    return ((sums + counts // 2) // counts).astype(np.uint8)


def _level_strip(
    loc: Location, k: int, source: tuple[list[str], int, str | None], s0: int, s1: int, n: int, rule: BlockColoring
) -> np.ndarray:
    # pixels of pyramid level k's sample rows s0..s1 (on a worker, or a thread here): read, coloured, averaged;
    # source: (names, iters, store_id). read_level: the level was checked once, on the client, not by every task
    window = read_level(loc, k, source[0], (slice(s0, s1), slice(None)), source[1], source[2])
    return pixel_means(rule(window["iterations"], window["norm"], window.get("distance")), n)


def _level_pixels(loc: Location, level: Level, attrs: dict, n: int, rule: BlockColoring, rows: int) -> da.Array:
    """Pyramid ``level`` of the store with ``attrs`` coloured by ``rule`` and
    averaged over ``n``x``n`` samples, lazily: one task per ``rows`` pixel rows (a tile row)."""
    width = -(-level.width // n)
    source = (level_names(attrs), int(attrs["iters"]), attrs.get("store_id"))
    strip = dask.delayed(_level_strip, pure=True)
    shared = dask.delayed(rule, pure=True)  # one key: its tables go to the workers once, not with every task
    blocks = []
    for p0 in range(0, -(-level.height // n), rows):
        s0, s1 = p0 * n, min((p0 + rows) * n, level.height)
        task = strip(loc, level.index, source, s0, s1, n, shared)
        blocks.append(da.from_delayed(task, (-(-(s1 - s0) // n), width, 4), np.uint8))
    return da.concatenate(blocks)


def pyramid_of(store: Location) -> list[Level]:
    """The levels of ``store``'s pyramid (:func:`~dfractal_dask.pyramid.pyramid_levels`),
    or a ``ValueError`` for a store without one: no Deep Zoom picture of it."""
    levels = pyramid_levels(store)
    if not levels:
        none = "no pyramid, so no Deep Zoom picture (render it with pyramid=True)"
        raise ValueError(f"store {store} has {no_pyramid(store, none)}")
    return levels


def write_deep_zoom(
    store: str | os.PathLike | Location,
    path: str | os.PathLike,
    palette: str | Palette | list[str] = DEFAULT_PALETTE,
    step: int = DEFAULT_STEP,
    mode: str = DEFAULT_MODE,
    *,
    interior: str | tuple[int, int, int] = DEFAULT_INTERIOR,
    supersample: int | None = None,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    fmt: str = DEFAULT_FORMAT,
    overwrite: bool = False,
    client: Client | None = None,
    storage_options: Mapping | None = None,
) -> Path:
    """Write the Deep Zoom picture of a render store with a pyramid, in any colouring.

    The full DZI level is the store's own samples coloured and averaged over
    ``supersample`` x ``supersample`` (the pixels :func:`~dfractal_dask.colorize.color_picture`
    gives); the DZI level ``m`` below it is pyramid level ``m`` coloured the
    same way (its edge pixels the mean of the samples they have), while the
    pyramid's levels last; the levels below the pyramid's coarsest are
    downscaled from the one above (:func:`write_dzi`).  Nothing is gathered
    whole: a task colours a tile row, and tiles are written as rows arrive.

    Parameters
    ----------
    store
        A render store with a finished pyramid (a path, a URL, a Location).
    path
        The ``.dzi`` header to write (its tiles: :func:`tiles_folder`).
    palette, step, mode, interior, supersample
        As for :func:`~dfractal_dask.colorize.color_picture`.  In mode
        ``histogram`` the equalisation is the one of the store's own samples
        (level 0, as the plain picture's), so every tile of every level shares it.
    tile_size, overlap, fmt, overwrite
        As for :func:`write_dzi`.
    client
        Colour on this cluster's workers (default: the current dask
        scheduler: a default Client's, else dask's threads here).
    storage_options
        For a URL: fsspec options.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    ValueError
        For bad input, a store without a pyramid or an existing picture
        (before anything is written); StoreError for a store that is not one.
    """
    if client is not None and not isinstance(client, Client):
        raise TypeError(f"client must be a dask Client or None, got {client!r}")
    check_mode(mode)
    check_step(step)
    _check_tiling(tile_size, overlap, fmt)  # (before the tasks: a tile row is one task's rows)
    loc = as_location(store, storage_options, name="store")
    levels = pyramid_of(loc)
    check_dzi_target(path, overwrite, store=loc)
    base = open_level(loc, 0)
    n = int(base.attrs.get("supersample", 1)) if supersample is None else supersample
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    if levels[0].height % n or levels[0].width % n:
        raise ValueError(
            f"supersample {n} does not divide the {levels[0].width}x{levels[0].height} samples of this render"
        )
    width, height = levels[0].width // n, levels[0].height // n
    top = len(dzi_level_sizes(width, height)) - 1
    with dask.config.set(scheduler=client) if client is not None else contextlib.nullcontext():
        cdf = None
        if mode == "histogram":
            with reading(loc):  # (read_level reports a damaged chunk of the tiles' reads itself)
                cdf = count_cdf(base["iterations"], int(base.attrs["iters"]))
        sources = {}
        for level in levels[: top + 1]:
            ds = base if level.index == 0 else open_level(loc, level.index)
            rule = replace(block_coloring(ds, palette, step, mode, interior=interior, cdf=cdf), n=1)  # averaged here
            sources[top - level.index] = png_strips(_level_pixels(loc, level, base.attrs, n, rule, tile_size))
        return write_dzi(path, width, height, sources, tile_size=tile_size, overlap=overlap, fmt=fmt,
                         overwrite=overwrite)  # fmt: skip
