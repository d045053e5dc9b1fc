"""Pictures → PNG files, streamed: a lazy picture is computed a few row blocks
at a time and written as it arrives, so it is never whole in memory.

Each strip of rows is filtered and compressed on its own (:func:`encode_rows`,
a :class:`Piece`: raw deflate ended by ``Z_SYNC_FLUSH``) and the pieces are
joined into the PNG's one zlib stream by :class:`PngWriter`, so a strip can be
encoded anywhere (e.g. on the worker that computed it, see
:mod:`dfractal_dask.overlap`) and the same strips give the same file, byte for byte.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import dask
import dask.array as da
import numpy as np
import xarray as xr
from distributed import Client
from PIL import Image

from .cluster import ClusterError, stall_seconds
from .location import Location

__all__ = ["Piece", "PngWriter", "array_strips", "encode_rows", "partial_file", "save_png"]


def save_png(rgba: np.ndarray | da.Array | xr.DataArray, path: str | os.PathLike | Location) -> Path | Location:
    """Write ``(h, w, 4)`` or ``(h, w, 3)`` uint8 as a PNG (parent folders made):
    a numpy or dask array, or a DataArray over one (e.g. a
    :class:`dfractal_dask.colorize.Picture`).

    ``path`` may be a :class:`dfractal_dask.location.Location` of object
    storage: the PNG is written to a local temporary file, then uploaded.

    A dask array (e.g. in :func:`color_picture`'s lazy picture) is computed a few row
    blocks at a time, in order, on the current dask scheduler, and streamed
    into the PNG: the picture is never whole in memory, so the client's memory
    does not grow with the image.
    """
    if not isinstance(path, str | os.PathLike | Location):
        raise TypeError(f"path must be a file name, a path or a Location, got {path!r}")
    if isinstance(path, Location) and not path.is_local:
        with tempfile.TemporaryDirectory() as tmp:
            save_png(rgba, Path(tmp, "picture.png"))
            path.fs.put_file(os.path.join(tmp, "picture.png"), path.fs_path)
        return path
    path = Path(path.url if isinstance(path, Location) else path)
    if not path.name or path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder, not a PNG file name")
    if isinstance(rgba, xr.DataArray):
        rgba = rgba.data  # its numpy or dask array, as it is (a lazy one stays lazy)
    if not isinstance(rgba, da.Array):
        rgba = np.asarray(rgba)
    if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] not in (3, 4):
        raise ValueError(f"save_png needs (h, w, 3|4) uint8, got {rgba.dtype} {rgba.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if not isinstance(rgba, da.Array):
        Image.fromarray(rgba, "RGBA" if rgba.shape[2] == 4 else "RGB").save(path, format="PNG")
        return path
    lazy = rgba.rechunk({1: -1, 2: -1})
    with partial_file(path) as f:
        _write_png(f, lazy.shape[1], lazy.shape[0], lazy.shape[2], array_strips(lazy))
    return path


@contextlib.contextmanager
def partial_file(path: Path) -> Iterator[BinaryIO]:
    """``path`` written by way of ``<path>.<pid>.part``, renamed once the block
    ends without an error (removed otherwise), so no half file is left at
    ``path``.  The process id keeps two writers of one path (a client that
    lost its store's lease and the one that took it over) off each other's
    file; a name too long for it (255 bytes) is ``<path>.part``."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    if len(os.fsencode(part.name)) > 255:
        part = path.with_name(path.name + ".part")
    try:
        with part.open("wb") as f:
            yield f
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


def array_strips(arr: da.Array, window: int = 8) -> Iterator[np.ndarray]:
    """The row blocks of ``arr`` in order.

    On a distributed client the whole picture is submitted as one graph and
    each block is gathered (then released) in order, so workers never wait
    for the client; a finished block waits on its worker, not in the client.
    On another scheduler, ``window`` blocks are computed at a time.
    """
    n = arr.numblocks[0]
    client = getattr(dask.base.get_scheduler(), "__self__", None)
    if not isinstance(client, Client):
        for i in range(0, n, window):
            yield from dask.compute(*[arr.blocks[k] for k in range(i, min(i + window, n))])
        return
    # one submission: a graph per block would be built and culled n times
    futures = client.compute(list(arr.to_delayed().ravel()))
    stall = stall_seconds()
    for k, future in enumerate(futures):
        try:  # bounded: a stopped worker must not hang the picture
            yield future.result(timeout=stall)
        except TimeoutError:
            client.cancel([f for f in futures if f is not None])
            raise ClusterError(
                f"block {k} of the picture did not arrive for {stall:g} s; the store is complete: "
                "recolour it (dfractal recolor) once the cluster is well"
            ) from None
        future.release()
        futures[k] = None


def _write_png(f: BinaryIO, width: int, height: int, channels: int, strips: Iterable[np.ndarray]) -> None:
    # the strips in order, each encoded here
    png = PngWriter(f, width, height, channels)
    for k, strip in enumerate(strips):
        png.add(k, encode_rows(strip))
    png.close()


#: zlib's compression level for every PNG written here.
LEVEL = 6
#: The most compressed bytes in one IDAT chunk (a strip's piece may be cut into several).
_IDAT_BYTES = 1 << 20


@dataclass(frozen=True)
class Piece:
    """A strip of a PNG's rows, filtered and compressed on its own.

    ``data`` is raw deflate ending on a byte boundary (``Z_SYNC_FLUSH``, no
    final block), so pieces concatenated in row order are one deflate stream;
    ``adler`` and ``size`` (the Adler-32 and length of the filtered rows) give
    the zlib stream's checksum without the rows themselves (:func:`_adler32_combine`).
    """

    rows: int
    width: int
    channels: int
    data: bytes
    adler: int
    size: int


def encode_rows(strip: np.ndarray) -> Piece:
    """Filter (PNG's "Sub" on every row) and compress ``(rows, width, 3|4)`` uint8 pixels.

    Parameters
    ----------
    strip
        Consecutive rows of a picture.

    Returns
    -------
    Piece
        The rows as a piece of a PNG's zlib stream, for :meth:`PngWriter.add`.
    """
    rows, width, channels = strip.shape
    raw = np.ascontiguousarray(strip, dtype=np.uint8).reshape(rows, width * channels)
    out = np.empty((rows, raw.shape[1] + 1), np.uint8)
    out[:, 0] = 1  # Sub: each byte minus the same channel of the pixel to its left (mod 256)
    out[:, 1 : 1 + channels] = raw[:, :channels]
    np.subtract(raw[:, channels:], raw[:, :-channels], out=out[:, 1 + channels :])
    filtered = out.tobytes()
    z = zlib.compressobj(LEVEL, zlib.DEFLATED, -zlib.MAX_WBITS)  # raw deflate: the stream's header is the writer's
    data = z.compress(filtered) + z.flush(zlib.Z_SYNC_FLUSH)
    return Piece(rows, width, channels, data, zlib.adler32(filtered), len(filtered))


_BASE = 65521  # Adler-32's modulus


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    # zlib's adler32_combine (not in Python's zlib): the checksum of a + b from a's, b's and b's length
    rem = len2 % _BASE
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % _BASE
    sum1 = (sum1 + (adler2 & 0xFFFF) + _BASE - 1) % _BASE
    sum2 = (sum2 + (adler1 >> 16) + (adler2 >> 16) + _BASE - rem) % _BASE
    return sum1 | (sum2 << 16)


class PngWriter:
    """A PNG (8-bit RGB or RGBA) written to ``f`` from its :class:`Piece` s,
    given in any order: each is written as soon as every piece above it has
    been; the others wait in a temporary file (blocks arrive costliest first,
    not in row order: held in memory, up to the whole compressed picture would be).

    Parameters
    ----------
    f
        A binary file open for writing.
    width, height, channels
        The picture's size and 3 (RGB) or 4 (RGBA).
    """

    def __init__(self, f: BinaryIO, width: int, height: int, channels: int) -> None:
        self.f, self.width, self.height, self.channels = f, width, height, channels
        self.rows = 0
        self.next = 0  # the index of the piece to write next
        self.waiting: dict[int, tuple[Piece, int, int]] = {}  # a piece, its data spilled: offset, length
        self.spill: BinaryIO | None = None
        self.adler = 1  # Adler-32 of nothing
        f.write(b"\x89PNG\r\n\x1a\n")
        self._chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6 if channels == 4 else 2, 0, 0, 0))
        self.header = struct.pack(">BB", 0x78, 0x9C)  # zlib: deflate, 32 KiB window, default level; sent once

    def _chunk(self, kind: bytes, data: bytes) -> None:
        self.f.write(struct.pack(">I", len(data)) + kind + data)
        self.f.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    def add(self, index: int, piece: Piece) -> None:
        """Take piece ``index`` (0 is the top strip); write what can be written."""
        if (piece.width, piece.channels) != (self.width, self.channels):
            raise ValueError(f"a piece of {piece.width}x{piece.channels} rows in a {self.width}x{self.channels} PNG")
        if index < self.next or index in self.waiting:
            raise ValueError(f"PNG piece {index} given twice")
        if index != self.next:
            if self.spill is None:
                self.spill = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close(), or with this object
            offset = self.spill.seek(0, os.SEEK_END)
            self.spill.write(piece.data)
            self.waiting[index] = (replace(piece, data=b""), offset, len(piece.data))
            return
        self._write(piece)
        while self.next in self.waiting:
            p, offset, length = self.waiting.pop(self.next)
            self.spill.seek(offset)  # type: ignore[union-attr]
            self._write(replace(p, data=self.spill.read(length)))  # type: ignore[union-attr]

    def _write(self, p: Piece) -> None:
        # the next piece, into IDAT chunks
        self.next += 1
        self.rows += p.rows
        self.adler = _adler32_combine(self.adler, p.adler, p.size)
        data = self.header + p.data
        self.header = b""
        for i in range(0, len(data), _IDAT_BYTES):
            self._chunk(b"IDAT", data[i : i + _IDAT_BYTES])

    def close(self) -> None:
        """End the zlib stream (an empty final block, the checksum) and the PNG.

        Raises
        ------
        ValueError
            If pieces are missing (the rows written are not the picture's height).
        """
        if self.spill is not None:
            self.spill.close()
        if self.waiting or self.rows != self.height:
            waiting = f" ({len(self.waiting)} pieces wait for one above them)" if self.waiting else ""
            raise ValueError(f"PNG pieces held {self.rows} rows in order, expected {self.height}{waiting}")
        self._chunk(b"IDAT", self.header + b"\x03\x00" + struct.pack(">I", self.adler))
        self._chunk(b"IEND", b"")
