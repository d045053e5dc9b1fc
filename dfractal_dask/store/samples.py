"""Zarr stores of renders and zooms: create (client), write blocks (workers), open, verify.

Layout (Zarr v3, written through xarray and zarr's own storage and codec
pipeline, so any Zarr reader opens it, on a local disk or object storage)::

    iterations (im, re)          uint16/uint32  escape iteration per sample
    norm       (im, re)          float32        |z|² at escape (|z|²/2 if bounded)
    distance   (im, re)          float32        distance estimate (renders made with it)
    block_done (block)           uint8          1 once a block's data is fully written
    block_crc  (block, variable) uint32         CRC-32C of each variable's block as written
    attrs: dfractal_format, store_id, the fractal, iters, chunk_rows, n_blocks, the View

A zoom store has a leading ``frame`` dimension on the sample variables and on
``block_crc``, and ``frame_done (frame)`` in place of ``block_done``.

One Zarr chunk is one row block, so workers never write the same chunk; a
block is marked done only after its chunks and its record are written, so a
block killed half-way is never taken as complete.  Every chunk ends in a
CRC-32C checksum (zarr's ``crc32c`` codec, checked by any Zarr reader); the
record lets a reader tell a missing chunk (which Zarr reads as fill values)
or a chunk from elsewhere from the data that was written.  ``store_id``,
made at creation, lets every block write check that the store is still the
one its render created.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, NoReturn

import dask.array as da
import google_crc32c
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from zarr.codecs import BloscCodec, Crc32cCodec
from zarr.storage import WrapperStore

from ..checks import check_bool, check_bools
from ..fractals import Fractal
from ..location import AccessDenied, Location, LocationError, as_location, check_output, nearest_existing
from ..spec import RENDER, ZOOM, Block
from ..view import View
from .layout import (
    BLOCK_CRC,
    BLOCK_DONE,
    FRAME_DONE,
    LEASE_KEY,
    METADATA,
    PYRAMID_GROUP,
    SAMPLE_VARS,
    chunk_key,
    coordinates,
    foreign_keys,
    owns,
    store_arrays,
)
from .lease import LeaseLost, check_free, check_held
from .meta import RECORDS_ATTR, MetaError, StoreMeta, attrs_record, metrics_record

__all__ = [
    "COMPRESSORS",
    "FORMAT",
    "ZOOM",
    "StoreError",
    "block_label",
    "blocks_to_resume",
    "check_identity",
    "check_space",
    "check_kind_target",
    "check_target",
    "check_writable",
    "check_zoom_target",
    "clear_leftovers",
    "create",
    "create_store",
    "create_zoom_store",
    "crc",
    "base_damage",
    "coordinate_damage",
    "damaged_blocks",
    "foreign",
    "group_attrs",
    "links",
    "undecodable",
    "listing",
    "open_array",
    "read_block",
    "read_tolerant",
    "rewrite",
    "short",
    "store_keys",
    "store_meta",
    "writing",
    "default_store_path",
    "is_render_store",
    "is_zoom_store",
    "mark_frame_done",
    "open_render",
    "open_store",
    "open_zoom",
    "reading",
    "store_attrs",
    "store_info",
    "store_view",
    "verify",
    "write_block",
    "write_metrics",
    "write_zoom_block",
]

#: The store format this version writes; it reads these:
FORMAT = 3
_READS = (1, 2, 3)  # format 1: no checksums and no store_id (read, never verified); 2: blocks' only

# ZOOM (from .spec): the ``dfractal_kind`` attribute of a zoom store (a render store has none)

# byte shuffle + lz4: counts are small integers that vary slowly along a row,
# so their high bytes compress to almost nothing; lz4 writes the seed default's
# norms at ~850 MB/s where zstd-3 + bitshuffle managed ~120 MB/s (it was a third
# of the workers' time), for a store ~10% larger.  crc32c last: every chunk
# carries its checksum, which every Zarr v3 reader checks.
COMPRESSORS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())


class StoreError(ValueError):
    """A render store is missing, of another kind, incomplete, damaged,
    replaced meanwhile, or out of a worker's reach."""


def default_store_path(outfile: str | os.PathLike) -> str:
    """Where ``dfractal render`` keeps the counts of ``outfile``: beside it, ``.zarr``."""
    return os.path.splitext(os.fspath(outfile))[0] + ".zarr"


def group_attrs(loc: Location) -> dict[str, Any] | None:
    """The group attributes at ``loc``, read fresh (no cache), or ``None`` if
    there is no Zarr group there."""
    try:
        meta = json.loads(loc.read_bytes(METADATA))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return None
    attrs = meta.get("attributes", {})
    return attrs if isinstance(attrs, dict) else None


def _reachable(loc: Location) -> None:
    """Refuse, in one line, a location whose storage cannot be reached: a
    missing bucket, refused credentials, an endpoint that does not answer."""
    if loc.is_local:
        return
    bucket = loc.fs_path.split("/", 1)[0]
    try:
        loc.fs.info(bucket)  # exists() would say False for refused credentials too
    except PermissionError as exc:
        raise LocationError(str(loc.denied(exc))) from None
    except FileNotFoundError:
        raise LocationError(f"{loc}: there is no bucket {bucket!r}") from None
    except Exception as exc:  # botocore and aiohttp raise many kinds for an unreachable endpoint
        if "credentials" in type(exc).__name__.lower():  # e.g. botocore's NoCredentialsError
            raise LocationError(
                f"{loc}: no credentials found; set the storage's usual environment variables "
                "(e.g. AWS_ACCESS_KEY_ID) or give storage_options"
            ) from None
        raise LocationError(f"{loc}: cannot reach the storage ({loc.redact(short(exc))})") from None


def short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}" if text else type(exc).__name__


def is_render_store(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> bool:
    """True if ``path`` holds a Zarr group written by :func:`create_store` or
    :func:`create_zoom_store` (a :class:`LocationError` if its storage cannot be reached)."""
    loc = as_location(path, storage_options)
    _reachable(loc)
    attrs = group_attrs(loc)
    return attrs is not None and "dfractal_format" in attrs


def is_zoom_store(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> bool:
    """True if ``path`` holds a zoom written by :func:`create_zoom_store` (see :func:`is_render_store`)."""
    loc = as_location(path, storage_options)
    _reachable(loc)
    return (group_attrs(loc) or {}).get("dfractal_kind") == ZOOM


def listing(loc: Location) -> list[str]:
    """Every key under the store at ``loc``; on a local disk also each
    symbolic link to a folder (as ``name/``), which a store never holds."""
    if not loc.is_local:
        return loc.list_keys()
    keys = []
    for top, dirs, files in os.walk(loc.url):  # (never into a linked folder)
        rel = os.path.relpath(top, loc.url).replace(os.sep, "/")
        rel = "" if rel == "." else rel + "/"
        keys += [rel + d + "/" for d in dirs if os.path.islink(os.path.join(top, d))]
        keys += [rel + f for f in files]
    return sorted(keys)


def links(loc: Location) -> list[str]:
    """The symbolic links under a local store (none on object storage): a
    store holds none, and nothing is ever written or deleted through one."""
    if not loc.is_local:
        return []
    found = []
    for top, dirs, files in os.walk(loc.url):
        rel = os.path.relpath(top, loc.url).replace(os.sep, "/")
        rel = "" if rel == "." else rel + "/"
        found += [rel + n for n in (*dirs, *files) if os.path.islink(os.path.join(top, n))]
    return sorted(found)


def refuse_links(loc: Location, doing: str) -> None:
    """A :class:`StoreError` naming the first symbolic link in the store, if any."""
    found = links(loc)
    if found:
        more = f" and {len(found) - 1} more" if len(found) > 1 else ""
        raise StoreError(f"{loc} holds a symbolic link ({found[0]}{more}); refusing to {doing} through it")


def _meta_or_none(loc: Location) -> StoreMeta | None:
    # the store's attributes, or None when they are too damaged to say its shape
    try:
        return StoreMeta.from_attrs(group_attrs(loc) or {})
    except (MetaError, KeyError):
        return None


def foreign(loc: Location) -> list[str]:
    """What is under the store at ``loc`` that it did not write (:func:`~.layout.foreign_keys`)."""
    return foreign_keys(_meta_or_none(loc), listing(loc))


def check_writable(
    path: str | os.PathLike | Location,
    *,
    overwrite: bool,
    storage_options: Mapping | None = None,
    lease_token: str | None = None,
) -> Location:
    """Refuse an existing store unless ``overwrite``; even then refuse anything
    but a dfractal store holding only its own files (never delete some other
    file or folder), and a store another render is writing (its lease; the
    caller's own, ``lease_token``, excepted)."""
    check_bool("overwrite", overwrite)
    loc = as_location(path, storage_options)
    _reachable(loc)
    if loc.is_local and os.path.islink(loc.url):
        raise StoreError(f"{loc} is a symbolic link; refusing to write through it")
    if not loc.exists():
        return loc
    if loc.is_local and not os.path.isdir(loc.url):
        raise StoreError(f"{loc} exists and is a file, not a dfractal render store; refusing to overwrite it")
    check_free(loc, lease_token)
    if not [k for k in loc.list_keys() if k != LEASE_KEY]:  # an empty folder (or prefix) takes a store
        return loc
    if not is_render_store(loc):  # (first: overwrite would not help)
        raise StoreError(f"{loc} exists and is not a dfractal render store; refusing to overwrite it")
    if not overwrite:
        raise StoreError(f"store {loc} already exists (pass overwrite=True to replace it)")
    refuse_links(loc, "overwrite it")
    others = foreign(loc)
    if others:
        listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise StoreError(f"{loc} holds files that are not the store's own ({listed}); refusing to overwrite it")
    return loc


def _clear(loc: Location) -> None:
    """Delete every key of the store at ``loc`` but its lease (held by the
    caller): only keys it owns (:func:`~.layout.owns`); anything else stays."""
    meta = _meta_or_none(loc)
    for key in listing(loc):
        if key != LEASE_KEY and owns(meta, key):
            loc.delete(key)
    # (Location.delete removes the folders a key's deletion leaves empty, no other)


def clear_leftovers(path: str | os.PathLike | Location) -> int:
    """Delete what killed or failed writes left in a local store: zarr writes
    each chunk to ``<chunk>.<uuid>.partial`` and renames it into place, and a
    worker killed (or a disk filled) in between leaves that file.  Called when
    a render or zoom resumes a store (its lease held); returns how many."""
    loc = as_location(path)
    if not loc.is_local:
        return 0  # object storage writes each key whole
    meta = _meta_or_none(loc)
    n = 0
    for key in listing(loc):  # (a file of that name that is not the store's own stays)
        if key.endswith(".partial") and owns(meta, key):
            loc.delete(key)
            n += 1
    return n


def _create(loc: Location, keys: dict[str, bytes], *, overwrite: bool) -> Location:
    # the caller holds the lease (or is alone, e.g. a test): clear, then write the store's keys
    if loc.exists() and is_render_store(loc):
        if not overwrite:
            raise StoreError(f"store {loc} already exists (pass overwrite=True to replace it)")
        _clear(loc)
    elif loc.exists() and [k for k in loc.list_keys() if k != LEASE_KEY]:
        raise StoreError(f"{loc} exists and is not a dfractal render store; refusing to overwrite it")
    if loc.is_local:
        os.makedirs(loc.url, exist_ok=True)
    for key, data in keys.items():  # the root's metadata last: until then it is no store
        if key != METADATA:
            loc.write_bytes(key, data)
    loc.write_bytes(METADATA, keys[METADATA])
    return loc


def _sample_encoding(ds: xr.Dataset, chunks: tuple[int, ...]) -> dict:
    return {name: {"compressors": list(COMPRESSORS), "chunks": chunks} for name in SAMPLE_VARS if name in ds}


def create_store(
    path: str | os.PathLike | Location,
    template: xr.Dataset,
    n_blocks: int,
    *,
    overwrite: bool = False,
    storage_options: Mapping | None = None,
    store_id: str | None = None,
    lease_token: str | None = None,
) -> Location:
    """Write the metadata and coordinates of ``template`` (the lazy render) to a
    new store; the data chunks are left for the workers (:func:`write_block`).

    Refuses an existing path unless ``overwrite``, and even then replaces only a
    render store, never some other file or folder, nor a store whose lease
    another writer holds (``lease_token``: the caller's own
    :class:`dfractal_dask.store.lease.Lease`).  ``store_id`` (default: a new one)
    is the identity every block write checks.
    """
    return create(path, RENDER, template, n_blocks, overwrite=overwrite, storage_options=storage_options,
                  store_id=store_id, lease_token=lease_token)  # fmt: skip


def create_zoom_store(
    path: str | os.PathLike | Location,
    template: xr.Dataset,
    *,
    overwrite: bool = False,
    storage_options: Mapping | None = None,
    store_id: str | None = None,
    lease_token: str | None = None,
) -> Location:
    """Write the metadata and coordinates of a lazy zoom
    (:func:`dfractal_dask.graph.zoom_dataset`) to a new store, with a
    ``frame_done`` flag per frame; the chunks are left for the workers
    (:func:`write_zoom_block`).  An existing path is refused unless
    ``overwrite``, and even then only a dfractal store is replaced
    (``store_id``, ``lease_token``: as for :func:`create_store`)."""
    return create(path, ZOOM, template, overwrite=overwrite, storage_options=storage_options,
                  store_id=store_id, lease_token=lease_token)  # fmt: skip


def _n_blocks(template: xr.Dataset) -> int:
    # the row blocks a frame of ``template`` is cut into
    return -(-template.sizes["im"] // int(template.attrs["chunk_rows"]))


def create(
    path: str | os.PathLike | Location,
    kind: str,
    template: xr.Dataset,
    n_blocks: int | None = None,
    *,
    overwrite: bool = False,
    storage_options: Mapping | None = None,
    store_id: str | None = None,
    lease_token: str | None = None,
) -> Location:
    """:func:`create_store` (``kind`` :data:`~dfractal_dask.spec.RENDER`) or
    :func:`create_zoom_store` (:data:`~dfractal_dask.spec.ZOOM`): a render's
    done flags are per block (``n_blocks``, default: as the template's
    blocks), a zoom's per frame, and a zoom's arrays lead with ``frame``."""
    loc = check_writable(path, overwrite=overwrite, storage_options=storage_options, lease_token=lease_token)
    return _create(loc, store_keys(kind, template, n_blocks, store_id or uuid.uuid4().hex), overwrite=overwrite)


def store_keys(kind: str, template: xr.Dataset, n_blocks: int | None, store_id: str) -> dict[str, bytes]:
    """Every key a new store of ``template`` starts with, and its bytes: the
    metadata of its root and arrays and the chunks of its coordinates (made
    in memory, by xarray and zarr as any store is).  The root's attributes
    hold the records of the coordinates and of the arrays' metadata, so the
    same call, given the store's own ``store_id``, repairs any of them."""
    zoom = kind == ZOOM
    names = [v for v in SAMPLE_VARS if v in template]
    rows = int(template.attrs["chunk_rows"])
    n_blocks = _n_blocks(template) if n_blocks is None else n_blocks
    lead: tuple[str, ...] = ("frame",) if zoom else ()
    sizes: tuple[int, ...] = (template.sizes["frame"],) if zoom else ()
    dim = "frame" if zoom else "block"  # what the done flags are of
    ds = template.assign(
        {(FRAME_DONE if zoom else BLOCK_DONE): (dim, np.zeros(sizes[0] if zoom else n_blocks, np.uint8)),
         BLOCK_CRC: ((*lead, "block", "variable"), np.zeros((*sizes, n_blocks, len(names)), np.uint32),
                     {"variables": names})},
    )  # fmt: skip
    kind_attr = {"dfractal_kind": ZOOM} if zoom else {}
    ds.attrs.update(dfractal_format=FORMAT, **kind_attr, n_blocks=n_blocks, store_id=store_id)
    ones = (1,) * len(lead)
    encoding = _sample_encoding(ds, (*ones, rows, ds.sizes["re"]))
    # the records carry their own checksums (crc32c), as the samples do
    encoding[FRAME_DONE if zoom else BLOCK_DONE] = {"chunks": (1,), "compressors": [Crc32cCodec()]}
    encoding[BLOCK_CRC] = {"chunks": (*ones, 1, len(names)), "compressors": [Crc32cCodec()]}
    written: dict = {}
    ds.to_zarr(zarr.storage.MemoryStore(written), mode="w", compute=False, consolidated=False, zarr_format=3,
               encoding=encoding)  # fmt: skip
    keys = {k: v.to_bytes() for k, v in written.items()}
    meta = StoreMeta.from_attrs(dict(ds.attrs))
    root = json.loads(keys[METADATA])
    records = {
        "attrs": attrs_record(root["attributes"]),  # (as a reader will parse them)
        "coords": {c: crc(np.asarray(ds[c].values)) for c in coordinates(meta)},
        "metadata": {a: _crc_bytes(keys[f"{a}/{METADATA}"]) for a in store_arrays(meta) if f"{a}/{METADATA}" in keys},
    }
    root["attributes"][RECORDS_ATTR] = records
    keys[METADATA] = json.dumps(root, indent=2).encode()
    return keys


def _crc_bytes(data: bytes) -> int:
    return int(google_crc32c.value(data))


# -- the workers' side: write a block through zarr, after checking the store -----

# zarr arrays opened by this process, by (store url, store_id, name): opening
# one reads its metadata, a round trip on object storage, once per block
# otherwise.  Keyed by the store's identity, so a replaced store is never
# written through its predecessor's metadata.
_ARRAYS: dict[tuple, zarr.Array] = {}


def open_array(loc: Location, name: str, store_id: str | None, read_only: bool = False) -> zarr.Array:
    key = (loc.url, tokenize(loc), store_id, name, read_only)
    arr = _ARRAYS.get(key) if store_id else None
    if arr is None:
        arr = zarr.open_array(loc.zarr_store(read_only=read_only), path=name, mode="r" if read_only else "r+")
        if store_id:
            if len(_ARRAYS) > 256:
                _ARRAYS.clear()
            _ARRAYS[key] = arr
    return arr


def _where() -> str:
    try:
        from distributed import get_worker

        return f"worker {get_worker().address}"
    except (ImportError, ValueError):
        return "this process"


#: (url, store_id) of every store this process has seen as its render made it:
#: one it no longer sees has vanished, it was not out of reach all along
_SEEN: set[tuple[str, str]] = set()


def _vanished(loc: Location, why: str) -> StoreError:
    return StoreError(
        f"the store {loc} vanished while being written ({_where()}: {why}); nothing more was written into it "
        "and nothing of it was read back"
    )


def _remains(loc: Location) -> bool:
    # what is left of a store whose group document is gone (its arrays' documents)
    with contextlib.suppress(OSError):
        return any(loc.exists(f"{name}/{METADATA}") for name in (BLOCK_CRC, "iterations"))
    return False


def _alone(error: BaseException) -> NoReturn:
    # raise ``error`` with nothing chained to it: a worker's error reaches the
    # client pickled with its chain (distributed), and a storage library's or
    # zarr's error in it may not unpickle: the client would get only a text
    try:
        raise error
    except BaseException as exc:
        exc.__context__ = exc.__cause__ = None
        raise


def check_identity(loc: Location, store_id: str) -> None:
    """Refuse (:class:`StoreError`) to write into ``loc`` unless it is the store
    whose identity is ``store_id`` (a store the client made or opened for this
    render): it cannot be seen from here (a worker on another filesystem: this
    process never saw it), it vanished (deleted, its bucket too, after this
    process saw it, or leaving its arrays behind), or it was replaced since
    the render began."""
    try:
        attrs = group_attrs(loc)
    except OSError as exc:  # (e.g. AccessDenied)
        _alone(exc)
    if attrs is None:
        if (loc.url, store_id) in _SEEN or _remains(loc):
            _alone(_vanished(loc, "no Zarr group there any more"))
        _alone(StoreError(
            f"{_where()} cannot see the store {loc} (no Zarr group there): every worker must reach "
            "the location the client writes (a shared filesystem or object storage)"
        ))  # fmt: skip
    if attrs.get("store_id") != store_id:
        _alone(StoreError(
            f"{loc} was replaced while this render ran (its store_id is {attrs.get('store_id')!r}, "
            f"this render's {store_id!r}); nothing more was written into it"
        ))  # fmt: skip
    if len(_SEEN) > 1024:
        _SEEN.clear()
    _SEEN.add((loc.url, store_id))


def crc(data: np.ndarray) -> int:
    """CRC-32C of ``data``'s little-endian bytes (the block record)."""
    data = np.ascontiguousarray(data)
    return int(google_crc32c.value(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes()))


def _write_vars(
    loc: Location, block: Block, arrays: list[tuple[str, np.ndarray]], store_id: str | None, frame: int | None
) -> int:
    if store_id is not None:
        check_identity(loc, store_id)
    lead = () if frame is None else (frame,)
    crcs, nbytes = [], 0
    for name, data in arrays:
        arr = open_array(loc, name, store_id)
        rows = arr.chunks[-2]
        if data.shape != (block.nrows, arr.shape[-1]) or block.row0 != block.index * rows or arr.ndim != 2 + len(lead):
            raise ValueError(f"block {block.index} does not match the chunks of {name!r} in {loc}")
        data = np.asarray(data, arr.dtype)
        with writing(loc, f"{block_label((*lead, block.index))} of {name}"):
            rewrite(loc, arr, (*lead, slice(block.row0, block.row1), slice(None)), data,
                    [chunk_key(name, (*lead, block.index, 0))])  # fmt: skip
        crcs.append(crc(data))
        nbytes += _size(loc, chunk_key(name, (*lead, block.index, 0)))
    with writing(loc, f"the record of {block_label((*lead, block.index))}"):
        open_array(loc, BLOCK_CRC, store_id)[(*lead, block.index)] = np.array(crcs, np.uint32)
    return nbytes


def rewrite(loc: Location, arr: zarr.Array, sel: tuple, data: np.ndarray, keys: list[str]) -> None:
    """``arr[sel] = data`` into chunks ``keys``, the caller's alone.  zarr reads a
    chunk back to update part of it (a short last block, a shard wider than its
    level): one that is damaged fails to decode, and is then deleted and
    written whole (never before: a reader never sees it missing meanwhile)."""
    try:
        arr[sel] = data
    except OSError:
        raise
    except Exception:  # a damaged chunk read back (its crc32c, blosc, the shard's index)
        for key in keys:
            loc.delete(key)
        arr[sel] = data


@contextlib.contextmanager
def writing(loc: Location, what: str) -> Iterator[None]:
    """A full disk or a lost mount while a worker writes ``what``: one
    :class:`StoreError` saying where, not an errno."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, PermissionError) and not loc.is_local:
            _alone(exc if isinstance(exc, AccessDenied) else loc.denied(exc))
        with contextlib.suppress(OSError):  # (checked since: the store itself is gone, e.g. its bucket)
            if group_attrs(loc) is None:
                _alone(_vanished(loc, f"cannot write {what}: {exc.strerror or short(exc)}"))
        raise StoreError(
            f"{_where()} cannot write {what} into {loc}: {exc.strerror or short(exc)}; "
            "the blocks written so far are kept: free the space, then resume"
        ) from None


def _size(loc: Location, key: str) -> int:
    try:
        if loc.is_local:
            return os.stat(os.path.join(loc.url, key)).st_size
        return int(loc.fs.size(loc.key(key)))
    except (FileNotFoundError, OSError):
        return 0  # all fill values: zarr writes no chunk


def write_block(
    path: str | os.PathLike | Location,
    block: Block,
    iterations: np.ndarray,
    norm: np.ndarray,
    distance: np.ndarray | None = None,
    *,
    store_id: str | None = None,
    lease_token: str | None = None,
) -> int:
    """Write one block's chunks (``distance`` too for a render made with it)
    through zarr, record their checksums, then mark the block done.  Runs on a
    worker.  With ``store_id``, first checks that the store is still the one
    the render created (:func:`check_identity`) and writes nothing otherwise;
    with ``lease_token``, that the render still holds the store's lease, before
    the chunks and again before the done flag (:func:`~dfractal_dask.store.lease.check_held`).

    Returns the number of bytes the block's chunks take in the store.
    """
    return _write_block(as_location(path), None, block, iterations, norm, distance, store_id, lease_token)


def write_zoom_block(
    path: str | os.PathLike | Location,
    frame: int,
    block: Block,
    iterations: np.ndarray,
    norm: np.ndarray,
    *,
    store_id: str | None = None,
    lease_token: str | None = None,
) -> int:
    """Write one block of one frame of a zoom (its chunks and record, as
    :func:`write_block` does for a render).  Runs on a worker; returns the
    bytes written.  The frame is marked done by :func:`mark_frame_done`
    once all its blocks are written."""
    return _write_block(as_location(path), frame, block, iterations, norm, None, store_id, lease_token)


def _write_block(
    loc: Location,
    frame: int | None,
    block: Block,
    iterations: np.ndarray,
    norm: np.ndarray,
    distance: np.ndarray | None,
    store_id: str | None,
    lease_token: str | None = None,
) -> int:
    # write_block (frame None) and write_zoom_block: a render's block is done once
    # written, a zoom's frame once all its blocks are (mark_frame_done)
    arrays = [("iterations", iterations), ("norm", norm)] + ([] if distance is None else [("distance", distance)])
    if lease_token is not None:
        _check_lease(loc, lease_token, store_id)
    try:
        nbytes = _write_vars(loc, block, arrays, store_id, frame)
        if frame is None:  # only now, with the chunks and their record written, is the block complete
            if store_id is not None:  # (again: the store may have been replaced during the writes)
                check_identity(loc, store_id)
            if lease_token is not None:  # (and its lease taken by another writer)
                _check_lease(loc, lease_token, store_id)
            with writing(loc, f"the done flag of block {block.index}"):
                open_array(loc, BLOCK_DONE, store_id)[block.index] = 1
    except StoreError:
        raise
    except Exception:
        # a store swapped in between a check and a write (its arrays of another shape): say that, not zarr's error
        if store_id is not None:
            check_identity(loc, store_id)
        raise
    return nbytes


def _check_lease(loc: Location, token: str, store_id: str | None) -> None:
    # check_held; a lease gone with its store says what became of the store (replaced, vanished,
    # or never seen from this worker: check_identity's messages), not only that the lease is gone
    try:
        check_held(loc, token)
    except LeaseLost:
        if store_id is not None:
            check_identity(loc, store_id)
        raise


def mark_frame_done(
    path: str | os.PathLike | Location,
    frame: int,
    *written: int,
    store_id: str | None = None,
    lease_token: str | None = None,
) -> int:
    """Flag ``frame`` of a zoom store complete (after its blocks' writes,
    ``written``, whose byte counts it sums and returns; checked as
    :func:`write_block` checks)."""
    loc = as_location(path)
    if store_id is not None:
        check_identity(loc, store_id)
    if lease_token is not None:
        _check_lease(loc, lease_token, store_id)
    with writing(loc, f"the done flag of frame {frame}"):
        open_array(loc, FRAME_DONE, store_id)[frame] = 1
    return int(sum(written))


def write_metrics(path: str | os.PathLike | Location, metrics: dict[str, Any]) -> None:
    """Keep a render's metrics in the store's attributes (``dfractal info``), with their checksum."""
    group = zarr.open_group(as_location(path).zarr_store(), mode="r+")
    kept = json.loads(json.dumps(metrics, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
    old = group.attrs.get(RECORDS_ATTR)
    records: dict[str, Any] = dict(old) if isinstance(old, Mapping) else {}
    records["metrics"] = metrics_record(kept)
    group.attrs.update({"metrics": kept, RECORDS_ATTR: records})


# -- checking a store before work ---------------------------------------------

# what makes two renders the same render: a store can be resumed only by its own
_IDENTITY = (
    *("fractal", "power", "julia_re", "julia_im", "distance", "iters", "chunk_rows"),
    *("xpos", "ypos", "centre_re", "centre_im", "span", "width", "height", "supersample", "perturbation", "bla"),
)
_ZOOM_IDENTITY = (*(k for k in _IDENTITY if k not in ("span", "distance", "perturbation")), "frames", "to_span")
# attrs that stores made before the families, distance estimation and deep views lack
# (and "bla" a render without deep views, or one made before BLA: every step exact)
_BEFORE_FAMILIES = {**Fractal().to_attrs(), "distance": False, "perturbation": False, "bla": False}


def _refuse_another(loc: Location, attrs: dict[str, Any], want: dict[str, Any], keys: tuple[str, ...]) -> None:
    # a StoreError naming each attribute in which the store differs from ``want``
    centre = View.from_attrs(attrs).to_attrs() if "centre_re" not in attrs else {}
    attrs = {**_BEFORE_FAMILIES, **attrs, **{k: centre[k] for k in ("centre_re", "centre_im") if k in centre}}
    want = {**_BEFORE_FAMILIES, **want}
    differ = [f"{k} {want[k]!r} here, {attrs.get(k)!r} in the store" for k in keys if attrs.get(k) != want[k]]
    if differ:
        raise StoreError(
            f"cannot resume {loc}: it was made for another render ({'; '.join(differ)}); "
            "use another store_path, or overwrite=True to start again"
        )


def _check_store(loc: Location) -> dict[str, Any]:
    _reachable(loc)
    if not loc.exists():
        raise StoreError(f"no render store at {loc}")
    if loc.is_local and not os.path.isdir(loc.url):
        raise StoreError(f"{loc} is a file, not a render store (a .zarr folder)")
    attrs = group_attrs(loc)
    if attrs is None or "dfractal_format" not in attrs:
        raise StoreError(f"{loc} is not a dfractal render store")
    if attrs["dfractal_format"] not in _READS:
        raise StoreError(f"{loc} has store format {attrs['dfractal_format']!r}, this version reads {FORMAT}")
    _check_attrs(loc, attrs)
    want = StoreMeta.from_attrs(attrs).record("attrs")
    if want is not None and attrs_record(attrs) != want:
        raise StoreError(f"{loc} is damaged: its attributes are not what was written (their record in "
                         f"{RECORDS_ATTR}); render it again with overwrite=True")  # fmt: skip
    return attrs


def blocks_to_resume(
    path: str | os.PathLike | Location, template: xr.Dataset, n_blocks: int, storage_options: Mapping | None = None
) -> np.ndarray:
    """The blocks of an interrupted render in ``path`` that need no computing:
    marked done, and their chunks read back equal to their record
    (:func:`verify`; a missing, truncated or altered one is computed again).

    Refuses (:class:`StoreError`) a store made for another render: another view,
    size, supersampling, iteration limit or block size, naming what differs;
    and one another render is writing (its lease).
    """
    loc = as_location(path, storage_options)
    return _done_to_resume(loc, {**template.attrs, "n_blocks": n_blocks}, (*_IDENTITY, "n_blocks"), zoom=False)


def _done_to_resume(
    loc: Location, want: dict[str, Any], keys: tuple[str, ...], *, zoom: bool, token: str | None = None
) -> np.ndarray:
    # blocks_to_resume, for a render or (zoom=True, flags per frame) a zoom
    attrs = _check_store(loc)
    check_free(loc, token)
    if (attrs.get("dfractal_kind") == ZOOM) != zoom:
        held, other = ("a render", "a zoom") if zoom else ("a zoom (resume it as a zoom)", "a render")
        raise StoreError(f"cannot resume {loc}: it holds {held}, not {other}")
    _refuse_another(loc, attrs, want, keys)
    _refuse_unverifiable(loc, attrs)
    refuse_links(loc, "resume it")
    try:
        names, done, record = _layout(loc, attrs)  # its arrays agree with its attributes
    except StoreError:
        # an array's metadata lost or garbled: the resume rewrites it (its lease held) and asks again
        return np.zeros(attrs["frames"] if zoom else attrs["n_blocks"], bool)
    for index, _ in _damaged(loc, attrs, names, done, record):
        done[index[0]] = False
    return done


def _refuse_unverifiable(loc: Location, attrs: dict[str, Any]) -> None:
    if attrs["dfractal_format"] != FORMAT:
        raise StoreError(
            f"cannot resume {loc}: it was made by an older dfractal (format {attrs['dfractal_format']}, "
            "no checksums); overwrite=True renders it again"
        )


#: Counts and norms compress at least this well (the seed default: 2.4x): a
#: store that would not fit on the disk even so is refused before any work.
_BEST_COMPRESSION = 4


def check_space(path: str | os.PathLike | Location, template: xr.Dataset) -> None:
    """Refuse (:class:`StoreError`) a render whose store cannot fit on the
    local disk of ``path`` (object storage is not measured)."""
    loc = as_location(path)
    if not loc.is_local:
        return
    raw = sum(template[v].size * template[v].dtype.itemsize for v in ("iterations", "norm"))
    parent = nearest_existing(loc.url)
    free = shutil.disk_usage(parent).free
    if raw / _BEST_COMPRESSION > free:
        raise StoreError(
            f"the store would need about {raw / 1e9:,.1f} GB ({raw / _BEST_COMPRESSION / 1e9:,.1f} GB even "
            f"compressed {_BEST_COMPRESSION}x) and {parent} has {free / 1e9:,.1f} GB free"
        )


def check_target(
    path: str | os.PathLike | Location,
    template: xr.Dataset,
    n_blocks: int,
    *,
    overwrite: bool,
    resume: bool,
    storage_options: Mapping | None = None,
) -> np.ndarray | None:
    """Check, before any work, that ``path`` can take this render.

    Returns the flags of the blocks that need no computing when resuming an
    existing store (see :func:`blocks_to_resume`), else ``None`` (a new store
    will be made; an existing one only with ``overwrite``, see :func:`check_writable`).
    """
    return check_kind_target(path, RENDER, template, n_blocks, overwrite=overwrite, resume=resume,
                             storage_options=storage_options)  # fmt: skip


def check_zoom_target(
    path: str | os.PathLike | Location,
    template: xr.Dataset,
    *,
    overwrite: bool,
    resume: bool,
    storage_options: Mapping | None = None,
) -> np.ndarray | None:
    """:func:`check_target` for a zoom: the flags of the frames that need no
    computing in the store to resume (refused if made for another zoom), or ``None``."""
    return check_kind_target(path, ZOOM, template, overwrite=overwrite, resume=resume, storage_options=storage_options)


def check_kind_target(
    path: str | os.PathLike | Location,
    kind: str,
    template: xr.Dataset,
    n_blocks: int | None = None,
    *,
    overwrite: bool,
    resume: bool,
    storage_options: Mapping | None = None,
    lease_token: str | None = None,
) -> np.ndarray | None:
    """:func:`check_target` (``kind`` :data:`~dfractal_dask.spec.RENDER`;
    ``n_blocks``, default: as the template's blocks) or :func:`check_zoom_target`
    (:data:`~dfractal_dask.spec.ZOOM`)."""
    check_bools(overwrite=overwrite, resume=resume)
    if resume and overwrite:
        raise ValueError("resume=True and overwrite=True exclude each other")
    loc = as_location(path, storage_options)
    _reachable(loc)
    if resume and is_render_store(loc):
        if kind == ZOOM:
            return _done_to_resume(loc, dict(template.attrs), _ZOOM_IDENTITY, zoom=True, token=lease_token)
        n = _n_blocks(template) if n_blocks is None else n_blocks
        return _done_to_resume(loc, {**template.attrs, "n_blocks": n}, (*_IDENTITY, "n_blocks"), zoom=False,
                               token=lease_token)  # fmt: skip
    _check_new(loc, template, overwrite)
    return None


def _check_new(loc: Location, template: xr.Dataset, overwrite: bool) -> None:
    # check_kind_target for a store to be made (or replaced)
    if loc.is_local and not os.path.isdir(loc.url):  # (an existing store: check_writable decides)
        check_output(loc.url, "store")
    check_writable(loc, overwrite=overwrite)
    check_space(loc, template)


# -- reading and verifying ------------------------------------------------------


def _layout(loc: Location, attrs: dict[str, Any]) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """The sample variables, the done flags (per block, or per frame of a
    zoom), and the checksum record (``None`` for a format-1 store); a
    :class:`StoreError` naming the array that is missing, unreadable, or not
    of the shape the attributes say."""
    zoom = attrs.get("dfractal_kind") == ZOOM
    names = ["iterations", "norm"] + (["distance"] if attrs.get("distance") and not zoom else [])
    view = View.from_attrs(attrs)  # (checked by _check_attrs)
    shape = (view.sample_height, view.sample_width)
    blocks = -(-shape[-2] // attrs["chunk_rows"])
    flags_name = FRAME_DONE if zoom else BLOCK_DONE
    want: dict[str, tuple[int, ...]] = {name: (attrs["frames"], *shape) if zoom else shape for name in names}
    want[flags_name] = (attrs["frames"],) if zoom else (attrs["n_blocks"],)
    if attrs["dfractal_format"] >= 2:
        want[BLOCK_CRC] = (attrs["frames"], blocks, len(names)) if zoom else (blocks, len(names))
    read: dict[str, np.ndarray] = {}
    zstore = loc.zarr_store(read_only=True)
    for name, shape_wanted in want.items():
        try:
            arr = zarr.open_array(zstore, path=name, mode="r")
            if arr.shape != shape_wanted:
                raise ValueError(f"its shape is {arr.shape}, its store's attributes say {shape_wanted}")
            if name in (flags_name, BLOCK_CRC):  # small: read now
                read[name], bad = read_tolerant(arr)
                _UNDECODABLE[(loc.url, name)] = bad
        except Exception as exc:  # zarr raises many kinds on damaged stores
            raise StoreError(f"{loc} is damaged: {name}: {short(exc)}") from None
    return names, read[flags_name].astype(bool), read.get(BLOCK_CRC)


# the chunks of the flags and records that failed to decode at the last read, by (store, array)
_UNDECODABLE: dict[tuple[str, str], list[int]] = {}


def read_tolerant(arr: zarr.Array) -> tuple[np.ndarray, list[int]]:
    """A flag or record array (chunks along its first axis), each chunk that fails
    to decode read as 0 (not done, no record: what it is of is computed again on
    resume, which rewrites it), and the indices of those chunks."""
    try:
        return np.asarray(arr[:]), []
    except Exception:  # a damaged chunk (crc32c): read the others one by one
        out, bad = np.zeros(arr.shape, arr.dtype), []
        for i in range(arr.shape[0]):
            try:
                out[i] = arr[i]
            except Exception:  # zarr and its codecs raise many kinds on damaged chunks
                bad.append(i)
        return out, bad


def undecodable(loc: Location, attrs: dict[str, Any]) -> list[str]:
    """The done flags and block records of the store that failed to decode when last read, a line each."""
    flags = FRAME_DONE if attrs.get("dfractal_kind") == ZOOM else BLOCK_DONE
    unit = "frame" if flags == FRAME_DONE else "block"
    return [f"{unit} {i}: its {what} ({name}) cannot be decoded"
            for name, what in ((flags, "done flag"), (BLOCK_CRC, "record"))
            for i in _UNDECODABLE.get((loc.url, name), [])]  # fmt: skip


def block_label(index: tuple[int, ...]) -> str:
    """``block 3``, or ``frame 2 block 3`` in a zoom (an index from :func:`verify`)."""
    return f"frame {index[0]} block {index[1]}" if len(index) == 2 else f"block {index[0]}"


def _read_checked(
    loc: Location, name: str, store_id: str | None, index: tuple[int, ...], rows: tuple[int, int], expected: int | None
) -> np.ndarray:
    """Rows ``rows`` of ``name`` in chunk ``index`` (``(block,)`` or ``(frame, block)``),
    checked against the record ``expected`` (a CRC-32C), or a :class:`StoreError` naming the block."""
    what = f"{loc}: {block_label(index)} of {name}"
    try:
        selection: tuple[int | slice, ...] = (*index[:-1], slice(*rows))
        data = np.asarray(open_array(loc, name, store_id, read_only=True)[selection])  # (an ndarray already)
    except Exception as exc:  # a truncated or altered chunk: blosc or crc32c complains
        why = "fails its checksum" if "checksum" in str(exc) else f"cannot be decoded ({short(exc)})"
        raise StoreError(f"{what} is damaged: it {why}; a resume computes it again") from None
    if expected is not None and crc(data) != expected:
        missing = not loc.exists(chunk_key(name, (*index, 0)))
        why = "is missing" if missing else "does not match its record (the block or its record was altered)"
        raise StoreError(f"{what} {why}; a resume computes it again")
    return data


_RECORDED: dict[tuple, tuple[list[str], np.ndarray, np.ndarray | None]] = {}


def read_block(loc: Location, attrs: dict[str, Any], name: str, b: int) -> np.ndarray:
    """Block ``b`` of a render's sample array ``name``, checked against its
    record (a :class:`StoreError` naming it if missing, truncated or altered).
    The flags and records of a finished store are read once (by its identity)."""
    key = (loc.url, attrs.get("store_id"))
    if key not in _RECORDED:
        names, done, record = _layout(loc, attrs)
        if not done.all():
            raise StoreError(f"{loc} is incomplete: block {int(np.argmin(done))} was never written")
        _RECORDED[key] = (names, done, record)
        if len(_RECORDED) > 64:
            _RECORDED.pop(next(iter(_RECORDED)))
    names, done, record = _RECORDED[key]
    rows, height = int(attrs["chunk_rows"]), _height(attrs)
    expected = None if record is None else int(record[b, names.index(name)])
    return _read_checked(loc, name, attrs.get("store_id"), (b,), (b * rows, min((b + 1) * rows, height)), expected)


def verify(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> list[tuple[tuple, str]]:
    """Read back every chunk of every block marked done and compare it with its
    record: ``[(index, reason), ...]`` for each one missing, truncated or
    altered (``index``: ``(block,)``, or ``(frame, block)`` in a zoom).  Empty
    for a sound store (or a format-1 store, which has no record)."""
    loc = as_location(path, storage_options)
    attrs = _check_store(loc)
    return _damaged(loc, attrs, *_layout(loc, attrs))


def _damaged(
    loc: Location, attrs: dict[str, Any], names: list[str], done: np.ndarray, record: np.ndarray | None
) -> list[tuple[tuple, str]]:
    # verify() on a store already read (its attributes and _layout)
    if record is None:
        return []
    rows, height = int(attrs["chunk_rows"]), _height(attrs)
    damaged: list[tuple[tuple, str]] = []
    for index in np.ndindex(record.shape[:-1]):  # (block,) or (frame, block)
        if not done[index[0]]:
            continue
        b = index[-1]
        for k, name in enumerate(names):
            try:
                _read_checked(loc, name, attrs.get("store_id"), index, (b * rows, min((b + 1) * rows, height)),
                              int(record[(*index, k)]))  # fmt: skip
            except StoreError as exc:
                damaged.append((index, str(exc)))
                break
    return damaged


def base_damage(loc: Location, attrs: dict[str, Any]) -> tuple[tuple[int, int], list[str]]:
    """Level 0's array metadata and coordinates checked against the root's
    records: how many of each were checked, and a line for each that fails."""
    meta = StoreMeta.from_attrs(attrs)
    damaged: list[str] = []
    n_meta = n_coords = 0
    recorded = meta.format >= FORMAT  # (older formats kept no such records)
    for array in store_arrays(meta):
        want = meta.record("metadata", array)
        if array.startswith(f"{PYRAMID_GROUP}/") or not recorded:
            continue
        n_meta += 1
        if want is None:
            damaged.append(f"{array}/{METADATA} has no record in {RECORDS_ATTR}")
            continue
        try:
            data = loc.read_bytes(f"{array}/{METADATA}")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            damaged.append(f"{array}/{METADATA} is missing")
            continue
        if _crc_bytes(data) != want:
            damaged.append(f"{array}/{METADATA} is not what was written (checksum)")
    for name in coordinates(meta):
        want = meta.record("coords", name)
        if recorded and want is None:
            damaged.append(f"coordinate {name} has no record in {RECORDS_ATTR}")
        elif want is not None:
            n_coords += 1
            why = coordinate_damage(loc, name, want)
            if why:
                damaged.append(f"coordinate {name} {why}")
    return (n_meta, n_coords), damaged


def coordinate_damage(loc: Location, name: str, want: int) -> str:
    """Why the coordinate array ``name`` fails its record ``want``, or ``""``."""
    try:
        values = np.asarray(open_array(loc, name, None, read_only=True)[:])
    except Exception as exc:  # zarr and its codecs raise many kinds on damaged chunks
        return f"cannot be read ({short(exc)})"
    return "" if crc(values) == want else "is not what was written (checksum)"


def damaged_blocks(loc: Location, attrs: dict[str, Any]) -> tuple[int, list[tuple[tuple, str]], list[int]]:
    """How many blocks (frames' blocks in a zoom) are marked done, those of
    them that fail their record, and the blocks (frames) not marked done."""
    names, done, record = _layout(loc, attrs)
    lost = undecodable(loc, attrs)
    n = int(done.sum()) * (record.shape[-2] if record is not None and record.ndim == 3 else 1)
    damaged = [((int(w.split()[1].rstrip(":")),), w.split(": ", 1)[1]) for w in lost] + _damaged(
        loc, attrs, names, done, record
    )
    unwritten = [int(i) for i in np.flatnonzero(~done) if not any(d[0] == (int(i),) for d in damaged)]
    return n, damaged, unwritten


def _height(attrs: dict[str, Any]) -> int:
    return int(attrs["height"]) * int(attrs["supersample"])


def store_info(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> dict[str, Any]:
    """Attributes, completion, damage (:func:`verify`) and size of a store."""
    loc = as_location(path, storage_options)
    attrs = _check_store(loc)
    names, done, record = _layout(loc, attrs)
    key = "frames_done" if attrs.get("dfractal_kind") == ZOOM else "blocks_done"
    return {"attrs": attrs, key: int(done.sum()), "bytes": loc.size(),
            "damaged": _damaged(loc, attrs, names, done, record), "verified": record is not None}  # fmt: skip


def _check_attrs(loc: Location, attrs: dict[str, Any]) -> None:
    """The one check of a store's attributes that every reader shares
    (:meth:`StoreMeta.from_attrs`), or a :class:`StoreError` naming the first wrong one."""
    try:
        StoreMeta.from_attrs(attrs)
    except MetaError as exc:
        raise StoreError(f"{loc} is damaged: its attribute {exc}; render it again with overwrite=True") from None


def store_attrs(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> dict[str, Any]:
    """The attributes of the store at ``path`` (a :class:`StoreError` if it is none)."""
    return _check_store(as_location(path, storage_options))


def store_meta(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> StoreMeta:
    """The attributes of the store at ``path``, checked and parsed once (a :class:`StoreError` if it is none)."""
    return StoreMeta.from_attrs(_check_store(as_location(path, storage_options)))


def store_view(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> tuple[View, int]:
    """The view and iteration limit a store was made for."""
    attrs = _check_store(as_location(path, storage_options))
    return View.from_attrs(attrs), int(attrs["iters"])


@contextlib.contextmanager
def reading(path: str | os.PathLike | Location) -> Iterator[None]:
    """Report a store whose chunks cannot be read (truncated or garbled
    files, a lost mount) as a :class:`StoreError` naming it, not a codec's
    traceback.  The checked reads name a damaged piece themselves; this says
    only that reading failed and why, never that the store is damaged."""
    try:
        yield
    except StoreError:
        raise
    except (RuntimeError, OSError, KeyError, EOFError, ValueError) as exc:  # ValueError: e.g. a crc32c mismatch
        raise StoreError(f"cannot read {path} ({type(exc).__name__}: {exc}); `dfractal info` verifies it") from None


class _OwnMembers(WrapperStore):
    """A store as its samples are opened: its root lists only its own level-0
    arrays.  To list a group's members zarr decodes every member's metadata,
    so a damaged ``pyramid/zarr.json``, or a folder of someone else's with a
    ``zarr.json`` of its own, made the samples unreadable too; xarray uses none of it."""

    own: frozenset[str] = frozenset()

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        async for key in self._store.list_dir(prefix):
            if prefix.strip("/") != "" or key.strip("/") in self.own or key == METADATA:
                yield key


def _open(loc: Location, attrs: dict[str, Any], names: list[str], done: np.ndarray, record) -> xr.Dataset:
    try:
        members = _OwnMembers(loc.zarr_store(read_only=True))
        members.own = frozenset(a for a in store_arrays(StoreMeta.from_attrs(attrs)) if "/" not in a)
        ds = xr.open_zarr(members, consolidated=False)
    except Exception as exc:  # zarr/xarray raise many kinds on damaged stores
        raise StoreError(f"{loc} is damaged: {short(exc)}") from None
    for k, name in enumerate(names):
        ds[name] = ds[name].copy(data=_lazy_blocks(loc, name, attrs, ds[name].data.chunks, done, record, k))
    ds.attrs.pop(RECORDS_ATTR, None)  # (the store's bookkeeping, as block_crc: not the render's)
    return ds.drop_vars([BLOCK_CRC], errors="ignore")


def _lazy_blocks(loc, name, attrs, chunks, done, record, k) -> da.Array:
    """Array ``name``, one task per block that reads it through zarr and checks
    it against the block's record (so a missing, truncated or altered chunk of
    a done block is an error naming it, never fill values)."""
    # keyed by what was written (which blocks, their records), so a store
    # opened again after a resume or an overwrite never shares keys with its old self
    token = tokenize(loc, name, attrs.get("store_id"), chunks, done, record)
    return da.map_blocks(
        _read_block,
        loc,
        name,
        attrs.get("store_id"),
        done,
        None if record is None else record[..., k],
        chunks=chunks,
        dtype=open_array(loc, name, attrs.get("store_id"), read_only=True).dtype,
        name=f"read-{name}-{token}",
    )


def _read_block(loc, name, store_id, done, record, block_info=None) -> np.ndarray:
    info = block_info[None]
    loc_rows = info["array-location"]  # [(start, stop)] per axis: (frame,) rows, cols
    index = tuple(info["chunk-location"][:-1])  # (frame,) block
    data = _read_checked(
        loc, name, store_id, index, loc_rows[-2],
        int(record[index]) if record is not None and done[index[0]] else None,
    )  # fmt: skip
    return data.reshape(tuple(b - a for a, b in loc_rows))


def open_render(
    path: str | os.PathLike | Location, *, allow_incomplete: bool = False, storage_options: Mapping | None = None
) -> xr.Dataset:
    """Open a stored render lazily (dask arrays, one chunk per block).

    Parameters
    ----------
    path
        The store written by :func:`dfractal_dask.render`: a local path or a
        URL fsspec opens (``s3://bucket/m.zarr``).
    allow_incomplete
        Open a store whose render has not finished (blocks not marked done
        read as 0).
    storage_options
        For a URL: fsspec options (credentials, ``endpoint_url``, ...).

    Raises
    ------
    StoreError
        If the path is missing, not a render store, or (unless
        ``allow_incomplete``) some blocks were never written; when read, a
        chunk of a done block that is missing, truncated or altered, naming
        the block.
    """
    return open_store(path, RENDER, allow_incomplete=allow_incomplete, storage_options=storage_options)


def open_zoom(
    path: str | os.PathLike | Location, *, allow_incomplete: bool = False, storage_options: Mapping | None = None
) -> xr.Dataset:
    """Open a stored zoom lazily: ``iterations`` and ``norm`` on
    ``(frame, im, re)``, one chunk per frame and row block.

    Raises
    ------
    StoreError
        If the path is missing, not a zoom store, or (unless
        ``allow_incomplete``) some frames were never written; when read, a
        damaged chunk of a done frame, naming it.
    """
    return open_store(path, ZOOM, allow_incomplete=allow_incomplete, storage_options=storage_options)


def open_store(
    path: str | os.PathLike | Location,
    kind: str,
    *,
    allow_incomplete: bool = False,
    storage_options: Mapping | None = None,
) -> xr.Dataset:
    """:func:`open_render` (``kind`` :data:`~dfractal_dask.spec.RENDER`) or
    :func:`open_zoom` (:data:`~dfractal_dask.spec.ZOOM`): a store of the other
    kind is refused, naming the function that opens it."""
    check_bool("allow_incomplete", allow_incomplete)
    loc = as_location(path, storage_options, name="path")
    attrs = _check_store(loc)
    zoom = kind == ZOOM
    if (attrs.get("dfractal_kind") == ZOOM) != zoom:
        held, other, opener = ("a render", "a zoom", "open_render") if zoom else ("a zoom", "a render", "open_zoom")
        raise StoreError(f"{loc} holds {held}, not {other}: open it with {opener}")
    damage = base_damage(loc, attrs)[1]
    if damage:  # (what the samples are read through, and their coordinates, each against its record)
        command = "zoom" if zoom else "render"
        raise StoreError(f"{loc} is damaged: {damage[0]}; `dfractal {command} --resume` repairs it")
    names, done, record = _layout(loc, attrs)
    lost = undecodable(loc, attrs)
    if lost and not allow_incomplete:  # (incomplete allowed: such a block is one not written, as a resume sees it)
        command = "zoom" if zoom else "render"
        raise StoreError(f"{loc} is damaged: {lost[0]}; `dfractal {command} --resume` repairs it")
    missing, unit = int((~done).sum()), "frames" if zoom else "blocks"
    if missing and not allow_incomplete:
        raise StoreError(f"{loc} is incomplete: {missing} of {done.size} {unit} were never written")
    ds = _open(loc, attrs, names, done, record)
    if zoom:
        ds = ds.assign_coords(span=ds["span"].load(), deep=ds["deep"].load())  # small: read now
    return ds
