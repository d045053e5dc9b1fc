import math

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from dfractal_dask.view import MAX_SAMPLES, View


def test_defaults_are_the_seeds():
    v = View()
    assert (v.xpos, v.ypos, v.span, v.width, v.height, v.supersample) == (-0.00275, 0.78912, 0.125689, 1024, 768, 8)
    assert View.from_seed_flags() == v
    assert (v.sample_width, v.sample_height) == (8192, 6144)


def test_square_pixels_centred_and_spanning():
    v = View(xpos=0.5, ypos=-0.25, span=2.0, width=40, height=30, supersample=3)
    re, im = v.re(), v.im()
    assert re.size == 120 and im.size == 90
    assert re[-1] - re[0] == pytest.approx(2.0)  # span covers first..last sample
    assert np.diff(re) == pytest.approx(v.step)
    assert -np.diff(im) == pytest.approx(v.step)  # same step: square pixels
    assert re.mean() == pytest.approx(0.5)
    assert im.mean() == pytest.approx(-0.25)  # centred vertically (the seed was not)
    assert im[0] > im[-1]  # row 0 is the top


@given(
    n=st.integers(1, 5000),
    start=st.integers(0, 4999),
    x=st.floats(-2, 2),
    span=st.floats(1e-12, 4),
)
def test_coordinates_come_from_the_global_index(n, start, x, span):
    try:
        v = View(xpos=x, ypos=0.0, span=span, width=n, height=n, supersample=1)
    except ValueError:  # samples that would collapse in float64 are refused (test_bad_input.py)
        assume(False)
    cols = np.arange(start, start + 7)
    # a block's coordinates are bit-identical to the same columns of the whole grid
    assert np.array_equal(v.re(cols), v.re0 + cols * v.step)
    assert np.array_equal(v.im(cols), v.im0 - cols * v.step)


def test_attrs_round_trip():
    v = View(xpos=-0.0091275, ypos=0.7899912, span=0.01401245, width=7, height=5, supersample=2)
    assert View.from_attrs(v.to_attrs()) == v


@pytest.mark.parametrize(
    ("kwargs", "exc", "words"),
    [
        ({"width": 0}, ValueError, "width must be >= 1"),
        ({"height": -3}, ValueError, "height must be >= 1"),
        ({"supersample": 0}, ValueError, "supersample"),
        ({"width": 10.5}, TypeError, "width must be an integer"),
        ({"width": True}, TypeError, "width must be an integer"),
        ({"span": 0.0}, ValueError, "span must be > 0"),
        ({"span": -1.0}, ValueError, "span must be > 0"),
        ({"xpos": math.nan}, ValueError, "xpos must be finite"),
        ({"ypos": math.inf}, ValueError, "ypos must be finite"),
        ({"span": math.inf}, ValueError, "span must be finite"),
        ({"xpos": "0.1"}, TypeError, "xpos must be a real number"),
        ({"width": 10**6, "height": 10**6}, ValueError, "samples"),
        ({"span": 1e-320}, ValueError, "too small"),
    ],
)
def test_bad_views_are_refused(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        View(**kwargs)


def test_sample_limit_is_inclusive():
    side = math.isqrt(MAX_SAMPLES)
    assert View(width=side, height=side, supersample=1).n_samples <= MAX_SAMPLES
