"""dfractal bench: the strong-scaling study, on the session's real 2-worker cluster."""

import csv
import json
import subprocess

import pytest
from distributed import get_task_stream

from dfractal_dask import View, render
from dfractal_dask.bench import FIELDS, format_table, strong_scaling, write_results

VIEW = View(-0.6, 0.0, 2.8, 64, 48, 2)  # 128 x 96 samples
ITERS = 300


@pytest.fixture(scope="module")
def results(client):
    return strong_scaling(VIEW, ITERS, workers=[1, 2], chunk_rows=[8, 32], scheduler=client.scheduler.address)


def test_every_configuration_renders_the_same_picture_and_reports_what_moved(results):
    assert [(r["workers"], r["chunk_rows"], r["output"]) for r in results] == [
        (w, c, o) for w in (1, 2) for c in (8, 32) for o in ("store", "gather")
    ]
    assert len({r["iterations"] for r in results}) == 1 and results[0]["iterations"] > 128 * 96
    samples = 128 * 96
    for r in results:
        assert set(FIELDS) <= set(r)
        assert r["blocks"] == 96 // r["chunk_rows"] and r["samples"] == samples
        assert r["seconds"] > 0 and r["tasks"] >= r["blocks"]
        if r["output"] == "gather":  # every count (uint16) and norm (float32) crossed to the client
            assert r["bytes_to_client"] == samples * 6 and r["bytes_to_store"] == 0
        else:  # the data went to the store; a small dict per block to the client
            assert r["bytes_to_store"] > 0 and r["bytes_to_client"] < 400 * r["blocks"]
    for r in results:
        base = next(
            b for b in results if b["workers"] == 1 and (b["chunk_rows"], b["output"]) == (r["chunk_rows"], r["output"])
        )
        assert r["speedup"] == pytest.approx(base["seconds"] / r["seconds"])
        assert r["efficiency"] == pytest.approx(r["speedup"] / r["workers"])
    assert all(r["speedup"] == 1.0 for r in results if r["workers"] == 1)
    # more blocks, more tasks
    t = {(r["workers"], r["chunk_rows"], r["output"]): r["tasks"] for r in results}
    assert t[(1, 8, "store")] > t[(1, 32, "store")]


def test_workers_restricts_a_render_to_those_workers(client):
    addr = sorted(client.scheduler_info()["workers"])[0]
    with get_task_stream(client) as ts:
        render(VIEW, ITERS, client=client, chunk_rows=8, workers=[addr])
    assert len(ts.data) >= 12 and {t["worker"] for t in ts.data} == {addr}


def test_results_are_written_as_csv_json_and_a_bokeh_page(results, tmp_path):
    paths = write_results(results, tmp_path / "out")
    with paths["csv"].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(results) and rows[0].keys() == set(FIELDS)
    assert float(rows[-1]["seconds"]) == pytest.approx(results[-1]["seconds"])
    assert json.loads(paths["json"].read_text())["results"] == results
    html = paths["html"].read_text()
    assert "Bokeh" in html and "cdn.bokeh.org" not in html  # BokehJS inline: works offline
    table = format_table(results)
    assert table.count("\n") == len(results) + 1 and "| 2 | 32 | 3 | gather |" in table


def _fake_results() -> list[dict]:
    # a small table as strong_scaling returns it: 1, 2 and 4 workers, two block sizes, two outputs
    rows = []
    for cr in (16, 64):
        for out in ("store", "gather"):
            for w in (1, 2, 4):
                seconds = 8.0 / w**0.8 + cr / 100
                rows.append({"workers": w, "chunk_rows": cr, "output": out, "seconds": seconds})
    for r in rows:
        base = next(
            b for b in rows if b["workers"] == 1 and (b["chunk_rows"], b["output"]) == (r["chunk_rows"], r["output"])
        )
        r["speedup"] = base["seconds"] / r["seconds"]
    return rows


def _bokeh_objects(html: str) -> list[dict]:
    """Every model in the document a bokeh page embeds (its JSON script), by reference resolved."""
    import re

    docs = json.loads(re.search(r'<script type="application/json" id="[^"]+">\s*(.+?)\s*</script>', html, re.S)[1])
    found = []

    def walk(x):
        if isinstance(x, dict):
            if x.get("type") == "object":
                found.append(x)
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(docs)
    return found


def test_bench_plot_legends_sit_outside_and_ticks_are_whole_workers(tmp_path):
    """The legend of each plot is laid out to the right of its plot area (so it
    covers no line), and the x axes tick at the measured worker counts only."""
    paths = write_results(_fake_results(), tmp_path)
    objects = _bokeh_objects(paths["html"].read_text())
    figures = [o for o in objects if o["name"] == "Figure"]
    assert [f["attributes"]["title"]["attributes"]["text"] for f in figures] == ["time", "speedup"]
    for fig in figures:
        a = fig["attributes"]
        right = [r for r in a.get("right", []) if r.get("name") == "Legend"]
        assert len(right) == 1 and not [r for r in a.get("center", []) if r.get("name") == "Legend"]
        labels = [i["attributes"]["label"]["value"] for i in right[0]["attributes"]["items"]]
        assert "16 rows/block, store" in labels and "64 rows/block, gather" in labels
        (xaxis,) = a["below"]
        ticker = xaxis["attributes"]["ticker"]
        assert ticker["name"] == "FixedTicker" and ticker["attributes"]["ticks"] == [1, 2, 4]
        assert ticker["attributes"].get("minor_ticks", []) == []


@pytest.mark.slow
@pytest.mark.browser
def test_bench_plot_draws_in_chromium(results, tmp_path):
    import os

    if not os.path.exists("/usr/bin/chromium"):
        pytest.skip("needs Debian's chromium")
    from playwright.sync_api import sync_playwright

    paths = write_results(results, tmp_path)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox", "--disable-gpu"])
        page = b.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(paths["html"].as_uri())
        page.wait_for_function("document.querySelectorAll('.bk-Figure, .bk-Row').length > 0", timeout=30_000)
        page.wait_for_function("Bokeh.documents.length > 0 && Bokeh.documents[0].roots().length == 1", timeout=30_000)
        titles = page.evaluate("Bokeh.documents[0].roots()[0].children.map(f => f.title.text)")
        legend = page.evaluate(
            "Bokeh.documents[0].roots()[0].children[1].right.filter(r => r.type == 'Legend')"
            ".map(l => l.items.map(i => i.label.value))[0]"
        )
        b.close()
    assert titles == ["time", "speedup"] and not errors
    assert "ideal" in legend and "8 rows/block, store" in legend and "32 rows/block, gather" in legend


@pytest.mark.parametrize(
    "args, words",
    [
        (["--workers", "0"], "must be > 0"),
        (["--workers", "1,x"], "positive whole numbers"),
        (["--chunk-rows", "12"], "multiple of the supersampling"),
        (["--outputs", "disk"], "--outputs takes store and/or gather"),
        (["--out", "FILE"], "is a file"),
        (["--iters", "-3"], "must be > 0"),
    ],
)
def test_bench_bad_input_is_one_line_and_exit_2(args, words, tmp_path):
    (tmp_path / "FILE").write_text("x")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    p = subprocess.run(["dfractal", "bench", *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 2, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and words in p.stderr, p.stderr


def test_bench_command_writes_its_table_and_files(client, tmp_path):
    argv = ["dfractal", "bench", "--workers", "1,2", "--chunk-rows", "16", "--outputs", "store",
            "--width", "32", "--height", "24", "--smoothness", "2", "--iters", "100",
            "--scheduler", client.scheduler.address, "--out", str(tmp_path / "b")]  # fmt: skip
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0].startswith("| workers |") and len(lines) == 4
    assert lines[2].startswith("| 1 | 16 | 3 | store |") and lines[3].startswith("| 2 | 16 | 3 | store |")
    assert {f.name for f in (tmp_path / "b").iterdir()} == {"bench.csv", "bench.json", "bench.html"}


@pytest.mark.parametrize(
    "kwargs, exc",
    [
        ({"workers": [0, 2]}, ValueError),
        ({"chunk_rows": [3]}, ValueError),
        ({"outputs": ["disk"]}, ValueError),
        ({"repeats": 0}, ValueError),
        ({"iters": 0}, ValueError),
    ],
)
def test_strong_scaling_bad_arguments(kwargs, exc):
    args = {"iters": ITERS, **kwargs}
    with pytest.raises(exc):
        strong_scaling(VIEW, args.pop("iters"), **args)


@pytest.mark.parametrize("workers", ["tcp://127.0.0.1:1", [], [3]])
def test_render_workers_must_be_a_list_of_addresses(workers, tmp_path):
    with pytest.raises(TypeError, match="workers must be a non-empty list"):
        render(VIEW, ITERS, store_path=tmp_path / "x.zarr", workers=workers)
    assert not (tmp_path / "x.zarr").exists()  # refused before any store is made
