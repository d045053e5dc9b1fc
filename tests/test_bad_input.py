"""Bad input, tried as a new user would: the API raises ValueError/TypeError with
a useful message, the CLI prints one line and exits 2, nothing is lost.  Also
hypothesis fuzzing of the command line and of View.

(More bad CLI invocations, with their store-untouched checks, are in
test_cli.py and test_recolor.py.)"""

from __future__ import annotations

import contextlib
import io
import math
import shlex
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfractal_dask import View, colorize, fractal_dataset, open_render, render
from dfractal_dask.cli import main
from dfractal_dask.view import MAX_SAMPLES

SMALL = View(-0.5, 0.0, 3.0, 8, 6, 2)


@pytest.fixture(scope="module")
def small_ds():
    return fractal_dataset(SMALL, 50).compute(scheduler="sync")


API_BAD = [
    (lambda ds, p: View(width=0), ValueError, "width"),
    (lambda ds, p: View(height=2.5), TypeError, "height"),
    (lambda ds, p: View(width=True), TypeError, "width"),
    (lambda ds, p: View(xpos=math.nan), ValueError, "xpos"),
    (lambda ds, p: View(ypos=math.inf), ValueError, "ypos"),
    (lambda ds, p: View(span=-1.0), ValueError, "span"),
    (lambda ds, p: View(xpos="half"), ValueError, "xpos must be a decimal number"),
    (lambda ds, p: View(xpos=None), TypeError, "xpos must be a real number"),
    (lambda ds, p: View(span="1e-1600"), ValueError, "span must be at least"),  # past MIN_SPAN
    (lambda ds, p: View(xpos=1e308, span=1e308), ValueError, r"reach past 1e\+150"),
    (lambda ds, p: View(width=2**20, height=2**20, supersample=1), ValueError, "limit"),
    (lambda ds, p: render("not a view"), TypeError, "View"),
    (lambda ds, p: render(SMALL, 0), ValueError, "iters"),
    (lambda ds, p: render(SMALL, 10.5), TypeError, "iters"),
    (lambda ds, p: render(SMALL, 10, chunk_rows=3), ValueError, "multiple of the supersampling"),
    (lambda ds, p: render(SMALL, 10, retries=-1), ValueError, "retries"),
    (lambda ds, p: render(SMALL, 10, resume=True), ValueError, "store_path"),
    (lambda ds, p: render(SMALL, 10, client="no-address"), ValueError, "bad scheduler address"),
    (lambda ds, p: colorize(ds, "Nope"), ValueError, "Nope"),
    (lambda ds, p: colorize(ds, "Hippi", mode="smoth"), ValueError, "did you mean smooth"),
    (lambda ds, p: colorize(ds, ["#12", "#ffffff"]), ValueError, "#12"),
    (lambda ds, p: colorize(ds, "Hippi", supersample=3), ValueError, "does not divide"),
    (lambda ds, p: colorize(ds, "Hippi", interior="#ggg"), ValueError, "#ggg"),
    (lambda ds, p: colorize("not a dataset"), TypeError, "Dataset"),
    (lambda ds, p: open_render(p / "missing.zarr"), ValueError, "no render store"),
    (lambda ds, p: open_render(p / "file.zarr"), ValueError, "is a file"),
]


@pytest.mark.parametrize(("call", "exc", "words"), API_BAD, ids=[f"api{i}" for i in range(len(API_BAD))])
def test_api_bad_input_raises_a_useful_error(call, exc, words, small_ds, tmp_path):
    (tmp_path / "file.zarr").write_text("not a store")
    with pytest.raises(exc, match=words):
        call(small_ds, tmp_path)


def test_a_store_that_would_not_fit_on_the_disk_is_refused(monkeypatch, tmp_path, capsys):
    import shutil as real_shutil

    from dfractal_dask.store import samples as store

    usage = real_shutil.disk_usage(tmp_path)
    monkeypatch.setattr(store.shutil, "disk_usage", lambda p: usage._replace(free=10_000))  # a full disk
    with pytest.raises(ValueError, match=r"would need about .* GB free"):
        render(View(-0.5, 0, 3.0, 400, 300, 2), 10, store_path=tmp_path / "full.zarr")
    assert main(["render", "--width", "400", "--height", "300", "--outfile", str(tmp_path / "f.png")]) == 2
    assert "GB free" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing made


def test_a_picture_that_would_not_fit_in_memory_is_refused(tmp_path, capsys):
    # 200000 x 200000 pixels: within MAX_SAMPLES, far beyond this machine's memory
    assert MAX_SAMPLES >= 200_000**2
    argv = [
        "render",
        "--width",
        "200000",
        "--height",
        "200000",
        "--smoothness",
        "1",
        "--outfile",
        str(tmp_path / "h.png"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "200000x200000 picture needs about" in err and "GB are available" in err
    assert not list(tmp_path.iterdir())


# -- fuzzing -------------------------------------------------------------------------------------------
class _Reached(Exception):
    """The command got past every check, to the point of connecting to a cluster."""


FLAGS = ["--width", "--height", "--xpos", "--ypos", "--escape-radius", "--iters", "--step", "--smoothness",
         "--palette", "--chunk-rows", "--retries", "--mode", "--interior", "--scheduler", "--workers", "--store",
         "--tls-cert", "--port", "--span", "--save-dir"]  # fmt: skip
VALUES = st.one_of(
    st.integers(-(10**12), 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
    st.sampled_from(["nan", "inf", "-0", "1e400", "0x10", "#zzz", "#fff,#000", "Hippi", "smooth", "tls://x:1", ""]),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(["render", "recolor", "explore", "info"]),
    pairs=st.lists(st.tuples(st.sampled_from(FLAGS), VALUES), max_size=5),
    extra=st.lists(st.text(max_size=8), max_size=2),
)
def test_fuzzed_command_lines_fail_in_one_line_or_reach_the_cluster(command, pairs, extra, monkeypatch):
    from dfractal_dask.cli import explore, recolor, render, zoom

    def refuse(*args, **kwargs):
        raise _Reached

    for command_module in (render, zoom, recolor, explore):  # each connects by its own name for connect
        monkeypatch.setattr(command_module, "connect", refuse)
    argv = [command, *extra, *(x for pair in pairs for x in pair)]
    err = io.StringIO()
    with tempfile.TemporaryDirectory() as cwd, contextlib.chdir(cwd), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except _Reached:
            return  # valid input: it would now render
        assert not list(Path(cwd).iterdir()), "bad input left something behind"
    text = err.getvalue()
    assert code == 2, (shlex.join(argv), code, text)
    assert text.startswith("dfractal: error: ") and text.count("\n") == 1, (shlex.join(argv), text)


ANY = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(10**15), 10**15), st.booleans(),
                st.text(max_size=5), st.none())  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(xpos=ANY, ypos=ANY, span=ANY, width=ANY, height=ANY, supersample=ANY)
def test_fuzzed_views_are_valid_or_refused(xpos, ypos, span, width, height, supersample):
    try:
        v = View(xpos, ypos, span, width, height, supersample)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message, not a bare exception
        return
    # what was accepted is a usable view
    assert v.n_samples <= MAX_SAMPLES and v.step > 0 and math.isfinite(v.step)
    assert math.isfinite(v.re0) and math.isfinite(v.im0)
    cols = np.array([0, v.sample_width - 1])
    assert np.all(np.isfinite(v.re(cols))) and v.re(cols)[0] <= v.re(cols)[-1]
