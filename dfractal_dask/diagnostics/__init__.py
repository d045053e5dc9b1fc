"""Render diagnostics: the scheduler plugin, its dashboard page, the METRICS report.

Load it on a scheduler with::

    dask scheduler --preload dfractal_dask.diagnostics

(``--preload dfractal_dask.metrics`` does the same), or let ``dfractal render``
register it (it does when it is missing).

- :mod:`.plugin`: :class:`FractalMetrics`, the scheduler plugin counting each
  render's work per worker, and the functions that add and read it;
- :mod:`.routes`: the dashboard's ``/fractal`` page (a live preview, per-worker
  throughput), listed in the dashboard's menu and its ``individual-plots.json``
  (so dask-labextension offers it in JupyterLab);
- :mod:`.report`: the ``METRICS`` lines and the runtime numbers they include.

What workers and clients share with the scheduler (task keys, event topics,
the preview's encoding) is :mod:`dfractal_dask.protocol`.
"""

from __future__ import annotations

from .plugin import FractalMetrics, dask_setup, ensure_plugin, scheduler_report

__all__ = ["FractalMetrics", "dask_setup", "ensure_plugin", "scheduler_report"]
