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

import math
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
from PIL import Image

__all__ = ["DZI_FORMATS", "DZI_NAMESPACE", "dzi_level_sizes", "tile_spans", "tiles_folder", "write_dzi"]

#: The XML namespace of a ``.dzi`` header.
DZI_NAMESPACE = "http://schemas.microsoft.com/deepzoom/2008"
#: Tile formats by the DZI ``Format`` (the tiles' file ending) and Pillow's name.
DZI_FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def dzi_level_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """``(width, height)`` of each DZI level, level 0 (1x1) first, the full size last.

    Parameters
    ----------
    width, height
        The full picture's size in pixels (positive).
    """
    for name, value in (("width", width), ("height", height)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    top = math.ceil(math.log2(max(width, height))) if max(width, height) > 1 else 0
    while (1 << top) < max(width, height):  # float log2 of a huge size rounded down
        top += 1
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


def _clear_target(path: Path, folder: Path, overwrite: bool) -> None:
    # refuse an existing picture unless overwrite; with it, remove only what a DZI picture holds
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise ValueError(f"cannot write the DZI picture {path}: it exists and is not a regular file")
    if not (path.exists() or folder.exists()):
        return
    if not overwrite:
        there = path if path.exists() else folder
        raise ValueError(f"the DZI picture {path} exists ({there}); pass overwrite=True to replace it")
    if folder.exists() and (
        not folder.is_dir() or any(not (p.is_dir() and p.name.isdigit()) for p in folder.iterdir())
    ):
        raise ValueError(f"cannot replace the DZI picture {path}: {folder} holds more than DZI levels")
    path.unlink(missing_ok=True)  # first: a picture being replaced never looks finished
    if folder.exists():
        shutil.rmtree(folder)


def write_dzi(
    path: str | os.PathLike,
    width: int,
    height: int,
    levels: Mapping[int, Iterable[np.ndarray]],
    *,
    tile_size: int = 256,
    overlap: int = 1,
    fmt: str = "png",
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
    if path.suffix != ".dzi":
        raise ValueError(f"path must end in .dzi, got {str(path)!r}")
    sizes = dzi_level_sizes(width, height)
    tile_size = _check_int("tile_size", tile_size, 1)
    overlap = _check_int("overlap", overlap, 0)
    if overlap >= tile_size:
        raise ValueError(f"overlap must be below tile_size ({tile_size}), got {overlap}")
    if fmt not in DZI_FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(DZI_FORMATS)}, got {fmt!r}")
    if not isinstance(levels, Mapping):
        raise TypeError(f"levels must map DZI levels to strips of rows, got {type(levels).__name__}")
    top = len(sizes) - 1
    if top not in levels or any(not (isinstance(k, int) and 0 <= k <= top) for k in levels):
        raise ValueError(f"levels must give the full level {top} and only levels 0-{top}, got {sorted(levels)}")
    folder = tiles_folder(path)
    _clear_target(path, folder, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    try:
        for first in sorted(levels, reverse=True):  # each given level and the levels made from it
            writer = None
            for k in range(min([j for j in levels if j < first], default=-1) + 1, first + 1):
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
