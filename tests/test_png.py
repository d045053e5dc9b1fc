import dask.array as da
import numpy as np
import pytest
from PIL import Image

from dfractal_dask import save_png


def test_save_png_round_trip(tmp_path):
    rgba = np.random.default_rng(0).integers(0, 256, (5, 7, 4), dtype=np.uint8)
    out = save_png(rgba, tmp_path / "sub" / "x.jpg")  # always PNG, whatever the suffix
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == "RGBA"
        assert np.array_equal(np.asarray(im), rgba)
    with pytest.raises(ValueError, match="uint8"):
        save_png(rgba.astype(np.float32), tmp_path / "y.png")


@pytest.mark.parametrize("channels", [4, 3])
def test_save_png_streams_a_lazy_picture_that_decodes_to_the_same_pixels(tmp_path, channels):
    """A dask array is written strip by strip by a hand-made PNG writer; the
    file decodes (PIL) to exactly the pixels, as the in-memory path's does."""
    rng = np.random.default_rng(7)
    pic = rng.integers(0, 256, (203, 131, channels), dtype=np.uint8)
    pic[50:90] = pic[50:51]  # some runs, some noise
    lazy = da.from_array(pic, chunks=(17, 131, channels))  # 12 strips, the last short
    save_png(lazy, tmp_path / "lazy.png")
    save_png(pic, tmp_path / "eager.png")
    for name in ("lazy.png", "eager.png"):
        with Image.open(tmp_path / name) as im:
            assert im.mode == ("RGBA" if channels == 4 else "RGB") and im.size == (131, 203)
            np.testing.assert_array_equal(np.asarray(im), pic)
    assert not list(tmp_path.glob("*.part"))


def test_save_png_on_a_cluster_streams_blocks_in_order(client, tmp_path):
    """On a distributed client the picture is submitted as one graph and its
    blocks gathered one by one, in row order."""
    import dask

    from dfractal_dask import png

    rng = np.random.default_rng(3)
    pic = rng.integers(0, 256, (95, 40, 4), dtype=np.uint8)
    lazy = da.from_array(pic, chunks=(8, 40, 4))  # 12 blocks, more than one window
    with dask.config.set(scheduler=client):
        assert dask.base.get_scheduler().__self__ is client  # the client path of _strips
        strips = list(png._strips(lazy, window=3))
        save_png(lazy, tmp_path / "c.png")
    assert [s.shape[0] for s in strips] == [8] * 11 + [7]
    np.testing.assert_array_equal(np.concatenate(strips), pic)
    with Image.open(tmp_path / "c.png") as im:
        np.testing.assert_array_equal(np.asarray(im), pic)
