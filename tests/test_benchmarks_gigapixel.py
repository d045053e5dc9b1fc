"""benchmarks/gigapixel.py, run tiny (512x512 and 1024x1024, one repeat) on both
of its setups: the embedded 2-process cluster with a local store, and a real
`dask scheduler` + 2 `dask worker` processes with the stores on the S3 test
server (this test's, so the stores can be read after the run)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto.server")

from s3server import s3_server

from dfractal_dask import open_level, open_render, pyramid_levels

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gigapixel.py"
SIZES = (512, 1024)
NUMBER = r"[0-9]+(?:\.[0-9]+)?"
# a render's line: "    <what>: wall X s  render X s[  pyramid X s]  X M samples  X M samples/s/core  X G it/s/core
# client peak X MiB[  tree peak X MiB]  (best of 1: X)"
RUN = re.compile(
    rf"^    (?P<what>.+?): wall (?P<wall>{NUMBER}) s  render (?P<render>{NUMBER}) s"
    rf"(?:  pyramid (?P<pyramid>{NUMBER}) s)?  (?P<samples>{NUMBER}) M samples  (?P<per_core>{NUMBER}) M samples/s/core"
    rf"  (?P<it_per_core>{NUMBER}) G it/s/core  client peak (?P<client>{NUMBER}) MiB"
    rf"(?:  tree peak (?P<tree>{NUMBER}) MiB)?  \(best of 1: (?P<busy>{NUMBER})\)$"
)
RATIO = re.compile(
    rf"^      ratio to the seed default per core: samples ({NUMBER})  iterations ({NUMBER})  \(goal >= 0.9\);"
    rf" the render alone: samples ({NUMBER})  iterations ({NUMBER})$"
)
TASKS = re.compile(
    rf"^      the workers' seconds in its tasks: kernel ({NUMBER})  write ({NUMBER})  picture ({NUMBER})"
    rf" of ({NUMBER}) core-seconds$"
)
LEVELS = re.compile(r"^      store (?P<store>\S+) levels: (?P<levels>.+)$")
RSS = re.compile(rf"^    client peak RSS 1024x1024 vs 512x512: ({NUMBER}) vs ({NUMBER}) MiB, ratio ({NUMBER})  \(goal")


def _sections(out: str) -> dict[str, list[str]]:
    # the lines of each setup, by its "(a)" / "(b)"
    sections: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("("):
            sections[line[:3]] = []
        elif sections:
            sections[list(sections)[-1]].append(line)
    return sections


def _check_setup(lines: list[str], tree: bool) -> dict[str, str]:
    runs = [m for m in map(RUN.match, lines) if m]
    assert [m["what"] for m in runs] == [
        "seed default 1024x768 at 8x8",
        "512x512 at 1x1 with pyramid, no picture",
        "1024x1024 at 1x1 with pyramid, no picture",
    ], lines
    seed, *big = runs
    assert float(seed["samples"]) == pytest.approx(50.3, abs=0.05)  # 1024x768 at 8x8 samples, in M
    assert seed["pyramid"] is None and all(float(m["pyramid"]) > 0 for m in big)
    for m, n in zip(big, SIZES, strict=True):
        assert float(m["samples"]) == pytest.approx(n * n / 1e6, abs=0.05)
        # the best run's busy seconds are its render's with its pyramid's
        assert float(m["busy"]) == pytest.approx(float(m["render"]) + float(m["pyramid"]), abs=0.011)
    for m in runs:
        wall, render, client = float(m["wall"]), float(m["render"]), float(m["client"])
        assert 0 < render < wall and 100 < client < 2000, m.group(0)
        assert float(m["per_core"]) > 0 and float(m["it_per_core"]) > 0
        assert (m["tree"] is not None) == tree
        if tree:
            assert float(m["tree"]) > client  # the workers' processes with it
    tasks = [m for m in map(TASKS.match, lines) if m]
    assert len(tasks) == len(runs) and all(float(m.group(1)) > 0 for m in tasks)
    # the baseline colours its picture; the big renders (--no-picture) colour nothing
    assert float(tasks[0].group(3)) > 0 and all(float(m.group(3)) == 0 for m in tasks[1:])
    ratios = [m for m in map(RATIO.match, lines) if m]
    assert len(ratios) == 2
    for m in ratios:  # without the pyramid's seconds, the ratios are higher (or equal: its 0.0 s, rounded)
        assert 0 < float(m.group(1)) <= float(m.group(3)) and 0 < float(m.group(2)) <= float(m.group(4))
    (rss,) = [m for m in map(RSS.match, lines) if m]
    assert float(rss.group(3)) == pytest.approx(float(rss.group(1)) / float(rss.group(2)), abs=0.01)
    assert any(line.startswith("    load average after ") for line in lines)
    return {m["store"]: m["levels"] for m in map(LEVELS.match, lines) if m}


def test_tiny_sizes_on_both_setups_print_their_numbers_and_leave_readable_stores(tmp_path):
    with s3_server() as s3:
        s3.make_bucket("giga")
        done = subprocess.run(
            [sys.executable, SCRIPT, "--sizes", ",".join(map(str, SIZES)), "--repeats", "1", "--workdir", tmp_path,
             "--s3-endpoint", s3.endpoint_url, "--bucket", "giga"],
            capture_output=True, text=True, timeout=540, env={**os.environ, **s3.env},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        print(done.stdout)
        sections = _sections(done.stdout)
        assert list(sections) == ["(a)", "(b)"], done.stdout
        local = _check_setup(sections["(a)"], tree=True)
        remote = _check_setup(sections["(b)"], tree=False)
        levels = {512: "512x512 256x256", 1024: "1024x1024 512x512 256x256"}
        assert local == {str(tmp_path / "embedded" / f"g{n}.zarr"): levels[n] for n in SIZES}
        assert remote == {f"s3://giga/g{n}.zarr": levels[n] for n in SIZES}

        # the stores are there and readable: on disk, and in the bucket, with their pyramid's levels
        for n in SIZES:
            path, url = tmp_path / "embedded" / f"g{n}.zarr", f"s3://giga/g{n}.zarr"
            assert not (tmp_path / "embedded" / f"g{n}.png").exists()  # (--no-picture: the store and its pyramid)
            assert (tmp_path / "embedded" / "seed.png").stat().st_size > 1000  # the baseline writes its picture
            on_disk = open_render(path)
            in_s3 = open_render(url, storage_options=s3.storage_options)
            assert on_disk.iterations.shape == in_s3.iterations.shape == (n, n)
            np.testing.assert_array_equal(on_disk.iterations.values, in_s3.iterations.values)
            s3_levels = pyramid_levels(url, storage_options=s3.storage_options)
            assert [(lv.height, lv.width) for lv in s3_levels] == [(n >> k, n >> k) for k in range(len(s3_levels))]
            top = len(s3_levels) - 1
            keys = s3.client().list_objects_v2(Bucket="giga", Prefix=f"g{n}.zarr/pyramid/{top}/")["Contents"]
            assert any(k["Key"].endswith("/iterations/c/0/0") for k in keys)
            np.testing.assert_array_equal(
                open_level(url, top, storage_options=s3.storage_options).iterations.values,
                open_level(path, top).iterations.values,
            )
