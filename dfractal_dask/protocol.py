"""What the client, the workers and the scheduler of a render agree on.

Task keys, the event topics and the plugin's name, the preview's encoding and
the JSON of a render's metrics: the parts of :mod:`dfractal_dask.diagnostics`
that a worker or a client needs too.  It imports only numpy, so a worker's
task (``pipeline``) and the graph (``graph``) use it without loading the
scheduler plugin, tornado or the dashboard.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

__all__ = [
    "BLOCK_TOPIC",
    "PAGE_PATH",
    "PLUGIN_NAME",
    "PREVIEW_WIDTH",
    "RENDER_TOPIC",
    "parse_key",
    "preview_block",
    "preview_stride",
    "task_key",
    "to_json",
]

PLUGIN_NAME = "dfractal-metrics"
BLOCK_TOPIC = "dfractal-block"  # workers: one event per written block
RENDER_TOPIC = "dfractal-render"  # client: a render starts or ends
PAGE_PATH = "fractal"  # the render page, under the dashboard's root (its data: fractal/data.json, fractal/preview.png)
PREVIEW_WIDTH = 256


def task_key(kind: str, render_id: str, index: int) -> str:
    """Key of a render's task.

    Parameters
    ----------
    kind : str
        What the task does (``kernel``, ``write``, ``reference``...), without a ``-``.
    render_id : str
        The render's id, without a ``-``.
    index : int
        The block's index.

    Returns
    -------
    str
        ``dfractal-<kind>-<render id>-<block>``.
    """
    return f"dfractal-{kind}-{render_id}-{index}"


def parse_key(key: Any) -> tuple[str, str, int] | None:
    """``(kind, render id, block)`` of a key :func:`task_key` made, else None."""
    if not isinstance(key, str) or not key.startswith("dfractal-"):
        return None
    parts = key.split("-")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    return parts[1], parts[2], int(parts[3])


def preview_stride(sample_width: int) -> int:
    """Sample stride of the preview.

    Parameters
    ----------
    sample_width : int
        Width of the render's sample grid.

    Returns
    -------
    int
        The smallest stride that makes the preview at most :data:`PREVIEW_WIDTH` wide.
    """
    return max(1, -(-sample_width // PREVIEW_WIDTH))


def preview_block(iterations: np.ndarray, row0: int, iters: int) -> tuple[int, bytes]:
    """A block's part of the live preview.

    Every ``stride``-th sample of the global grid, log-scaled counts as grey
    levels (a monitoring view, not the picture).

    Parameters
    ----------
    iterations : numpy.ndarray
        The block's iteration counts, ``(rows, sample width)``.
    row0 : int
        The block's first row in the render's sample grid.
    iters : int
        The iteration limit (a count reaching it is inside: black).

    Returns
    -------
    tuple of (int, bytes)
        The preview row it starts at, and its bytes (``uint8``, row-major).
    """
    stride = preview_stride(iterations.shape[1])
    first = (-row0) % stride  # the first of this block's rows on the global stride
    thumb = np.asarray(iterations[first::stride, ::stride], np.float64)
    grey = 255.0 * np.log1p(thumb) / np.log1p(iters)
    return (row0 + first) // stride, np.where(thumb >= iters, 0, grey).astype(np.uint8).tobytes()


def to_json(data: Any) -> str:
    """JSON of a render's metrics, as the page's ``data.json`` serves it and ``--metrics-json`` writes it.

    Parameters
    ----------
    data : Any
        JSON-able data; numpy numbers in it become plain ones, anything else unknown its ``str``.

    Returns
    -------
    str
        The JSON text, indented.
    """
    return json.dumps(data, default=lambda o: o.item() if hasattr(o, "item") else str(o), indent=1)
