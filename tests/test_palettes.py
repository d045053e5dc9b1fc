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
