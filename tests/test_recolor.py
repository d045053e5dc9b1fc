"""`dfractal recolor` and `dfractal palettes`: colour without recomputing."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfractal_dask import colorize, graph, kernels, open_level, open_render, pyramid_levels
from dfractal_dask.cli import main
from dfractal_dask.colorize import box_mean, count_cdf, histogram_colors
from dfractal_dask.deepzoom import tiles_folder
from dfractal_dask.palettes import resolve_palette

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


# -- --dzi: the Deep Zoom picture of a store with a pyramid ---------------------------------------------------------
@pytest.fixture(scope="module")
def pyramid_store(rendered):
    """A 150x100 render (300x200 samples, 2x2 a pixel) with its pyramid (`dfractal render --pyramid`)."""
    path = rendered / "p.zarr"
    size = ["--width", "150", "--height", "100", "--smoothness", "2", "--iters", "300"]
    assert main(["render", *size, "--pyramid", "--store", str(path), "--outfile", str(rendered / "p-r.png"), "-q"]) == 0
    assert [(lv.height, lv.width) for lv in pyramid_levels(path)] == [(200, 300), (100, 150)]
    return path


def _dzi_full_level(dzi: Path) -> np.ndarray:
    # the full level's tiles (256 a side, overlap 1: one tile here) as one picture
    level = max(int(p.name) for p in tiles_folder(dzi).iterdir())
    assert sorted(p.name for p in (tiles_folder(dzi) / str(level)).iterdir()) == ["0_0.png"]
    return _png(tiles_folder(dzi) / str(level) / "0_0.png")


def test_recolor_dzi_is_the_png_recolor_writes(pyramid_store, tmp_path, monkeypatch, capsys):
    _no_kernel(monkeypatch)
    flags = ["--palette", "Inferno256_r", "--mode", "histogram"]
    assert main(["recolor", str(pyramid_store), "--outfile", str(tmp_path / "plain.png"), *flags, "-q"]) == 0
    out = tmp_path / "p.dzi"
    assert (
        main(["recolor", str(pyramid_store), "--dzi", str(out), "--outfile", str(tmp_path / "both.png"), *flags]) == 0
    )
    err = capsys.readouterr().err
    assert (
        f"wrote {out} and its tiles in {tmp_path / 'p_files'}" in err
        and f"wrote {tmp_path / 'both.png'} (150x100" in err
    )
    assert 'Size Width="150" Height="100"' in out.read_text()
    plain = _png(tmp_path / "plain.png")
    assert np.array_equal(_dzi_full_level(out), plain)  # pixel-equal to recolor's PNG
    assert np.array_equal(_png(tmp_path / "both.png"), plain)
    assert sorted(int(p.name) for p in tiles_folder(out).iterdir()) == list(range(9))  # ceil(log2(150)) = 8
    # DZI level 7: pyramid level 1 (150x100 samples) coloured (level 0's equalisation), 2x2 samples a pixel
    lv = open_level(pyramid_store, 1).compute()
    cdf = count_cdf(open_render(pyramid_store)["iterations"].values, 300)
    ramp = resolve_palette("Inferno256_r").ramp()
    samples = histogram_colors(lv["iterations"].values, lv["norm"].values, 300, ramp, np.zeros(3), cdf)
    assert np.array_equal(_png(tiles_folder(out) / "7" / "0_0.png"), box_mean(samples, 2))
    # again: refused (exit 2, one line) without --overwrite, replaced with it
    assert main(["recolor", str(pyramid_store), "--dzi", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "exists" in err and "--overwrite" in err, err
    assert main(["recolor", str(pyramid_store), "--dzi", str(out), "--overwrite", "--palette", "Viridis256", "-q"]) == 0
    assert not np.array_equal(_dzi_full_level(out), plain)


def test_recolor_dzi_of_a_store_without_a_pyramid(rendered, tmp_path, capsys):
    out = tmp_path / "p.dzi"
    assert main(["recolor", str(rendered / "r.zarr"), "--dzi", str(out), "--outfile", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no pyramid" in err and "(render it with --pyramid)" in err, err
    assert sorted(tmp_path.iterdir()) == []  # nothing written


def test_recolor_dzi_bad_target(pyramid_store, tmp_path, capsys):
    assert main(["recolor", str(pyramid_store), "--dzi", str(tmp_path / "p.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "must end in .dzi" in err, err
    assert sorted(tmp_path.iterdir()) == []


def test_recolor_dzi_refuses_a_png_too_big_for_memory(pyramid_store, tmp_path, monkeypatch, capsys):
    import psutil

    class Small:
        available = 1000  # bytes: no 150x100 picture fits

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Small())
    out, png = tmp_path / "p.dzi", tmp_path / "p.png"
    assert main(["recolor", str(pyramid_store), "--dzi", str(out), "--outfile", str(png)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--outfile {png}: a 150x100 picture needs about" in err, err
    assert sorted(tmp_path.iterdir()) == []  # refused before anything is written
    # without --outfile the tiles alone (the plain picture, beside the store, skipped with a note)
    pyramid_store.with_suffix(".png").unlink(missing_ok=True)  # (an earlier test's)
    assert main(["recolor", str(pyramid_store), "--dzi", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"no {pyramid_store.with_suffix('.png')}: a 150x100 picture needs about" in err
    assert out.exists() and not pyramid_store.with_suffix(".png").exists()


def test_recolor_dzi_on_a_cluster(pyramid_store, client, tmp_path, monkeypatch):
    _no_kernel(monkeypatch)
    out, png = tmp_path / "c.dzi", tmp_path / "c.png"
    argv = ["recolor", str(pyramid_store), "--dzi", str(out), "--outfile", str(png), "--mode", "smooth", "-q"]
    assert main([*argv, "--scheduler", client.scheduler.address]) == 0
    assert np.array_equal(_dzi_full_level(out), _png(png))
    assert np.array_equal(_png(png), np.asarray(colorize(open_render(pyramid_store), mode="smooth")))
