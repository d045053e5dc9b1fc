"""Render metrics, under their first name: ``dask scheduler --preload
dfractal_dask.metrics`` loads the scheduler plugin, and the names this module
had before :mod:`dfractal_dask.diagnostics` and :mod:`dfractal_dask.protocol`
took its parts are still here for the code that imports them.
"""

from __future__ import annotations

from .diagnostics.plugin import FractalMetrics, dask_setup, ensure_plugin, scheduler_report
from .diagnostics.report import collect, format_metrics, runtime_metrics, worker_runtime
from .protocol import (
    BLOCK_TOPIC,
    PLUGIN_NAME,
    PREVIEW_WIDTH,
    RENDER_TOPIC,
    preview_block,
    preview_stride,
    task_key,
    to_json,
)

__all__ = [
    "BLOCK_TOPIC",
    "PLUGIN_NAME",
    "PREVIEW_WIDTH",
    "RENDER_TOPIC",
    "FractalMetrics",
    "collect",
    "dask_setup",
    "ensure_plugin",
    "format_metrics",
    "preview_block",
    "preview_stride",
    "runtime_metrics",
    "scheduler_report",
    "task_key",
    "to_json",
    "worker_runtime",
]
