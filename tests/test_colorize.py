import importlib

import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

import dfractal_dask
from dfractal_dask import colorize, fractal_dataset, seed_colors, seed_lut
from dfractal_dask.colorize import RENAMED, box_mean
from dfractal_dask.view import View

colorize_module = importlib.import_module("dfractal_dask.colorize")  # (dfractal_dask.colorize is the function)


def test_seed_pixel_rule_matches_seed_vectors(seed_vectors):
    lut = seed_lut("Hippi", 6000)
    rows = seed_vectors["pixels"]
    it = np.array([r[0] for r in rows], np.uint16)
    norm = np.array([r[1] for r in rows], np.float64)
    rgba = seed_colors(it, norm, 800, lut)
    for (_, _, expected), got in zip(rows, rgba, strict=True):
        if expected is None:
            assert got.tolist() == [0, 0, 0, 0]
        else:
            assert got.tolist() == [*expected, 255]


def test_beyond_the_table_is_transparent():
    lut = seed_lut("Hippi", 800)  # 801 entries
    rgba = seed_colors(np.array([0, 800], np.uint16), np.array([1.0, 0.0]), 2000, lut)
    assert rgba[0].tolist() == [0, 0, 0, 0]  # v = 2000 beyond the table
    assert rgba[1].tolist() == [0, 0, 0, 0]  # norm 0: log = -inf


def _manual(ds, palette, step):
    n = ds.attrs["supersample"]
    s = seed_colors(ds.iterations.values, ds.norm.values, ds.attrs["iters"], seed_lut(palette, step))
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
    # and so are blocks cut across columns at non-multiples of the supersample
    cols = eager.chunk({"im": 9, "re": 10})
    assert np.array_equal(colorize(cols, "Plan9", 600), expected)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 5), h=st.integers(1, 6), w=st.integers(1, 6), channels=st.sampled_from([3, 4]),
       seed=st.integers(0, 2**32 - 1))  # fmt: skip
def test_box_mean_is_the_rounded_mean_of_each_square(n, h, w, channels, seed):
    samples = np.random.default_rng(seed).integers(0, 256, (h * n, w * n, channels), dtype=np.uint8)
    sums = samples.reshape(h, n, w, n, channels).astype(np.uint32).sum(axis=(1, 3))
    assert np.array_equal(box_mean(samples, n), ((sums + n * n // 2) // (n * n)).astype(np.uint8))


def test_box_mean_refuses_a_block_of_partial_pixels():
    with pytest.raises(ValueError, match="supersample 3 does not divide a 4x3 block"):
        box_mean(np.zeros((3, 4, 4), np.uint8), 3)


def test_pixel_with_some_transparent_samples_is_partly_transparent():
    # 2x2 samples per pixel; one sample has norm 0 (c = 0): transparent
    it = np.full((2, 2), 5, np.uint16)
    norm = np.full((2, 2), 9.0, np.float32)
    norm[0, 0] = 0.0
    ds = xr.Dataset(
        {"iterations": (("im", "re"), it), "norm": (("im", "re"), norm)}, attrs={"iters": 10, "supersample": 2}
    )
    px = colorize(ds, "Hippi", 800)
    opaque = seed_colors(it[1:, 1:], norm[1:, 1:], 10, seed_lut("Hippi", 800))[0, 0]
    assert px.shape == (1, 1, 4)
    assert px[0, 0, 3] == (3 * 255 + 2) // 4  # rounded mean of 255, 255, 255, 0
    assert px[0, 0, :3].tolist() == [(3 * int(c) + 2) // 4 for c in opaque[:3]]


def test_colorize_rejects_non_renders():
    with pytest.raises(TypeError, match="iterations"):
        colorize(xr.Dataset(), "Hippi")


# -- golden: the seed rule, pixel by pixel, in plain Python ---------------------
def _seed_pixel(it, norm, iters, table):
    """SEED.md's pixel colour, spelled out with Python ints (independent of numpy)."""
    import math

    def ch(c):
        return (c * 257) // 255

    def pk(rgb):
        r, g, b = (int(x) for x in rgb)
        return ((ch(r) << 24) | (ch(g) << 16) | (ch(b) << 8) | ch(255)) & 0xFFFFFFFF

    v = (iters - int(it)) + math.log(float(norm))
    k = math.trunc(abs(v))
    if k >= len(table) - 1:
        return [0, 0, 0, 0]
    c1, c2 = pk(table[k]), pk(table[k + 1])
    m = math.trunc(v) & 0xFFFFFFFF
    p = (c1 + m * ((c2 - c1) & 0xFFFFFFFF)) & 0xFFFFFFFF
    return [(p >> 24) & 255, (p >> 16) & 255, (p >> 8) & 255, 255]


@pytest.mark.parametrize("palette", ["Hippi", "Vivid", "Fiesta"])
def test_golden_seed_mode_pixel_by_pixel(palette):
    view = View(xpos=-0.0091275, ypos=0.7899912, span=0.01401245, width=40, height=30, supersample=1)
    ds = fractal_dataset(view, 800).compute(scheduler="sync")
    png = colorize(ds, palette, 6000)
    table = seed_lut(palette, 6000).tolist()
    it, norm = ds.iterations.values, ds.norm.values
    for r in range(30):
        for c in range(40):
            assert png[r, c].tolist() == _seed_pixel(it[r, c], norm[r, c], 800, table), (r, c)


# -- smooth and histogram modes ---------------------------------------------------
GRADIENT = View(xpos=-0.75, ypos=0.35, span=0.2, width=80, height=60, supersample=1)


@pytest.fixture(scope="module")
def gradient():
    return fractal_dataset(GRADIENT, 300).compute(scheduler="sync")


def test_smooth_mode_has_no_bands(gradient):
    from dfractal_dask.colorize import smooth_value

    nu = smooth_value(gradient.iterations.values, gradient.norm.values, 300)
    escaped = ~np.isnan(nu)
    it = gradient.iterations.values.astype(float)
    # the smooth value lies within [it - 1, it + 2) and is not an integer staircase
    assert ((nu[escaped] > it[escaped] - 1) & (nu[escaped] < it[escaped] + 2)).all()
    assert len(np.unique(np.round(nu[escaped], 6))) > 5 * len(np.unique(it[escaped]))
    # neighbours across a count band differ little in colour (greys: the ramp is linear)
    png = np.asarray(colorize(gradient, ["#000000", "#ffffff"], mode="smooth")).astype(int)[..., 0]
    both = escaped[:, 1:] & escaped[:, :-1]
    band_edges = both & (it[:, 1:] != it[:, :-1]) & (np.abs(it[:, 1:] - it[:, :-1]) == 1)
    assert band_edges.sum() > 50
    assert np.median(np.abs(png[:, 1:] - png[:, :-1])[band_edges]) <= 4


def test_interior_colour(gradient):
    inside = gradient.iterations.values == 300
    assert inside.any() and (~inside).any()
    for mode in ("smooth", "histogram"):
        png = np.asarray(colorize(gradient, "Viridis256", mode=mode, interior="#ff8000"))
        assert (png[inside] == [255, 128, 0, 255]).all()
        assert not (png[~inside][:, :3] == [255, 128, 0]).all(axis=1).any()


def test_histogram_mode_is_equalised(gradient):
    # through a black-to-white ramp, grey level = share of escaped samples that escaped sooner
    png = np.asarray(colorize(gradient, ["#000000", "#ffffff"], mode="histogram", interior="#ff0000"))
    escaped = gradient.iterations.values < 300
    grey = png[..., 0][escaped] / 255.0
    for q in (0.25, 0.5, 0.75):
        assert abs(np.quantile(grey, q) - q) < 0.06, q


def test_histogram_counts_lazily(gradient):
    from dfractal_dask.colorize import count_cdf

    lazy = gradient.chunk({"im": 7})
    assert np.array_equal(count_cdf(lazy.iterations, 300), count_cdf(gradient.iterations.values, 300))
    for mode in ("seed", "smooth", "histogram"):
        assert np.array_equal(colorize(lazy, "Plasma256", mode=mode), colorize(gradient, "Plasma256", mode=mode))


def test_supersample_override_and_bad_modes(gradient):
    assert colorize(gradient, "Hippi", supersample=4).shape == (15, 20, 4)
    with pytest.raises(ValueError, match="does not divide"):
        colorize(gradient, "Hippi", supersample=7)
    with pytest.raises(ValueError, match="did you mean smooth"):
        colorize(gradient, "Hippi", mode="smoth")
    with pytest.raises(ValueError, match="malformed hex"):
        colorize(gradient, "Hippi", mode="smooth", interior="#zz0000")


def test_colour_picture_is_lazy_and_equals_colorize(client, tmp_path):
    import dask.array as da

    from dfractal_dask import View, color_picture, colorize, open_render, render

    render(View(-0.5, 0.0, 3.0, 40, 30, 2), 200, store_path=tmp_path / "c.zarr", chunk_rows=6, client=client)
    ds = open_render(tmp_path / "c.zarr")
    lazy = color_picture(ds, "Hippi", 6000, "seed")
    assert isinstance(lazy, xr.DataArray) and isinstance(lazy.data, da.Array) and lazy.shape == (30, 40, 4)
    np.testing.assert_array_equal(np.asarray(lazy), colorize(ds, "Hippi", 6000, "seed"))


def test_smooth_value_takes_the_maps_power():
    """For z**d + c the continuous count is it + 1 - log_d(log2|z|): with d = 2
    the same bits as before, with d = 3 the log term shrinks by log2(3)."""
    from dfractal_dask.colorize import smooth_value

    it = np.array([3, 10, 50], np.uint16)
    norm = np.array([5.0, 17.5, 1e6], np.float32)
    two = smooth_value(it, norm, 100)
    assert np.array_equal(two, smooth_value(it, norm, 100, power=2))
    three = smooth_value(it, norm, 100, power=3)
    log_term = np.log2(0.5 * np.log2(norm.astype(np.float64)))
    np.testing.assert_allclose(two, it + 1 - log_term, rtol=1e-15)
    np.testing.assert_allclose(three, it + 1 - log_term / np.log2(3), rtol=1e-15)
    with pytest.raises(ValueError, match="power must be an integer >= 2"):
        smooth_value(it, norm, 100, power=1)


def test_colour_picture_reads_the_power_from_the_render():
    view = View(0.0, 0.0, 3.0, 24, 18, 2)
    from dfractal_dask.fractals import Fractal

    ds = fractal_dataset(view, 60, fractal=Fractal("multibrot", 3)).compute()
    assert ds.attrs["power"] == 3
    as_three = colorize(ds, "Hippi", mode="smooth")
    ds.attrs["power"] = 2
    assert (colorize(ds, "Hippi", mode="smooth") != as_three).any()


@pytest.mark.parametrize("old", sorted(RENAMED))
def test_the_british_spellings_still_work_with_a_deprecation_warning(old):
    """Public names spell "color"; the old names are the same functions, and say so."""
    with pytest.warns(DeprecationWarning, match=f"{old} is renamed {RENAMED[old]}"):
        fn = getattr(colorize_module, old)
    assert fn is getattr(colorize_module, RENAMED[old])
    if old in ("colour_picture", "seed_colours"):
        with pytest.warns(DeprecationWarning):
            assert getattr(dfractal_dask, old) is fn
    with pytest.raises(AttributeError):
        colorize_module.colour_nothing  # noqa: B018


def test_set_colouring_is_set_coloring_with_a_deprecation_warning(client):
    from dfractal_dask.explorer.session import ExplorerSession

    s = ExplorerSession(client, View(-0.5, 0.0, 3.0, 40, 30, 1), iters=50)
    try:
        with pytest.warns(DeprecationWarning, match="set_coloring"):
            gen = s.set_colouring(palette="Plan9")
        assert s.wait(gen)["palette"] == "Plan9" and s.palette == "Plan9"
    finally:
        s.close()


@pytest.mark.parametrize(("step", "exc"), [(0, ValueError), (-3, ValueError), (10**8, ValueError), (2.5, TypeError),
                                           (True, TypeError), ("9", TypeError)])  # fmt: skip
@pytest.mark.parametrize("mode", ["seed", "smooth"])
def test_a_bad_step_is_refused_naming_it(gradient, step, exc, mode):
    # (0 and -3 were coloured as the limit's table, 2.5 as 2: the seed rule takes max(step, iters))
    it, norm = np.zeros((2, 2), np.uint16), np.ones((2, 2), np.float32)
    with pytest.raises(exc, match=r"^step must be"):
        colorize(gradient, step=step, mode=mode)
    with pytest.raises(exc, match=r"^step must be"):
        colorize_module.color_samples(it, norm, 10, step=step, mode=mode)
