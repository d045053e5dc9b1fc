"""colorize's result is a labelled picture (issue 17, point 9): an xarray
DataArray with the pixel centres' coordinates and the colouring and view in
attrs, that Jupyter shows as a PNG and that still is the pixels for numpy,
PIL, save_png and save_animation."""

import io
from dataclasses import replace

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from PIL import Image

from dfractal_dask import color_picture, colorize, fractal_dataset, save_animation, save_png
from dfractal_dask.colorize import Picture
from dfractal_dask.view import View, zoom_views

VIEW = View(xpos=-0.75, ypos=0.1, span=2.5, width=20, height=15, supersample=2)
DEEP = View("-1.7499576837060935036022145", "0.0000000000000000000000000001", span=1e-20, width=12, height=9,
            supersample=2)  # fmt: skip


@pytest.fixture(scope="module")
def shallow():
    return fractal_dataset(VIEW, 120).compute(scheduler="sync")


def test_colorize_returns_a_labelled_picture(shallow):
    img = colorize(shallow, "Viridis256", 5000, "smooth", interior=(255, 0, 16))
    assert isinstance(img, Picture) and isinstance(img, xr.DataArray) and isinstance(img.data, np.ndarray)
    assert img.dims == ("im", "re", "rgba") and img.shape == (15, 20, 4) and img.dtype == np.uint8
    assert img["rgba"].values.tolist() == ["r", "g", "b", "a"]
    assert {k: img.attrs[k] for k in ("palette", "mode", "iters", "step", "interior", "supersample")} == {
        "palette": "Viridis256", "mode": "smooth", "iters": 120, "step": 5000, "interior": "#ff0010", "supersample": 2
    }  # fmt: skip
    assert View.from_attrs(img.attrs) == VIEW and img.attrs["pixel_step"] == 2 * VIEW.step
    assert img["re"].attrs == {"long_name": "real part", "units": "1"}
    assert img["im"].attrs == {"long_name": "imaginary part", "units": "1"}
    # numpy in one call, without a copy
    arr = np.asarray(img)
    assert isinstance(arr, np.ndarray) and arr.shape == (15, 20, 4) and np.shares_memory(arr, img.data)
    assert img[3, 4].tolist() == arr[3, 4].tolist()


def test_pixel_coordinates_are_origin_plus_index_times_step(shallow):
    img = colorize(shallow, "Hippi")
    n, step = VIEW.supersample, VIEW.step
    # pixel p is the mean of samples p*n .. p*n+n-1: origin re0 + (n-1)/2 step, step n*step
    p, q = np.arange(VIEW.width), np.arange(VIEW.height)
    np.testing.assert_array_equal(img["re"].values, VIEW.re0 + (p * n + (n - 1) / 2) * step)
    np.testing.assert_array_equal(img["im"].values, VIEW.im0 - (q * n + (n - 1) / 2) * step)
    np.testing.assert_allclose(img["re"].values, VIEW.re0 + (n - 1) / 2 * step + p * (n * step), rtol=0, atol=1e-15)
    # and that is the mean of each pixel's samples' coordinates in the render
    np.testing.assert_allclose(img["re"].values, shallow["re"].values.reshape(-1, n).mean(1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(img["im"].values, shallow["im"].values.reshape(-1, n).mean(1), rtol=0, atol=1e-15)
    # another supersampling: the same view's pixels of 5x5 samples
    five = colorize(shallow, "Hippi", supersample=5)
    assert five.shape == (6, 8, 4) and five.attrs["supersample"] == 5
    np.testing.assert_array_equal(five["re"].values, VIEW.re0 + (np.arange(8) * 5 + 2) * step)
    assert (five.attrs["width"], five.attrs["height"], five.attrs["span"]) == (8, 6, VIEW.span)


def test_a_deep_picture_has_offsets_from_the_exact_centre():
    assert DEEP.deep
    ds = fractal_dataset(DEEP, 300).compute(scheduler="sync")
    img = colorize(ds, "Hippi", mode="smooth")
    assert (img.attrs["centre_re"], img.attrs["centre_im"]) == (ds.attrs["centre_re"], ds.attrs["centre_im"])
    assert img.attrs["centre_re"] == "-1.7499576837060935036022145"
    n, step, w, h = 2, DEEP.step, DEEP.sample_width, DEEP.sample_height
    j, i = np.arange(12) * n + (n - 1) / 2, np.arange(9) * n + (n - 1) / 2
    np.testing.assert_array_equal(img["re"].values, (j - (w - 1) / 2) * step)
    np.testing.assert_array_equal(img["im"].values, ((h - 1) / 2 - i) * step)
    np.testing.assert_allclose(img["re"].values, ds["re"].values.reshape(-1, n).mean(1), rtol=1e-12)
    assert img["re"].attrs["long_name"] == "offset of the real part from centre_re"
    assert img["im"].attrs["long_name"] == "offset of the imaginary part from centre_im"
    # the store's (here: the render's) coordinates say the same
    assert ds["re"].attrs == img["re"].attrs and ds["im"].attrs == img["im"].attrs


def test_a_zoom_frame_has_its_own_span():
    from dfractal_dask.graph import zoom_dataset

    views = zoom_views(replace(VIEW, width=8, height=6), 3, 0.01)
    zoom = zoom_dataset(views, 60)
    for k in (0, 2):
        img = color_picture(zoom.isel(frame=k), "Hippi", mode="smooth")
        assert img.attrs["span"] == views[k].span
        np.testing.assert_array_equal(img["re"].values, views[k].coords(2)["re"][1])


def test_a_slice_of_a_render_has_its_samples_coordinates(shallow):
    part = shallow.isel(im=slice(4, 10), re=slice(0, 8))
    img = colorize(part, "Hippi")
    assert img.shape == (3, 4, 4) and "span" not in img.attrs  # not a whole view
    np.testing.assert_allclose(img["re"].values, part["re"].values.reshape(-1, 2).mean(1))
    np.testing.assert_array_equal(np.asarray(img), np.asarray(colorize(shallow, "Hippi"))[2:5, 0:4])


def test_repr_png_and_to_pil_are_the_pixels(shallow):
    img = colorize(shallow, "Hippi", mode="smooth")
    arr = np.asarray(img)
    png = img._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(png)) as decoded:
        assert decoded.mode == "RGBA" and decoded.size == (20, 15)
        np.testing.assert_array_equal(np.asarray(decoded), arr)
    pil = img.to_pil()
    assert isinstance(pil, Image.Image) and pil.mode == "RGBA"
    np.testing.assert_array_equal(np.asarray(pil), arr)
    # Jupyter gets the PNG, not xarray's HTML table (which it would rank first)
    from IPython.core.formatters import DisplayFormatter

    data, _ = DisplayFormatter().format(img)
    assert data["image/png"] == png and "text/html" not in data
    # a channel of a picture is no picture: xarray's own reprs
    red = img[..., 0]
    assert isinstance(red, Picture) and red._repr_png_() is None and "<div" in red._repr_html_()
    with pytest.raises(ValueError, match="to_pil needs"):
        red.to_pil()


def test_a_lazy_picture_stays_lazy_until_shown(shallow):
    lazy = color_picture(shallow.chunk({"im": 10}), "Hippi", mode="smooth")
    assert isinstance(lazy, Picture) and isinstance(lazy.data, da.Array)
    eager = colorize(shallow, "Hippi", mode="smooth")
    xr.testing.assert_identical(lazy.compute(), eager)
    with Image.open(io.BytesIO(lazy._repr_png_())) as decoded:
        np.testing.assert_array_equal(np.asarray(decoded), np.asarray(eager))


def test_save_png_and_save_animation_take_a_picture_as_its_array(shallow, tmp_path):
    img = colorize(shallow, "Hippi")
    save_png(img, tmp_path / "picture.png")
    save_png(np.asarray(img), tmp_path / "array.png")
    assert (tmp_path / "picture.png").read_bytes() == (tmp_path / "array.png").read_bytes()
    # a lazy picture is streamed (the strip writer): the same pixels
    save_png(color_picture(shallow.chunk({"im": 6}), "Hippi"), tmp_path / "lazy.png")
    with Image.open(tmp_path / "lazy.png") as im:
        np.testing.assert_array_equal(np.asarray(im), np.asarray(img))
    other = colorize(shallow, "Viridis256", mode="smooth")
    for ext in (".gif", ".png"):
        save_animation([img, other], tmp_path / f"p{ext}", fps=5)
        save_animation([np.asarray(img), np.asarray(other)], tmp_path / f"a{ext}", fps=5)
        assert (tmp_path / f"p{ext}").read_bytes() == (tmp_path / f"a{ext}").read_bytes()


def test_store_coordinates_carry_cf_attrs(client, tmp_path):
    from dfractal_dask import open_render, render

    small = replace(VIEW, supersample=1)
    render(small, 60, store_path=tmp_path / "s.zarr", client=client)
    render(replace(DEEP, supersample=1), 200, store_path=tmp_path / "d.zarr", client=client)
    ds, deep = open_render(tmp_path / "s.zarr"), open_render(tmp_path / "d.zarr")
    assert ds["re"].attrs == {"long_name": "real part", "units": "1"}
    assert ds["im"].attrs == {"long_name": "imaginary part", "units": "1"}
    np.testing.assert_array_equal(ds["re"].values, small.re())
    assert deep["re"].attrs == {"long_name": "offset of the real part from centre_re", "units": "1"}
    assert deep["im"].attrs == {"long_name": "offset of the imaginary part from centre_im", "units": "1"}
    assert (deep.attrs["centre_re"], deep.attrs["centre_im"]) == ("-1.7499576837060935036022145", "1E-28")
    w = DEEP.width
    np.testing.assert_array_equal(deep["re"].values, (np.arange(w) - (w - 1) / 2) * replace(DEEP, supersample=1).step)
    # and a picture of the store says the same
    img = colorize(deep, "Hippi", mode="smooth")
    assert img["re"].attrs == deep["re"].attrs
    np.testing.assert_array_equal(img["re"].values, deep["re"].values)
