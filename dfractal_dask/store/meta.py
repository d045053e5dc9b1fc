"""A store's attributes, parsed and checked once into one typed value."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import google_crc32c

from ..fractals import Fractal
from ..spec import ZOOM, check_iters
from ..view import View
from .layout import SAMPLE_VARS

__all__ = ["RECORDS_ATTR", "MetaError", "StoreMeta", "attrs_record", "metrics_record"]

#: The root attribute holding the checksums of what is not a block or a tile:
#: ``{"coords": {name: crc}, "metadata": {array path: crc}, "metrics": crc}``.
RECORDS_ATTR = "dfractal_records"


class MetaError(ValueError):
    """An attribute of a store is missing, of the wrong kind, or disagrees with another."""


def _count(attrs: dict[str, Any], key: str, default: object = 1) -> int:
    value = attrs.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MetaError(f"{key} is {value!r}, not a positive whole number")
    return value


@dataclass(frozen=True)
class StoreMeta:
    """What a store's root attributes say, checked (:meth:`from_attrs`).

    ``attrs`` keeps the document itself (for :meth:`to_attrs` and the
    attributes other layers add: ``ome``, ``metrics``)."""

    format: int
    store_id: str | None
    zoom: bool
    view: View
    iters: int
    chunk_rows: int
    n_blocks: int
    fractal: Fractal
    distance: bool
    frames: int = 0
    records: dict[str, Any] = field(default_factory=dict, compare=False)
    attrs: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def names(self) -> list[str]:
        """The sample variables (``distance`` only for a render made with it)."""
        return [v for v in SAMPLE_VARS if v != "distance" or (self.distance and not self.zoom)]

    @property
    def blocks(self) -> int:
        """Row blocks a frame (a render: its picture) is cut into."""
        return -(-self.view.sample_height // self.chunk_rows)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """The shape of each sample array: ``(im, re)``, or ``(frame, im, re)`` in a zoom."""
        shape = (self.view.sample_height, self.view.sample_width)
        return (self.frames, *shape) if self.zoom else shape

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> StoreMeta:
        """Parse and check a store's root attributes, or a :class:`MetaError`
        naming the first that is missing, of the wrong kind, or disagrees."""
        zoom = attrs.get("dfractal_kind") == ZOOM
        if "dfractal_kind" in attrs and not zoom:
            raise MetaError(f"dfractal_kind is {attrs['dfractal_kind']!r}, not {ZOOM!r}")
        need = ["iters", "chunk_rows", "width", "height", "supersample", "span", "xpos", "ypos"]
        need += ["frames", "to_span"] if zoom else ["n_blocks"]
        for key in need:
            if key not in attrs:
                raise MetaError(f"{key} is missing")
        for key in ("iters", "chunk_rows", "width", "height", "supersample", "frames", "n_blocks"):
            _count(attrs, key)
        try:
            check_iters(attrs["iters"])
            view = View.from_attrs(attrs)
            fractal = Fractal.from_attrs(attrs)
            if zoom:
                View(view.xpos, view.ypos, attrs["to_span"], view.width, view.height, view.supersample)
        except (TypeError, ValueError, KeyError, OverflowError) as exc:
            raise MetaError(f"values do not make a view, fractal and iteration limit ({exc})") from None
        for key in ("distance", "perturbation", "bla"):
            if not isinstance(attrs.get(key, False), bool):
                raise MetaError(f"{key} is {attrs[key]!r}, not true or false")
        blocks = -(-view.sample_height // attrs["chunk_rows"])
        if not zoom and attrs["n_blocks"] != blocks:
            raise MetaError(
                f"n_blocks is {attrs['n_blocks']}, but {view.sample_height} sample rows in blocks of "
                f"{attrs['chunk_rows']} make {blocks}"
            )
        store_id = attrs.get("store_id")
        if store_id is not None and not isinstance(store_id, str):
            raise MetaError(f"store_id is {store_id!r}, not a string")
        records = attrs.get(RECORDS_ATTR, {})
        records = records if isinstance(records, dict) else {}  # (damaged: verify says so, a resume rewrites them)
        return cls(
            format=attrs["dfractal_format"],
            store_id=store_id,
            zoom=zoom,
            view=view,
            iters=attrs["iters"],
            chunk_rows=attrs["chunk_rows"],
            n_blocks=attrs["frames"] if zoom else attrs["n_blocks"],
            fractal=fractal,
            distance=bool(attrs.get("distance", False)),
            frames=attrs["frames"] if zoom else 0,
            records=records,
            attrs=dict(attrs),
        )

    def to_attrs(self) -> dict[str, Any]:
        """The attributes this value was parsed from (with its records)."""
        return {**self.attrs, RECORDS_ATTR: self.records}

    def record(self, kind: str, name: str | None = None) -> int | None:
        """The checksum kept for ``kind`` (``coords``, ``metadata``: of ``name``; ``metrics``), if any."""
        entry = self.records.get(kind)
        if name is not None:
            entry = entry.get(name) if isinstance(entry, dict) else None
        return entry if isinstance(entry, int) and not isinstance(entry, bool) else None


def metrics_record(metrics: Any) -> int:
    """The CRC-32C of a store's metrics as kept (their canonical JSON)."""
    return int(google_crc32c.value(json.dumps(metrics, sort_keys=True).encode()))


#: Root attributes written after a store is made (their own records, or none): not in :func:`attrs_record`.
_LATER = (RECORDS_ATTR, "metrics", "ome")


def attrs_record(attrs: dict[str, Any]) -> int:
    """The CRC-32C of a store's own attributes as made (its view, fractal, limit, identity...), canonical JSON."""
    own = {k: v for k, v in attrs.items() if k not in _LATER}
    return int(google_crc32c.value(json.dumps(own, sort_keys=True, default=str).encode()))
