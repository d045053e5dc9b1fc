"""The whole store checked against its records, and repaired from what is intact.

:func:`verify_store` reads every piece a store holds and compares it with
the checksum written with it: each level-0 block (``block_crc``), the
coordinates and every array's metadata (the root's ``dfractal_records``), the
metrics, and every tile of every pyramid level (``tile_crc``).
:func:`repair_base` rewrites level 0's metadata and coordinates from the
render itself (:func:`~dfractal_dask.store.samples.store_keys`); blocks and
tiles are computed again by the render's resume and the pyramid's build.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import xarray as xr
import zarr

from ..location import Location, as_location
from ..spec import RENDER, ZOOM
from .layout import METADATA, PYRAMID_GROUP, TILE, coordinates, level_shapes, owns, store_arrays
from .levels import check_metadata, group_damage, pyramid_attrs, verify_levels
from .meta import RECORDS_ATTR, StoreMeta, metrics_record
from .samples import (
    FORMAT,
    StoreError,
    base_damage,
    block_label,
    coordinate_damage,
    damaged_blocks,
    store_attrs,
    store_keys,
)

__all__ = ["Verified", "has_pyramid", "repair_base", "verify_store"]


@dataclass
class Verified:
    """What :func:`verify_store` read: how many of each piece, and a line for each damaged one."""

    blocks: int = 0
    coordinates: int = 0
    metadata: int = 0
    levels: int = 0
    tiles: int = 0
    metrics: bool = False
    damaged: list[str] = field(default_factory=list)
    unwritten: list[str] = field(default_factory=list)  # blocks (frames) not marked done: resume computes them

    def summary(self) -> str:
        """One line: what was verified."""
        parts = [f"{self.blocks} blocks", f"{self.coordinates} coordinates", f"{self.metadata} arrays' metadata"]
        if self.levels:
            parts.append(f"{self.levels} pyramid levels ({self.tiles} tiles)")
        if self.metrics:
            parts.append("the metrics")
        return ", ".join(parts)


def has_pyramid(loc: Location, meta: StoreMeta | None = None) -> bool:
    """Whether the render store at ``loc`` holds a pyramid of its own (finished or not, sound or not)."""
    meta = StoreMeta.from_attrs(store_attrs(loc)) if meta is None else meta
    pyr = (pyramid_attrs(loc) or {}).get("dfractal_pyramid")
    begun = loc.exists(PYRAMID_GROUP)  # (any of it: its documents may be the damaged part)
    return not meta.zoom and begun and not (isinstance(pyr, dict) and pyr.get("store_id") != meta.store_id)


def verify_store(path: str | os.PathLike | Location, storage_options: Mapping | None = None) -> Verified:
    """Read back every piece of a store and compare it with its record.

    Returns
    -------
    Verified
        Counts of what was read, and a line naming each damaged piece
        (block, coordinate, array's metadata, metrics, pyramid tile).

    Raises
    ------
    StoreError
        If ``path`` is no dfractal store (or its attributes are damaged).
    """
    loc = as_location(path, storage_options, name="path")
    attrs = store_attrs(loc)
    meta = StoreMeta.from_attrs(attrs)
    out = Verified()
    (out.metadata, out.coordinates), out.damaged = base_damage(loc, attrs)
    try:  # (the blocks' flags and records are read through their arrays' metadata)
        blocks, damaged, unwritten = damaged_blocks(loc, attrs)
    except StoreError as exc:
        out.damaged.append(f"the blocks cannot be read ({str(exc).split(' is damaged: ')[-1]})")
    else:
        out.blocks = blocks
        out.unwritten = [f"{'frame' if meta.zoom else 'block'} {i}" for i in unwritten]
        out.damaged += [f"{block_label(index)}: {why}" for index, why in damaged]
    if "metrics" in attrs:
        want = meta.record("metrics")
        if want is not None:
            out.metrics = True
            if metrics_record(attrs["metrics"]) != want:
                out.damaged.append("the metrics are not what was written (checksum)")
    if has_pyramid(loc, meta):
        # (a level's documents carry level 0's attributes: while those are damaged, only level 0 is named)
        base_meta = any(d.startswith(tuple(f"{n}/" for n in meta.names)) for d in out.damaged)
        bad = [group_damage(loc, attrs)] if group_damage(loc, attrs) else []
        if not base_meta and meta.format >= FORMAT:
            try:
                bad += check_metadata(loc, attrs)
            except StoreError as exc:
                bad.append(str(exc).removeprefix(f"{loc} "))
        out.damaged += [f"pyramid: {b}" for b in bad]
        if meta.format >= FORMAT:  # (an older pyramid has no record of its tiles: unverified)
            shapes = level_shapes(meta.view.sample_height, meta.view.sample_width)
            out.levels = len(shapes) - 1
            out.tiles = sum(-(-h // TILE) * -(-w // TILE) for h, w in shapes[1:])
            out.damaged += [why for _k, _band, why in verify_levels(loc, attrs)]
    return out


def repair_base(loc: Location, template: xr.Dataset, n_blocks: int | None = None) -> list[str]:
    """Rewrite level 0's array metadata, coordinates and records where they
    are missing or differ from the render's own (``template``, made again in
    memory: :func:`~dfractal_dask.store.samples.store_keys`), the caller
    holding the store's lease; the blocks are the render's to compute.  A
    record that is wrong while its piece is sound is written again too.
    Returns what was rewritten, a line each."""
    attrs = store_attrs(loc)
    meta = StoreMeta.from_attrs(attrs)
    if meta.store_id is None or meta.format != FORMAT:
        return []  # an older store: nothing to repair from (and it is not resumed)
    keys = store_keys(ZOOM if meta.zoom else RENDER, template, n_blocks, meta.store_id)
    truth = json.loads(keys[METADATA])["attributes"][RECORDS_ATTR]
    fixed = []
    for array in store_arrays(meta):
        key = f"{array}/{METADATA}"
        if key not in keys:  # (the pyramid's: its build repairs them)
            continue
        try:
            same = loc.read_bytes(key) == keys[key]
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            same = False
        if not same:
            loc.write_bytes(key, keys[key])
            fixed.append(key)
    for name in coordinates(meta):
        if coordinate_damage(loc, name, truth["coords"][name]):
            for key in loc.child(name).list_keys():  # its chunks that do not belong there (e.g. of an all-fill array)
                full = f"{name}/{key}"
                if key.startswith("c/") and full not in keys and owns(meta, full):
                    loc.delete(full)
            for key, data in keys.items():
                if key.startswith(f"{name}/c/"):
                    loc.write_bytes(key, data)
            fixed.append(f"coordinate {name}")
    records = dict(meta.records)
    if meta.record("metrics") is not None and metrics_record(attrs.get("metrics")) != meta.record("metrics"):
        records.pop("metrics")  # damaged metrics are no good piece: dropped (a render's command line writes them again)
        fixed.append("the metrics (dropped)")
    if {k: records.get(k) for k in truth} != truth or ("metrics" not in records and "metrics" in meta.records):
        group = zarr.open_group(loc.zarr_store(), mode="r+")
        if "metrics" not in records:
            group.attrs.pop("metrics", None)
        group.attrs.update({RECORDS_ATTR: {**records, **truth}})
        fixed.append("the records")
    return fixed
