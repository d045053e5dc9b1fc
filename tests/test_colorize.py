import numpy as np
import pytest
import xarray as xr
from PIL import Image

from dfractal_dask import colorize, fractal_dataset, save_png, seed_colours, seed_lut
from dfractal_dask.view import View


def test_seed_pixel_rule_matches_seed_vectors(seed_vectors):
    lut = seed_lut("Hippi", 6000)
    rows = seed_vectors["pixels"]
    it = np.array([r[0] for r in rows], np.uint16)
    norm = np.array([r[1] for r in rows], np.float64)
    rgba = seed_colours(it, norm, 800, lut)
    for (_, _, expected), got in zip(rows, rgba, strict=True):
        if expected is None:
            assert got.tolist() == [0, 0, 0, 0]
        else:
            assert got.tolist() == [*expected, 255]


def test_beyond_the_table_is_transparent():
    lut = seed_lut("Hippi", 800)  # 801 entries
    rgba = seed_colours(np.array([0, 800], np.uint16), np.array([1.0, 0.0]), 2000, lut)
    assert rgba[0].tolist() == [0, 0, 0, 0]  # v = 2000 beyond the table
    assert rgba[1].tolist() == [0, 0, 0, 0]  # norm 0: log = -inf


def _manual(ds, palette, step):
    n = ds.attrs["supersample"]
    s = seed_colours(ds.iterations.values, ds.norm.values, ds.attrs["iters"], seed_lut(palette, step))
    h, w = s.shape[0] // n, s.shape[1] // n
    sums = s.reshape(h, n, w, n, 4).astype(np.uint32).sum(axis=(1, 3))
    return ((sums + n * n // 2) // (n * n)).astype(np.uint8)


def test_colorize_averages_supersamples_and_is_lazy_safe():
    view = View(xpos=-0.5, ypos=0.0, span=3.0, width=24, height=18, supersample=3)
    lazy = fractal_dataset(view, 60, chunk_rows=9)
    eager = lazy.compute()
    expected = _manual(eager, "Plan9", 600)
    assert expected.shape == (18, 24, 4)
    assert np.array_equal(colorize(eager, "Plan9", 600), expected)
    assert np.array_equal(colorize(lazy, "Plan9", 600), expected)
    # blocks that do not hold whole pixel rows are re-cut, same picture
    odd = eager.chunk({"im": 4})
    assert np.array_equal(colorize(odd, "Plan9", 600), expected)


def test_pixel_with_some_transparent_samples_is_partly_transparent():
    # 2x2 samples per pixel; one sample has norm 0 (c = 0): transparent
    it = np.full((2, 2), 5, np.uint16)
    norm = np.full((2, 2), 9.0, np.float32)
    norm[0, 0] = 0.0
    ds = xr.Dataset(
        {"iterations": (("im", "re"), it), "norm": (("im", "re"), norm)}, attrs={"iters": 10, "supersample": 2}
    )
    px = colorize(ds, "Hippi", 800)
    opaque = seed_colours(it[1:, 1:], norm[1:, 1:], 10, seed_lut("Hippi", 800))[0, 0]
    assert px.shape == (1, 1, 4)
    assert px[0, 0, 3] == (3 * 255 + 2) // 4  # rounded mean of 255, 255, 255, 0
    assert px[0, 0, :3].tolist() == [(3 * int(c) + 2) // 4 for c in opaque[:3]]


def test_colorize_rejects_non_renders():
    with pytest.raises(TypeError, match="iterations"):
        colorize(xr.Dataset(), "Hippi")


def test_save_png_round_trip(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    out = save_png(rgba, tmp_path / "sub" / "x.jpg")  # always PNG, whatever the suffix
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
        assert np.array_equal(np.asarray(im), rgba)
    with pytest.raises(ValueError, match="uint8"):
        save_png(rgba.astype(np.float32), tmp_path / "y.png")
