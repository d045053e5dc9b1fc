"""Tiles inside a pyramid level's shard files, for tests that garble or drop one tile
(a level's array is stored a row of tiles a shard: zarr's sharding codec, its index
at the shard's end: an (offset, nbytes) uint64 pair a tile, then its CRC-32C)."""

from __future__ import annotations

from pathlib import Path

import google_crc32c
import numpy as np

EMPTY = np.uint64(2**64 - 1)  # an index entry of a tile never written: read as fill values


def _index(shard: Path) -> tuple[bytes, np.ndarray]:
    data = shard.read_bytes()
    n = 0
    # the index's length: 16 bytes a tile + 4; find the n whose CRC matches
    for n in range(1, 4097):
        size = 16 * n + 4
        if size > len(data):
            break
        raw = data[-size:-4]
        if google_crc32c.value(raw) == int.from_bytes(data[-4:], "little"):
            return data, np.frombuffer(raw, "<u8").reshape(n, 2).copy()
    raise ValueError(f"{shard}: no shard index found")


def _write_index(shard: Path, data: bytes, index: np.ndarray) -> None:
    raw = index.astype("<u8").tobytes()
    shard.write_bytes(data[: -(len(raw) + 4)] + raw + google_crc32c.value(raw).to_bytes(4, "little"))


def shards(array: Path) -> list[Path]:
    """The shard files of a level's array folder (one a row of tiles: ``c/<row>/0``)."""
    return sorted((array / "c").glob("*/0"))


def garble_tile(array: Path, ty: int, tx: int) -> None:
    """Overwrite the bytes of tile ``(ty, tx)`` in place: reading it fails its checksum."""
    shard = array / "c" / str(ty) / "0"
    data, index = _index(shard)
    off, nb = (int(v) for v in index[tx])
    buf = bytearray(data)
    buf[off : off + nb] = (b"garbage!" * (nb // 8 + 1))[:nb]
    shard.write_bytes(bytes(buf))


def drop_tile(array: Path, ty: int, tx: int) -> None:
    """Mark tile ``(ty, tx)`` as never written (read as fill values)."""
    shard = array / "c" / str(ty) / "0"
    data, index = _index(shard)
    index[tx] = EMPTY
    _write_index(shard, data, index)


def tiles(array: Path) -> list[tuple[int, int]]:
    """``(row, column)`` of every tile written in the array's shards."""
    out = []
    for shard in shards(array):
        _, index = _index(shard)
        out += [(int(shard.parent.name), tx) for tx in range(len(index)) if index[tx, 0] != EMPTY]
    return out
