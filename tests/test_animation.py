"""Animated GIF / PNG encoding of zoom frames (pillow), and colouring frames."""

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from dfractal_dask.animation import colour_frames, save_animation
from dfractal_dask.colorize import colour_picture
from dfractal_dask.graph import zoom_dataset
from dfractal_dask.view import View, zoom_views


def _frames(n=5, h=12, w=16):
    rng = np.random.default_rng(1)
    out = rng.integers(0, 256, (n, h, w, 4), dtype=np.uint8)
    out[..., 3] = 255
    return list(out)


def _read(path):
    with Image.open(path) as im:
        frames = []
        for k in range(im.n_frames):
            im.seek(k)
            frames.append(np.asarray(im.convert("RGBA")))
        return frames, im.info


def test_apng_keeps_every_frame_exactly(tmp_path):
    frames = _frames()
    path = save_animation(frames, tmp_path / "a" / "z.png", fps=8)
    back, info = _read(path)
    assert len(back) == 5 and info["loop"] == 0 and info["duration"] == 125
    for a, b in zip(frames, back, strict=True):
        assert np.array_equal(a, b)


def test_gif_frames_are_the_frames_within_its_palette(tmp_path):
    # few colours per frame: GIF's 256-colour palette holds them exactly
    frames = []
    for k in range(4):
        f = np.zeros((10, 14, 4), np.uint8)
        f[..., 3] = 255
        f[:, : 3 + k, 0] = 200
        f[5:, :, 1] = 40 * k
        frames.append(f)
    path = save_animation(frames, tmp_path / "z.gif", fps=20)
    back, info = _read(path)
    assert len(back) == 4 and info["loop"] == 0 and info["duration"] == 50
    for a, b in zip(frames, back, strict=True):
        assert np.array_equal(a[..., :3], b[..., :3])
    assert not list(tmp_path.glob(".*.part"))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"path": "z.jpg"}, "use a .gif or .png file name"),
        ({"fps": 0}, "fps must be a number above 0"),
        ({"fps": "fast"}, "fps must be a number above 0"),
        ({"frames": []}, "no frames"),
        ({"frames": [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 5, 4), np.uint8)]}, "frames differ in size"),
    ],
)
def test_bad_animations_are_refused_and_nothing_written(kwargs, words, tmp_path):
    args = {"frames": _frames(2), "path": "z.gif", "fps": 10, **kwargs}
    with pytest.raises(ValueError, match=words):
        save_animation(args["frames"], tmp_path / args["path"], args["fps"])
    assert list(tmp_path.iterdir()) == []


def test_colour_frames_colours_each_frame_as_a_picture():
    views = zoom_views(View(-0.7436, 0.1318, 0.1, 16, 12, 2), 3, 0.001)
    ds = zoom_dataset(views, 200, chunk_rows=8).compute(scheduler="sync")
    frames = list(colour_frames(ds, "Hippi", mode="histogram"))
    assert len(frames) == 3 and all(f.shape == (12, 16, 4) for f in frames)
    for k, f in enumerate(frames):
        assert np.array_equal(f, colour_picture(ds.isel(frame=k), "Hippi", mode="histogram"))
    assert not np.array_equal(frames[0], frames[2])
    with pytest.raises(TypeError, match="frame"):
        next(colour_frames(xr.Dataset({"iterations": ("x", [1])})))
