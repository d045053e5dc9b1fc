"""Adversarial numbers and sizes (issue 28): every centre, span, limit and
picture size is answered in bounded time, and work that cannot fit is refused
up front, naming the figure.

The rules tested: a centre given as a decimal is rounded to a multiple of
:data:`~dfractal_dask.view.CENTRE_QUANTUM` (1e-1540) and refused from
:data:`~dfractal_dask.view.MAX_COORDINATE` (1e150) up; a span below
:data:`~dfractal_dask.view.MIN_SPAN` (1e-1500) is refused whatever its
exponent; a view whose smallest block (``supersample`` sample rows) holds more
than :data:`~dfractal_dask.spec.MAX_BLOCK_SAMPLES` samples, or a
``chunk_rows`` making blocks of more than
:data:`~dfractal_dask.spec.MAX_CHUNK_SAMPLES`, is refused before a cluster
starts or a store is touched.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from dfractal_dask import View, fractal_dataset, open_render, render, zoom_views
from dfractal_dask.cli import main
from dfractal_dask.graph import check_zoom_size
from dfractal_dask.spec import MAX_BLOCK_SAMPLES, MAX_CHUNK_SAMPLES, RenderSpec
from dfractal_dask.view import CENTRE_QUANTUM, MAX_COORDINATE, MIN_SPAN, parse_coordinate, parse_span

ROOT = Path(__file__).resolve().parents[1]
#: A bound no answer may reach (each one takes seconds: the interpreter's
#: imports, and for a render a one-worker cluster and a tiny picture).
BOUND = 60
SMALL = ["--width", "8", "--height", "6", "--cluster", "threads", "--workers", "1", "-q"]
DIGITS = "7" * 100_000  # a 100 000-digit fraction


def _cli(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess:
    # `dfractal render ARGV` in its own interpreter, bounded: it must finish (TimeoutExpired fails the test)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    argv = ("render", "--outfile", str(tmp_path / "p.png"), *argv)
    return subprocess.run([sys.executable, "-m", "dfractal_dask", *argv], capture_output=True, text=True,
                          timeout=BOUND, env=env, cwd=tmp_path)  # fmt: skip


def _refused(done: subprocess.CompletedProcess, tmp_path: Path, *words: str) -> str:
    # exit 2, one line naming `words`, nothing made
    err = done.stderr
    assert done.returncode == 2, err
    assert err.count("\n") == 1 and err.startswith("dfractal: error: "), err
    assert len(err) < 600, err  # no 100 000 digits echoed
    for w in words:
        assert w in err, err
    assert not list(tmp_path.iterdir()), "a refused render left something behind"
    return err


def _rendered(done: subprocess.CompletedProcess, tmp_path: Path) -> dict:
    # exit 0, the picture and the store written: the store's attributes
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.png").stat().st_size > 0
    return dict(open_render(tmp_path / "p.zarr").attrs)


def _quick(call, *args, **kwargs):
    # call(*args) in well under a second: its result, or the exception it raised
    t0 = time.perf_counter()
    try:
        result = call(*args, **kwargs)
    except (ValueError, TypeError) as exc:
        result = exc
    assert time.perf_counter() - t0 < 1.0, (call, args, kwargs)
    return result


# -- 1. centres, spans and limits in bounded time -----------------------------------------------------
@pytest.mark.cluster
@pytest.mark.parametrize("xpos", ["1e-99999999999", "1e-9999999"])
def test_a_centre_far_below_any_step_renders_at_zero(xpos, tmp_path):
    attrs = _rendered(_cli(tmp_path, "--xpos", xpos, "--span", "1e-300", *SMALL), tmp_path)
    assert Decimal(attrs["centre_re"]) == 0 and attrs["span"] == "1E-300" and attrs["perturbation"]


@pytest.mark.cluster
def test_a_100000_digit_centre_is_rounded_to_the_centre_grid(tmp_path):
    done = _cli(tmp_path, "--xpos", "-1." + DIGITS, "--ypos", "0." + DIGITS, "--span", "1e-300", *SMALL)
    attrs = _rendered(done, tmp_path)
    places = -CENTRE_QUANTUM.as_tuple().exponent  # 1540
    assert attrs["centre_re"] == "-1." + "7" * (places - 1) + "8"  # rounded half to even at 1540 places
    assert attrs["centre_im"] == "0." + "7" * (places - 1) + "8"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--xpos", "1e+99999999999"], ["--xpos", "below 1e+150"]),
        (["--ypos", "-1e+99999999999"], ["--ypos", "below 1e+150"]),
        (["--xpos", "1" + DIGITS], ["--xpos", "below 1e+150", "characters"]),  # 100 001 digits, too large
        (["--xpos", "0.1x" + DIGITS], ["--xpos", "expected a finite decimal number", "characters"]),
        (["--span", "1e-99999999"], ["span must be at least 1E-1500", "deepest span supported"]),
        (["--span", "1e-2000"], ["span must be at least 1E-1500"]),
        (["--span", "1e+99999999999"], ["span"]),
        (["--span", "0." + "0" * 2000 + "1"], ["span must be at least 1E-1500, got 1E-2001"]),
        (["--iters", "99999999999999"], ["--iters"]),
        (["--iters", "99999999999999", "--mode", "smooth"], ["--iters must be between 1 and 4294967294"]),
        (["--iters", "9" * 30], ["--iters", "2**63 - 1"]),
        (["--width", "9" * 5000], ["--width", "characters"]),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None,
)
def test_the_cli_refuses_numbers_past_the_rules_in_one_line(argv, words, tmp_path):
    _refused(_cli(tmp_path, *argv, *SMALL), tmp_path, *words)


def test_the_api_answers_any_centre_at_once():
    q = CENTRE_QUANTUM
    assert q == Decimal("1e-1540") and q < MIN_SPAN / 2**36 * Decimal("1e-28")  # far below any step
    for text in ["1e-99999999999", Decimal("1e-99999999999"), "1e-9999999", Decimal("-1e-999999999999999999")]:
        v = _quick(View, xpos=text, ypos=text, span="1e-300", width=8, height=6, supersample=1)
        assert v.xpos == 0.0 and v.centre == (0, 0) and v.extended and v.deep
    for text in ["1e+99999999999", Decimal("1e+99999999999"), "-1e150", "1" + DIGITS, 10**400]:
        exc = _quick(View, xpos=text)
        assert isinstance(exc, ValueError) and "xpos must be" in str(exc), exc
        assert len(str(exc)) < 400  # a long input is cut in the message
    # a 100 000-digit centre: its first 1540 places, rounded half to even
    v = _quick(View, xpos="0." + DIGITS, ypos=Decimal("-0." + DIGITS), span=Decimal("1e-300"), width=8, height=6)
    want = Decimal("0." + "7" * 1539 + "8")
    assert v.centre == (want, want.copy_negate())  # (-want would round to 28 digits)
    assert _quick(View.from_attrs, v.to_attrs()) == v  # the rounded centre reads back as itself
    assert _quick(parse_coordinate, "x", "1.5e-1540").decimal == _quick(parse_coordinate, "x", "2.5e-1540").decimal
    assert parse_coordinate("x", "1.5e-1540").decimal == Decimal("2e-1540")  # half to even
    assert parse_coordinate("x", "4e-1541") == 0.0
    assert parse_coordinate("x", "-0.00275") == -0.00275  # ordinary centres untouched
    deep = "-1.7499576837060935036022145000001"
    assert str(parse_coordinate("x", deep).decimal) == deep  # digits within the grid kept as given
    # a zoom keeps the rounded centre for every frame, down to the deepest span
    frames = _quick(zoom_views, replace(v, span=3.0), 5, "1e-1500")
    assert {f.centre for f in frames} == {v.centre} and frames[-1].span.decimal == MIN_SPAN


def test_the_api_refuses_spans_past_the_deepest_at_once():
    for span in ["1e-99999999", Decimal("1e-99999999"), "1e-2000", Decimal("1e-1501"), "0." + "0" * 100_000 + "1"]:
        exc = _quick(View, span=span)
        assert isinstance(exc, ValueError) and "span must be at least 1E-1500" in str(exc), exc
        assert len(str(exc)) < 400
    for span in ["1e+99999999999", Decimal("1e99999999999"), "1" + DIGITS]:
        exc = _quick(View, span=span)
        assert isinstance(exc, ValueError) and "span must be finite" in str(exc), exc
    assert isinstance(_quick(parse_span, "span", "1e-1500"), float)  # the deepest supported is accepted
    exc = _quick(View, xpos=1e149, span=1e150)
    assert isinstance(exc, ValueError) and f"reach past {MAX_COORDINATE:g}" in str(exc)


def test_iteration_limits_are_bounded():
    v = View(-0.5, 0, 3.0, 8, 6, 1)
    for iters in [2**32 - 1, 10**30]:
        exc = _quick(fractal_dataset, v, iters)
        assert isinstance(exc, ValueError) and "iters must be between 1 and 4294967294" in str(exc)


# -- 2. resources: blocks, pictures and stores that cannot fit ----------------------------------------
BIG_SMOOTH = ["--width", "200", "--height", "150", "--smoothness", "1000"]


def test_a_smoothness_whose_smallest_block_cannot_fit_is_refused(tmp_path):
    err = _refused(_cli(tmp_path, *BIG_SMOOTH), tmp_path, "--smoothness", "1000", "200,000,000 samples",
                   "2,400,000,000 bytes", f"{MAX_BLOCK_SAMPLES:,} samples")  # fmt: skip
    assert "supersample" in err
    v = View(-0.5, 0, 3.0, 200, 150, 1000)  # a View itself may be that fine; its render may not
    for call in (lambda: RenderSpec.make(v, 100), lambda: fractal_dataset(v, 100),
                 lambda: render(v, 100, store_path=tmp_path / "s.zarr"), lambda: check_zoom_size(v, 2)):  # fmt: skip
        exc = _quick(call)
        assert isinstance(exc, ValueError) and "supersample" in str(exc) and "bytes" in str(exc), exc
    assert not list(tmp_path.iterdir())
    # the largest smallest block allowed: 8 rows of 2**23 samples
    assert RenderSpec.make(View(-0.5, 0, 3.0, 2**20, 8, 8), 100).block_rows == 8


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--width", "1000000000", "--height", "1", "--smoothness", "1"], ["1,000,000,000 samples", "bytes"]),
        (["--width", "1000000000", "--height", "1000000000"], ["the limit is 68,719,476,736"]),
        (
            ["--width", "20000", "--height", "20000", "--smoothness", "1", "--chunk-rows", "20000"],
            ["--chunk-rows (20000)", "400,000,000 samples", "at most 13421 rows"],
        ),
        (["--chunk-rows", "3", "--smoothness", "2"], ["multiple of the supersampling"]),
        (["--chunk-rows", "0"], ["--chunk-rows"]),
        (["--chunk-rows", "9" * 30], ["--chunk-rows", "2**63 - 1"]),
    ],
    ids=lambda v: " ".join(v)[:40] if isinstance(v, list) else None,
)
def test_sizes_that_cannot_fit_are_refused_before_anything_starts(argv, words, tmp_path):
    _refused(_cli(tmp_path, *argv), tmp_path, *words)


def test_chunk_rows_are_bounded_but_a_pyramid_s_blocks_of_a_wide_picture_fit():
    v = View(-0.5, 0, 3.0, 20000, 20000, 1)
    exc = _quick(RenderSpec.make, v, 100, chunk_rows=20000)
    assert isinstance(exc, ValueError) and "chunk_rows (20000)" in str(exc) and "bytes" in str(exc)
    assert RenderSpec.make(v, 100, chunk_rows=13421).block_rows == 13421  # MAX_CHUNK_SAMPLES // 20000
    assert 13421 * 20000 <= MAX_CHUNK_SAMPLES < 13422 * 20000
    # a huge chunk_rows on a small picture is one block of the picture: accepted
    assert RenderSpec.make(View(-0.5, 0, 3.0, 8, 6, 2), 10, chunk_rows=10**30).block_rows == 12
    # a pyramid render's 512-row blocks (pyramid.block_rows) of a 65536-pixel-wide picture at 8x8
    wide = View(-0.5, 0, 3.0, 65536, 4096, 8)
    assert RenderSpec.make(wide, 10, chunk_rows=512).block_rows == 512


def _no_cluster(monkeypatch):
    # in-process CLI runs: reaching a cluster is a failure (the check did not refuse)
    from dfractal_dask.cli import render as render_command

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(render_command, "connect", refuse)


def test_a_store_bigger_than_the_free_disk_is_refused_before_it_is_made(monkeypatch, tmp_path, capsys):
    import shutil as real_shutil

    from dfractal_dask.store import samples

    _no_cluster(monkeypatch)
    usage = real_shutil.disk_usage(tmp_path)
    monkeypatch.setattr(samples.shutil, "disk_usage", lambda p: usage._replace(free=1_000_000))  # 1 MB free
    # 512x384 at 4x4: 3.1 M samples, 19 MB of counts and norms, at least 4.7 MB compressed
    argv = ["render", "--width", "512", "--height", "384", "--smoothness", "4", "--outfile", str(tmp_path / "d.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the store would need about" in err and "0.0 GB free" in err, err
    assert not list(tmp_path.iterdir())


def test_a_picture_bigger_than_the_memory_is_refused_before_anything_starts(monkeypatch, tmp_path, capsys):
    import psutil

    _no_cluster(monkeypatch)
    real = psutil.virtual_memory()
    monkeypatch.setattr(psutil, "virtual_memory", lambda: real._replace(available=10_000_000))  # 10 MB
    argv = ["render", "--width", "2000", "--height", "1000", "--smoothness", "1", "--outfile", str(tmp_path / "m.png")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2000x1000 picture needs about 0.0 GB" in err, err
    assert not list(tmp_path.iterdir())
    # --no-picture: no picture to hold, so no such refusal (the cluster is reached)
    with pytest.raises(AssertionError, match="a cluster was started"):
        main([*argv, "--no-picture"])
