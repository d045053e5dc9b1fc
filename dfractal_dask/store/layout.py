"""Where everything of a dfractal store lives: the one module that names its keys.

A store is a Zarr v3 group.  Every key it may hold follows from its
attributes (:class:`~dfractal_dask.store.meta.StoreMeta`) alone::

    zarr.json                                the group: StoreMeta's attributes, records, metrics
    dfractal_lease/zarr.json                 the writer's lease (dfractal_dask.store.lease)
    iterations, norm[, distance]             level 0: the samples, a chunk a row block
                                             (a zoom: (frame, im, re), a chunk a frame's block)
    re, im                                   a render's coordinates
    frame, span, deep                        a zoom's coordinates
    block_done (block) | frame_done (frame)  done flags
    block_crc                                CRC-32C of each block's chunks as written
    pyramid/                                 the pyramid group (attribute dfractal_pyramid)
    pyramid/<k>/                             level k's group, k = 1 .. levels
    pyramid/<k>/iterations, norm[, distance] level k's samples, TILE x TILE chunks, a row of tiles a shard
    pyramid/<k>/tile_crc                     CRC-32C of each tile of level k as written

An array owns its metadata (``<array>/zarr.json``) and its chunks
(``<array>/c/<i>/<j>...``, and the ``.partial`` files a killed local write
leaves); nothing else under the store is its own (:func:`owns`), so
``overwrite``, ``resume`` and every repair delete only keys :func:`owns`
accepts, and a store holding anything else is refused, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Protocol


class StoreMeta(Protocol):
    """What the layout needs of a store's attributes (:class:`dfractal_dask.store.meta.StoreMeta`)."""

    @property
    def names(self) -> list[str]: ...
    @property
    def zoom(self) -> bool: ...
    @property
    def view(self) -> Any: ...


__all__ = [
    "BLOCK_CRC",
    "BLOCK_DONE",
    "FRAME_DONE",
    "LEASE_KEY",
    "METADATA",
    "PYRAMID_ATTR",
    "PYRAMID_GROUP",
    "SAMPLE_VARS",
    "TILE",
    "TILE_CRC",
    "array_path",
    "chunk_key",
    "coordinates",
    "array_dims",
    "done_flags",
    "foreign_keys",
    "level_count",
    "level_group",
    "level_shapes",
    "owns",
    "store_arrays",
    "store_groups",
    "tile_record",
]

#: The metadata document of a group or array (``<path>/zarr.json``; the root's: ``zarr.json``).
METADATA = "zarr.json"
#: The lease record's key (a Zarr-looking document, so Zarr readers skip it).
LEASE_KEY = "dfractal_lease/zarr.json"
#: The per-sample variables a store may hold (``distance`` only if rendered with it).
SAMPLE_VARS = ("iterations", "norm", "distance")
#: The checksum record of level 0's blocks, and the done flags of a render's blocks and of a zoom's frames.
BLOCK_CRC = "block_crc"
BLOCK_DONE, FRAME_DONE = "block_done", "frame_done"
#: The group of the pyramid (levels 1, 2, ...) and the attribute that describes it.
PYRAMID_GROUP = "pyramid"
PYRAMID_ATTR = "dfractal_pyramid"
#: Each pyramid level's checksum record: one CRC-32C per tile and variable.
TILE_CRC = "tile_crc"
#: Samples along each side of a pyramid level's chunks (level 0 keeps its row blocks).
TILE = 256

_RENDER_COORDS = ("re", "im")
_ZOOM_COORDS = ("frame", "span", "deep")
# a chunk's key below its array's ``c/``: its grid indices, or zarr's
# ``<chunk>.<uuid>.partial`` of a local write killed before its rename


def level_group(k: int) -> str:
    """The group of pyramid level ``k`` (``""``: level 0 is the store's root)."""
    return "" if k == 0 else f"{PYRAMID_GROUP}/{k}"


def array_path(k: int, name: str) -> str:
    """The path of the sample array ``name`` of level ``k``."""
    return name if k == 0 else f"{PYRAMID_GROUP}/{k}/{name}"


def tile_record(k: int) -> str:
    """The path of level ``k``'s checksum record (``k >= 1``)."""
    return f"{PYRAMID_GROUP}/{k}/{TILE_CRC}"


def chunk_key(path: str, index: Iterable[int]) -> str:
    """The key of the chunk (or shard) at grid ``index`` of the array at ``path``."""
    return f"{path}/c/{'/'.join(str(int(i)) for i in index)}"


def level_shapes(height: int, width: int, tile: int = TILE) -> list[tuple[int, int]]:
    """``(height, width)`` of level 0, 1, ... down to the first level whose
    both sides are at most ``tile`` (level 0 alone if it already fits)."""
    shapes = [(height, width)]
    while max(shapes[-1]) > tile:
        h, w = shapes[-1]
        shapes.append((-(-h // 2), -(-w // 2)))
    return shapes


def level_count(meta: StoreMeta) -> int:
    """How many levels a pyramid of the store with ``meta`` has above level 0."""
    return len(level_shapes(meta.view.sample_height, meta.view.sample_width)) - 1


def coordinates(meta: StoreMeta) -> tuple[str, ...]:
    """The coordinate arrays of the store with ``meta``."""
    return _ZOOM_COORDS if meta.zoom else _RENDER_COORDS


def done_flags(meta: StoreMeta) -> str:
    """The array of done flags: per frame of a zoom, else per block."""
    return FRAME_DONE if meta.zoom else BLOCK_DONE


def store_arrays(meta: StoreMeta) -> list[str]:
    """Every array the store with ``meta`` may hold: level 0's samples, its
    coordinates, done flags and record; each pyramid level's samples and record."""
    return list(array_dims(meta))


def array_dims(meta: StoreMeta) -> dict[str, int]:
    """:func:`store_arrays`, each with its number of dimensions (the indices of its chunks' keys)."""
    lead = 1 if meta.zoom else 0
    dims = {**{n: 2 + lead for n in meta.names}, **dict.fromkeys(coordinates(meta), 1), done_flags(meta): 1,
            BLOCK_CRC: 2 + lead}  # fmt: skip
    if not meta.zoom:
        for k in range(1, level_count(meta) + 1):
            dims |= {**{array_path(k, n): 2 for n in meta.names}, tile_record(k): 3}
    return dims


def store_groups(meta: StoreMeta) -> list[str]:
    """Every group the store with ``meta`` may hold: its root, the pyramid and its levels."""
    if meta.zoom:
        return [""]
    return ["", PYRAMID_GROUP, *(level_group(k) for k in range(1, level_count(meta) + 1))]


def owns(meta: StoreMeta | None, key: str) -> bool:
    """Whether ``key`` (relative to the store) is one the store with ``meta``
    writes; ``meta`` ``None`` (attributes too damaged to read): one that
    every store writes (its level 0, without distance or pyramid)."""
    return not foreign_keys(meta, [key])


def foreign_keys(meta: StoreMeta | None, keys: Iterable[str]) -> list[str]:
    """The ``keys`` (a listing of the store) that are not the store's own (see :func:`owns`)."""
    dims = array_dims(meta) if meta is not None else _LEVEL0
    groups = set(store_groups(meta)) if meta is not None else {""}
    return [k for k in keys if not _owner(dims, groups, k)]


# a store whose attributes cannot be read: only what every store has (no distance, no pyramid:
# whether they are its own cannot be told, so they are refused, never deleted)
_LEVEL0 = {**dict.fromkeys(("iterations", "norm", "block_crc"), 2), **dict.fromkeys(_RENDER_COORDS, 1),
           **dict.fromkeys(_ZOOM_COORDS, 1), BLOCK_DONE: 1, FRAME_DONE: 1}  # fmt: skip
# zarr's own temporary names: Location.write_bytes's ``.<name>.<8 characters>`` (mkstemp) and
# LocalStore's ``<chunk>.<uuid>.partial``, left by a process killed between writing and renaming
_META_PARTIAL = re.compile(r"zarr\.[0-9a-f]+\.partial")  # (zarr's, of a document: with_suffix on zarr.json)
_TEMP = re.compile(r"\.(zarr\.json|[0-9]+)\.[a-z0-9_]{8}")


def _owner(dims: dict[str, int], groups: set[str], key: str) -> bool:
    if key == LEASE_KEY:
        return True
    head, _, tail = key.rpartition("/")
    if tail == METADATA or (_TEMP.fullmatch(tail) and tail.startswith(".zarr.json")) or _META_PARTIAL.fullmatch(tail):
        return head in dims or head in groups
    path, sep, chunk = key.partition("/c/")
    if not sep or path not in dims:
        return False
    *index, last = chunk.split("/")
    if _TEMP.fullmatch(last):  # a chunk's temporary file, beside where the chunk goes
        last = last.split(".")[1]
    elif last.endswith(".partial"):
        last, _, uid = last[: -len(".partial")].partition(".")
        if not re.fullmatch(r"[0-9a-f]+", uid):
            return False
    index.append(last)
    # ASCII digits only (\d takes any script's), as many indices as the array has dimensions
    return len(index) == dims[path] and all(re.fullmatch(r"0|[1-9][0-9]*", i) for i in index)
