"""What clients, workers and the scheduler agree on: task keys, the preview's
encoding, the metrics' JSON."""

import json
from pathlib import PurePosixPath

import numpy as np
import pytest

from dfractal_dask.protocol import PREVIEW_WIDTH, parse_key, preview_block, preview_stride, task_key, to_json


def test_task_keys_parse_back():
    key = task_key("kernel", "0a1b2c", 17)
    assert key == "dfractal-kernel-0a1b2c-17"
    assert parse_key(key) == ("kernel", "0a1b2c", 17)


@pytest.mark.parametrize(
    "key", ["dfractal-kernel-abc", "dfractal-kernel-a-b-1", "dfractal-write-abc-x", "other-kernel-abc-1", ("t", 1), 3]
)
def test_other_keys_are_not_a_renders(key):
    assert parse_key(key) is None


@pytest.mark.parametrize(("width", "stride"), [(1, 1), (PREVIEW_WIDTH, 1), (PREVIEW_WIDTH + 1, 2), (1000, 4)])
def test_the_preview_is_at_most_its_width(width, stride):
    assert preview_stride(width) == stride
    assert -(-width // stride) <= PREVIEW_WIDTH


def test_blocks_previews_tile_the_global_grid():
    """Blocks of rows that do not start on the stride put their rows at the
    preview rows the whole grid's stride gives them; inside is black."""
    iters = 100
    grid = np.arange(7 * 600).reshape(7, 600) % (iters + 1)
    stride = preview_stride(600)
    assert stride == 3
    whole = np.zeros((-(-7 // stride), 200), np.uint8)
    for row0, row1 in ((0, 2), (2, 5), (5, 7)):
        y0, thumb = preview_block(grid[row0:row1], row0, iters)
        arr = np.frombuffer(thumb, np.uint8).reshape(-1, 200)
        whole[y0 : y0 + len(arr)] = arr
    expect = 255.0 * np.log1p(grid[::3, ::3]) / np.log1p(iters)
    assert np.array_equal(whole, np.where(grid[::3, ::3] >= iters, 0, expect).astype(np.uint8))


def test_metrics_json_turns_numpy_numbers_into_plain_ones_and_the_rest_into_text():
    text = to_json({"n": np.int64(3), "x": np.float32(0.5), "path": PurePosixPath("/a/b")})
    assert json.loads(text) == {"n": 3, "x": 0.5, "path": "/a/b"}
