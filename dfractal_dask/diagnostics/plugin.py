"""The scheduler side of a render's metrics: :class:`FractalMetrics`, a
scheduler plugin that watches the task stream and the workers' block events.

For every render it records, per worker: tasks, rows, samples, fractal
iterations (as reported by the kernel), compute / transfer / deserialisation
seconds from the task stream, bytes written to the store, start and stop; plus
the workers that joined or left while the render ran, and the live preview the
``/fractal`` page shows (:mod:`.routes`).
"""

from __future__ import annotations

import io
import time
from collections import defaultdict
from typing import Any

import numpy as np
from distributed.diagnostics.plugin import SchedulerPlugin

from ..protocol import BLOCK_TOPIC, PLUGIN_NAME, RENDER_TOPIC, parse_key, preview_stride
from .routes import install

__all__ = ["FractalMetrics", "dask_setup", "ensure_plugin", "scheduler_report"]

_COUNTERS = (
    "tasks",
    "rows",
    "samples",
    "iterations",
    "bytes_written",
    "kernel_seconds",
    "write_seconds",
    "picture_seconds",
    "compute_seconds",
    "transfer_seconds",
    "deserialize_seconds",
)
_KEPT_RENDERS = 50  # the scheduler's memory stays bounded


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
            row: dict[str, Any] = dict(c)
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
    """Scheduler plugin: per-render, per-worker counters from the task stream.

    Starting on a scheduler, it adds the ``/fractal`` page to the scheduler's
    dashboard (:func:`.routes.install`).
    """

    name = PLUGIN_NAME
    idempotent = True

    def __init__(self) -> None:
        self.renders: dict[str, _Render] = {}
        self.latest: str | None = None
        self.scheduler = None

    async def start(self, scheduler: Any) -> None:
        self.scheduler = scheduler
        install(scheduler)

    # -- events ----------------------------------------------------------
    def _render(self, render_id: str) -> _Render:
        if render_id not in self.renders:
            self.renders[render_id] = _Render(render_id, {})
        return self.renders[render_id]

    def log_event(self, topic: str, msg: Any) -> None:
        if topic == RENDER_TOPIC and isinstance(msg, dict):
            rid = msg.get("render_id")
            if not isinstance(rid, str):  # not one of ours: pipeline's events always name their render
                return
            if msg.get("action") == "start":
                self.renders[rid] = _Render(rid, dict(msg.get("meta", {})))
                self.latest = rid
                while len(self.renders) > _KEPT_RENDERS:
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

    def transition(self, key: Any, start: str, finish: str, *args: Any, **kwargs: Any) -> None:
        parsed = parse_key(key)
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
                c[{"write": "write_seconds", "picture": "picture_seconds"}.get(kind, "kernel_seconds")] += secs
                r.first[worker] = min(r.first.get(worker, ss["start"]), ss["start"])
                r.last[worker] = max(r.last.get(worker, ss["stop"]), ss["stop"])
            elif action == "transfer":
                c["transfer_seconds"] += secs
            elif action == "deserialize":
                c["deserialize_seconds"] += secs

    def add_worker(self, scheduler: Any, worker: str) -> None:
        self._membership("joined", worker)

    def remove_worker(self, scheduler: Any, worker: str, **kwargs: Any) -> None:
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
        """The metrics of one render, JSON-safe.

        Parameters
        ----------
        render_id : str, optional
            The render (default: the latest).

        Returns
        -------
        dict or None
            The report, None when the plugin has not seen that render.
        """
        rid = render_id or self.latest
        return None if rid not in self.renders else self.renders[rid].report(self._names())

    def preview_png(self, render_id: str | None = None) -> bytes | None:
        """The live preview of render ``render_id`` (default: the latest) as
        greyscale PNG bytes; None when the plugin has not seen that render."""
        from PIL import Image

        rid = render_id or self.latest
        if rid not in self.renders:
            return None
        buf = io.BytesIO()
        Image.fromarray(self.renders[rid].preview, "L").save(buf, format="PNG")
        return buf.getvalue()


def dask_setup(scheduler: Any) -> None:
    """``dask scheduler --preload dfractal_dask.diagnostics`` entry point: add the plugin.

    Parameters
    ----------
    scheduler : distributed.Scheduler
        The scheduler the preload runs on.
    """
    scheduler.add_plugin(FractalMetrics())


def ensure_plugin(client: Any) -> None:
    """Register :class:`FractalMetrics` on the client's scheduler unless present.

    Parameters
    ----------
    client : distributed.Client
        A client of the scheduler.
    """

    def present(dask_scheduler: Any) -> bool:
        return PLUGIN_NAME in dask_scheduler.plugins

    if not client.run_on_scheduler(present):
        client.register_plugin(FractalMetrics())


def scheduler_report(dask_scheduler: Any, render_id: str | None = None) -> dict | None:
    """A render's report, read on the scheduler (``client.run_on_scheduler``).

    Parameters
    ----------
    dask_scheduler : distributed.Scheduler
        The scheduler, as ``run_on_scheduler`` passes it.
    render_id : str, optional
        The render (default: the latest).

    Returns
    -------
    dict or None
        :meth:`FractalMetrics.report`, None when the scheduler has no plugin.
    """
    plugin = dask_scheduler.plugins.get(PLUGIN_NAME)
    return None if plugin is None else plugin.report(render_id)
