"""The ``METRICS`` report of a render: the client's and each worker's runtime,
the scheduler plugin's per-worker counters, as lines (``dfractal render
--metrics``, ``dfractal info``) or JSON (``--metrics-json``).  Runs on the
client, and on the workers through ``client.run``."""

from __future__ import annotations

import gc
import os
import resource
import threading
from typing import Any

from ..protocol import to_json
from .plugin import scheduler_report

__all__ = ["collect", "format_metrics", "runtime_metrics", "to_json", "worker_runtime"]


def runtime_metrics() -> dict[str, float]:
    """This Python process's runtime: GC, memory, CPU, threads.

    Returns
    -------
    dict
        Name to value (the Go seed printed the Go runtime's equivalents).
    """
    import psutil

    proc = psutil.Process()
    cpu = proc.cpu_times()
    out: dict[str, float] = {}
    for gen, st in enumerate(gc.get_stats()):
        out[f"gc_gen{gen}_collections"] = st["collections"]
        out[f"gc_gen{gen}_collected"] = st["collected"]
    # (no count of the objects the collector tracks: len(gc.get_objects()) walks them all, 0.13 s of a render)
    out["rss_bytes"] = proc.memory_info().rss
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    out["cpu_user_seconds"] = round(cpu.user, 3)
    out["cpu_system_seconds"] = round(cpu.system, 3)
    out["threads"] = threading.active_count()
    return out


def worker_runtime(dask_worker: Any = None) -> dict:
    """Runtime metrics of a worker (run with ``client.run``).

    Parameters
    ----------
    dask_worker : distributed.Worker, optional
        The worker, as ``client.run`` passes it; its name is added.

    Returns
    -------
    dict
        :func:`runtime_metrics`, the process id and the worker's name.
    """
    out: dict[str, Any] = runtime_metrics()
    out["pid"] = os.getpid()
    if dask_worker is not None:
        out["name"] = str(dask_worker.name)
    return out


def collect(client: Any, render_id: str | None) -> tuple[dict | None, dict]:
    """The plugin's report of a render and every current worker's runtime.

    Parameters
    ----------
    client : distributed.Client
        A client of the render's scheduler.
    render_id : str or None
        The render (None: the latest).

    Returns
    -------
    tuple of (dict or None, dict)
        The report (None when the scheduler has no plugin or no such render),
        and :func:`worker_runtime` by worker address.
    """
    return client.run_on_scheduler(scheduler_report, render_id=render_id), client.run(worker_runtime)


def format_metrics(client_seconds: float, client_runtime: dict, report: dict | None, worker_runtime: dict) -> list[str]:
    """The ``METRICS`` lines: client first (as the seed's leader), then each
    worker, then one totals line.

    Parameters
    ----------
    client_seconds : float
        The render's wall time on the client.
    client_runtime : dict
        The client's :func:`runtime_metrics`.
    report : dict or None
        The plugin's report of the render.
    worker_runtime : dict
        Each current worker's :func:`worker_runtime`, by address.

    Returns
    -------
    list of str
        The lines, without newlines.
    """
    lines = [f"METRICS CLIENT time: {client_seconds:.3f}s"]
    lines += [f"METRICS CLIENT {k}: {v}" for k, v in client_runtime.items()]
    workers = (report or {}).get("workers", {})
    for addr in sorted(set(workers) | set(worker_runtime)):
        row = workers.get(addr, {})
        name = row.get("name") or worker_runtime.get(addr, {}).get("name", addr)
        for k, v in row.items():
            if k != "name":
                lines.append(f"METRICS WORKER {addr} {name} {k}: {_fmt(v)}")
        for k, v in worker_runtime.get(addr, {}).items():
            if k != "name":
                lines.append(f"METRICS WORKER {addr} {name} {k}: {_fmt(v)}")
        if addr not in worker_runtime:
            lines.append(f"METRICS WORKER {addr} {name} status: left")
    if report:
        for what in ("joined", "left"):
            for ev in report.get(what, []):
                lines.append(f"METRICS CLUSTER worker_{what}: {ev['worker']} at {ev['time']:.3f}")
        total = " ".join(f"{k}={_fmt(v)}" for k, v in report["total"].items())
        lines.append(f"METRICS TOTAL {total}")
    return lines


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) >= 1e5 else f"{v:.6g}"  # timestamps in full
    return str(v)
