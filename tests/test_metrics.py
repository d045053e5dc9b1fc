"""The metrics plugin and the /fractal dashboard page, on real worker processes
(the page's place in the dashboard: test_diagnostics_dashboard.py)."""

import io
import json
import urllib.request

import numpy as np
import pytest
from PIL import Image

from dfractal_dask import RenderStats, View, metrics, render
from dfractal_dask.cli import main
from dfractal_dask.diagnostics import FractalMetrics, scheduler_report
from dfractal_dask.diagnostics.report import format_metrics
from dfractal_dask.protocol import PLUGIN_NAME, RENDER_TOPIC, task_key

VIEW = View(xpos=-0.7436, ypos=0.1318, span=0.05, width=64, height=48, supersample=2)


@pytest.fixture(scope="module")
def rendered(client, tmp_path_factory):
    path = tmp_path_factory.mktemp("metrics") / "m.zarr"
    stats = RenderStats()
    ds = render(VIEW, 500, store_path=path, client=client, chunk_rows=8, stats=stats)
    report = client.run_on_scheduler(scheduler_report, render_id=stats.render_id)
    return ds, report, path


def test_plugin_counters_equal_the_stored_render(rendered, client):
    ds, report, path = rendered
    total = report["total"]
    assert report["meta"]["n_blocks"] == report["blocks_done"] == 12
    assert total["tasks"] == 2 * 12  # a kernel and a write task per block
    assert total["rows"] == 96 and total["samples"] == 96 * 128
    assert total["iterations"] == int(ds.iterations.values.astype(np.int64).sum())
    chunks = [p for name in ("iterations", "norm") for p in (path / name / "c").rglob("*") if p.is_file()]
    assert total["bytes_written"] == sum(p.stat().st_size for p in chunks)
    assert total["kernel_seconds"] > 0 and total["write_seconds"] > 0
    assert total["iterations_per_second"] == pytest.approx(total["iterations"] / total["kernel_seconds"])
    workers = report["workers"]
    assert set(workers) <= set(client.scheduler_info()["workers"])
    for key in ("tasks", "rows", "samples", "iterations", "bytes_written"):
        assert sum(w[key] for w in workers.values()) == total[key]
    for w in workers.values():
        assert w["samples"] == w["rows"] * 128 and w["start"] <= w["stop"]


def test_metrics_are_kept_in_the_store_and_shown_by_info(client, tmp_path, capsys):
    out = tmp_path / "i.png"
    argv = ["render", "--width", "32", "--height", "24", "--smoothness", "2", "--iters", "100", "--quiet"]
    assert main([*argv, "--outfile", str(out), "--metrics", "--metrics-json", str(tmp_path / "m.json"), "--scheduler",
                 client.scheduler.address]) == 0  # fmt: skip
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("METRICS CLIENT time: ")
    assert any(line.startswith("METRICS CLIENT peak_rss_bytes: ") for line in printed)
    assert any(line.startswith("METRICS CLIENT gc_gen0_collections: ") for line in printed)
    for addr in client.scheduler_info()["workers"]:
        assert any(line.startswith(f"METRICS WORKER {addr} ") and " rss_bytes: " in line for line in printed)
    assert printed[-1].startswith("METRICS TOTAL tasks=") and "iterations=" in printed[-1]
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["render"]["total"]["samples"] == 64 * 48
    assert main(["info", str(tmp_path / "i.zarr")]) == 0
    info = capsys.readouterr().out
    assert "picture: 32x24 pixels, 2x2 samples/pixel" in info and "blocks: " in info
    assert f"iterations={doc['render']['total']['iterations']}" in info


def test_workers_that_join_or_leave_mid_render_are_reported():
    plugin = FractalMetrics()
    plugin.log_event(RENDER_TOPIC, {"action": "start", "render_id": "abc", "meta": {"n_blocks": 1}})
    plugin.add_worker(None, "tcp://127.0.0.1:1111")
    plugin.transition(task_key("kernel", "abc", 0), "processing", "memory", worker="tcp://127.0.0.1:2222",
                      startstops=({"action": "compute", "start": 10.0, "stop": 12.0},))  # fmt: skip
    plugin.remove_worker(None, "tcp://127.0.0.1:2222")
    plugin.log_event(RENDER_TOPIC, {"action": "end", "render_id": "abc"})
    plugin.add_worker(None, "tcp://127.0.0.1:3333")  # after the end: not this render's business
    report = plugin.report("abc")
    assert [e["worker"] for e in report["joined"]] == ["tcp://127.0.0.1:1111"]
    assert [e["worker"] for e in report["left"]] == ["tcp://127.0.0.1:2222"]
    assert report["workers"]["tcp://127.0.0.1:2222"]["kernel_seconds"] == 2.0
    lines = format_metrics(1.0, {}, report, {})
    assert "METRICS CLUSTER worker_joined: tcp://127.0.0.1:1111 at " in "\n".join(lines)
    assert "METRICS WORKER tcp://127.0.0.1:2222 tcp://127.0.0.1:2222 status: left" in lines


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read()


def test_dashboard_page_answers_over_http(rendered, client):
    _, report, _ = rendered
    assert client.run_on_scheduler(lambda dask_scheduler: PLUGIN_NAME in dask_scheduler.plugins)
    base = client.dashboard_link.rsplit("/status", 1)[0]
    assert base.startswith("http://127.0.0.1:")
    status, ctype, body = _get(base + "/fractal")
    assert status == 200 and ctype.startswith("text/html") and b"live preview" in body
    status, ctype, body = _get(f"{base}/fractal/data.json?render={report['render_id']}")
    data = json.loads(body)
    assert data["blocks_done"] == 12 and data["total"]["iterations"] == report["total"]["iterations"]
    status, ctype, body = _get(f"{base}/fractal/preview.png?render={report['render_id']}")
    assert ctype == "image/png"
    with Image.open(io.BytesIO(body)) as im:
        preview = np.asarray(im)
    assert preview.shape == (96, 128)  # narrow enough: one preview pixel per sample
    assert len(np.unique(preview)) > 10  # filled in by every block


def test_render_prints_the_page_link(tmp_path, capsys, client):
    argv = ["render", "--width", "16", "--height", "12", "--smoothness", "1", "--iters", "50",
            "--outfile", str(tmp_path / "p.png"), "--scheduler", client.scheduler.address]  # fmt: skip
    assert main(argv) == 0
    assert "/fractal)" in capsys.readouterr().err


def test_the_old_module_still_offers_every_name():
    """`dfractal_dask.metrics` (its `--preload` and its importers) re-exports the
    parts that protocol and diagnostics took, the same objects."""
    from dfractal_dask import diagnostics, protocol
    from dfractal_dask.diagnostics import report

    for name in metrics.__all__:
        new = next(m for m in (protocol, diagnostics, report) if hasattr(m, name))
        assert getattr(metrics, name) is getattr(new, name), name
    assert metrics.dask_setup is diagnostics.dask_setup
    assert {"task_key", "preview_block", "format_metrics", "collect", "ensure_plugin", "to_json"} <= set(
        metrics.__all__
    )
