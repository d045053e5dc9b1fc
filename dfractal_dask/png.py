"""Pictures → PNG files, streamed: a lazy picture is computed a few row blocks
at a time and written as it arrives, so it is never whole in memory."""

from __future__ import annotations

import os
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import xarray as xr
from distributed import Client
from PIL import Image

from .cluster import ClusterError, stall_seconds
from .location import Location

__all__ = ["save_png"]


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
    if isinstance(path, Location) and not path.is_local:
        with tempfile.TemporaryDirectory() as tmp:
            save_png(rgba, Path(tmp, "picture.png"))
            path.fs.put_file(os.path.join(tmp, "picture.png"), path.fs_path)
        return path
    path = Path(path)
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
    part = path.with_name(path.name + ".part")
    try:
        with part.open("wb") as f:
            _write_png(f, lazy.shape[1], lazy.shape[0], lazy.shape[2], _strips(lazy))
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)
    return path


def _strips(arr: da.Array, window: int = 8) -> Iterator[np.ndarray]:
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


def _write_png(f, width: int, height: int, channels: int, strips: Iterable[np.ndarray]) -> None:
    # PNG by hand (it is simple) so rows can be streamed: 8-bit RGB(A), the
    # "Sub" filter on every row, one zlib stream cut into IDAT chunks.
    def chunk(kind: bytes, data: bytes) -> None:
        f.write(struct.pack(">I", len(data)) + kind + data)
        f.write(struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    f.write(b"\x89PNG\r\n\x1a\n")
    chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 6 if channels == 4 else 2, 0, 0, 0))
    z = zlib.compressobj(6)
    rows = 0
    for strip in strips:
        raw = np.ascontiguousarray(strip, dtype=np.uint8).reshape(strip.shape[0], width * channels)
        out = np.empty((raw.shape[0], raw.shape[1] + 1), np.uint8)
        out[:, 0] = 1  # Sub: each byte minus the same channel of the pixel to its left (mod 256)
        out[:, 1 : 1 + channels] = raw[:, :channels]
        np.subtract(raw[:, channels:], raw[:, :-channels], out=out[:, 1 + channels :])
        rows += raw.shape[0]
        data = z.compress(out.tobytes())
        if data:
            chunk(b"IDAT", data)
    if rows != height:
        raise ValueError(f"PNG strips held {rows} rows, expected {height}")
    chunk(b"IDAT", z.flush())
    chunk(b"IEND", b"")
