import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfractal_dask import palettes
from dfractal_dask.palettes import SEED_PALETTES, pack, seed_lut, unpack


@pytest.mark.parametrize("name", SEED_PALETTES)
@pytest.mark.parametrize("step", [600, 800, 6000])
def test_lut_equals_the_seeds_table(name, step, seed_vectors):
    lut = seed_lut(name, step)
    assert lut.dtype == np.uint8 and lut.shape[1] == 3
    assert len(lut) == seed_vectors["lut_len"][name][str(step)]
    head = seed_vectors["lut_head"][name][str(step)]
    assert lut[:4].tolist() == head[:4] and lut[-2:].tolist() == head[4:]
    assert (
        hashlib.sha256(np.ascontiguousarray(lut).tobytes()).hexdigest() == seed_vectors["lut_sha256"][name][str(step)]
    )


def test_packaged_palettes_equal_shared_data():
    import json

    from conftest import SHARED

    shared = SHARED / "seed-palettes.json"
    if not shared.exists():
        pytest.skip("../shared/data not beside this checkout")
    from importlib import resources

    packaged = resources.files("dfractal_dask").joinpath("data/seed_palettes.json").read_text()
    assert json.loads(packaged) == json.loads(shared.read_text())


def test_pack_spills_like_the_seed():
    # 255 becomes 257: alpha's extra bit lands in blue's lowest bit
    assert pack(np.array([0, 0, 0, 255], np.uint8)) == 0x101
    assert pack(np.array([255, 255, 255, 255], np.uint8)) == (0x01010101 | 0x01010100) & 0xFFFFFFFF
    assert pack(np.array([128, 0, 0, 0], np.uint8)) == 129 << 24  # >= 128 gains 1
    assert unpack(np.uint32(0x12345678)).tolist() == [0x12, 0x34, 0x56]


@pytest.mark.parametrize("spelling", ["Biochimist", "biochemist", "BIOCHEMIST", " Hippi "])
def test_names_are_forgiving(spelling):
    assert palettes.resolve_seed_name(spelling) in SEED_PALETTES


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"unknown palette 'Hipi'.*did you mean Hippi"):
        palettes.resolve_seed_name("Hipi")
    with pytest.raises(TypeError):
        palettes.resolve_seed_name(3)


@pytest.mark.parametrize("bad", [0, -5, 10**8])
def test_bad_step(bad):
    with pytest.raises(ValueError, match="step"):
        seed_lut("Hippi", bad)


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(SEED_PALETTES), step=st.integers(1, 20000))
def test_lut_properties(name, step):
    lut = seed_lut(name, step)
    # one entry per t = k/step below 1 (float accumulation may add or drop the last)
    assert step - 1 <= len(lut) <= step + 1
    assert not lut.flags.writeable
    # the first entry is the seed's quirk: at t = 0 the first non-empty segment
    # j starts at the colour of stop j + 1, not stop j
    stops = palettes.seed_palette(name)
    pos = palettes._positions(stops)
    j = next(j for j in range(len(stops) - 1) if pos[j] <= 0 < pos[j + 1])
    first = unpack(pack(np.array(stops[j + 1].rgba, np.uint8)))
    assert lut[0].tolist() == first.tolist()


# -- any palette ---------------------------------------------------------------
from dfractal_dask.palettes import Palette, palette_names, parse_hex, resolve_palette  # noqa: E402


@pytest.mark.parametrize(
    ("spec", "name", "n_stops"),
    [
        ("Viridis256", "Viridis256", 256),
        ("inferno256", "Inferno256", 256),
        ("Magma", "Magma", 256),  # a family: its largest size
        ("Category10_10", "Category10_10", 10),
        ("Hippi", "Hippi", 16),
        ("biochimist", "Biochemist", 5),
        ("#ff0000,#00ff00,#0000ff", "#ff0000,#00ff00,#0000ff", 3),
        (["#000", "#fff"], "#000,#fff", 2),
    ],
)
def test_resolve_palette(spec, name, n_stops):
    p = resolve_palette(spec)
    assert p.name == name and len(p.stops) == n_stops
    assert resolve_palette(p) is p


def test_bokeh_palette_colours():
    import bokeh.palettes as bp

    p = resolve_palette("Viridis256")
    assert [s.rgba[:3] for s in p.stops] == [parse_hex(c)[:3] for c in bp.Viridis256]
    assert p.ramp(256)[0].tolist() == list(parse_hex(bp.Viridis256[0])[:3])
    assert p.ramp(256)[-1].tolist() == list(parse_hex(bp.Viridis256[-1])[:3])


def test_reversed_palettes():
    p, r = resolve_palette("Inferno256"), resolve_palette("Inferno256_r")
    assert r.name == "Inferno256_r"
    assert np.allclose(p.ramp(512)[::-1], r.ramp(512), atol=1e-9)
    assert resolve_palette("Hippi_r").reversed().name == "Hippi"
    assert np.allclose(resolve_palette("Hippi_r").reversed().ramp(100), resolve_palette("Hippi").ramp(100))


@pytest.mark.parametrize(
    ("spec", "exc", "words"),
    [
        ("Viridis255", ValueError, "did you mean Viridis256"),
        ("Nope", ValueError, "unknown palette 'Nope'"),
        ("#ff00zz,#000000", ValueError, "malformed hex colour '#ff00zz'"),
        ("#12345,#000000", ValueError, "malformed hex colour"),
        (["#ffffff"], ValueError, "at least two"),
        ([1, 2], TypeError, "hex colour strings"),
        (42, TypeError, "palette must be"),
    ],
)
def test_bad_palettes(spec, exc, words):
    with pytest.raises(exc, match=words):
        resolve_palette(spec)


def test_palette_names_list_seed_and_bokeh():
    names = palette_names()
    assert names[:7] == SEED_PALETTES and "Viridis256" in names and "Inferno256" in names
    for name in names[:40]:
        resolve_palette(name)


hex_color = st.integers(0, 0xFFFFFF).map(lambda v: f"#{v:06x}")


@settings(max_examples=60, deadline=None)
@given(colours=st.lists(hex_color, min_size=2, max_size=40), step=st.integers(2, 5000), rev=st.booleans())
def test_lut_properties_any_palette(colours, step, rev):
    p = resolve_palette(colours)
    p = p.reversed() if rev else p
    lut = seed_lut(p, step)
    assert step - 1 <= len(lut) <= step + 1 and lut.dtype == np.uint8
    ramp = p.ramp(257)
    rgb = np.array([parse_hex(c)[:3] for c in colours], float)
    # the smooth ramp stays inside the palette's colour box and hits both ends
    assert (ramp >= rgb.min(axis=0) - 1e-9).all() and (ramp <= rgb.max(axis=0) + 1e-9).all()
    ends = (rgb[-1], rgb[0]) if rev else (rgb[0], rgb[-1])
    assert np.allclose(ramp[0], ends[0]) and np.allclose(ramp[-1], ends[1])


def test_palette_is_hashable_for_caching():
    assert hash(resolve_palette("Viridis256")) == hash(resolve_palette("viridis256"))
    assert isinstance(resolve_palette("Viridis256"), Palette)
