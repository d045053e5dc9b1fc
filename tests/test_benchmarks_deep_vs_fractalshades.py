"""benchmarks/deep_vs_fractalshades.py: its skip line, its checks of input, and its
direct-iteration sampler against dfractal_dask.perturbation.escape_exact (no
Fractalshades here: the benchmark itself needs one, in a virtualenv of its own)."""

import importlib.util
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from dfractal_dask import View
from dfractal_dask import perturbation as P

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "deep_vs_fractalshades.py"
spec = importlib.util.spec_from_file_location("deep_vs_fractalshades", SCRIPT)
B = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = B  # dataclasses look their module up there
spec.loader.exec_module(B)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("extra", [["--fractalshades-venv", "/nonexistent/venv"], []])
def test_without_a_fractalshades_virtualenv_it_prints_one_line_and_exits_0(extra):
    r = run(*extra, "--views", "a,b,c,d")
    assert r.returncode == 0 and r.stderr == ""
    assert len(r.stdout.splitlines()) == 1 and r.stdout.startswith("deep_vs_fractalshades: skipped")


def test_a_virtualenv_without_fractalshades_is_skipped_in_one_line(tmp_path):
    (tmp_path / "bin").mkdir()
    os.symlink(sys.executable, tmp_path / "bin" / "python")  # this python has no fractalshades
    r = run("--fractalshades-venv", str(tmp_path))
    assert r.returncode == 0 and r.stderr == ""
    (line,) = r.stdout.splitlines()
    assert "skipped" in line and "cannot import fractalshades" in line


@pytest.mark.parametrize(("args", "word"), [(["--views", "a,z"], "--views"), (["--repeats", "0"], "--repeats")])
def test_bad_input_is_one_line_and_exit_2(args, word):
    r = run("--fractalshades-venv", "/nonexistent", *args)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and word in r.stderr


def test_views_are_the_issues():
    assert [(v.span, v.iters, v.target) for v in B.VIEWS.values()] == [
        ("1e-30", 5_000, 0.8),
        ("1e-60", 20_000, 0.8),
        ("1.7e-157", 1_000_000, 0.5),
        ("1e-40", 1_000_000, 0.5),
    ]
    for v in B.VIEWS.values():
        assert View(v.x, v.y, span=float(v.span), width=800, height=600, supersample=1).deep


def test_direct_iteration_agrees_with_escape_exact():
    v = View(B.MIS_X, B.MIS_Y, span=1e-30, width=8, height=6, supersample=1)
    bits = B.bits_for(v.step)
    assert bits == P.precision_bits(v)
    counts = []
    for i, j in [(0, 0), (2, 5), (5, 7), (3, 1)]:
        re, im = P.sample_point(v, i, j)
        exact = P.escape_exact(v, i, j, 1000)[0]
        assert B.escape_direct(re, im, 1000, bits) == B.escape_mpfr(re, im, 1000, bits) == exact
        counts.append(exact)
    assert len(set(counts)) > 1 and max(counts) < 1000
    # the minibrot view's centre is its nucleus: it never escapes
    mini = View(B.MINI_X, B.MINI_Y, span=1e-40, width=8, height=6, supersample=1)
    re, im = P.sample_point(mini, 2.5, 3.5)
    assert B.escape_direct(re, im, 3000, B.bits_for(mini.step)) == P.escape_exact(mini, 2.5, 3.5, 3000)[0] == 3000


def test_grid_offset_is_in_sample_steps():
    v = B.VIEWS["a"]
    view = View(v.x, v.y, span=float(v.span), width=8, height=6, supersample=1)
    corners = [P.sample_point(view, 0, 0), P.sample_point(view, 5, 7)]
    as_text = [[str(re), str(im)] for re, im in corners]  # Fraction's "p/q": exact
    assert B.grid_offset(v, 8, 6, as_text) == 0
    shifted = [as_text[0], [as_text[1][0], str(corners[1][1] + Fraction(view.step))]]
    assert B.grid_offset(v, 8, 6, shifted) == pytest.approx(1)


def test_check_view_finds_who_is_right_where_the_two_disagree(tmp_path):
    v = B.DeepView("t", "test", B.MIS_X, B.MIS_Y, "1e-30", 400, 0.8)
    view = View(v.x, v.y, span=1e-30, width=8, height=6, supersample=1)
    exact = np.array([[P.escape_exact(view, i, j, 400)[0] for j in range(8)] for i in range(6)])
    other = exact.copy()
    other[4, 2] += 1  # one pixel wrong in the second tool
    c = B.check_view(v, 8, 6, exact, other, samples=10, workers=1)
    assert c["samples"] == 10 and c["df_exact"] == 1.0 and c["differ"] == c["disputed"] == 1
    assert (c["df_right"], c["fs_right"]) == (1, 0) and c["agree"] == pytest.approx(47 / 48)
    assert (c["neither"], c["changed"], c["unsettled"]) == (0, 0, 0) and c["bits"] == P.precision_bits(view)
    assert sorted(c["pixels"][10:]) == [4 * 8 + 2] and (c["exact"] == exact.ravel()[c["pixels"]]).all()
    B.save(tmp_path, v, exact, other, c)
    assert (np.load(tmp_path / "t-fractalshades.npy") == other).all()
    assert (np.load(tmp_path / "t-check.npz")["exact"] == c["exact"]).all()
