import itertools
import math
import pickle
from dataclasses import replace
from decimal import Decimal

import numpy as np
import pytest
from dask.base import tokenize
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dfractal_dask.view import MAX_SAMPLES, View, parse_coordinate, zoom_views


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
        ({"xpos": None}, TypeError, "xpos must be a real number"),
        ({"xpos": 1j}, TypeError, "xpos must be a real number"),
        ({"xpos": "0.1.2"}, ValueError, "xpos must be a decimal number"),
        ({"ypos": "nan"}, ValueError, "ypos must be finite"),
        ({"ypos": "1e400"}, ValueError, "ypos must be finite"),
        ({"width": 10**6, "height": 10**6}, ValueError, "samples"),
        ({"span": "1e-1600"}, ValueError, "span must be at least"),
    ],
)
def test_bad_views_are_refused(kwargs, exc, words):
    with pytest.raises(exc, match=words):
        View(**kwargs)


def test_sample_limit_is_inclusive():
    side = math.isqrt(MAX_SAMPLES)
    assert View(width=side, height=side, supersample=1).n_samples <= MAX_SAMPLES


DEEP_X = "-0.101096363845622161025785445738622565463805443"


def test_a_centre_with_more_digits_than_float64_is_kept_exactly():
    v = View(DEEP_X, "0.5", span=1e-30, width=8, height=6, supersample=1)
    assert v.centre == (Decimal(DEEP_X), Decimal("0.5"))
    assert float(v.xpos) == float(DEEP_X) and type(v.ypos) is float  # 0.5 is a float
    assert v.deep
    assert View.from_attrs(v.to_attrs()) == v
    assert v.to_attrs()["centre_re"] == DEEP_X and v.to_attrs()["xpos"] == float(DEEP_X)
    assert pickle.loads(pickle.dumps(v)) == v
    assert replace(v, span=2e-30).centre == v.centre  # replace keeps the digits
    # another digit far below float64's resolution is another view, with another token
    other = View(DEEP_X + "1", "0.5", span=1e-30, width=8, height=6, supersample=1)
    assert other != v and float(other.xpos) == float(v.xpos)
    assert tokenize(other) != tokenize(v) and tokenize(v) == tokenize(View.from_attrs(v.to_attrs()))


@pytest.mark.parametrize("text", ["-0.00275", "0.78912", "1e-30", "-2", " 0.125 ", "\u22120.5"])
def test_decimals_a_float_holds_become_plain_floats(text):
    value = parse_coordinate("xpos", text)
    assert type(value) is float and value == float(text.strip().replace("\u2212", "-"))
    assert View(text).xpos == value and View(text) == View(value)


def test_old_attrs_without_the_exact_centre_still_load():
    attrs = View().to_attrs()
    del attrs["centre_re"], attrs["centre_im"]
    assert View.from_attrs(attrs) == View()


@settings(max_examples=60, deadline=None)
@given(st.decimals(min_value=-2, max_value=2, allow_nan=False, allow_infinity=False, places=40))
def test_exact_centres_round_trip(d):
    v = View(str(d), "0", span=1e-35, width=3, height=3, supersample=1)
    assert v.centre[0] == d
    assert View.from_attrs(v.to_attrs()).centre[0] == d


def test_deep_is_where_float64_stops_resolving_samples():
    assert not View().deep and not View(span=1e-9, width=64, height=64, supersample=1).deep
    assert View(span=1e-14, width=64, height=64, supersample=1).deep
    assert View(xpos=1e-20, ypos=0.0, span=1e-28, width=4, height=4, supersample=1).deep is False  # near 0


@settings(max_examples=80, deadline=None)
@given(
    st.floats(1e-3, 4.0),
    st.integers(2, 60),
    st.floats(-200, 2).map(lambda e: 10.0**e),
)
def test_zoom_views_shrink_geometrically_about_one_centre(span, frames, to_span):
    start = View(DEEP_X, "0.5", span=span, width=8, height=6, supersample=1)
    views = zoom_views(start, frames, to_span)
    assert len(views) == frames and views[0] == start and views[-1].span == to_span
    assert all(v.centre == start.centre and (v.width, v.height) == (8, 6) for v in views)
    ratios = [b.span / a.span for a, b in itertools.pairwise(views)]
    assert max(ratios) == pytest.approx(min(ratios), rel=1e-9)


@pytest.mark.parametrize(
    ("frames", "to_span", "exc", "words"),
    [
        (1, 1e-3, ValueError, "frames must be >= 2"),
        (2.5, 1e-3, TypeError, "frames must be an integer"),
        (10**6, 1e-3, ValueError, "frames must be at most 10000"),
        (10, 0.0, ValueError, "to_span must be > 0"),
        (10, "1e-1600", ValueError, r"to_span must be at least 1E-1500, got 1e-1600"),
        (10, math.nan, ValueError, "to_span must be finite"),
        (10, None, TypeError, "to_span must be a real number"),
    ],
)
def test_bad_zooms_are_refused(frames, to_span, exc, words):
    with pytest.raises(exc, match=words):
        zoom_views(View(), frames, to_span)
