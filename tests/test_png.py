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
        assert dask.base.get_scheduler().__self__ is client  # the client path of array_strips
        strips = list(png.array_strips(lazy, window=3))
        save_png(lazy, tmp_path / "c.png")
    assert [s.shape[0] for s in strips] == [8] * 11 + [7]
    np.testing.assert_array_equal(np.concatenate(strips), pic)
    with Image.open(tmp_path / "c.png") as im:
        np.testing.assert_array_equal(np.asarray(im), pic)


def test_png_pieces_in_any_order_make_the_same_file_and_a_missing_one_is_an_error():
    """Strips encoded on their own (as workers do) and given to PngWriter in
    any order write the file the strips in order do; it decodes to the pixels
    (zlib checks the stream's combined Adler-32)."""
    import io
    import zlib

    from dfractal_dask.png import PngWriter, _write_png, encode_rows

    rng = np.random.default_rng(5)
    pic = rng.integers(0, 256, (61, 33, 4), dtype=np.uint8)
    strips = [pic[r : r + 7] for r in range(0, 61, 7)]
    in_order = io.BytesIO()
    _write_png(in_order, 33, 61, 4, strips)
    shuffled = io.BytesIO()
    png = PngWriter(shuffled, 33, 61, 4)
    for k in rng.permutation(len(strips)):
        png.add(int(k), encode_rows(strips[k]))
    png.close()
    assert shuffled.getvalue() == in_order.getvalue()
    with Image.open(io.BytesIO(in_order.getvalue())) as im:
        np.testing.assert_array_equal(np.asarray(im), pic)
    # the IDAT chunks are one complete zlib stream (its checksum verified)
    data, pos, idat = in_order.getvalue(), 8, b""
    while pos < len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        idat += data[pos + 8 : pos + 8 + n] if data[pos + 4 : pos + 8] == b"IDAT" else b""
        pos += 12 + n
    d = zlib.decompressobj()
    assert len(d.decompress(idat)) == 61 * (33 * 4 + 1) and d.eof and not d.unused_data
    # a piece missing, or given twice, or of another width: an error, not a broken file
    png = PngWriter(io.BytesIO(), 33, 61, 4)
    png.add(1, encode_rows(strips[1]))
    assert png.waiting[1][0].data == b""  # a piece waiting for one above it waits on disk, not in memory
    with pytest.raises(ValueError, match="given twice"):
        png.add(1, encode_rows(strips[1]))
    with pytest.raises(ValueError, match=r"held 0 rows in order, expected 61 \(1 pieces wait"):
        png.close()
    with pytest.raises(ValueError, match="a piece of 32x4 rows in a 33x4 PNG"):
        png.add(0, encode_rows(pic[:7, :32]))
