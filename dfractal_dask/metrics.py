"""Render metrics: a scheduler plugin that watches the task stream.

Replaces the seed leader's ``METRICS`` printout, and does what the seed could
not: it counts per worker.  Load it on a scheduler with::

    dask scheduler --preload dfractal_dask.metrics

or let ``dfractal render`` register it (it does when it is missing).  For every
render it records, per worker: tasks, rows, samples, fractal iterations (as
reported by the kernel), compute / transfer / deserialisation seconds from the
task stream, bytes written to the store, start and stop; plus the workers that
joined or left while the render ran.  The scheduler's dashboard gets a page,
``/fractal``, with a live preview and per-worker throughput.
"""

from __future__ import annotations

import gc
import io
import json
import os
import resource
import threading
import time
from collections import defaultdict
from typing import Any

import numpy as np
from distributed.diagnostics.plugin import SchedulerPlugin

__all__ = [
    "BLOCK_TOPIC",
    "PLUGIN_NAME",
    "RENDER_TOPIC",
    "FractalMetrics",
    "dask_setup",
    "ensure_plugin",
    "format_metrics",
    "preview_block",
    "collect",
    "runtime_metrics",
    "scheduler_report",
    "task_key",
]

PLUGIN_NAME = "dfractal-metrics"
BLOCK_TOPIC = "dfractal-block"  # workers: one event per written block
RENDER_TOPIC = "dfractal-render"  # client: a render starts or ends
PREVIEW_WIDTH = 256

_COUNTERS = (
    "tasks",
    "rows",
    "samples",
    "iterations",
    "bytes_written",
    "kernel_seconds",
    "write_seconds",
    "compute_seconds",
    "transfer_seconds",
    "deserialize_seconds",
)


def task_key(kind: str, render_id: str, index: int) -> str:
    """Key of a render's task: ``dfractal-<kind>-<render id>-<block>``."""
    return f"dfractal-{kind}-{render_id}-{index}"


def _parse_key(key: Any) -> tuple[str, str, int] | None:
    if not isinstance(key, str) or not key.startswith("dfractal-"):
        return None
    parts = key.split("-")
    if len(parts) != 4 or not parts[3].isdigit():
        return None
    return parts[1], parts[2], int(parts[3])


def runtime_metrics() -> dict[str, float]:
    """This Python process's runtime: GC, memory, CPU, threads (the Go seed
    printed the Go runtime's equivalents)."""
    import psutil

    proc = psutil.Process()
    cpu = proc.cpu_times()
    out: dict[str, float] = {}
    for gen, st in enumerate(gc.get_stats()):
        out[f"gc_gen{gen}_collections"] = st["collections"]
        out[f"gc_gen{gen}_collected"] = st["collected"]
    out["gc_objects_tracked"] = len(gc.get_objects())
    out["rss_bytes"] = proc.memory_info().rss
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    out["cpu_user_seconds"] = round(cpu.user, 3)
    out["cpu_system_seconds"] = round(cpu.system, 3)
    out["threads"] = threading.active_count()
    return out


class _Render:
    def __init__(self, render_id: str, meta: dict[str, Any]) -> None:
        self.id = render_id
        self.meta = meta
        self.started = time.time()
        self.ended: float | None = None
        self.workers: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(_COUNTERS, 0))
        self.first: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.joined: list[dict[str, Any]] = []
        self.left: list[dict[str, Any]] = []
        self.blocks_done = 0
        w, h = int(meta.get("sample_width", 1)), int(meta.get("sample_height", 1))
        self.stride = preview_stride(w)
        self.preview = np.zeros((-(-h // self.stride), -(-w // self.stride)), np.uint8)

    def report(self, names: dict[str, str]) -> dict[str, Any]:
        workers = {}
        for addr, c in self.workers.items():
            row = dict(c)
            row["name"] = names.get(addr, addr)
            row["start"] = self.first.get(addr)
            row["stop"] = self.last.get(addr)
            span = (row["stop"] or 0) - (row["start"] or 0)
            row["iterations_per_second"] = c["iterations"] / c["kernel_seconds"] if c["kernel_seconds"] else 0.0
            row["wall_seconds"] = span
            workers[addr] = row
        total = {k: sum(w[k] for w in self.workers.values()) for k in _COUNTERS}
        total["workers"] = len(self.workers)
        total["iterations_per_second"] = (
            total["iterations"] / total["kernel_seconds"] if total["kernel_seconds"] else 0.0
        )
        return {
            "render_id": self.id,
            "meta": self.meta,
            "started": self.started,
            "ended": self.ended,
            "blocks_done": self.blocks_done,
            "workers": workers,
            "joined": self.joined,
            "left": self.left,
            "total": total,
        }


class FractalMetrics(SchedulerPlugin):
    """Scheduler plugin: per-render, per-worker counters from the task stream."""

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.renders: dict[str, _Render] = {}
        self.latest: str | None = None
        self.scheduler = None

    async def start(self, scheduler) -> None:
        self.scheduler = scheduler
        from .dashboard import install

        install(scheduler, self)

    # -- events ----------------------------------------------------------
    def _render(self, render_id: str) -> _Render:
        if render_id not in self.renders:
            self.renders[render_id] = _Render(render_id, {})
        return self.renders[render_id]

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == RENDER_TOPIC and isinstance(msg, dict):
            rid = msg.get("render_id")
            if msg.get("action") == "start":
                self.renders[rid] = _Render(rid, dict(msg.get("meta", {})))
                self.latest = rid
                while len(self.renders) > 50:  # keep the scheduler's memory bounded
                    self.renders.pop(next(iter(self.renders)))
            elif msg.get("action") == "end" and rid in self.renders:
                self.renders[rid].ended = time.time()
        elif topic == BLOCK_TOPIC and isinstance(msg, dict):
            r = self._render(msg["render_id"])
            c = r.workers[msg["worker"]]
            for k in ("rows", "samples", "iterations", "bytes_written"):
                c[k] += msg.get(k, 0)
            r.blocks_done += 1
            thumb = msg.get("preview")
            if thumb is not None and len(thumb) % r.preview.shape[1] == 0:
                arr = np.frombuffer(thumb, np.uint8).reshape(-1, r.preview.shape[1])
                y0 = msg["preview_row"]
                r.preview[y0 : y0 + arr.shape[0]] = arr[: max(0, r.preview.shape[0] - y0)]

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        parsed = _parse_key(key)
        if parsed is None or finish != "memory" or "worker" not in kwargs:
            return
        kind, rid, _ = parsed
        r = self._render(rid)
        worker = kwargs["worker"]
        c = r.workers[worker]
        c["tasks"] += 1
        for ss in kwargs.get("startstops", ()):
            secs = ss["stop"] - ss["start"]
            action = ss["action"]
            if action == "compute":
                c["compute_seconds"] += secs
                # reference orbits and distance estimates count as kernel time
                c["write_seconds" if kind == "write" else "kernel_seconds"] += secs
                r.first[worker] = min(r.first.get(worker, ss["start"]), ss["start"])
                r.last[worker] = max(r.last.get(worker, ss["stop"]), ss["stop"])
            elif action == "transfer":
                c["transfer_seconds"] += secs
            elif action == "deserialize":
                c["deserialize_seconds"] += secs

    def add_worker(self, scheduler, worker: str) -> None:
        self._membership("joined", worker)

    def remove_worker(self, scheduler, worker: str, **kwargs) -> None:
        self._membership("left", worker)

    def _membership(self, what: str, worker: str) -> None:
        for r in self.renders.values():
            if r.ended is None:
                getattr(r, what).append({"worker": worker, "time": time.time()})

    # -- reading -------------------------------------------------------------
    def _names(self) -> dict[str, str]:
        if self.scheduler is None:
            return {}
        return {addr: str(ws.name) for addr, ws in self.scheduler.workers.items()}

    def report(self, render_id: str | None = None) -> dict[str, Any] | None:
        """The metrics of one render (default: the latest), JSON-safe."""
        rid = render_id or self.latest
        return None if rid not in self.renders else self.renders[rid].report(self._names())

    def preview_png(self, render_id: str | None = None) -> bytes | None:
        """The live preview of a render as PNG bytes."""
        from PIL import Image

        rid = render_id or self.latest
        if rid not in self.renders:
            return None
        buf = io.BytesIO()
        Image.fromarray(self.renders[rid].preview, "L").save(buf, format="PNG")
        return buf.getvalue()


def dask_setup(scheduler) -> None:
    """``dask scheduler --preload dfractal_dask.metrics`` entry point."""
    scheduler.add_plugin(FractalMetrics())


def ensure_plugin(client) -> None:
    """Register :class:`FractalMetrics` on the client's scheduler unless present."""

    def present(dask_scheduler) -> bool:
        return PLUGIN_NAME in dask_scheduler.plugins

    if not client.run_on_scheduler(present):
        client.register_plugin(FractalMetrics())


def preview_block(iterations: np.ndarray, row0: int, iters: int) -> tuple[int, bytes]:
    """A block's part of the live preview: every ``stride``-th sample of the
    global grid, log-scaled counts as grey levels (a monitoring view, not the
    picture).  Returns the preview row it starts at, and its bytes."""
    stride = preview_stride(iterations.shape[1])
    first = (-row0) % stride  # the first of this block's rows on the global stride
    thumb = np.asarray(iterations[first::stride, ::stride], np.float64)
    grey = 255.0 * np.log1p(thumb) / np.log1p(iters)
    return (row0 + first) // stride, np.where(thumb >= iters, 0, grey).astype(np.uint8).tobytes()


def preview_stride(sample_width: int) -> int:
    """Sample stride of the preview (at most :data:`PREVIEW_WIDTH` wide)."""
    return max(1, -(-sample_width // PREVIEW_WIDTH))


def format_metrics(client_seconds: float, client_runtime: dict, report: dict | None, worker_runtime: dict) -> list[str]:
    """The ``METRICS`` lines: client first (as the seed's leader), then each
    worker, then one totals line."""
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


def to_json(data: Any) -> str:
    """JSON for metrics (numpy numbers become plain ones)."""
    return json.dumps(data, default=lambda o: o.item() if hasattr(o, "item") else str(o), indent=1)


def scheduler_report(dask_scheduler, render_id: str | None = None) -> dict | None:
    """A render's report, read on the scheduler (``client.run_on_scheduler``)."""
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    return None if plugin is None else plugin.report(render_id)


def collect(client, render_id: str | None) -> tuple[dict | None, dict]:
    """The plugin's report of a render and every current worker's runtime."""
    return client.run_on_scheduler(scheduler_report, render_id=render_id), client.run(worker_runtime)


def worker_runtime(dask_worker=None) -> dict:
    """Runtime metrics of a worker (run with ``client.run``)."""
    out = runtime_metrics()
    out["pid"] = os.getpid()
    if dask_worker is not None:
        out["name"] = str(dask_worker.name)
    return out
