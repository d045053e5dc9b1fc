"""The explorer browsing a stored render (issue 20 point 3): frames read from the store's pyramid, no cluster."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from distributed import get_task_stream
from shards import garble_tile, tiles

from dfractal_dask import View, colorize, open_render, render
from dfractal_dask.cli import main
from dfractal_dask.colorize import color_samples
from dfractal_dask.explorer.session import ExplorerSession
from dfractal_dask.explorer.stored import StoredPicture
from dfractal_dask.pyramid import open_level, pyramid_levels, read_window
from dfractal_dask.store import StoreError

ITERS = 150
STORE_VIEW = View(-0.5, 0.0, 3.0, 1200, 900, 1)  # levels 0: 1200x900, 1: 600x450, 2: 300x225, 3: 150x113
STEP0 = STORE_VIEW.step
R0, C0, H, W = 100, 200, 90, 120  # a 120x90 window of level 1: its tiles (0, 0) and (0, 1), of 2x3


@pytest.fixture(scope="module")
def pyramid_store(client, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("stored") / "big.zarr"
    render(STORE_VIEW, ITERS, store_path=path, client=client, pyramid=True)
    return path


@pytest.fixture(scope="module")
def flat_store(client, tmp_path_factory) -> Path:
    """The same render without a pyramid, in row blocks of 100 rows."""
    path = tmp_path_factory.mktemp("flat") / "flat.zarr"
    render(STORE_VIEW, ITERS, store_path=path, client=client, chunk_rows=100)
    return path


def level_view(k: int, r0: int, c0: int, w: int = W, h: int = H) -> View:
    """The screen view whose pixels are level ``k``'s samples ``[r0:r0+h, c0:c0+w]`` exactly."""
    m = 2**k
    step = m * STEP0
    # a level-k sample c is centred on level-0 index c*m + (m-1)/2
    re = STORE_VIEW.re0 + (c0 * m + (m - 1) / 2) * STEP0
    im = STORE_VIEW.im0 - (r0 * m + (m - 1) / 2) * STEP0
    return View(re + (w - 1) / 2 * step, im - (h - 1) / 2 * step, (w - 1) * step, w, h, 1)


def coloured(window: dict[str, np.ndarray], palette: str = "Hippi", mode: str = "smooth") -> np.ndarray:
    return color_samples(window["iterations"], window["norm"], ITERS, palette, mode)


class Seen:
    def __init__(self, session: ExplorerSession) -> None:
        self.frames: dict[int, np.ndarray] = {}
        self.status: list[str] = []
        session.on_frame(lambda record, rgba: self.frames.__setitem__(record["gen"], rgba))
        session.on_status(self.status.append)


@pytest.fixture
def session(client, pyramid_store):
    s = ExplorerSession(client, View(-0.5, 0.0, 3.0, W, H, 1), store=pyramid_store)
    yield s
    s.close()


def corrupt(path: Path, k: int, keep: set[tuple[int, int]]) -> int:
    """Garble every chunk of level ``k`` but those of ``keep``: reading one fails.  Returns how many."""
    n = 0
    for name in ("iterations", "norm"):
        array = path / "pyramid" / str(k) / name
        for ty, tx in tiles(array):  # (a level is stored a row of tiles a shard: each tile garbled in place)
            if (ty, tx) not in keep:
                garble_tile(array, ty, tx)
                n += 1
    return n


def test_the_store_has_the_pyramid_the_tests_expect(pyramid_store):
    levels = pyramid_levels(pyramid_store)
    assert [(lv.width, lv.height) for lv in levels] == [(1200, 900), (600, 450), (300, 225), (150, 113)]


def test_the_session_starts_at_the_stores_view_fractal_and_iterations(client, pyramid_store):
    s = ExplorerSession(client, store=pyramid_store)
    try:
        assert (s.view.xpos, s.view.ypos, s.view.span, s.view.width, s.view.height) == (-0.5, 0.0, 3.0, 800, 600)
        assert s.iters == ITERS and s.fractal.family == "mandelbrot"
        assert s.modes == ("seed", "smooth", "histogram")  # no distances stored
        record = s.wait(s.goto(s.view), timeout=30)
        assert record["stored"]["level"] == 0  # 800 pixels over the store's 1200: level 0, subsampled
    finally:
        s.close()


def test_a_stored_frame_equals_the_coloured_level_read_directly(session, client):
    seen = Seen(session)
    view = level_view(1, R0, C0)
    with get_task_stream(client) as stream:
        gen = session.goto(view)
        record = session.wait(gen, timeout=30)
        time.sleep(0.5)  # (the task stream hears of a task a moment after it ran)
    assert stream.data == []  # nothing ran on the cluster
    assert record["shown"] and record["stored"]["level"] == 1
    assert session.wait(gen, "coarse", timeout=0) is record  # a stored view has no coarse frame
    window = read_window(session.stored.location.url, 1, R0, R0 + H, C0, C0 + W)
    np.testing.assert_array_equal(seen.frames[gen], coloured(window))
    np.testing.assert_array_equal(session.last_frame, coloured(window))
    assert seen.status[-1].startswith(f"full frame {W}x{H} in ")
    assert " · stored level 1 (600x450), 2 tiles of big.zarr · " in seen.status[-1]
    assert seen.status[-1].endswith(f"· frame {gen}")


@pytest.mark.parametrize(
    ("span", "level"),
    [(3.0, 3), (1.5, 2), (0.75, 1), (0.3, 0), (119 * STEP0, 0), (20.0, 3)],
    ids=["whole-3", "2x-2", "4x-1", "10x-0", "stored-resolution-0", "far-out-3"],
)
def test_the_level_that_fits_the_screen_is_chosen(session, span, level):
    """The coarsest level whose sample step is at most the screen's pixel step."""
    gen = session.goto(View(-0.5, 0.0, span, W, H, 1))
    record = session.wait(gen, timeout=30)
    assert record["stored"]["level"] == level
    screen = span / (W - 1)
    assert STEP0 * 2**level <= screen * (1 + 1e-9)
    assert level == 3 or STEP0 * 2 ** (level + 1) > screen


def test_only_the_tiles_overlapping_the_view_are_read_and_panning_rereads_nothing(client, tmp_path):
    path = tmp_path / "mine.zarr"
    render(STORE_VIEW, ITERS, store_path=path, client=client, pyramid=True)
    want = read_window(path, 1, R0, R0 + H, C0, C0 + W + 20)  # read before the other tiles are garbled
    assert corrupt(path, 1, keep={(0, 0), (0, 1)}) == 8  # 4 of 6 tiles, 2 arrays
    s = ExplorerSession(client, level_view(1, R0, C0), store=path)
    seen = Seen(s)
    try:
        record = s.wait(s.goto(s.view), timeout=30)
        assert record["shown"] and record["stored"]["tiles"] == 2 and s.stored.reads == 2
        np.testing.assert_array_equal(seen.frames[record["gen"]], coloured({k: v[:, :W] for k, v in want.items()}))
        # the other tiles read: they would fail now
        with pytest.raises(StoreError, match="damaged"):
            StoredPicture(path).frame(level_view(1, R0, 400), pyramid_levels(path)[1], "Hippi", "smooth", 1)
        # pan right by 20 samples: the same two tiles, from the cache
        corrupt(path, 1, keep=set())  # even they are garbled on disk now
        record = s.wait(s.goto(level_view(1, R0, C0 + 20)), timeout=30)
        assert record["shown"] and record["stored"]["read"] == 0 and s.stored.reads == 2
        np.testing.assert_array_equal(seen.frames[record["gen"]], coloured({k: v[:, 20:] for k, v in want.items()}))
        # a palette or mode change recolours the tiles at hand: nothing read again
        for palette, mode in (("Viridis256", "smooth"), ("Viridis256", "seed"), ("Hippi", "seed")):
            gen = s.set_coloring(palette, mode)
            record = s.wait(gen, timeout=30)
            assert record["stored"]["read"] == 0
            np.testing.assert_array_equal(seen.frames[gen], coloured({k: v[:, 20:] for k, v in want.items()},
                                                                     palette, mode))  # fmt: skip
        assert s.stored.reads == 2
        # a view over a garbled tile it has not read: said in the status, the session goes on
        gen = s.goto(level_view(1, 300, 400))
        assert not s.wait(gen, timeout=30)["shown"]
        assert seen.status[-1].startswith("cannot read the stored picture: ") and "damaged" in seen.status[-1]
    finally:
        s.close()


def test_histogram_colouring_takes_its_cdf_from_the_samples_read(session):
    seen = Seen(session)
    gen = session.set_coloring("Viridis256", "histogram")
    session.wait(gen, timeout=30)
    gen = session.goto(level_view(2, 50, 100))
    session.wait(gen, timeout=30)
    level = open_level(session.stored.location.url, 2).isel(im=slice(50, 50 + H), re=slice(100, 100 + W))
    np.testing.assert_array_equal(seen.frames[gen], colorize(level.load(), "Viridis256", mode="histogram"))


def test_a_view_past_the_stored_resolution_renders_on_the_cluster_and_equals_a_render(session, client):
    seen = Seen(session)
    with get_task_stream(client) as stream:
        gen = session.goto(View(-0.75, 0.1, 100 * STEP0, W, H, 1))  # finer than level 0
        record = session.wait(gen, timeout=60)
    assert "stored" not in record and stream.data  # the cluster's work
    np.testing.assert_array_equal(seen.frames[gen], colorize(render(record["view"], ITERS, client=client), "Hippi",
                                                             mode="smooth"))  # fmt: skip
    assert " · stored level" not in seen.status[-1]
    # other iterations: the cluster too, even at a stored resolution
    gen = session.set_iters(ITERS + 50)
    session.goto(View(-0.5, 0.0, 3.0, W, H, 1))
    assert "stored" not in session.wait(timeout=60)
    # in histogram colouring, such a view cannot be rendered: said, the current view stays
    session.set_iters(ITERS)
    session.set_coloring(mode="histogram")
    before = session.view
    session.goto(View(-0.75, 0.1, 100 * STEP0, W, H, 1))
    assert session.view == before and "cannot render this view on the cluster in histogram" in seen.status[-1]


def test_pixels_outside_the_stored_picture_are_transparent(session):
    seen = Seen(session)
    gen = session.goto(level_view(1, R0, -30))  # the 30 left columns lie left of the picture
    session.wait(gen, timeout=30)
    rgba = seen.frames[gen]
    assert (rgba[:, :30] == 0).all() and (rgba[:, 30:, 3] == 255).all()


def test_a_store_without_a_pyramid_browses_its_row_blocks(client, flat_store):
    assert pyramid_levels(flat_store) == []
    s = ExplorerSession(client, View(-0.5, 0.0, 0.75, W, H, 1), store=flat_store)
    seen = Seen(s)
    try:
        record = s.wait(s.goto(s.view), timeout=30)
        assert record["stored"]["level"] == 0 and record["stored"]["tiles"] == 3  # rows 338..562: blocks 3, 4, 5
        assert " · stored level 0 (1200x900), 3 tiles of flat.zarr · " in seen.status[-1]
        # each pixel the nearest stored sample, from its own coordinate
        ds = open_render(flat_store).load()
        v = record["view"]
        cols = np.rint((v.re(np.arange(W)) - STORE_VIEW.re0) / STEP0).astype(int)
        rows = np.rint((STORE_VIEW.im0 - v.im(np.arange(H))) / STEP0).astype(int)
        want = {n: ds[n].values[np.ix_(rows, cols)] for n in ("iterations", "norm")}
        np.testing.assert_array_equal(seen.frames[record["gen"]], coloured(want))
    finally:
        s.close()


def test_bad_stores_are_refused_before_anything_starts(client, tmp_path, capsys):
    with pytest.raises(StoreError, match="no render store at"):
        ExplorerSession(client, store=tmp_path / "missing.zarr")
    with pytest.raises(StoreError, match="is not a dfractal render store"):
        ExplorerSession(client, store=tmp_path)
    with pytest.raises(TypeError, match="store must be a path"):
        ExplorerSession(client, store=42)
    # the command line: one line, exit 2, before any cluster (this scheduler does not exist)
    for store, words in ((tmp_path / "missing.zarr", "no render store at"), (tmp_path, "not a dfractal render store")):
        assert main(["explore", "--store", str(store), "--scheduler", "tcp://127.0.0.1:1"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("dfractal: error: ") and words in err, err


def test_a_whole_picture_mode_needs_a_store(client, capsys):
    with pytest.raises(ValueError, match="unknown explorer mode 'histogram'"):
        ExplorerSession(client, mode="histogram")
    assert main(["explore", "--mode", "distance", "--scheduler", "tcp://127.0.0.1:1"]) == 2
    assert "unknown --mode 'distance' for explore (modes: smooth, seed)" in capsys.readouterr().err
