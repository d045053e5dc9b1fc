import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dfractal_dask.fractals import FAMILIES, MAX_POWER, Fractal


def test_defaults_and_names():
    assert Fractal() == Fractal("mandelbrot", 2, None)
    assert Fractal("Burning-Ship").family == "burning_ship"
    assert Fractal("julia").c == -0.8 + 0.156j  # a default c, so `--fractal julia` alone draws something
    assert Fractal("multibrot", power=5).describe() == "multibrot d=5"
    assert Fractal("julia", c=0.3j).describe() == "julia c=0.3j"
    assert [Fractal(f).code for f in FAMILIES] == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"family": "mandelbort"}, ValueError, "unknown fractal 'mandelbort'.*mandelbrot, julia"),
        ({"family": 3}, TypeError, "family must be a string"),
        ({"family": "multibrot", "power": 1}, ValueError, "from 2 to 16"),
        ({"family": "multibrot", "power": MAX_POWER + 1}, ValueError, "from 2 to 16"),
        ({"family": "multibrot", "power": 2.5}, TypeError, "power must be an integer"),
        ({"family": "multibrot", "power": True}, TypeError, "power must be an integer"),
        ({"family": "mandelbrot", "power": 3}, ValueError, "power is for the multibrot family"),
        ({"family": "burning_ship", "c": 0.1j}, ValueError, "c is the julia family's parameter"),
        ({"family": "julia", "c": 2.5}, ValueError, r"\|c\| <= 2"),
        ({"family": "julia", "c": complex("nan")}, ValueError, "finite"),
        ({"family": "julia", "c": "0.1"}, TypeError, "complex number"),
    ],
)
def test_bad_fractals_are_refused_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        Fractal(**kwargs)


@given(
    family=st.sampled_from(list(FAMILIES)),
    power=st.integers(2, MAX_POWER),
    re=st.floats(-1.4, 1.4),
    im=st.floats(-1.4, 1.4),
)
def test_attrs_round_trip_through_json(family, power, re, im):
    f = Fractal(family, power if family == "multibrot" else 2, complex(re, im) if family == "julia" else None)
    assert Fractal.from_attrs(json.loads(json.dumps(f.to_attrs()))) == f


def test_old_stores_are_mandelbrot():
    assert Fractal.from_attrs({"fractal": "mandelbrot", "iters": 800}) == Fractal()


@pytest.mark.parametrize(
    ("text", "c"),
    [
        ("-0.8+0.156j", -0.8 + 0.156j),
        ("-0.8+0.156i", -0.8 + 0.156j),
        (" -0.8, 0.156 ", -0.8 + 0.156j),
        ("0.25", 0.25 + 0j),
    ],
)
def test_parse_c(text, c):
    assert Fractal.parse_c(text) == c


@pytest.mark.parametrize("text", ["", "one", "1,2,3", "1+"])
def test_parse_c_refuses_garbage(text):
    with pytest.raises(ValueError, match="bad julia c"):
        Fractal.parse_c(text)
