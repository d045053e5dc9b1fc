"""A render's PNG coloured as its blocks are computed (issue 19).

With :func:`dfractal_dask.render`'s ``picture=PictureFile(...)``, each block
has one more task beside its store write: on the worker that ran the block's
kernel (it depends on the kernel's result, which is not gathered) it colours
the block's samples into its pixel rows (:func:`dfractal_dask.colorize.block_coloring`,
the same pixels :func:`~dfractal_dask.colorize.color_picture` gives from the
store) and compresses them as PNG scanlines (:func:`dfractal_dask.png.encode_rows`);
the client writes these pieces in row order as they arrive
(:class:`dfractal_dask.png.PngWriter`), so the PNG is done moments after the
last block, byte for byte the file :func:`dfractal_dask.save_png` writes from
the store.  A resumed render colours the blocks it finds done from the store
the same way.  Modes that need the whole picture
(:data:`~dfractal_dask.colorize.WHOLE_PICTURE_MODES`, histogram) are coloured
from the store once the render is done.
"""

from __future__ import annotations

import difflib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask
import numpy as np
import xarray as xr
from dask.delayed import Delayed

from .colorize import DEFAULT_INTERIOR, DEFAULT_MODE, MODES, WHOLE_PICTURE_MODES, BlockColoring, rgb_of
from .palettes import DEFAULT_PALETTE, DEFAULT_STEP, Palette, resolve_palette
from .png import Piece, encode_rows
from .protocol import task_key
from .spec import Block

__all__ = ["PictureFile", "block_piece", "piece_tasks"]


@dataclass(frozen=True)
class PictureFile:
    """A PNG for :func:`dfractal_dask.render` to write as it renders (its ``picture``).

    Parameters
    ----------
    path
        A local path ending in ``.png`` (parent folders made; written by way
        of ``<path>.part``).
    palette, step, mode, interior
        As for :func:`dfractal_dask.color_picture`.  A mode of
        :data:`~dfractal_dask.colorize.WHOLE_PICTURE_MODES` (histogram) is
        coloured from the store after the render, the others block by block
        as the blocks are computed.
    """

    path: str | os.PathLike
    palette: str | Palette | list[str] = DEFAULT_PALETTE
    step: int = DEFAULT_STEP
    mode: str = DEFAULT_MODE
    interior: str | tuple[int, int, int] = DEFAULT_INTERIOR

    def __post_init__(self) -> None:
        # checked here, before any cluster starts
        if not isinstance(self.path, str | os.PathLike):
            raise TypeError(f"picture path must be a local path, got {type(self.path).__name__}")
        path = os.fspath(self.path)
        if "://" in str(path) or not str(path).lower().endswith(".png"):
            raise ValueError(f"picture path must be a local path ending in .png, got {path!r}")
        if self.mode not in MODES:
            close = difflib.get_close_matches(str(self.mode), MODES, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ValueError(f"unknown picture mode {self.mode!r}{hint} (modes: {', '.join(MODES)})")
        if isinstance(self.step, bool) or not isinstance(self.step, int | np.integer) or self.step < 1:
            raise ValueError(f"picture step must be a positive integer, got {self.step!r}")
        resolve_palette(self.palette)
        rgb_of(self.interior)

    @property
    def per_block(self) -> bool:
        """Whether the mode colours a block on its own (else: from the store, after the render)."""
        return self.mode not in WHOLE_PICTURE_MODES

    @property
    def local_path(self) -> Path:
        """The path, as a :class:`~pathlib.Path`."""
        return Path(self.path)

    def colouring(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~dfractal_dask.color_picture` (and of ``block_coloring``)."""
        return {"palette": self.palette, "step": int(self.step), "mode": self.mode, "interior": self.interior}


def block_piece(coloring: BlockColoring, index: int, result: tuple) -> tuple[int, Piece, float]:
    """Colour and encode one block, on a worker: ``(index, piece, started)``.

    Parameters
    ----------
    coloring
        From :func:`~dfractal_dask.colorize.block_coloring`.
    index
        The block's index (its place in the picture).
    result
        The block's kernel result ``(iterations, norm, work[, distance])``.

    Returns
    -------
    tuple
        The index, the block's PNG rows (:func:`~dfractal_dask.png.encode_rows`)
        and when this task started (``time.time()``: about when the kernel ended).
    """
    started = time.time()
    it, norm, _, *distance = result
    return index, encode_rows(coloring(it, norm, *distance)), started


def piece_tasks(
    coloring: BlockColoring,
    tasks: list[tuple[Block, Delayed]],
    stored: xr.Dataset | None,
    done: np.ndarray | None,
    render_id: str,
    priority: int,
) -> list[Delayed]:
    """One :func:`block_piece` task per block: over its kernel call for the
    blocks in ``tasks``, over its chunks read from ``stored`` (a resumed
    render's store, opened incomplete) for the blocks ``done`` marks.

    ``priority``: the tasks' dask priority (above the kernels', so a block is
    coloured as soon as it is computed, not after the kernels still waiting)."""
    piece = dask.delayed(block_piece, pure=False)
    out = []
    with dask.annotate(priority=priority):
        for b, k in tasks:
            out.append(piece(coloring, b.index, k, dask_key_name=task_key("picture", render_id, b.index)))
        if done is not None and stored is not None:
            names = ["iterations", "norm", *(["distance"] if coloring.distance else [])]
            for index in np.flatnonzero(done):
                i = int(index)
                chunks = [stored[name].data.blocks[i].rechunk({1: -1}).to_delayed().ravel()[0] for name in names]
                result = (chunks[0], chunks[1], 0, *chunks[2:])  # as a kernel's (its work unused)
                out.append(piece(coloring, i, result, dask_key_name=task_key("picture", render_id, i)))
    return out
