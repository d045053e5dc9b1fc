"""`dfractal recolor` and `dfractal palettes`: colour without recomputing."""

import numpy as np
import pytest
from PIL import Image

from dfractal_dask import colorize, graph, kernels, open_render
from dfractal_dask.cli import main

RENDER = ["render", "--width", "40", "--height", "30", "--smoothness", "2", "--iters", "300", "--quiet"]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = tmp_path_factory.mktemp("recolor")
    assert main([*RENDER, "--palette", "Plan9", "--step", "600", "--outfile", str(d / "r.png")]) == 0
    return d


def _png(path):
    with Image.open(path) as im:
        return np.asarray(im)


def _no_kernel(monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("the fractal kernel ran during a recolour")

    monkeypatch.setattr(kernels, "escape_into", boom)
    monkeypatch.setattr(kernels, "escape_block", boom)
    monkeypatch.setattr(graph, "compute_block", boom)


def test_recolor_equals_colouring_after_the_render_and_never_runs_the_kernel(rendered, monkeypatch):
    _no_kernel(monkeypatch)
    out = rendered / "again.png"
    assert (
        main(["recolor", str(rendered / "r.zarr"), "--palette", "Plan9", "--step", "600", "--outfile", str(out)]) == 0
    )
    assert np.array_equal(_png(out), _png(rendered / "r.png"))


@pytest.mark.parametrize(
    ("flags", "palette", "mode"),
    [
        (["--palette", "Viridis256", "--mode", "smooth"], "Viridis256", "smooth"),
        (["--palette", "Inferno256_r", "--mode", "histogram"], "Inferno256_r", "histogram"),
        (["--palette", "#102030,#f0e0d0", "--mode", "seed"], ["#102030", "#f0e0d0"], "seed"),
        (["--palette", "Biochimist"], "Biochemist", "seed"),
    ],
)
def test_recolor_any_palette_and_mode(rendered, monkeypatch, flags, palette, mode, capsys):
    _no_kernel(monkeypatch)
    out = rendered / f"{mode}.png"
    assert main(["recolor", str(rendered / "r.zarr"), "--outfile", str(out), *flags]) == 0
    assert f"({40}x{30}," in capsys.readouterr().err
    expected = np.asarray(colorize(open_render(rendered / "r.zarr"), palette, 6000, mode))
    assert np.array_equal(_png(out), expected)
    assert len(np.unique(expected.reshape(-1, 4), axis=0)) > 10


def test_recolor_at_another_supersampling(rendered, monkeypatch):
    _no_kernel(monkeypatch)
    out = rendered / "full.png"
    assert main(["recolor", str(rendered / "r.zarr"), "--smoothness", "1", "--outfile", str(out), "-q"]) == 0
    assert _png(out).shape == (60, 80, 4)  # every sample its own pixel


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--palette", "Viridis255"], "did you mean Viridis256"),
        (["--palette", "#12zz45,#000000"], "malformed hex colour"),
        (["--mode", "smoth"], "unknown --mode 'smoth'"),
        (["--interior", "black"], "malformed hex colour"),
        (["--smoothness", "7"], "does not divide"),
        (["--step", "0"], "--step: must be > 0"),
    ],
)
def test_recolor_bad_input(rendered, flags, words, capsys):
    out = rendered / "bad.png"
    assert main(["recolor", str(rendered / "r.zarr"), "--outfile", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err, err
    assert not out.exists()
    open_render(rendered / "r.zarr")  # still whole


@pytest.mark.parametrize(("store", "words"), [("missing.zarr", "no render store"), ("plain", "not a dfractal")])
def test_recolor_bad_store(tmp_path, store, words, capsys):
    (tmp_path / "plain").mkdir()
    assert main(["recolor", str(tmp_path / store)]) == 2
    assert words in capsys.readouterr().err


def test_palettes_command(capsys):
    assert main(["palettes"]) == 0
    out = capsys.readouterr().out
    for name in ("Hippi", "Biochemist", "Fiesta", "Viridis256", "Inferno256", "Category10_10"):
        assert f"  {name}\n" in out
