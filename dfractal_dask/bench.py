"""Strong scaling: the same render on 1, 2, ... workers and several block
sizes, with the network as a variable (``dfractal bench``).

For each configuration (workers × rows per block × where the results go) it
renders the view once per repeat and keeps the best time:

* ``store``: the workers write their blocks to a Zarr store; only a small
  dict per block travels to the client;
* ``gather``: the counts and norms are gathered to the client (the seed's
  design: every row crosses the network).

Reported per configuration: seconds, speedup and parallel efficiency against
the fewest-workers run of the same block size and output, tasks run (from
the task stream), bytes to the store and bytes to the client.
"""

from __future__ import annotations

import contextlib
import csv
import json
import pickle
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from distributed import Client, get_task_stream

from .cluster import connect
from .graph import blocks, check_iters
from .pipeline import RenderStats, render
from .view import View

__all__ = ["OUTPUTS", "FIELDS", "strong_scaling", "write_results", "format_table"]

OUTPUTS = ("store", "gather")
FIELDS = (
    "workers",
    "chunk_rows",
    "output",
    "blocks",
    "seconds",
    "speedup",
    "efficiency",
    "tasks",
    "bytes_to_store",
    "bytes_to_client",
    "iterations",
    "samples",
)


def _check_list(name: str, values: Sequence[int]) -> list[int]:
    values = list(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be a non-empty list of positive integers, got {values!r}")
    return sorted(set(values))


@contextlib.contextmanager
def _clusters(scheduler, security, worker_counts: list[int]) -> Iterator[Callable[[int], tuple[Client, list]]]:
    """``get(n)``: a client and the addresses of ``n`` workers to run on.

    Embedded: one LocalCluster of exactly ``n`` workers at a time.  Remote
    (``scheduler``): the first ``n`` workers of that cluster."""
    if scheduler is not None:
        with connect(scheduler, security=security) as client:
            have = sorted(client.scheduler_info()["workers"])
            if max(worker_counts) > len(have):
                raise ValueError(f"asked for {max(worker_counts)} workers, the scheduler has {len(have)}")
            yield lambda n: (client, have[:n])
        return
    stack = contextlib.ExitStack()
    current: dict[str, Any] = {}

    def get(n: int):
        if current.get("n") != n:
            stack.close()
            current["client"] = stack.enter_context(connect(None, n_workers=n))
            current["n"] = n
        client = current["client"]
        return client, sorted(client.scheduler_info()["workers"])

    with stack:
        yield get


def _run(client: Client, addrs: list, view: View, iters: int, chunk_rows: int, output: str, workdir: Path) -> dict:
    stats = RenderStats()
    path = workdir / "bench.zarr"
    with get_task_stream(client) as ts:
        t0 = time.perf_counter()
        if output == "store":
            render(view, iters, store_path=path, client=client, chunk_rows=chunk_rows, overwrite=True,
                   stats=stats, workers=addrs)  # fmt: skip
            seconds = time.perf_counter() - t0
            to_client = sum(len(pickle.dumps(row)) for row in stats.per_block)
            to_store = stats.bytes_written
            iterations = stats.iterations
        else:
            ds = render(view, iters, client=client, chunk_rows=chunk_rows, workers=addrs)
            seconds = time.perf_counter() - t0
            to_client = int(ds.iterations.nbytes + ds.norm.nbytes)
            to_store = 0
            iterations = int(ds.iterations.values.sum(dtype="int64"))
    shutil.rmtree(path, ignore_errors=True)
    return {"seconds": seconds, "tasks": len(ts.data), "bytes_to_store": int(to_store),
            "bytes_to_client": int(to_client), "iterations": int(iterations)}  # fmt: skip


def strong_scaling(
    view: View | None = None,
    iters: int = 800,
    *,
    workers: Sequence[int] = (1, 2),
    chunk_rows: Sequence[int] = (16, 64, 256),
    outputs: Sequence[str] = OUTPUTS,
    scheduler: str | None = None,
    security=None,
    repeats: int = 1,
    progress: Callable[[dict], None] | None = None,
) -> list[dict]:
    """Run the strong-scaling study; one dict per configuration (:data:`FIELDS`).

    Parameters
    ----------
    view, iters
        The render (default: the seed's default view, 800 iterations).
    workers
        Worker counts.  Embedded: a LocalCluster of that many single-threaded
        workers each, of the kind dask config ``dfractal.cluster`` names
        (:func:`~dfractal_dask.cluster.cluster_kind`); with ``scheduler``, the
        first that many workers.
    chunk_rows
        Sample rows per block (multiples of the view's supersampling).
    outputs
        ``"store"`` and/or ``"gather"`` (see the module docstring).
    scheduler, security
        A running ``dask scheduler`` and its TLS credentials; default embedded.
    repeats
        Renders per configuration; the best time is kept.
    progress
        Called with each configuration's row as it completes.
    """
    view = View() if view is None else view
    if not isinstance(view, View):
        raise TypeError(f"view must be a View, got {type(view).__name__}")
    iters = check_iters(iters)
    ws = _check_list("workers", workers)
    crs = _check_list("chunk_rows", chunk_rows)
    for cr in crs:
        blocks(view, cr)  # a multiple of the supersampling
    outs = list(dict.fromkeys(outputs))
    if not outs or any(o not in OUTPUTS for o in outs):
        raise ValueError(f"outputs must be among {OUTPUTS}, got {list(outputs)!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="dfractal-bench-") as tmp, _clusters(scheduler, security, ws) as get:
        for n in ws:
            client, addrs = get(n)
            addrs = addrs[:n]
            # one small render first: kernels compiled/loaded, connections made
            render(View(view.xpos, view.ypos, view.span, 16, 12, 1), 50, client=client, workers=addrs)
            for cr in crs:
                for out in outs:
                    best = min((_run(client, addrs, view, iters, cr, out, Path(tmp)) for _ in range(repeats)),
                               key=lambda r: r["seconds"])  # fmt: skip
                    row = {"workers": n, "chunk_rows": cr, "output": out, "blocks": len(blocks(view, cr)),
                           "samples": view.sample_width * view.sample_height, **best}  # fmt: skip
                    base = next((r for r in rows if (r["chunk_rows"], r["output"]) == (cr, out)), row)
                    row["speedup"] = base["seconds"] / row["seconds"]
                    row["efficiency"] = row["speedup"] * base["workers"] / n
                    rows.append(row)
                    if progress:
                        progress(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """The results as a Markdown table."""
    head = "| workers | rows/block | blocks | output | seconds | speedup | efficiency | tasks | to store | to client |"
    lines = [head, "|" + "---:|" * 3 + "---|" + "---:|" * 6]
    for r in rows:
        lines.append(
            f"| {r['workers']} | {r['chunk_rows']} | {r['blocks']} | {r['output']} | {r['seconds']:.2f} "
            f"| {r['speedup']:.2f} | {r['efficiency']:.0%} | {r['tasks']} | {_mb(r['bytes_to_store'])} "
            f"| {_mb(r['bytes_to_client'])} |"
        )
    return "\n".join(lines)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def write_results(rows: list[dict], out_dir: str | Path, title: str = "dfractal strong scaling") -> dict[str, Path]:
    """Write ``bench.csv``, ``bench.json`` and ``bench.html`` (a bokeh plot of
    time and speedup against workers, BokehJS inline) into ``out_dir``."""
    from bokeh.embed import file_html
    from bokeh.layouts import row as bokeh_row
    from bokeh.models import FixedTicker
    from bokeh.palettes import Category10
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out / "bench.csv", "json": out / "bench.json", "html": out / "bench.html"}
    with paths["csv"].open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    paths["json"].write_text(json.dumps({"title": title, "results": rows}, indent=1))
    ws = sorted({r["workers"] for r in rows})
    # wide enough for the plot and its legend beside it (outside: it never covers a line)
    t = figure(title="time", x_axis_label="workers", y_axis_label="seconds", width=640, height=360)
    s = figure(title="speedup", x_axis_label="workers", y_axis_label="speedup", width=640, height=360)
    s.line(ws, [w / ws[0] for w in ws], line_dash="dashed", color="gray", legend_label="ideal")
    series = sorted({(r["chunk_rows"], r["output"]) for r in rows})
    colours = Category10[10]
    for k, (cr, o) in enumerate(series):
        mine = [r for r in rows if (r["chunk_rows"], r["output"]) == (cr, o)]
        pts = sorted((r["workers"], r["seconds"], r["speedup"]) for r in mine)
        label = f"{cr} rows/block, {o}"
        c = colours[k % 10]
        t.line([p[0] for p in pts], [p[1] for p in pts], color=c, legend_label=label)
        t.scatter([p[0] for p in pts], [p[1] for p in pts], color=c, legend_label=label)
        s.line([p[0] for p in pts], [p[2] for p in pts], color=c, legend_label=label)
        s.scatter([p[0] for p in pts], [p[2] for p in pts], color=c, legend_label=label)
    for fig in (t, s):
        legend = fig.legend[0]
        fig.center = [r for r in fig.center if r is not legend]  # legend_label put it over the lines
        fig.add_layout(legend, "right")
        legend.label_text_font_size = "8pt"
        fig.xaxis.ticker = FixedTicker(ticks=ws)  # whole workers: ticks at the counts measured only
    paths["html"].write_text(file_html(bokeh_row(t, s), resources=INLINE, title=title))
    return paths
