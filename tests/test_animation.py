"""Animated GIF / PNG encoding of zoom frames (pillow), and colouring frames."""

import os

import numpy as np
import pytest
import xarray as xr
from PIL import Image

from dfractal_dask.animation import color_frames, save_animation
from dfractal_dask.colorize import color_picture
from dfractal_dask.graph import zoom_dataset
from dfractal_dask.view import View, zoom_views


def _frames(n=5, h=12, w=16):
    rng = np.random.default_rng(1)
    out = rng.integers(0, 256, (n, h, w, 4), dtype=np.uint8)
    out[..., 3] = 255
    return list(out)


def _moving(n, h=12, w=16, runs=1):
    """``n`` frames made one at a time, a bar moving over a background that
    changes; each frame ``runs`` times in a row (pillow merges such runs)."""
    for k in range(n):
        f = np.zeros((h, w, 4), np.uint8)
        f[..., 3] = 255
        f[..., 2] = 40 * (k % 5)
        x = (3 * k) % (w - 6)
        f[:, x : x + 6, 0] = 255
        f[k % h, :, 1] = 200
        for _ in range(runs):
            yield f


def _pillow_save_all(frames, path, fps):
    """What save_animation wrote before it streamed: pillow's own save_all."""
    images = [Image.fromarray(f) for f in frames]
    fmt = "GIF" if path.suffix == ".gif" else "PNG"
    if fmt == "GIF":
        images = [im.convert("RGB") for im in images]
    kw = {"optimize": False} if fmt == "GIF" else {}
    images[0].save(path, format=fmt, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, **kw)


def _read_timed(path):
    """Each frame of an animation read back as RGBA, with its duration."""
    with Image.open(path) as im:
        out = []
        for k in range(im.n_frames):
            im.seek(k)
            out.append((np.asarray(im.convert("RGBA")), im.info.get("duration")))
        return out


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
    frames = list(color_frames(ds, "Hippi", mode="histogram"))
    assert len(frames) == 3 and all(f.shape == (12, 16, 4) for f in frames)
    for k, f in enumerate(frames):
        assert np.array_equal(f, color_picture(ds.isel(frame=k), "Hippi", mode="histogram"))
    assert not np.array_equal(frames[0], frames[2])
    with pytest.raises(TypeError, match="frame"):
        next(color_frames(xr.Dataset({"iterations": ("x", [1])})))


@pytest.mark.parametrize("ext", [".gif", ".png"])
def test_frames_from_a_generator_are_the_file_from_a_list(ext, tmp_path):
    frames = list(_moving(9, runs=2))
    a = save_animation(frames, tmp_path / f"list{ext}", fps=10)
    b = save_animation(iter(frames), tmp_path / f"gen{ext}", fps=10)
    c = save_animation(_moving(9, runs=2), tmp_path / f"lazy{ext}", fps=10)
    assert a.read_bytes() == b.read_bytes() == c.read_bytes()


@pytest.mark.parametrize("ext", [".gif", ".png"])
@pytest.mark.parametrize(
    "frames",
    [
        pytest.param(list(_moving(7, h=20, w=24, runs=3)), id="equal-runs"),
        pytest.param([*_moving(3, h=20, w=24), *[next(_moving(1, h=20, w=24))] * 4], id="run-at-the-end"),
        pytest.param([next(_moving(1, h=20, w=24))] * 5, id="all-equal"),
        pytest.param(_frames(4, 20, 24), id="noise"),
    ],
)
def test_streaming_writes_the_animation_pillow_wrote(frames, ext, tmp_path):
    """Frame by frame, as pillow's save_all for the same list: the same frames,
    equal frames in a row merged into one shown as long, the same durations."""
    _pillow_save_all(frames, tmp_path / f"pillow{ext}", fps=12)
    path = save_animation(iter(frames), tmp_path / f"stream{ext}", fps=12)
    want, got = _read_timed(tmp_path / f"pillow{ext}"), _read_timed(path)
    assert [d for _, d in got] == [d for _, d in want]
    for (a, _), (b, _) in zip(want, got, strict=True):
        assert np.array_equal(a, b)
    with Image.open(path) as im:
        assert im.info.get("loop", 0) == 0 and (im.n_frames > 1) == (len(want) > 1)


@pytest.mark.parametrize("ext", [".gif", ".png"])
def test_a_generator_failing_midway_leaves_no_file(ext, tmp_path):
    def frames():
        yield from _moving(4)
        raise RuntimeError("the cluster went away")

    with pytest.raises(RuntimeError, match="went away"):
        save_animation(frames(), tmp_path / f"z{ext}", fps=10)
    assert list(tmp_path.iterdir()) == []  # neither the animation nor its .part


@pytest.mark.parametrize("ext", [".gif", ".png"])
def test_a_frame_of_another_size_midway_is_refused_and_nothing_written(ext, tmp_path):
    def frames():
        yield from _moving(5)
        yield np.zeros((12, 17, 4), np.uint8)
        yield from _moving(2)

    with pytest.raises(ValueError, match=r"frames differ in size: \[\(16, 12\), \(17, 12\)\] \(frame 5\)"):
        save_animation(frames(), tmp_path / f"z{ext}", fps=10)
    assert list(tmp_path.iterdir()) == []


def test_apng_frames_take_the_first_frames_mode_when_nothing_is_lost(tmp_path):
    rgba = list(_moving(3))
    path = save_animation([rgba[0], rgba[1][..., :3], rgba[2]], tmp_path / "z.png", fps=10)
    assert [np.array_equal(a, b) for a, (b, _) in zip(rgba, _read_timed(path), strict=True)] == [True] * 3
    see_through = rgba[1].copy()
    see_through[0, 0, 3] = 0  # the header, written for frame 0 in RGB, cannot hold this
    with pytest.raises(ValueError, match="frames differ in mode"):
        save_animation([rgba[0][..., :3], see_through], tmp_path / "t.png", fps=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["z.png"]


def _live_pillow_blocks():
    # images pillow holds (its own allocator: tracemalloc does not see them); one block each for small images
    s = Image.core.get_stats()
    return s["allocated_blocks"] - s["freed_blocks"] - s["blocks_cached"]


_MEASURE = """
import json, sys, tracemalloc
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from test_animation import _live_pillow_blocks, _moving
from dfractal_dask.animation import save_animation

ext, tmp, h, w, n = sys.argv[2], Path(sys.argv[3]), 96, 128, 200
save_animation(_moving(3, h, w), tmp / f"warm{ext}", fps=10)  # imports, caches
held = []

def frames():
    for f in _moving(n, h, w):
        held.append(_live_pillow_blocks())
        yield f
    held.append(_live_pillow_blocks())

before = _live_pillow_blocks()
tracemalloc.start()
save_animation(frames(), tmp / f"z{ext}", fps=10)
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
print(json.dumps({"peak": peak, "held": max(held) - before}))
"""


@pytest.mark.parametrize("ext", [".gif", ".png"])
def test_encoding_holds_a_few_frames_not_the_animation(ext, tmp_path):
    """Issue 16.  200 different frames from a generator: Python's allocations
    (numpy's arrays are among them: numpy reports them to tracemalloc) peak at
    a few frames, and between frames pillow holds a few images.  Holding the
    frames, as before, peaks above 200 frames.  Measured in a fresh process:
    tracemalloc counts every thread's allocations, and this one runs clusters."""
    import json
    import subprocess
    import sys

    frame_bytes = 96 * 128 * 4
    done = subprocess.run([sys.executable, "-c", _MEASURE, os.path.dirname(__file__), ext, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    with Image.open(tmp_path / f"z{ext}") as im:
        assert im.n_frames == 200
    assert result["peak"] < 8 * frame_bytes, f"{result['peak'] / frame_bytes:.1f} frames"  # ~2.5 (GIF), 3.6 (APNG)
    assert result["held"] <= 3, result  # 2 (GIF: the last frame quantised and frame 0), 0 (APNG)
