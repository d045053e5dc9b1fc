"""Every render the seed's README lists works here with exactly its flags.

These are full-size renders (50-207 M samples each): the slowest tests."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SHARED
from PIL import Image

from dfractal_dask import open_render

BIN = Path(sys.executable).parent

SEED_RENDERS = [
    "dfractal render --palette Hippi --xpos -0.0091275 --ypos 0.7899912 --escape-radius .01401245 --outfile img/mandelbrot.png",
    "dfractal render --palette Plan9 --xpos -0.0091275 --ypos 0.7899912 --escape-radius .01401245 --outfile img/test2.png",
    "dfractal render --palette Vivid --xpos -0.00991275 --ypos 0.7899912 --escape-radius .02401245 --outfile img/test3.png --iters 800 --step 600 --smoothness 10 --width 1920 --height 1080",
    "dfractal render --palette Hippi --xpos -0.00275 --ypos 1.012 --escape-radius .089999 --outfile img/test4.png --iters 800 --step 600 --smoothness 10 --width 1920 --height 1080",
    "dfractal render --palette Hippi --xpos -0.00275 --ypos 0.78912 --escape-radius .1256789 --outfile img/test5.png --iters 800 --step 6000 --smoothness 10 --width 1920 --height 1080",
    "dfractal render --palette AfternoonBlue --xpos -0.0091275 --ypos 0.7899912 --escape-radius .01401245 --outfile img/test6.png",
    "dfractal render --palette SummerBeach --xpos -0.0091275 --ypos 0.7899912 --escape-radius .01401245 --outfile img/test7.png",
    "dfractal render --palette Biochemist --xpos -0.0091275 --ypos 0.7899912 --escape-radius .01401245 --outfile img/test8.png --smoothness 10",
]  # fmt: skip


def test_list_matches_seed_md():
    seed_md = SHARED.parent / "SEED.md"
    if not seed_md.exists():
        pytest.skip("../shared/SEED.md not beside this checkout")
    listed = [line.strip() for line in seed_md.read_text().splitlines() if line.startswith("dfractal render ")]
    assert listed == SEED_RENDERS


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("seed")


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("command", SEED_RENDERS, ids=[c.split("--outfile ")[1].split()[0] for c in SEED_RENDERS])
def test_seed_render(command, workdir):
    argv = shlex.split(command)
    done = subprocess.run([BIN / argv[0], *argv[1:]], cwd=workdir, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr
    out = workdir / argv[argv.index("--outfile") + 1]
    width = int(argv[argv.index("--width") + 1]) if "--width" in argv else 1024
    height = int(argv[argv.index("--height") + 1]) if "--height" in argv else 768
    with Image.open(out) as im:
        assert im.size == (width, height) and im.format == "PNG"
        colours = im.getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 100  # a picture, not a flat fill
    ds = open_render(out.with_suffix(".zarr"))  # complete, or this raises
    n = int(argv[argv.index("--smoothness") + 1]) if "--smoothness" in argv else 8
    assert ds.iterations.shape == (height * n, width * n)
