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
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO
from xml.sax.saxutils import quoteattr

import dask
import dask.array as da
import numpy as np
from distributed import Client
from PIL import Image

from . import settings
from .checks import check_bool
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

# The names write_dzi gives, and the only ones a picture it replaces may hold: a level
# folder ``<level>``, a tile ``<col>_<row>.<fmt>`` (decimal, no leading zeros; ASCII
# digits: str.isdigit also takes "²" and "١")
_LEVEL_NAME = re.compile(r"0|[1-9][0-9]*")
_TILE_NAME = re.compile(rf"(?:0|[1-9][0-9]*)_(?:0|[1-9][0-9]*)\.(?:{'|'.join(DZI_FORMATS)})")
#: A header is a few hundred bytes: a bigger file at its name is not one (and is not read).
_HEADER_BYTES = 1 << 16
# a file created new: never one already there, never through a symbolic link at its name
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)


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


def _part(path: Path) -> Path:
    # the header as it is written, renamed to ``path`` when the tiles are all there
    return path.with_name(path.name + ".part")


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

    def __init__(self, picture: Path, level: int, size: tuple[int, int], tile_size: int, overlap: int, fmt: str,
                 below: _LevelWriter | None) -> None:  # fmt: skip
        self.picture, self.folder = picture, tiles_folder(picture) / str(level)
        self.level, (self.width, self.height) = level, size
        self.tile_size, self.overlap, self.fmt, self.below = tile_size, overlap, fmt, below
        self.cols = tile_spans(self.width, tile_size, overlap)
        self.rows = tile_spans(self.height, tile_size, overlap)
        self.buf: np.ndarray | None = None  # rows [self.top, self.top + len(buf)) of the level
        self.top = 0
        self.next_row = 0  # the tile row to write next
        self.odd: np.ndarray | None = None  # a row waiting for its pair, to be halved for the level below
        self.made = 0  # the tiles made so far, in order (row by row): the ones remove() removes
        _new_folder(picture, self.folder)

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
            self._save(rows[:, x0:x1], self.folder / f"{c}_{r}.{self.fmt}")

    def _save(self, pixels: np.ndarray, path: Path) -> None:
        image = Image.fromarray(np.ascontiguousarray(pixels), "RGBA")
        if self.fmt == "jpg":  # no alpha in a JPEG
            image = image.convert("RGB")
        with _writing(self.picture):
            _check_unlinked(self.folder, self.folder.parent)
            with _new_file(path) as file:
                self.made += 1  # ours from here, written whole or not
                image.save(file, format=DZI_FORMATS[self.fmt])

    def remove(self) -> None:
        """Remove the tiles this writer made and its folder, if nothing else is in it (a failed picture)."""
        with contextlib.suppress(OSError):
            _check_unlinked(self.folder, self.folder.parent)
            for i in range(self.made):
                r, c = divmod(i, len(self.cols))
                (self.folder / f"{c}_{r}.{self.fmt}").unlink(missing_ok=True)
            os.rmdir(self.folder)

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


@contextlib.contextmanager
def _writing(picture: Path) -> Iterator[None]:
    """An error writing the DZI picture ``picture`` (a full disk, a folder not
    writable): one line naming the picture (and the file), never the store's."""
    try:
        yield
    except OSError as exc:
        where = f"{_shown(exc.filename)}: " if exc.filename else ""
        raise OSError(f"cannot write the DZI picture {picture}: {where}{exc.strerror or exc}") from None


def _new_file(path: Path) -> BinaryIO:
    # created here (O_EXCL): not a file that appeared since the checks, not through a symbolic link
    return os.fdopen(os.open(path, _NEW_FILE, 0o666), "wb")


def _new_folder(picture: Path, folder: Path) -> None:
    # os.mkdir makes the folder itself, never one a symbolic link at its name points to
    with _writing(picture):
        if folder != tiles_folder(picture):  # a level's: in the tile folder
            _check_unlinked(folder.parent)
        os.mkdir(folder)


def _check_unlinked(*folders: Path) -> None:
    # the tile folder and a level's, looked at again as they are written into or emptied: a
    # symbolic link put there since the checks is not gone through (OSError: a write that fails)
    for p in folders:
        if os.path.islink(p):
            raise OSError(f"{p} was made a symbolic link while the picture was written")


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
    must not be written: not ending in ``.dzi``; its header or its tile folder
    a symbolic link (nothing is written through one) or not a regular file or
    folder; inside ``store`` (the render it pictures); in a folder that is a
    file or not writable; or one that exists unless ``overwrite``, and then
    only one that holds nothing but what :func:`write_dzi` writes (a DZI
    header; tiles ``<level>/<col>_<row>.<fmt>``): anything else there is named
    and never deleted.  ``name``: the parameter (or flag) the messages name.
    Returns ``path``."""
    check_bool("overwrite", overwrite)
    path = Path(path)
    if path.suffix != ".dzi":
        raise ValueError(f"{name} must end in .dzi, got {str(path)!r}")
    folder = tiles_folder(path)
    for p in (path, _part(path), folder):
        _refuse_link(path, p)
    if path.is_dir() or (path.exists() and not path.is_file()):
        raise ValueError(f"cannot write the DZI picture {path}: it exists and is not a regular file")
    check_output(path, "DZI picture", store=store)  # (the tile folder is beside it: the same checks hold)
    there = [p for p in (path, _part(path), folder) if p.exists()]
    if not there:
        return path
    for _ in _own_files(path):  # (before the advice to overwrite: it would not be taken)
        pass
    if not overwrite:
        raise ValueError(f"the DZI picture {path} exists ({there[0]}); pass overwrite=True to replace it")
    return path


def _refuse_link(picture: Path, p: Path) -> None:
    if os.path.islink(p):  # (a dangling one too: it would be written through)
        raise ValueError(
            f"cannot write the DZI picture {picture}: {_shown(p)} is a symbolic link; nothing is written through one"
        )


def _shown(p: str | os.PathLike) -> str:
    # a name found on the disk, on the message's one line (a newline in it escaped)
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(p))


def _own_files(picture: Path) -> Iterator[tuple[Path, bool]]:
    """The files of the DZI picture ``picture`` there are, as ``(path, is_folder)``
    in the order they are deleted: its header (and a ``.part`` one) first (a
    picture being replaced never looks finished), its tiles, each level folder
    after its tiles, the tile folder last.  Anything else, at any depth, is a
    ``ValueError`` naming it, when it is come to."""

    def foreign(p: Path, what: str) -> ValueError:
        return ValueError(f"cannot replace the DZI picture {picture}: {_shown(p)} {what}; refusing to delete it")

    for p in (picture, _part(picture)):
        if os.path.lexists(p):
            _refuse_link(picture, p)
            if not _is_dzi_header(p):
                raise foreign(p, "is not a DZI header")
            yield p, False
    folder = tiles_folder(picture)
    if not os.path.lexists(folder):
        return
    _refuse_link(picture, folder)
    if not folder.is_dir():
        raise foreign(folder, "is not a folder of DZI tiles")
    for level in _listing(picture, folder):
        _refuse_link(picture, level)
        if not (_LEVEL_NAME.fullmatch(level.name) and level.is_dir()):
            raise foreign(level, "is not a DZI level folder")
        for tile in _listing(picture, level):
            _refuse_link(picture, tile)
            if not (_TILE_NAME.fullmatch(tile.name) and tile.is_file()):
                raise foreign(tile, "is not a DZI tile")
            yield tile, False
        yield level, True
    yield folder, True


def _listing(picture: Path, folder: Path) -> Iterator[Path]:
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                yield Path(entry.path)
    except OSError as exc:
        raise ValueError(
            f"cannot replace the DZI picture {picture}: cannot list {_shown(folder)}: {exc.strerror}"
        ) from None


def _is_dzi_header(p: Path) -> bool:
    # a header write_dzi could have written: a small regular file, XML, its root a DZI Image
    try:
        st = os.lstat(p)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _HEADER_BYTES:
            return False
        with open(p, "rb") as file:
            root = ET.fromstring(file.read(_HEADER_BYTES + 1))
    except (OSError, ET.ParseError):
        return False
    return root.tag == f"{{{DZI_NAMESPACE}}}Image"


def _clear_target(path: Path) -> None:
    """Delete the picture ``path`` check_dzi_target let be replaced: its own files
    alone, found again as they are deleted (anything else stops it, untouched)."""
    for p, is_folder in _own_files(path):
        with _writing(path):
            (os.rmdir if is_folder else os.unlink)(p)


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
        Replace an existing picture: its header and tiles alone are deleted,
        and only when that is all there is (:func:`check_dzi_target`).

    Returns
    -------
    pathlib.Path
        ``path``.  The header is written last (by way of a ``.part`` file):
        until it exists, the tile folder is not a finished picture; a failed
        write removes the tiles it wrote.

    Raises
    ------
    ValueError
        For bad input or a target :func:`check_dzi_target` refuses, before
        anything is written or deleted.
    OSError
        For an error writing the picture (a full disk, a folder not
        writable): one line naming it.  Every file is created new, never
        through a symbolic link.
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
    _clear_target(path)  # (its own files: check_dzi_target found nothing else there)
    part, made_part = _part(path), False
    with _writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
    _new_folder(path, tiles_folder(path))
    writers: list[_LevelWriter] = []
    try:
        for first in sorted(levels, reverse=True):  # each given level and the levels made from it
            writer = None
            for k in range(max([j for j in levels if j < first], default=-1) + 1, first + 1):
                writer = _LevelWriter(path, k, sizes[k], tile_size, overlap, fmt, writer)
                writers.append(writer)
            assert writer is not None
            for strip in _strips(levels[first]):
                writer.add(strip)
            writer.finish()
        with _writing(path):
            with _new_file(part) as file:
                made_part = True
                file.write(_header(width, height, tile_size, overlap, fmt).encode())
            part.replace(path)
    except BaseException:
        for writer in writers:  # the tiles made here, by name (a file put beside them is left)
            writer.remove()
        with contextlib.suppress(OSError):
            os.rmdir(tiles_folder(path))  # (made above: not a link; left if anything else is in it)
        raise
    finally:
        if made_part:
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
        (before anything is written); StoreError for a store that is not one,
        or one damaged.
    OSError
        For an error writing the picture (:func:`write_dzi`): it names the
        picture, not the store.
    """
    settings.check()  # every dfractal.* setting, before anything is touched
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
