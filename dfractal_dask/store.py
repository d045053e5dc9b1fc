"""Zarr stores of renders: create (client), write blocks (workers), open.

Layout (Zarr v3, written through xarray so any xarray user can open it)::

    iterations (im, re)  uint16/uint32   escape iteration per sample
    norm       (im, re)  float32         |z|² at escape (|z|²/2 if bounded)
    block_done (block)   uint8           1 once a block's data is fully written
    attrs: dfractal_format, the fractal (fractal, power, julia_re, julia_im),
           iters, chunk_rows, n_blocks, the View

One Zarr chunk is one row block, so workers never write the same chunk, and a
block is marked done only after both of its chunks are written: a block killed
half-way is never taken as complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
from dask.base import tokenize
from numcodecs import Blosc
from zarr.codecs import BloscCodec

from .fractals import Fractal
from .graph import Block
from .view import View

__all__ = [
    "StoreError",
    "blocks_to_resume",
    "check_creatable",
    "check_space",
    "check_target",
    "FORMAT",
    "check_writable",
    "create_store",
    "write_block",
    "open_render",
    "reading",
    "store_info",
    "ZOOM",
    "check_zoom_target",
    "create_zoom_store",
    "write_zoom_block",
    "mark_frame_done",
    "is_zoom_store",
    "open_zoom",
    "store_view",
    "write_metrics",
    "is_render_store",
    "default_store_path",
]

FORMAT = 1

# byte shuffle + lz4: counts are small integers that vary slowly along a row,
# so their high bytes compress to almost nothing; lz4 writes the seed default's
# norms at ~850 MB/s where zstd-3 + bitshuffle managed ~120 MB/s (it was a third
# of the workers' time), for a store ~10% larger.
_COMPRESSOR = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")


class StoreError(ValueError):
    """A render store is missing, of another kind, incomplete or damaged."""


def default_store_path(outfile: str | os.PathLike) -> Path:
    """Where ``dfractal render`` keeps the counts of ``outfile``: beside it, ``.zarr``."""
    return Path(outfile).with_suffix(".zarr")


def _read_attrs(path: Path) -> dict[str, Any] | None:
    try:
        group = zarr.open_group(str(path), mode="r")
    except Exception:  # not a zarr group at all (zarr raises several kinds)
        return None
    return dict(group.attrs)


def is_render_store(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a Zarr group written by :func:`create_store`."""
    path = Path(path)
    if not path.is_dir():
        return False
    attrs = _read_attrs(path)
    return attrs is not None and "dfractal_format" in attrs


def _nearest_existing(path: Path) -> Path:
    """The closest existing ancestor of ``path`` (its folders may be made later)."""
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def check_creatable(path: str | os.PathLike, what: str = "file") -> Path:
    """Refuse (ValueError), before any work, a ``path`` that could not be written:
    its nearest existing folder is a file, or not writable."""
    path = Path(path)
    parent = _nearest_existing(path)
    if not parent.is_dir():
        raise ValueError(f"cannot write the {what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the {what} {path}: {parent} is not writable")
    return path


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Refuse an existing ``path`` unless ``overwrite``; even then refuse
    anything but a render store (never delete some other file or folder)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise StoreError(f"store {path} already exists (pass --overwrite to replace it)")
        if not is_render_store(path):
            raise StoreError(f"{path} exists and is not a dfractal render store; refusing to overwrite it")
    return path


def create_store(path: str | os.PathLike, template: xr.Dataset, n_blocks: int, *, overwrite: bool = False) -> Path:
    """Write the metadata and coordinates of ``template`` (the lazy render) to a
    new store; the data chunks are left for the workers (:func:`write_block`).

    Refuses an existing path unless ``overwrite``, and even then replaces only a
    render store, never some other file or folder.
    """
    path = check_writable(path, overwrite=overwrite)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = template.assign(block_done=("block", np.zeros(n_blocks, np.uint8)))
    ds.attrs.update(dfractal_format=FORMAT, n_blocks=n_blocks)
    chunk_rows = int(ds.attrs["chunk_rows"])
    chunks = (chunk_rows, ds.sizes["re"])
    encoding = {name: {"compressors": [_COMPRESSOR], "chunks": chunks} for name in _SAMPLE_VARS if name in ds}
    encoding["block_done"] = {"chunks": (1,)}
    ds.to_zarr(str(path), mode="w-", compute=False, consolidated=False, zarr_format=3, encoding=encoding)
    return path


# what makes two renders the same render: a store can be resumed only by its own
_IDENTITY = (
    *("fractal", "power", "julia_re", "julia_im", "distance", "iters", "chunk_rows"),
    *("xpos", "ypos", "centre_re", "centre_im", "span", "width", "height", "supersample", "perturbation"),
)
# attrs that stores made before the families, distance estimation and deep views lack
_BEFORE_FAMILIES = {**Fractal().to_attrs(), "distance": False, "perturbation": False}


def _refuse_another(path: Path, attrs: dict[str, Any], want: dict[str, Any], keys: tuple[str, ...]) -> None:
    # a StoreError naming each attribute in which the store differs from ``want``
    centre = View.from_attrs(attrs).to_attrs() if "centre_re" not in attrs else {}
    attrs = {**_BEFORE_FAMILIES, **attrs, **{k: centre[k] for k in ("centre_re", "centre_im") if k in centre}}
    differ = [f"{k} {want[k]!r} here, {attrs.get(k)!r} in the store" for k in keys if attrs.get(k) != want[k]]
    if differ:
        raise StoreError(
            f"cannot resume {path}: it was made for another render ({'; '.join(differ)}); "
            "use another --store, or --overwrite to start again"
        )


def blocks_to_resume(path: str | os.PathLike, template: xr.Dataset, n_blocks: int) -> np.ndarray:
    """The ``block_done`` flags of an interrupted render in ``path``.

    Refuses (:class:`StoreError`) a store made for another render: another view,
    size, supersampling, iteration limit or block size, naming what differs.
    A block whose flag is 0 may hold half-written data: it must be computed again.
    """
    path = Path(path)
    attrs = _check_store(path)
    if attrs.get("dfractal_kind") == ZOOM:
        raise StoreError(f"cannot resume {path}: it holds a zoom (dfractal zoom --resume), not a render")
    _refuse_another(path, attrs, {**template.attrs, "n_blocks": n_blocks}, (*_IDENTITY, "n_blocks"))
    try:
        done = np.asarray(zarr.open_group(str(path), mode="r")["block_done"][:])
    except Exception as exc:  # zarr raises many kinds on damaged stores
        raise StoreError(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
    if done.shape != (n_blocks,):
        raise StoreError(f"{path} is damaged: block_done has shape {done.shape}, expected ({n_blocks},)")
    return done.astype(bool)


#: Counts and norms compress at least this well (the seed default: 2.4x): a
#: store that would not fit on the disk even so is refused before any work.
_BEST_COMPRESSION = 4


def check_space(path: str | os.PathLike, template: xr.Dataset) -> None:
    """Refuse (:class:`StoreError`) a render whose store cannot fit on the disk of ``path``."""
    raw = sum(template[v].size * template[v].dtype.itemsize for v in ("iterations", "norm"))
    parent = _nearest_existing(Path(path))
    free = shutil.disk_usage(parent).free
    if raw / _BEST_COMPRESSION > free:
        raise StoreError(
            f"the store would need about {raw / 1e9:,.1f} GB ({raw / _BEST_COMPRESSION / 1e9:,.1f} GB even "
            f"compressed {_BEST_COMPRESSION}x) and {parent} has {free / 1e9:,.1f} GB free"
        )


def check_target(
    path: str | os.PathLike, template: xr.Dataset, n_blocks: int, *, overwrite: bool, resume: bool
) -> np.ndarray | None:
    """Check, before any work, that ``path`` can take this render.

    Returns the ``block_done`` flags when resuming an existing store (see
    :func:`blocks_to_resume`), else ``None`` (a new store will be made; an
    existing one only with ``overwrite``, see :func:`check_writable`).
    """
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    if resume and Path(path).exists():
        return blocks_to_resume(path, template, n_blocks)
    check_creatable(path, "store")
    check_writable(path, overwrite=overwrite)
    check_space(path, template)
    return None


#: The per-sample variables a store may hold (``distance`` only if rendered with it).
_SAMPLE_VARS = ("iterations", "norm", "distance")


def write_block(
    path: str | os.PathLike,
    block: Block,
    iterations: np.ndarray,
    norm: np.ndarray,
    distance: np.ndarray | None = None,
) -> int:
    """Write one block's chunks (``distance`` too for a render made with it),
    then mark it done.  Runs on a worker.

    Returns the number of bytes the block's chunks take in the store.
    """
    nbytes = _write_chunk(path, "iterations", block, iterations) + _write_chunk(path, "norm", block, norm)
    if distance is not None:
        nbytes += _write_chunk(path, "distance", block, distance)
    # Only now, with both chunks on disk, is the block complete.
    zarr.open_array(str(Path(path, "block_done")), mode="r+")[block.index] = 1
    return nbytes


_SHUFFLES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


def _chunk_codec(meta: dict[str, Any]) -> Blosc | None:
    """The Blosc codec of an array made by :func:`create_store` (one chunk per
    row block, bytes then blosc); ``None`` for any other layout."""
    codecs = meta.get("codecs", [])
    grid = meta.get("chunk_grid", {})
    keys = meta.get("chunk_key_encoding", {})
    if not (
        len(codecs) == 2
        and codecs[0] == {"name": "bytes", "configuration": {"endian": "little"}}
        and codecs[1].get("name") == "blosc"
        and grid.get("name") == "regular"
        and grid["configuration"]["chunk_shape"][-1] == meta["shape"][-1]
        and all(n == 1 for n in grid["configuration"]["chunk_shape"][:-2])  # a zoom's: one frame a chunk
        and keys == {"name": "default", "configuration": {"separator": "/"}}
    ):
        return None
    config = dict(codecs[1]["configuration"])
    config["shuffle"] = _SHUFFLES[config["shuffle"]]
    return Blosc.from_config(config)


def _write_chunk(path: str | os.PathLike, name: str, block: Block, data: np.ndarray, frame: int | None = None) -> int:
    """Encode ``data`` (the block's rows of array ``name``; of frame ``frame``
    in a zoom store) as its one Zarr chunk and put it in place atomically;
    returns the chunk's size in bytes.

    The same bytes zarr's codec pipeline writes (tested), without its per-call
    machinery: that took ~25 ms of a ~35 ms block write, a third of a worker's
    time beside the kernel.  A killed write leaves a ``.part`` file, never a
    truncated chunk.  Stores of another layout are written through zarr.
    """
    meta = json.loads(Path(path, name, "zarr.json").read_text())
    lead = () if frame is None else (frame,)
    key = [*(str(k) for k in lead), str(block.index), "0"]
    codec = _chunk_codec(meta)
    if codec is None:
        zarr.open_array(str(Path(path, name)), mode="r+")[(*lead, slice(block.row0, block.row1), slice(None))] = data
        chunk = Path(path, name, "c", *key)
        return chunk.stat().st_size if chunk.exists() else 0
    rows = meta["chunk_grid"]["configuration"]["chunk_shape"][-2]
    dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    if (
        len(meta["shape"]) != 2 + len(lead)
        or data.shape != (block.nrows, meta["shape"][-1])
        or block.row0 != block.index * rows
    ):
        raise ValueError(f"block {block.index} does not match the chunks of {name!r} in {path}")
    if block.nrows < rows:  # an edge chunk is stored whole, padded with the fill value
        full = np.full((rows, data.shape[1]), meta["fill_value"], dtype)
        full[: block.nrows] = data
        data = full
    encoded = codec.encode(np.ascontiguousarray(data, dtype))
    chunk = Path(path, name, "c", *key)
    chunk.parent.mkdir(parents=True, exist_ok=True)
    part = chunk.with_name(f"0.{os.getpid()}-{threading.get_ident()}.part")
    part.write_bytes(encoded)
    os.replace(part, chunk)
    return len(encoded)


def write_metrics(path: str | os.PathLike, metrics: dict[str, Any]) -> None:
    """Keep a render's metrics in the store's attributes (``dfractal info``)."""
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["metrics"] = json.loads(
        json.dumps(metrics, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    )


def store_info(path: str | os.PathLike) -> dict[str, Any]:
    """Attributes, block completion and size on disk of a store."""
    path = Path(path)
    attrs = _check_store(path)
    flags = "frame_done" if attrs.get("dfractal_kind") == ZOOM else "block_done"
    done = int(np.asarray(zarr.open_group(str(path), mode="r")[flags][:]).sum())
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return {"attrs": attrs, "blocks_done" if flags == "block_done" else "frames_done": done, "bytes": size}


def store_view(path: str | os.PathLike) -> tuple[View, int]:
    """The view and iteration limit a store was made for."""
    attrs = _check_store(Path(path))
    return View.from_attrs(attrs), int(attrs["iters"])


def _check_store(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise StoreError(f"no render store at {path}")
    if not path.is_dir():
        raise StoreError(f"{path} is a file, not a render store (a .zarr folder)")
    attrs = _read_attrs(path)
    if attrs is None or "dfractal_format" not in attrs:
        raise StoreError(f"{path} is not a dfractal render store")
    if attrs["dfractal_format"] != FORMAT:
        raise StoreError(f"{path} has store format {attrs['dfractal_format']}, this version reads {FORMAT}")
    return attrs


@contextlib.contextmanager
def reading(path: str | os.PathLike) -> Iterator[None]:
    """Report a store whose chunks fail to decode while read (truncated or
    garbled files) as a :class:`StoreError` naming it, not a codec's traceback."""
    try:
        yield
    except (RuntimeError, OSError, KeyError, EOFError) as exc:
        raise StoreError(f"{path} is damaged ({type(exc).__name__}: {exc}); render it again with --overwrite") from None


def open_render(path: str | os.PathLike, *, allow_incomplete: bool = False) -> xr.Dataset:
    """Open a stored render lazily (dask arrays, one chunk per block).

    Parameters
    ----------
    path
        The ``.zarr`` folder written by :func:`dfractal_dask.render`.
    allow_incomplete
        Open a store whose render has not finished (missing blocks read as 0).

    Raises
    ------
    StoreError
        If the path is missing, not a render store, or (unless
        ``allow_incomplete``) some blocks were never written.
    """
    path = Path(path)
    attrs = _check_store(path)
    if attrs.get("dfractal_kind") == ZOOM:
        raise StoreError(f"{path} holds a zoom, not a render: open it with open_zoom")
    try:
        ds = xr.open_zarr(str(path), consolidated=False)
        done = ds["block_done"].values
        for name in ("iterations", "norm", *(["distance"] if attrs.get("distance") else [])):
            if name not in ds:
                raise KeyError(f"variable {name!r} is missing")
    except Exception as exc:  # zarr/xarray raise many kinds on damaged stores
        raise StoreError(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
    missing = int(attrs["n_blocks"]) - int(done.sum())
    if missing and not allow_incomplete:
        raise StoreError(f"{path} is incomplete: {missing} of {attrs['n_blocks']} blocks were never written")
    return _fast_reads(ds, path, [v for v in _SAMPLE_VARS if v in ds], done)


def _fast_reads(ds: xr.Dataset, path: Path, names: list[str], done: np.ndarray) -> xr.Dataset:
    # variables of our own chunk layout are read by _read_chunk, not through zarr
    for name in names:
        meta = json.loads(Path(path, name, "zarr.json").read_text())
        rows = meta["chunk_grid"]["configuration"]["chunk_shape"][-2]
        if _chunk_codec(meta) is not None and ds[name].data.chunks[-2][0] == rows:
            ds[name] = ds[name].copy(data=_lazy_chunks(path, name, meta, ds[name].data.chunks, done))
    return ds


def _lazy_chunks(path: Path, name: str, meta: dict[str, Any], chunks: tuple, done: np.ndarray) -> da.Array:
    """Array ``name`` of a store made by :func:`create_store`, one task per
    chunk that reads and decodes the chunk file itself: ~3 ms a block where
    zarr's reader took ~25 ms, most of a recolouring's time."""
    # keyed by what was written (which blocks, when), so a store opened again
    # after a resume or an overwrite never shares keys with its old self
    token = tokenize(str(path), name, meta, chunks, done, os.stat(Path(path, name)).st_mtime_ns)
    return da.map_blocks(
        _read_chunk,
        str(path),
        name,
        meta,
        chunks=chunks,
        dtype=np.dtype(meta["data_type"]),
        name=f"read-{name}-{token}",
    )


def _read_chunk(path: str, name: str, meta: dict[str, Any], block_info: dict | None = None) -> np.ndarray:
    info = block_info[None]
    loc = info["array-location"]  # [(start, stop)] per axis: (frame,) rows, cols
    (r0, r1), (c0, c1) = loc[-2:]
    lead = [str(k) for k in info["chunk-location"][:-2]]  # a zoom's frame
    index = info["chunk-location"][-2]
    rows, cols = meta["chunk_grid"]["configuration"]["chunk_shape"][-2:]
    shape = tuple(b - a for a, b in loc)
    dtype = np.dtype(meta["data_type"]).newbyteorder("<")
    chunk = Path(path, name, "c", *lead, str(index), "0")
    if not chunk.exists():  # never written: the fill value, as zarr reads it
        return np.full(shape, meta["fill_value"], dtype)
    raw = _chunk_codec(meta).decode(chunk.read_bytes())
    if len(raw) != rows * cols * dtype.itemsize:
        raise RuntimeError(f"chunk {chunk} decodes to {len(raw)} bytes, expected {rows * cols * dtype.itemsize}")
    return np.frombuffer(raw, dtype).reshape(rows, cols)[: r1 - r0, c0:c1].reshape(shape)


# -- zoom stores: (frame, im, re) arrays, one chunk per frame and row block ------

#: ``dfractal_kind`` attribute of a zoom store (a render store has none).
ZOOM = "zoom"
_ZOOM_IDENTITY = (*(k for k in _IDENTITY if k not in ("span", "distance", "perturbation")), "frames", "to_span")


def create_zoom_store(path: str | os.PathLike, template: xr.Dataset, *, overwrite: bool = False) -> Path:
    """Write the metadata and coordinates of a lazy zoom
    (:func:`dfractal_dask.graph.zoom_dataset`) to a new store, with a
    ``frame_done`` flag per frame; the chunks are left for the workers
    (:func:`write_zoom_block`).  An existing path is refused unless
    ``overwrite``, and even then only a dfractal store is replaced."""
    path = check_writable(path, overwrite=overwrite)
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds = template.assign(frame_done=("frame", np.zeros(template.sizes["frame"], np.uint8)))
    ds.attrs.update(dfractal_format=FORMAT, dfractal_kind=ZOOM)
    chunks = (1, int(ds.attrs["chunk_rows"]), ds.sizes["re"])
    encoding = {name: {"compressors": [_COMPRESSOR], "chunks": chunks} for name in ("iterations", "norm")}
    encoding["frame_done"] = {"chunks": (1,)}
    ds.to_zarr(str(path), mode="w-", compute=False, consolidated=False, zarr_format=3, encoding=encoding)
    return path


def write_zoom_block(
    path: str | os.PathLike, frame: int, block: Block, iterations: np.ndarray, norm: np.ndarray
) -> int:
    """Write one block of one frame of a zoom (its chunks, as
    :func:`write_block` does for a render).  Runs on a worker; returns the
    bytes written.  The frame is marked done by :func:`mark_frame_done`
    once all its blocks are written."""
    return _write_chunk(path, "iterations", block, iterations, frame) + _write_chunk(path, "norm", block, norm, frame)


def mark_frame_done(path: str | os.PathLike, frame: int, *written: int) -> int:
    """Flag ``frame`` of a zoom store complete (after its blocks' writes,
    ``written``, whose byte counts it sums and returns)."""
    zarr.open_array(str(Path(path, "frame_done")), mode="r+")[frame] = 1
    return int(sum(written))


def check_zoom_target(
    path: str | os.PathLike, template: xr.Dataset, *, overwrite: bool, resume: bool
) -> np.ndarray | None:
    """:func:`check_target` for a zoom: the ``frame_done`` flags of the
    store to resume (refused if made for another zoom), or ``None``."""
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    path = Path(path)
    if resume and path.exists():
        attrs = _check_store(path)
        if attrs.get("dfractal_kind") != ZOOM:
            raise StoreError(f"cannot resume {path}: it holds a render, not a zoom")
        _refuse_another(path, attrs, dict(template.attrs), _ZOOM_IDENTITY)
        return _flags(path, "frame_done", template.sizes["frame"])
    check_creatable(path, "store")
    check_writable(path, overwrite=overwrite)
    check_space(path, template)
    return None


def _flags(path: Path, name: str, n: int) -> np.ndarray:
    try:
        done = np.asarray(zarr.open_group(str(path), mode="r")[name][:])
    except Exception as exc:  # zarr raises many kinds on damaged stores
        raise StoreError(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
    if done.shape != (n,):
        raise StoreError(f"{path} is damaged: {name} has shape {done.shape}, expected ({n},)")
    return done.astype(bool)


def is_zoom_store(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a zoom written by :func:`create_zoom_store`."""
    path = Path(path)
    return path.is_dir() and (_read_attrs(path) or {}).get("dfractal_kind") == ZOOM


def open_zoom(path: str | os.PathLike, *, allow_incomplete: bool = False) -> xr.Dataset:
    """Open a stored zoom lazily: ``iterations`` and ``norm`` on
    ``(frame, im, re)``, one chunk per frame and row block.

    Raises
    ------
    StoreError
        If the path is missing, not a zoom store, or (unless
        ``allow_incomplete``) some frames were never written.
    """
    path = Path(path)
    attrs = _check_store(path)
    if attrs.get("dfractal_kind") != ZOOM:
        raise StoreError(f"{path} holds a render, not a zoom: open it with open_render")
    try:
        ds = xr.open_zarr(str(path), consolidated=False)
        done = ds["frame_done"].values.astype(bool)
        for name in ("iterations", "norm"):
            if name not in ds:
                raise KeyError(f"variable {name!r} is missing")
    except Exception as exc:  # zarr/xarray raise many kinds on damaged stores
        raise StoreError(f"{path} is damaged: {type(exc).__name__}: {exc}") from None
    if not done.all() and not allow_incomplete:
        raise StoreError(f"{path} is incomplete: {int((~done).sum())} of {done.size} frames were never written")
    ds = _fast_reads(ds, path, ["iterations", "norm"], done)
    return ds.assign_coords(span=ds["span"].load(), deep=ds["deep"].load())  # small: read now
