"""Deep Zoom (DZI) pictures: the tiles against the DZI rules, their pixels, and OpenSeadragon showing them."""

from __future__ import annotations

import contextlib
import functools
import http.server
import math
import os
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dfractal_dask import View, build_pyramid, color_picture, colorize, open_level, open_render, render
from dfractal_dask.cli import main
from dfractal_dask.colorize import count_cdf, histogram_colors
from dfractal_dask.deepzoom import DZI_NAMESPACE, dzi_level_sizes, tiles_folder, write_deep_zoom, write_dzi
from dfractal_dask.palettes import resolve_palette

ROOT = Path(__file__).resolve().parents[1]
#: OpenSeadragon, installed by npm (.ci/run) into this folder or the one DFRACTAL_OPENSEADRAGON names.
OSD_PREFIX = Path(os.environ.get("DFRACTAL_OPENSEADRAGON", ROOT / "tests" / ".cache" / "openseadragon"))
OSD_JS = OSD_PREFIX / "node_modules" / "openseadragon" / "build" / "openseadragon" / "openseadragon.min.js"

if not OSD_JS.exists() and os.environ.get("CI"):
    raise RuntimeError(f"CI must install OpenSeadragon into {OSD_PREFIX} (see .ci/run)")


def blocks_picture(width: int, height: int, block: int, seed: int = 0) -> np.ndarray:
    """An opaque RGBA picture of ``block``-pixel squares, each its own colour."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (-(-height // block), -(-width // block), 4), dtype=np.uint8)
    colours[..., 3] = 255
    return np.repeat(np.repeat(colours, block, axis=0), block, axis=1)[:height, :width].copy()


def strips(pixels: np.ndarray, rows: int) -> Iterator[np.ndarray]:
    """``pixels`` in strips of ``rows`` rows, top to bottom."""
    for y in range(0, len(pixels), rows):
        yield pixels[y : y + rows]


def tile(folder: Path, level: int, col: int, row: int, fmt: str = "png") -> np.ndarray:
    with Image.open(folder / str(level) / f"{col}_{row}.{fmt}") as im:
        return np.asarray(im)


def expected_span(size: int, tile_size: int, overlap: int, i: int) -> tuple[int, int]:
    """Tile ``i``'s pixels along a side, by the DZI rule: its own ``tile_size``
    (fewer at the end), ``overlap`` more on each side that has a neighbour."""
    start = i * tile_size
    own = min(tile_size, size - start)
    before = min(overlap, start)
    after = min(overlap, size - start - own)
    return start - before, start + own + after


def joined(folder: Path, level: int, size: tuple[int, int], tile_size: int, overlap: int) -> np.ndarray:
    """A level's picture from its tiles, each tile's own pixels (its overlap cut off)."""
    width, height = size
    out = np.zeros((height, width, 4), np.uint8)
    for r in range(math.ceil(height / tile_size)):
        for c in range(math.ceil(width / tile_size)):
            t = tile(folder, level, c, r)
            y0, _ = expected_span(height, tile_size, overlap, r)
            x0, _ = expected_span(width, tile_size, overlap, c)
            oy, ox = r * tile_size - y0, c * tile_size - x0
            own = t[oy : oy + tile_size, ox : ox + tile_size]
            out[r * tile_size : r * tile_size + own.shape[0], c * tile_size : c * tile_size + own.shape[1]] = own
    return out


def reduced(pixels: np.ndarray, times: int) -> np.ndarray:
    """``pixels`` halved ``times`` times by Pillow's box reduction, whole."""
    im = Image.fromarray(pixels, "RGBA")
    for _ in range(times):
        im = im.reduce(2)
    return np.asarray(im)


def test_level_sizes_follow_the_dzi_rule():
    assert dzi_level_sizes(1, 1) == [(1, 1)]
    assert dzi_level_sizes(2, 1) == [(1, 1), (2, 1)]
    sizes = dzi_level_sizes(1000, 700)
    assert len(sizes) == 11  # ceil(log2(1000)) = 10, and level 0
    assert sizes[-1] == (1000, 700) and sizes[0] == (1, 1)
    assert sizes[-2:-5:-1] == [(500, 350), (250, 175), (125, 88)]
    assert len(dzi_level_sizes(1024, 3)) == 11 and len(dzi_level_sizes(1025, 3)) == 12


@pytest.mark.parametrize(
    ("width", "height", "tile_size", "overlap"), [(300, 200, 64, 1), (129, 65, 32, 2), (5, 3, 4, 0)]
)
def test_tiles_counts_sizes_and_pixels(tmp_path, width, height, tile_size, overlap):
    pic = np.random.default_rng(1).integers(0, 256, (height, width, 4), dtype=np.uint8)
    out = write_dzi(tmp_path / "p.dzi", width, height, {len(dzi_level_sizes(width, height)) - 1: strips(pic, 7)},
                    tile_size=tile_size, overlap=overlap)  # fmt: skip
    assert out == tmp_path / "p.dzi"
    header = ET.parse(out).getroot()
    assert header.tag == f"{{{DZI_NAMESPACE}}}Image"
    assert header.attrib == {"TileSize": str(tile_size), "Overlap": str(overlap), "Format": "png"}
    size = header.find(f"{{{DZI_NAMESPACE}}}Size")
    assert size is not None and size.attrib == {"Width": str(width), "Height": str(height)}
    folder = tiles_folder(out)
    top = math.ceil(math.log2(max(width, height)))
    assert sorted(int(p.name) for p in folder.iterdir()) == list(range(top + 1))
    w, h = width, height
    for level in range(top, -1, -1):
        cols, rows = math.ceil(w / tile_size), math.ceil(h / tile_size)
        names = {p.name for p in (folder / str(level)).iterdir()}
        assert names == {f"{c}_{r}.png" for c in range(cols) for r in range(rows)}, level
        for c in range(cols):
            for r in range(rows):
                x0, x1 = expected_span(w, tile_size, overlap, c)
                y0, y1 = expected_span(h, tile_size, overlap, r)
                t = tile(folder, level, c, r)
                assert t.shape == (y1 - y0, x1 - x0, 4), (level, c, r)
                # every level is the full picture halved (top - level) times, whole
                assert np.array_equal(t, reduced(pic, top - level)[y0:y1, x0:x1]), (level, c, r)
        w, h = math.ceil(w / 2), math.ceil(h / 2)
    assert (w, h) == (1, 1) or top == 0


def test_a_level_given_is_used_and_the_ones_below_are_made_from_it(tmp_path):
    full = blocks_picture(100, 60, 10, seed=2)
    other = blocks_picture(25, 15, 5, seed=3)  # level 5 (100x60 → 50x30 → 25x15), deliberately unlike `full`
    write_dzi(tmp_path / "p.dzi", 100, 60, {7: strips(full, 16), 5: strips(other, 4)}, tile_size=16, overlap=1)
    folder = tiles_folder(tmp_path / "p.dzi")
    sizes = dzi_level_sizes(100, 60)
    assert np.array_equal(joined(folder, 7, sizes[7], 16, 1), full)
    assert np.array_equal(joined(folder, 6, sizes[6], 16, 1), reduced(full, 1))
    assert np.array_equal(joined(folder, 5, sizes[5], 16, 1), other)
    for level in range(5):
        assert np.array_equal(joined(folder, level, sizes[level], 16, 1), reduced(other, 5 - level)), level


def test_tiles_are_written_as_the_rows_arrive(tmp_path):
    # memory stays bounded: the first tile row is on disk before the last strip is asked for
    pic = blocks_picture(64, 64, 8)
    folder = tiles_folder(tmp_path / "p.dzi")

    def source() -> Iterator[np.ndarray]:
        for y in range(0, 64, 8):
            if y == 56:
                assert (folder / "6" / "0_0.png").exists() and (folder / "5" / "0_0.png").exists()
                assert not (folder / "6" / "0_3.png").exists()
            yield pic[y : y + 8]

    write_dzi(tmp_path / "p.dzi", 64, 64, {6: source()}, tile_size=16)
    assert (tmp_path / "p.dzi").exists()


def test_jpeg_tiles(tmp_path):
    pic = blocks_picture(40, 30, 10)
    write_dzi(tmp_path / "p.dzi", 40, 30, {6: strips(pic, 30)}, fmt="jpg")
    assert 'Format="jpg"' in (tmp_path / "p.dzi").read_text()
    t = tile(tiles_folder(tmp_path / "p.dzi"), 6, 0, 0, "jpg")
    assert t.shape == (30, 40, 3)
    assert np.abs(t[5, 5].astype(int) - pic[5, 5, :3]).max() < 16  # lossy, but the colour


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"width": 0}, "width must be an integer >= 1"),
        ({"height": 2.5}, "height must be an integer >= 1"),
        ({"tile_size": 0}, "tile_size must be an integer >= 1"),
        ({"overlap": -1}, "overlap must be an integer >= 0"),
        ({"overlap": 16, "tile_size": 16}, "overlap must be below tile_size"),
        ({"fmt": "gif"}, "fmt must be one of png, jpg, webp"),
        ({"levels": {5: []}}, "levels must give the full level 6"),
        ({"levels": {6: [], 9: []}}, "levels must give the full level 6 and only levels 0-6"),
        ({"path": "p.png"}, "path must end in .dzi"),
        ({"levels": {6: [np.zeros((30, 40, 3), np.uint8)]}}, "levels: a strip of DZI level 6 must be (rows, 40, 4)"),
        ({"levels": {6: [np.zeros((20, 40, 4), np.uint8)]}}, "levels: DZI level 6 was given 20 rows of its 30"),
        ({"levels": {6: [np.zeros((31, 40, 4), np.uint8)]}}, "levels: DZI level 6 was given more than its 30 rows"),
    ],
)
def test_bad_input(tmp_path, kwargs, words):
    args = {"path": "p.dzi", "width": 40, "height": 30, "levels": {6: [blocks_picture(40, 30, 10)]}, **kwargs}
    args["path"] = tmp_path / args["path"]
    with pytest.raises(ValueError, match="^" + words.replace("(", r"\(").replace(")", r"\)")):
        write_dzi(**args)
    assert not (tmp_path / "p.dzi").exists() and not (tmp_path / "p_files").exists()


def test_levels_must_be_a_mapping(tmp_path):
    with pytest.raises(TypeError, match="levels must map DZI levels"):
        write_dzi(tmp_path / "p.dzi", 4, 4, [np.zeros((4, 4, 4), np.uint8)])  # type: ignore[arg-type]


def test_an_existing_picture_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "p.dzi"
    write_dzi(path, 40, 30, {6: [blocks_picture(40, 30, 10, seed=1)]})
    before = tile(tiles_folder(path), 6, 0, 0)
    with pytest.raises(ValueError, match=r"exists .*pass overwrite=True"):
        write_dzi(path, 40, 30, {6: [blocks_picture(40, 30, 10, seed=2)]})
    assert np.array_equal(tile(tiles_folder(path), 6, 0, 0), before)  # untouched
    path.unlink()  # a tile folder alone (a half-written picture) is refused too
    with pytest.raises(ValueError, match="exists"):
        write_dzi(path, 40, 30, {6: [blocks_picture(40, 30, 10, seed=2)]})
    write_dzi(path, 20, 10, {5: [blocks_picture(20, 10, 10, seed=2)]}, overwrite=True)
    assert np.array_equal(tile(tiles_folder(path), 5, 0, 0), blocks_picture(20, 10, 10, seed=2))
    assert sorted(p.name for p in tiles_folder(path).iterdir()) == [str(k) for k in range(6)]  # no level 6 left
    (tiles_folder(path) / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"notes\.txt is not a DZI level folder; refusing to delete it"):
        write_dzi(path, 20, 10, {5: [blocks_picture(20, 10, 10)]}, overwrite=True)
    assert (tiles_folder(path) / "notes.txt").read_text() == "mine" and path.exists()
    (tmp_path / "d.dzi").mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        write_dzi(tmp_path / "d.dzi", 4, 4, {2: [np.zeros((4, 4, 4), np.uint8)]}, overwrite=True)


def test_a_failed_write_leaves_no_picture(tmp_path):
    def source() -> Iterator[np.ndarray]:
        yield blocks_picture(40, 30, 10)[:20]
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        write_dzi(tmp_path / "p.dzi", 40, 30, {6: source()})
    assert sorted(os.listdir(tmp_path)) == []


# -- OpenSeadragon, in Chromium ---------------------------------------------------------------------------------
needs_openseadragon = pytest.mark.skipif(
    not OSD_JS.exists(), reason=f"needs OpenSeadragon (npm install --prefix {OSD_PREFIX} openseadragon@6.1.1)"
)

PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
html, body { margin: 0; background: #000; } #v { width: %(w)dpx; height: %(h)dpx; }</style></head>
<body><div id="v"></div><script src="openseadragon.min.js"></script><script>
window.viewer = OpenSeadragon({id: "v", tileSources: %(dzi)s, drawer: "canvas", imageSmoothingEnabled: false,
  showNavigationControl: false, animationTime: 0, springStiffness: 100, blendTime: 0, immediateRender: false,
  minZoomImageRatio: 0.01, maxZoomPixelRatio: 4, minPixelRatio: 0.9, visibilityRatio: 0, constrainDuringPan: false});
window.tilesLoaded = 0;
viewer.addHandler("tile-loaded", () => { window.tilesLoaded += 1; });
window.drawnLevels = () => [...new Set(viewer.world.getItemAt(0).getTilesToDraw().map((t) => t.tile.level))];
window.loaded = () => { const item = viewer.world.getItemAt(0); return !!item && item.getFullyLoaded(); };
// the canvas pixel at element point (x, y) and the image pixel under its centre
window.probe = (x, y) => {
  const c = viewer.drawer.canvas, ctx = c.getContext("2d"), r = c.width / c.clientWidth;
  const d = ctx.getImageData(Math.floor(x * r), Math.floor(y * r), 1, 1).data;
  const p = viewer.viewport.viewerElementToImageCoordinates(new OpenSeadragon.Point(x + 0.5, y + 0.5));
  return {rgba: Array.from(d), x: Math.floor(p.x), y: Math.floor(p.y)};
};
</script></body></html>
"""


@contextlib.contextmanager
def serving(folder: Path) -> Iterator[str]:
    """``folder`` served over HTTP on 127.0.0.1 (a free port), with OpenSeadragon beside it; yields the base URL."""
    shutil.copy(OSD_JS, folder / "openseadragon.min.js")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def wait_drawn(page) -> None:
    """Until OpenSeadragon has loaded every tile the view needs and drawn them (bounded)."""
    page.wait_for_function("window.loaded()", timeout=20_000)
    page.evaluate("new Promise((done) => { viewer.forceRedraw(); requestAnimationFrame(() => "
                  "requestAnimationFrame(done)); })")  # fmt: skip
    page.wait_for_function("window.loaded()", timeout=20_000)


def show_in_openseadragon(
    folder: Path, dzi: str, views: list[tuple[int, np.ndarray]], size: tuple[int, int] = (400, 300)
) -> list[list[int]]:
    """Open ``folder/dzi`` in OpenSeadragon in Chromium, whole first (zoomed out), then for each
    ``(j, level)`` of ``views`` at ``2**-j`` screen pixels per full-size pixel, the picture's corner at
    the viewer's: every few screen pixels the canvas must show ``level``'s (opaque) pixel there (the
    DZI level ``j`` below the full one is drawn one to one).  Returns the DZI levels drawn for the
    whole picture, then for each view."""
    from chromium import launch

    w, h = size
    (folder / "index.html").write_text(PAGE % {"w": w, "h": h, "dzi": f'"{dzi}"'})
    loaded = []
    with serving(folder) as url, launch() as browser:
        page = browser.new_page(viewport={"width": w, "height": h})
        try:
            page.goto(url + "index.html")
            wait_drawn(page)
            assert page.evaluate("viewer.world.getItemCount()") == 1 and page.evaluate("window.tilesLoaded") > 0
            loaded.append(page.evaluate("window.drawnLevels()"))
            for j, level in views:
                page.evaluate(f"""(() => {{ const vp = viewer.viewport;
                    vp.zoomTo(vp.imageToViewportZoom({2.0**-j}), null, true);
                    const tl = vp.viewerElementToViewportCoordinates(new OpenSeadragon.Point(0, 0));
                    vp.panBy(new OpenSeadragon.Point(-tl.x, -tl.y), true); vp.applyConstraints(true); }})()""")
                wait_drawn(page)
                points = [
                    (x, y) for x in range(0, min(w, level.shape[1]), 23) for y in range(0, min(h, level.shape[0]), 17)
                ]
                assert len(points) >= 10
                for x, y in points:
                    got = page.evaluate(f"window.probe({x}, {y})")
                    assert (got["x"] >> j, got["y"] >> j) == (x, y), got  # one to one
                    assert got["rgba"] == level[y, x].tolist(), (j, x, y, got)
                loaded.append(page.evaluate("window.drawnLevels()"))
        finally:
            page.close()
    return loaded


@needs_openseadragon
@pytest.mark.browser
@pytest.mark.slow
def test_openseadragon_shows_the_picture(tmp_path):
    from chromium import CHROMIUM

    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium")
    pic = blocks_picture(1000, 700, 20, seed=4)
    pic[::7, ::3] = [255, 0, 0, 255]  # single pixels: the full level must be drawn one to one
    write_dzi(tmp_path / "pic.dzi", 1000, 700, {10: strips(pic, 100)}, tile_size=128, overlap=1)
    loaded = show_in_openseadragon(tmp_path, "pic.dzi", [(0, pic), (1, reduced(pic, 1)), (2, reduced(pic, 2))])
    assert max(loaded[0]) < 10  # the whole picture in 400x300: coarser levels
    assert loaded[1:] == [[10], [9], [8]]  # one to one: the full level, then the ones below it


def test_three_levels_given(tmp_path):
    full, mid, low = blocks_picture(100, 60, 10, seed=5), blocks_picture(50, 30, 5, seed=6), blocks_picture(13, 8, 2)
    write_dzi(tmp_path / "p.dzi", 100, 60, {7: [full], 6: strips(mid, 3), 4: [low]}, tile_size=16)
    folder, sizes = tiles_folder(tmp_path / "p.dzi"), dzi_level_sizes(100, 60)
    for level, want in ((7, full), (6, mid), (5, reduced(mid, 1)), (4, low), (2, reduced(low, 2))):
        assert np.array_equal(joined(folder, level, sizes[level], 16, 1), want), level


# -- the Deep Zoom picture of a pyramid store --------------------------------------------------------------------
# odd sizes: the coarse levels' pixels have ragged edges (fewer samples than 2x2)
STORE_VIEW = View(-0.5, 0.0, 3.0, 290, 145, 2)
STORE_ITERS = 200


@pytest.fixture(scope="module")
def pyramid_store(client, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dzi") / "m.zarr"
    render(STORE_VIEW, STORE_ITERS, store_path=path, client=client, chunk_rows=40, distance=True)
    build_pyramid(path, client=client)
    return path


def ragged_mean(samples: np.ndarray, n: int) -> np.ndarray:
    """The mean of each n x n square of ``samples`` (the ones an edge square has), rounded half up."""
    h, w, c = samples.shape
    out = np.zeros((-(-h // n), -(-w // n), c), np.uint8)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            sq = samples[i * n : (i + 1) * n, j * n : (j + 1) * n].reshape(-1, c).astype(np.float64)
            out[i, j] = np.floor(sq.mean(axis=0) + 0.5)
    return out


def coloured_level(store: Path, k: int, palette: str, mode: str, n: int) -> np.ndarray:
    """Pyramid level ``k`` coloured sample by sample (histogram: level 0's equalisation), then averaged."""
    ds = open_level(store, k).compute()
    if mode == "histogram":
        cdf = count_cdf(open_render(store)["iterations"].values, STORE_ITERS)
        ramp, interior = resolve_palette(palette).ramp(), np.zeros(3)
        samples = histogram_colors(ds["iterations"].values, ds["norm"].values, STORE_ITERS, ramp, interior, cdf)
    else:
        samples = np.asarray(color_picture(ds, palette, mode=mode, supersample=1))
    return ragged_mean(samples, n)


@pytest.mark.parametrize(("mode", "on_cluster"), [("smooth", True), ("histogram", False), ("distance", True)])
def test_deep_zoom_of_a_store_is_its_coloured_pyramid(pyramid_store, client, tmp_path, mode, on_cluster):
    out = write_deep_zoom(pyramid_store, tmp_path / "m.dzi", "Viridis256", mode=mode, tile_size=64,
                          client=client if on_cluster else None)  # fmt: skip
    folder, sizes = tiles_folder(out), dzi_level_sizes(290, 145)
    assert len(sizes) == 10 and sizes[7] == (73, 37)
    assert sorted(int(p.name) for p in folder.iterdir()) == list(range(10))
    full = np.asarray(colorize(open_render(pyramid_store), "Viridis256", mode=mode))
    assert full.shape == (145, 290, 4)
    assert np.array_equal(joined(folder, 9, sizes[9], 64, 1), full)  # the plain picture's pixels
    for k in (1, 2):  # DZI levels 8, 7: the pyramid's levels 1, 2, coloured
        want = coloured_level(pyramid_store, k, "Viridis256", mode, 2)
        assert want.shape == (sizes[9 - k][1], sizes[9 - k][0], 4)
        assert np.array_equal(joined(folder, 9 - k, sizes[9 - k], 64, 1), want), k
    low = coloured_level(pyramid_store, 2, "Viridis256", mode, 2)
    for level in range(7):  # below the pyramid: downscaled from the level above
        assert np.array_equal(joined(folder, level, sizes[level], 64, 1), reduced(low, 7 - level)), level


def test_deep_zoom_with_a_client_or_threads_is_the_same(pyramid_store, client, tmp_path):
    a = write_deep_zoom(pyramid_store, tmp_path / "a.dzi", "Hippi", mode="seed", client=client)
    b = write_deep_zoom(pyramid_store, tmp_path / "b.dzi", "Hippi", mode="seed")
    files = sorted(p.relative_to(tiles_folder(a)) for p in tiles_folder(a).rglob("*.png"))
    assert files == sorted(p.relative_to(tiles_folder(b)) for p in tiles_folder(b).rglob("*.png"))
    for f in files:
        assert np.array_equal(np.asarray(Image.open(tiles_folder(a) / f)), np.asarray(Image.open(tiles_folder(b) / f)))
    assert np.array_equal(
        joined(tiles_folder(a), 9, (290, 145), 256, 1), np.asarray(colorize(open_render(pyramid_store), "Hippi"))
    )


def test_deep_zoom_bad_input(pyramid_store, client, tmp_path):
    plain = tmp_path / "plain.zarr"
    render(View(width=20, height=10, supersample=1), 50, store_path=plain, client=client, chunk_rows=5)
    with pytest.raises(ValueError, match="has no pyramid, so no Deep Zoom picture"):
        write_deep_zoom(plain, tmp_path / "p.dzi")
    with pytest.raises(ValueError, match="supersample 3 does not divide"):
        write_deep_zoom(pyramid_store, tmp_path / "p.dzi", supersample=3)
    with pytest.raises(ValueError, match="unknown colour mode 'smoth'; did you mean smooth"):
        write_deep_zoom(pyramid_store, tmp_path / "p.dzi", mode="smoth")
    with pytest.raises(TypeError, match="client must be a dask Client"):
        write_deep_zoom(pyramid_store, tmp_path / "p.dzi", client="tcp://x:1")  # type: ignore[arg-type]
    # (a tile size of 0 was a bare "range() arg 3 must not be zero", 2.5 a TypeError of int())
    bad = (({"tile_size": 0}, "tile_size must be an integer >= 1, got 0"),
           ({"tile_size": 2.5}, "tile_size must be an integer >= 1, got 2.5"),
           ({"overlap": -1}, "overlap must be an integer >= 0"), ({"fmt": "gif"}, "fmt must be one of"))  # fmt: skip
    for kwargs, words in bad:
        with pytest.raises(ValueError, match=words):
            write_deep_zoom(pyramid_store, tmp_path / "p.dzi", **kwargs)
    # (step 0 and -3 wrote a picture: the seed rule took max(step, iters))
    for step, exc in ((0, ValueError), (-3, ValueError), (2.5, TypeError), (True, TypeError)):
        with pytest.raises(exc, match=r"^step must be"):
            write_deep_zoom(pyramid_store, tmp_path / "p.dzi", step=step)  # type: ignore[arg-type]
    assert sorted(os.listdir(tmp_path)) == ["plain.zarr"]


@needs_openseadragon
@pytest.mark.browser
@pytest.mark.slow
def test_openseadragon_shows_a_stores_deep_zoom(pyramid_store, tmp_path):
    from chromium import CHROMIUM

    if not os.path.exists(CHROMIUM):
        pytest.skip("needs Debian's chromium")
    write_deep_zoom(pyramid_store, tmp_path / "m.dzi", "Inferno256", mode="smooth", tile_size=64)  # opaque
    full = np.asarray(colorize(open_render(pyramid_store), "Inferno256", mode="smooth"))
    level1 = coloured_level(pyramid_store, 1, "Inferno256", "smooth", 2)
    loaded = show_in_openseadragon(tmp_path, "m.dzi", [(0, full), (1, level1)], size=(200, 120))
    assert loaded[1:] == [[9], [8]]


def test_a_picture_inside_its_store_or_under_a_file_is_refused_before_anything(pyramid_store, tmp_path, capsys):
    # inside the store it pictures: the tiles went into the store's folder; under a file: the
    # NotADirectoryError came late and was reported as a damaged store
    a_file = tmp_path / "a.png"
    a_file.write_bytes(b"x")
    before = sorted(p.relative_to(pyramid_store) for p in pyramid_store.rglob("*"))
    for target, words in ((pyramid_store / "in.dzi", f"it is inside the store {pyramid_store}"),
                          (pyramid_store / "pyramid" / "in.dzi", "it is inside the store"),
                          (a_file / "under.dzi", f"{a_file} is not a folder")):  # fmt: skip
        with pytest.raises(ValueError, match="cannot write the DZI picture") as err:
            write_deep_zoom(pyramid_store, target)
        assert words in str(err.value)
        assert main(["recolor", str(pyramid_store), "--dzi", str(target)]) == 2
        out = capsys.readouterr().err
        assert out.count("\n") == 1 and words in out and "damaged" not in out, out
    assert sorted(p.relative_to(pyramid_store) for p in pyramid_store.rglob("*")) == before
    assert sorted(os.listdir(tmp_path)) == ["a.png"]
    # the command line names its flag
    assert main(["recolor", str(pyramid_store), "--dzi", str(tmp_path / "p.DZI")]) == 2
    assert "--dzi must end in .dzi, got" in capsys.readouterr().err


# -- replacing a picture deletes its own files alone; nothing is written through a symbolic link ------------------
# (--overwrite deleted y_files/0/thesis.docx: any folder of digit-named folders was rmtree'd; a symlinked
# y_files had the tiles written into the folder it points to, and the run then called the store damaged)


def old_picture(path: Path) -> None:
    """A picture of several levels and tiles a level (100x60: levels 0-7; tiles of 16)."""
    write_dzi(path, 100, 60, {7: [blocks_picture(100, 60, 10, seed=7)]}, tile_size=16)


def everything(root: Path) -> dict[str, bytes | str | None]:
    """Every path under ``root`` (itself too): a file's bytes, a link's target, None for a folder,
    "pipe" for a pipe (not read: it would wait for a writer)."""
    out: dict[str, bytes | str | None] = {}
    for p in [root, *root.rglob("*")]:
        key = str(p.relative_to(root))
        if p.is_symlink():
            out[key] = os.readlink(p)
        else:
            out[key] = None if p.is_dir() else "pipe" if p.is_fifo() else p.read_bytes()
    return out


def shown(text: str) -> str:
    """``text`` as a message shows a name found on the disk: what is not printable escaped."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def refused(call, words: str) -> str:
    """The one-line ValueError ``call`` raises, which has ``words``."""
    with pytest.raises(ValueError) as err:
        call()
    message = str(err.value)
    assert words in message and "\n" not in message, message
    return message


#: A thing put in an old picture's tile folder that is not a tile of it, by how it is made: the
#: foreign path (relative to the tile folder) and what is made there ("dir", "fifo" or a file's text).
FOREIGN = {
    "a file in a level folder": ("6/thesis.docx", "my thesis"),
    "a file beside the levels": ("notes.txt", "mine"),
    "a hidden file": (".DS_Store", "finder"),
    "a level with a leading zero": ("00", "dir"),
    "a tile in a level with a leading zero": ("07/0_0.png", "not a tile"),
    "a tile with a leading zero": ("6/0_00.png", "x"),
    "a backup of a tile": ("6/0_0.png.bak", "x"),
    "an upper-case ending": ("6/0_0.PNG", "x"),
    "an ending DZI has not": ("6/0_0.gif", "x"),
    "a folder named as a tile": ("6/7_7.png", "dir"),
    "a folder named as a tile, a tile inside": ("6/9_9.png/0_0.png", "x"),
    "a level inside a level": ("6/1", "dir"),
    "a folder in a level": ("6/sub/0_0.png", "x"),
    "a superscript-two level (isdigit)": ("\N{SUPERSCRIPT TWO}", "dir"),
    "an Arabic-Indic one level": ("\N{ARABIC-INDIC DIGIT ONE}/0_0.png", "x"),
    "a full-width digit tile": ("6/\N{FULLWIDTH DIGIT ZERO}_0.png", "x"),
    "a unicode name": ("6/th\u00e8se \u6587.png", "x"),
    "a newline at the end of a tile's name": ("6/0_0.png\n", "x"),
    "a name not UTF-8": ("6/" + os.fsdecode(b"0_0.p\xffng"), "x"),
    "a pipe named as a tile": ("6/5_5.png", "fifo"),
}


def make_foreign(folder: Path, rel: str, what: str) -> None:
    target = folder / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    if what == "dir":
        target.mkdir(exist_ok=True)
    elif what == "fifo":
        os.mkfifo(target)
    else:
        target.write_text(what)


@pytest.mark.parametrize("case", list(FOREIGN))
def test_a_picture_holding_anything_else_is_refused_and_nothing_deleted(tmp_path, case):
    path = tmp_path / "y.dzi"
    old_picture(path)
    folder = tiles_folder(path)
    rel, what = FOREIGN[case]
    make_foreign(folder, rel, what)
    before = everything(tmp_path)
    for overwrite in (True, False):  # (without overwrite too: passing it would not help)
        call = functools.partial(write_dzi, path, 20, 10, {5: [blocks_picture(20, 10, 10)]}, overwrite=overwrite)
        message = refused(call, f"cannot replace the DZI picture {path}: {folder}/")
        assert "refusing to delete it" in message and "overwrite" not in message
        # the first thing there that is not the picture's is named (a folder, or the file in it)
        named = message.split(": ")[1].split(" is not ")[0]
        assert shown(str(folder / rel)).startswith(named) and Path(named) != folder, message
    assert everything(tmp_path) == before  # not a tile of the old picture deleted, nothing written


def test_a_header_that_is_not_a_dzi_header_is_refused(tmp_path):
    path = tmp_path / "y.dzi"
    source = {5: [blocks_picture(20, 10, 10)]}
    for text in ("my notes", '<?xml version="1.0"?><Image TileSize="4"/>',  # (no DZI namespace)
                 "<Image xmlns='http://schemas.microsoft.com/deepzoom/2008'", ""):  # fmt: skip
        path.write_text(text)
        refused(lambda: write_dzi(path, 20, 10, source, overwrite=True), f"{path} is not a DZI header")
        assert path.read_text() == text and not tiles_folder(path).exists()
    path.write_text(f"<Image xmlns='{DZI_NAMESPACE}'/>" + " " * 70_000)  # a DZI header is small: not read
    refused(lambda: write_dzi(path, 20, 10, source, overwrite=True), "is not a DZI header")
    # entities that expand a billionfold (expat refuses them, at once)
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10 if i else "lol"}">' for i in range(10))
    path.write_text(f'<!DOCTYPE Image [{entities}]><Image xmlns="{DZI_NAMESPACE}">&e9;</Image>')
    refused(lambda: write_dzi(path, 20, 10, source, overwrite=True), "is not a DZI header")
    # nor a header beside ours that is being written (.part), unless it is one
    path.unlink()
    write_dzi(path, 20, 10, source)
    part = tmp_path / "y.dzi.part"
    part.write_text("mine")
    refused(lambda: write_dzi(path, 20, 10, source, overwrite=True), f"{part} is not a DZI header")
    assert part.read_text() == "mine"
    shutil.copy(path, part)  # (a header left by a write that was killed: the picture's own)
    with pytest.raises(ValueError, match="exists"):
        write_dzi(path, 20, 10, source)
    write_dzi(path, 20, 10, source, overwrite=True)
    assert not part.exists() and sorted(os.listdir(tmp_path)) == ["y.dzi", "y_files"]


def test_the_tile_folder_a_file_is_refused(tmp_path):
    path = tmp_path / "y.dzi"
    tiles_folder(path).write_text("mine")
    refused(lambda: write_dzi(path, 4, 4, {2: [np.zeros((4, 4, 4), np.uint8)]}, overwrite=True),
            f"{tiles_folder(path)} is not a folder of DZI tiles")  # fmt: skip
    assert tiles_folder(path).read_text() == "mine" and not path.exists()


#: Symbolic links where a picture's files go: the link (relative to the picture's folder) and where it points.
LINKS = {
    "the tile folder, to a user's folder": ("y_files", "mine"),
    "the tile folder, dangling": ("y_files", "nowhere"),
    "the header, to another picture's": ("y.dzi", "other.dzi"),
    "the header, dangling": ("y.dzi", "nowhere.dzi"),
    "the header being written, dangling": ("y.dzi.part", "nowhere.txt"),
    "a level folder, to a user's folder": ("y_files/6", "../../mine"),
    "a level folder, dangling": ("y_files/3", "../../nowhere"),
    "a tile, to a user's file": ("y_files/6/0_0.png", "../../../mine/notes.txt"),
}


@pytest.mark.parametrize("case", list(LINKS))
def test_a_symbolic_link_is_refused_and_nothing_written_through_it(tmp_path, case):
    rel, target = LINKS[case]
    pics, mine = tmp_path / "pics", tmp_path / "mine"
    pics.mkdir()
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    old_picture(pics / "other.dzi")
    if rel.startswith("y_files/"):
        old_picture(pics / "y.dzi")
        if (pics / rel).is_dir():
            shutil.rmtree(pics / rel)
        else:
            (pics / rel).unlink()
    (pics / rel).symlink_to(target)
    before = everything(tmp_path)
    for overwrite in (True, False):
        call = functools.partial(
            write_dzi, pics / "y.dzi", 20, 10, {5: [blocks_picture(20, 10, 10)]}, overwrite=overwrite
        )
        refused(call, f"cannot write the DZI picture {pics / 'y.dzi'}: {pics / rel} is a symbolic link")
    assert everything(tmp_path) == before
    assert not (tmp_path / "nowhere").exists() and not (pics / "nowhere.dzi").exists()


def test_overwrite_replaces_a_bigger_picture_with_the_new_ones_tiles_alone(tmp_path):
    path, fresh = tmp_path / "y.dzi", tmp_path / "fresh" / "y.dzi"
    old_picture(path)
    (tiles_folder(path) / "9").mkdir()  # an empty level folder (digits) is the picture's: removed
    (tmp_path / "z.dzi").write_text("another picture's")  # other names are never touched
    tiles_folder(tmp_path / "z.dzi").mkdir()
    (tiles_folder(tmp_path / "z.dzi") / "0").mkdir()
    (tiles_folder(tmp_path / "z.dzi") / "0" / "0_0.png").write_text("z")
    new = {5: [blocks_picture(20, 10, 10, seed=9)]}
    write_dzi(path, 20, 10, new, tile_size=8, overwrite=True)
    write_dzi(fresh, 20, 10, new, tile_size=8)
    got, want = everything(tiles_folder(path)), everything(tiles_folder(fresh))
    assert got == want and "7" not in got and "5/2_1.png" in got  # the old levels 6, 7 and tiles 3_0.. gone
    assert path.read_bytes() == fresh.read_bytes()
    assert (tiles_folder(tmp_path / "z.dzi") / "0" / "0_0.png").read_text() == "z"
    assert sorted(os.listdir(tmp_path)) == ["fresh", "y.dzi", "y_files", "z.dzi", "z_files"]


def test_a_picture_in_a_folder_reached_through_a_link_is_written(tmp_path):
    # the links refused are the picture's own files' and folders': the folder the user names may be one
    (tmp_path / "real").mkdir()
    (tmp_path / "out").symlink_to("real")
    path = tmp_path / "out" / "y.dzi"
    old_picture(path)
    write_dzi(path, 20, 10, {5: [blocks_picture(20, 10, 10)]}, tile_size=8, overwrite=True)
    assert sorted(os.listdir(tmp_path / "real")) == ["y.dzi", "y_files"]
    assert sorted(os.listdir(tmp_path / "real" / "y_files")) == [str(k) for k in range(6)]


def test_a_file_put_where_a_tile_goes_while_writing_is_not_written_into(tmp_path):
    # every file is created new: one that appears since the checks (a file, a link) is an error writing
    # the picture, which names it, and leaves it alone; the tiles written are removed
    path, mine = tmp_path / "y.dzi", tmp_path / "mine.txt"
    mine.write_text("mine")
    folder = tiles_folder(path)

    def source(put) -> Iterator[np.ndarray]:
        pic = blocks_picture(40, 30, 10)
        yield pic[:10]
        put(folder / "6" / "0_1.png")  # the second tile row's first tile, not written yet
        yield pic[10:]

    for name, put in (("file", lambda p: p.write_text("appeared")), ("link", lambda p: p.symlink_to(mine))):
        with pytest.raises(OSError) as err:
            write_dzi(path, 40, 30, {6: source(put)}, tile_size=8)
        message = str(err.value)
        assert message == f"cannot write the DZI picture {path}: {folder / '6' / '0_1.png'}: File exists", name
        assert mine.read_text() == "mine" and not path.exists()
        assert everything(folder) == {".": None, "6": None, "6/0_1.png": os.readlink(folder / "6" / "0_1.png")
                                      if name == "link" else b"appeared"}  # fmt: skip
        shutil.rmtree(folder)


def test_the_tile_folder_made_a_link_while_writing_is_not_written_through(tmp_path):
    path, mine = tmp_path / "y.dzi", tmp_path / "mine"
    mine.mkdir()

    def source() -> Iterator[np.ndarray]:
        pic = blocks_picture(40, 30, 10)
        yield pic[:10]
        shutil.move(tiles_folder(path), tmp_path / "moved")
        tiles_folder(path).symlink_to(mine)
        yield pic[10:]

    with pytest.raises(OSError, match=f"^cannot write the DZI picture {path}: "):
        write_dzi(path, 40, 30, {6: source()}, tile_size=8)
    assert os.listdir(mine) == [] and not path.exists()


def test_the_cli_refuses_a_foreign_file_or_a_link_in_one_line(pyramid_store, tmp_path, capsys):
    out = tmp_path / "y.dzi"
    folder = tiles_folder(out)
    write_deep_zoom(pyramid_store, out, tile_size=64)
    (folder / "0" / "thesis.docx").write_text("my thesis")
    before = everything(tmp_path)
    argv = ["recolor", str(pyramid_store), "--dzi", str(out), "--outfile", str(tmp_path / "y.png"), "--overwrite"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{folder / '0' / 'thesis.docx'} is not a DZI tile" in err, err
    assert everything(tmp_path) == before  # the thesis, the old tiles and header; no PNG
    # through the Python API too
    refused(lambda: write_deep_zoom(pyramid_store, out, overwrite=True), f"{folder / '0' / 'thesis.docx'}")
    assert everything(tmp_path) == before
    # a name that would break the line is escaped in it
    (folder / "0" / "thesis.docx").unlink()
    (folder / "0" / "a\nb").write_text("x")
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "a\\nb is not a DZI tile" in err, err
    # the tile folder a link to a user's folder: refused, nothing written into it (the tiles were
    # written there, then the intact store was called damaged)
    shutil.rmtree(folder)
    out.unlink()
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    folder.symlink_to(mine)
    for flags in ([], ["--overwrite"]):
        assert main([*argv[:-1], *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{folder} is a symbolic link" in err and "damaged" not in err, err
        assert os.listdir(mine) == ["notes.txt"] and not out.exists() and not (tmp_path / "y.png").exists()
    refused(lambda: write_deep_zoom(pyramid_store, out, overwrite=True), f"{folder} is a symbolic link")
    assert os.listdir(mine) == ["notes.txt"]
    # a header that is not one
    folder.unlink()
    out.write_text("my notes")
    assert main([*argv[:-1], "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{out} is not a DZI header; refusing to delete it" in err, err
    assert out.read_text() == "my notes" and not folder.exists()


def test_a_store_at_the_tile_folders_name_is_refused(pyramid_store, tmp_path, capsys):
    # a store named y_files and a picture y.dzi: its tile folder is the store (check_output looks at y.dzi)
    store = tmp_path / "y_files"
    shutil.copytree(pyramid_store, store)
    before = everything(tmp_path)
    refused(lambda: write_deep_zoom(store, tmp_path / "y.dzi", overwrite=True), f"{store}/")
    assert main(["recolor", str(store), "--dzi", str(tmp_path / "y.dzi"), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "refusing to delete it" in err, err
    assert everything(tmp_path) == before


def test_the_cli_overwrite_replaces_a_bigger_picture(pyramid_store, tmp_path, capsys):
    out, fresh = tmp_path / "y.dzi", tmp_path / "fresh.dzi"
    write_dzi(out, 1000, 700, {10: strips(blocks_picture(1000, 700, 50), 100)})  # levels 0-10, 4x3 tiles at 10
    assert main(["recolor", "-q", str(pyramid_store), "--dzi", str(out), "--overwrite", "--palette", "Hippi"]) == 0
    write_deep_zoom(pyramid_store, fresh, "Hippi")
    assert everything(tiles_folder(out)) == everything(tiles_folder(fresh))
    assert sorted(os.listdir(tiles_folder(out))) == [str(k) for k in range(10)]
    assert sorted(os.listdir(tiles_folder(out) / "9")) == ["0_0.png", "1_0.png"]  # 290x145 in tiles of 256
    assert out.read_bytes() == fresh.read_bytes()


def test_an_error_writing_the_picture_names_it_not_the_store(pyramid_store, tmp_path):
    # a real one: files limited to 2048 bytes (ulimit -f; Python ignores SIGXFSZ, so a write past it is
    # EFBIG): the tiles cannot be written; it was "<store> is damaged ...; render it again with --overwrite"
    out = tmp_path / "y.dzi"
    argv = ["sh", "-c", 'ulimit -f 4 && exec "$@"', "sh", sys.executable, "-m", "dfractal_dask", "recolor",
            str(pyramid_store), "--dzi", str(out), "--outfile", str(tmp_path / "y.png")]  # fmt: skip
    run = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr
    err = run.stderr
    assert err.count("\n") == 1 and err.startswith(f"dfractal: error: cannot write the DZI picture {out}: "), err
    assert "File too large" in err and "damaged" not in err and "overwrite" not in err, err
    assert sorted(os.listdir(tmp_path)) == []  # the tiles written were removed; no header, no PNG
