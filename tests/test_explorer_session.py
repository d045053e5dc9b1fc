"""The explorer's rendering without bokeh: an ExplorerSession on a real 2-worker cluster."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from typing import Any

import dask
import numpy as np
import pytest
import xarray as xr
from distributed import get_task_stream
from PIL import Image

from dfractal_dask import Fractal, View, colorize, open_render, render
from dfractal_dask.colorize import Picture
from dfractal_dask.explorer.session import ExplorerSession, FrameCache

VIEW = View(-0.5, 0.0, 3.0, 120, 90, 1)


class Seen:
    """A subscriber: every frame, status line and settings change a session delivers, with the thread."""

    def __init__(self, session: ExplorerSession) -> None:
        self.frames: list[tuple[dict[str, Any], np.ndarray]] = []
        self.status: list[str] = []
        self.settings = 0
        session.on_frame(lambda record, rgba: self.frames.append((dict(record), rgba)))
        session.on_status(self.status.append)
        session.on_settings(self._settings)

    def _settings(self) -> None:
        self.settings += 1

    def frame(self, gen: int, level: str = "full") -> np.ndarray:
        (rgba,) = [a for r, a in self.frames if r["gen"] == gen and r["level"] == level]
        return rgba


@pytest.fixture
def session(client, tmp_path):
    s = ExplorerSession(client, VIEW, iters=150, save_dir=tmp_path)
    yield s
    s.close()


def picture(client, view: View, iters: int, palette: str = "Hippi", mode: str = "smooth", **kw) -> np.ndarray:
    """The library's render of ``view``, coloured: what a frame must equal pixel for pixel."""
    return colorize(render(view, iters, client=client, **kw), palette, mode=mode)


def test_the_session_imports_and_renders_with_bokeh_unimportable(client):
    """No bokeh anywhere in the session: a fresh interpreter where bokeh cannot
    be imported renders a frame on the cluster, equal to the library's render."""
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["bokeh"] = None  # any import of bokeh or bokeh.* now raises ImportError
        from distributed import Client
        import dfractal_dask.widget  # the compatibility module, and the package, import no bokeh either
        from dfractal_dask import View
        from dfractal_dask.explorer.session import ExplorerSession
        with Client({client.scheduler.address!r}) as c:
            s = ExplorerSession(c, View(-0.5, 0.0, 3.0, 120, 90, 1), iters=150)
            s.wait(s.goto(s.view), timeout=120)
            s.close()
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "bokeh" and sys.modules[m] is not None)
        assert not loaded, loaded
        sys.stdout.buffer.write(s.last_frame.values.tobytes())
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()
    frame = np.frombuffer(proc.stdout, np.uint8).reshape(90, 120, 4)
    np.testing.assert_array_equal(frame, picture(client, VIEW, 150))


def test_goto_and_zoom_deliver_frames_equal_to_renders(session, client):
    seen = Seen(session)
    gen = session.goto(VIEW)
    assert gen == 1
    full, coarse = session.wait(gen), session.wait(gen, "coarse")
    assert full["shown"] and coarse["shown"] and full["view"] == VIEW
    assert (coarse["view"].width, coarse["view"].height) == (30, 22)  # a quarter of the resolution
    np.testing.assert_array_equal(seen.frame(gen), picture(client, VIEW, 150))
    np.testing.assert_array_equal(seen.frame(gen, "coarse"), picture(client, coarse["view"], 150))
    assert np.asarray(session.last_frame) is seen.frame(gen)  # labelled, not copied
    assert any(t.startswith("full frame 120x90 in ") and t.endswith("· frame 1") for t in seen.status)

    gen = session.zoom(4.0, x=-0.75, y="0.1")  # a coordinate may be a decimal string
    v = session.wait(gen)["view"]
    assert (v.xpos, v.ypos, v.span) == pytest.approx((-0.75, 0.1, 0.75))
    assert session.view == v
    np.testing.assert_array_equal(seen.frame(gen), picture(client, v, 150))
    # the latest frame is a labelled picture, as colorize's: the same coordinates and view
    frame, want = session.last_frame, colorize(render(v, 150, client=client), "Hippi", mode="smooth")
    assert isinstance(frame, Picture) and frame.dims == ("im", "re", "rgba")
    xr.testing.assert_allclose(frame.coords.to_dataset(), want.coords.to_dataset())
    assert {k: frame.attrs[k] for k in ("palette", "mode", "iters", "span", "xpos")} == {
        k: want.attrs[k] for k in ("palette", "mode", "iters", "span", "xpos")
    }
    assert Image.open(io.BytesIO(frame._repr_png_())).size == (120, 90)
    # the frames were delivered in generation order, each generation's coarse before its full
    assert [(r["gen"], r["level"]) for r, _ in seen.frames] == [(1, "coarse"), (1, "full"), (2, "coarse"), (2, "full")]


def test_a_view_rendered_before_is_served_from_the_cache_with_no_task(session, client):
    """Zooming back out to a view rendered before, with the same settings: its
    full frame at once, the first time's pixels, nothing run on the cluster."""
    seen = Seen(session)
    first = session.goto(VIEW)
    session.wait(first)
    session.wait(session.zoom(2.0, x=-0.75, y=0.1))
    with get_task_stream(client) as stream:
        back = session.zoom(0.5, x=-0.5, y=0.0)
        record = session.wait(back, timeout=5)
        time.sleep(0.5)  # (the task stream hears of a task a moment after it ran)
    assert stream.data == []  # no task of any kind ran for it
    assert record["cached"] and record["shown"] and record["view"] == VIEW and session.view == VIEW
    assert session.wait(back, "coarse", timeout=0) is record  # no coarse frame first: the full one is here
    assert [r["level"] for r, _ in seen.frames if r["gen"] == back] == ["full"]
    np.testing.assert_array_equal(seen.frame(back), seen.frame(first))
    np.testing.assert_array_equal(seen.frame(back), picture(client, VIEW, 150))
    np.testing.assert_array_equal(session.last_frame, seen.frame(first))
    assert not seen.frame(back).flags.writeable  # what the cache serves cannot be changed by a subscriber
    assert " from the cache · " in seen.status[-1] and seen.status[-1].startswith("full frame 120x90 in ")
    assert session.cache.hits == 1
    # other settings are another frame: computed; back to the first ones, from the cache again
    gen = session.set_coloring(palette="Viridis256")
    assert not session.wait(gen)["cached"]
    np.testing.assert_array_equal(seen.frame(gen), picture(client, VIEW, 150, "Viridis256"))
    gen = session.set_coloring(palette="Hippi")
    assert session.wait(gen)["cached"]
    np.testing.assert_array_equal(seen.frame(gen), seen.frame(first))


def test_the_frame_cache_follows_dask_config(client):
    """``dfractal.explorer.cache-bytes`` bounds the cache: 0 keeps no frame, so a view seen before is computed."""
    assert FrameCache().max_bytes == dask.config.get("dfractal.explorer.cache-bytes")  # dfractal.yaml's
    with dask.config.set({"dfractal.explorer.cache-bytes": "lots"}), pytest.raises(ValueError, match="cache-bytes"):
        ExplorerSession(client, VIEW)
    with dask.config.set({"dfractal.explorer.cache-bytes": 0}):
        s = ExplorerSession(client, VIEW, iters=150)
    try:
        s.wait(s.goto(VIEW))
        s.wait(s.zoom(2.0))
        with get_task_stream(client) as stream:
            rec = s.wait(s.zoom(0.5))
        assert not rec["cached"] and len(s.cache) == 0 and s.cache.max_bytes == 0
        assert any(str(t["key"]).startswith("explore-rgba-") for t in stream.data)
    finally:
        s.close()


def test_the_frame_cache_drops_the_least_recently_used_beyond_its_bytes():
    frame = np.zeros((90, 120, 4), np.uint8)
    views = [replace(VIEW, span=VIEW.span / 2**k) for k in range(4)]
    cache = FrameCache(3 * frame.nbytes)
    for k, v in enumerate(views[:3]):
        cache.put(v, "hippi", np.full_like(frame, k))
    assert len(cache) == 3 and cache.nbytes == 3 * frame.nbytes
    got, rgba = cache.get(views[0], "hippi")  # now the most recently used
    assert got == views[0] and (rgba == 0).all() and not rgba.flags.writeable
    cache.put(views[3], "hippi", np.full_like(frame, 3))  # over the bound: the least recently used goes
    assert cache.get(views[1], "hippi") is None and len(cache) == 3 and cache.nbytes == 3 * frame.nbytes
    assert cache.get(views[0], "hippi") is not None and cache.get(views[3], "hippi") is not None
    # the same view up to rounding is found; another size, other settings or another view are not
    near = replace(views[2], xpos=views[2].xpos + 1e-12 * views[2].span)
    assert cache.get(near, "hippi")[0] == views[2]
    assert cache.get(replace(views[2], width=60, height=45), "hippi") is None
    assert cache.get(views[2], "viridis") is None
    assert cache.get(replace(views[2], xpos=-0.4), "hippi") is None
    assert (cache.hits, cache.misses) == (4, 4)
    cache.put(near, "hippi", np.full_like(frame, 7))  # the same view again replaces its frame
    assert len(cache) == 3 and (cache.get(views[2], "hippi")[1] == 7).all()
    cache.put(views[1], "hippi", np.zeros((90, 120 * 4, 4), np.uint8))  # larger than the bound: not kept
    assert cache.get(views[1], "hippi") is None and cache.nbytes == 3 * frame.nbytes
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


@pytest.mark.parametrize(("max_bytes", "exc"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_the_frame_cache_refuses_a_bad_bound(max_bytes, exc):
    with pytest.raises(exc, match="max_bytes must be"):
        FrameCache(max_bytes)


def test_settings_re_render_and_are_announced(session, client):
    seen = Seen(session)
    session.wait(session.goto(VIEW))
    gen = session.set_coloring(palette="Viridis256", mode="seed")
    session.wait(gen)
    np.testing.assert_array_equal(seen.frame(gen), picture(client, VIEW, 150, "Viridis256", "seed"))
    gen = session.set_iters(40)
    session.wait(gen)
    np.testing.assert_array_equal(seen.frame(gen), picture(client, VIEW, 40, "Viridis256", "seed"))
    julia = Fractal("julia", c=-0.1226 + 0.7449j)
    gen = session.set_fractal(julia)
    rec = session.wait(gen)
    assert rec["fractal"] == julia and (rec["view"].xpos, rec["view"].span) == (0.0, 3.2)  # its whole set
    np.testing.assert_array_equal(seen.frame(gen), picture(client, rec["view"], 40, "Viridis256", "seed",
                                                           fractal=julia))  # fmt: skip
    assert seen.settings == 3
    assert (rec["iters"], rec["palette"], rec["mode"]) == (40, "Viridis256", "seed")


def test_a_frame_overtaken_on_its_way_is_not_delivered(client):
    """A frame that arrives, but whose delivery (a bokeh document's next tick)
    runs after a newer view was asked for, is dropped: never drawn over it."""
    queued: list = []
    s = ExplorerSession(client, VIEW, iters=150, dispatch=queued.append)
    seen = Seen(s)
    try:
        first = s.goto(VIEW)
        deadline = time.monotonic() + 60
        while len(queued) < 2 and time.monotonic() < deadline:  # both frames of the first view collected
            time.sleep(0.05)
        assert len(queued) == 2 and not s.frames
        second = s.zoom(2.0)
        for run in queued[:2]:
            run()  # the document's next tick, too late
        assert [r["shown"] for r in (s.wait(first, "coarse", 0), s.wait(first, "full", 0))] == [False, False]
        assert seen.frames == [] and s.last_frame is None
        while not any(r["gen"] == second and r["level"] == "full" for r in s.frames):
            assert time.monotonic() < deadline, "no frame of the second view"
            while len(queued) > 2:
                queued.pop(2)()
            time.sleep(0.05)
        assert [(r["gen"], r["level"]) for r, _ in seen.frames] == [(second, "coarse"), (second, "full")]
        np.testing.assert_array_equal(s.last_frame, picture(client, s.view, 150))
    finally:
        s.close()


def test_superseded_frames_are_cancelled_and_never_delivered_after_newer_ones(session, client):
    seen = Seen(session)
    session.wait(session.goto(VIEW))
    session.set_iters(200_000)  # slow frames: they will still be running when superseded
    session.goto(View(-0.7436, 0.1318, 1e-4, 120, 90, 1))
    last = session.zoom(2.0)
    frame = session.wait(last, timeout=120)
    assert frame["shown"] and frame["view"].span == pytest.approx(5e-5)
    assert session.cancelled > 0
    gens = [r["gen"] for r, _ in seen.frames]
    assert gens == sorted(gens)  # nothing older delivered after anything newer
    assert [r["gen"] for r, _ in seen.frames if r["level"] == "full"][-1] == last
    assert all(r["gen"] in (1, last) for r, _ in seen.frames if r["level"] == "full")  # superseded: no full frame

    def explorer_keys(dask_scheduler) -> list[str]:
        return [str(k) for k in dask_scheduler.tasks if str(k).startswith("explore-")]

    deadline = time.monotonic() + 10
    while client.run_on_scheduler(explorer_keys) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.run_on_scheduler(explorer_keys) == []  # cancelled on the cluster, not left computing


def test_wait_is_bounded_by_its_timeout(session):
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"no full frame of generation 0 within 0\.3 s"):
        session.wait(timeout=0.3)  # nothing asked for yet
    assert 0.3 <= time.monotonic() - t0 < 2
    gen = session.goto(VIEW)
    session.wait(gen)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match="no coarse frame of generation 7"):
        session.wait(7, "coarse", timeout=0.2)
    assert time.monotonic() - t0 < 2
    # a frame arriving while waiting ends the wait (from another thread)
    later = threading.Timer(0.3, session.zoom, (2.0,))
    later.start()
    assert session.wait(gen + 1, timeout=60)["gen"] == gen + 1
    later.join()


def test_save_writes_a_png_equal_to_a_render(session, client, tmp_path):
    seen = Seen(session)
    session.wait(session.zoom(2.0, x=-0.75, y=0.05))
    png = session.save("shot", supersample=2).result(timeout=120)
    assert png == tmp_path / "shot.png"
    with Image.open(png) as im:
        saved = np.asarray(im)
    view = replace(session.view, supersample=2)
    np.testing.assert_array_equal(saved, picture(client, view, 150))
    assert open_render(tmp_path / "shot.zarr").iterations.shape == (180, 240)
    assert any(t.startswith("saving shot.zarr: ") for t in seen.status)
    assert seen.status[-1].startswith(f"saved {png} and {tmp_path / 'shot.zarr'} (120x90, 2² samples/pixel)")
    with pytest.raises(ValueError, match="exists"):
        session.save("shot")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"view": "big"}, TypeError, "view must be a View"),
        ({"iters": 0}, ValueError, "iters"),
        ({"iters": 2.5}, TypeError, "iters"),
        ({"palette": "Nope"}, ValueError, "palette 'Nope'"),
        ({"mode": "histogram"}, ValueError, "mode"),
        ({"fractal": "julia"}, TypeError, "fractal must be a Fractal"),
        ({"save_dir": 3}, TypeError, "save_dir"),
    ],
)
def test_bad_constructor_arguments(client, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ExplorerSession(client, **kwargs)


def test_bad_client():
    with pytest.raises(TypeError, match=r"client must be a distributed\.Client"):
        ExplorerSession("tcp://127.0.0.1:1")


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda s: s.goto((0, 0, 1)), TypeError, "view must be a View"),
        (lambda s: s.zoom(0), ValueError, "zoom factor must be a positive number"),
        (lambda s: s.zoom(float("nan")), ValueError, "zoom factor"),
        (lambda s: s.zoom(True), ValueError, "zoom factor"),
        (lambda s: s.zoom(2, x="left"), ValueError, "x must be a decimal number"),
        (lambda s: s.zoom(2, y=[1]), TypeError, "y must be a real number"),
        (lambda s: s.set_coloring(palette="Nope"), ValueError, "unknown palette 'Nope'"),
        (lambda s: s.set_coloring(mode="histogram"), ValueError, "unknown explorer mode 'histogram'"),
        (lambda s: s.set_iters(0), ValueError, "iters must be between"),
        (lambda s: s.set_iters("9"), TypeError, "iters must be an integer"),
        (lambda s: s.set_fractal("julia"), TypeError, "fractal must be a Fractal"),
        (lambda s: s.wait(level="medium"), ValueError, "level must be one of coarse, full"),
        (lambda s: s.wait(timeout=-1), ValueError, "timeout must be"),
        (lambda s: s.wait(timeout=float("inf")), ValueError, "timeout must be"),
        (lambda s: s.wait(timeout="1"), TypeError, "timeout must be"),
        (lambda s: s.wait("1"), TypeError, "gen must be an integer"),
        (lambda s: s.save(3), ValueError, "save name must be a string"),
        (lambda s: s.save("a/b"), ValueError, "save name must be a plain file name, not a path"),
    ],
)
def test_bad_arguments_are_refused_by_name_before_any_render(session, call, exc, match):
    with pytest.raises(exc, match=match):
        call(session)
    assert session._gen == 0 and session.frames == [] and session.view == VIEW  # nothing asked of the cluster


def test_a_view_the_session_cannot_render_is_said_in_the_status_and_kept_out(session):
    seen = Seen(session)
    session.wait(session.goto(VIEW))
    session.fractal = Fractal("julia")  # deep zoom (perturbation) renders the Mandelbrot set only
    deep = View("-0.1010963638456221610257854457", "0.9562865108091415007710960577", 1e-20, 120, 90, 1)
    assert session.goto(deep) == 1
    assert seen.status[-1].startswith("cannot render this view: deep zoom (perturbation) renders the Mandelbrot set")
    assert session.view == VIEW


def test_the_coarse_pass_follows_dask_config(client):
    """``dfractal.explorer.coarse`` (dask config, dfractal.yaml) sets the coarse frame's resolution."""
    with dask.config.set({"dfractal.explorer.coarse": 2}):
        s = ExplorerSession(client, VIEW, iters=150)
        try:
            coarse = s.wait(s.goto(VIEW), "coarse")
        finally:
            s.close()
    assert (coarse["view"].width, coarse["view"].height) == (60, 45)


def test_a_view_past_float64_explores_and_zooms(client):
    # span 1e-500: the session renders it (floatexp deltas) and zooms in decimals, frames equal to renders
    from decimal import Decimal

    from dfractal_dask.places import branch_point
    from dfractal_dask.view import exact

    deep, iters = View(*branch_point(530), "1e-500", 120, 90, 1), 12_000
    s = ExplorerSession(client, deep, iters=iters)
    try:
        seen = Seen(s)
        gen = s.goto(deep)
        assert s.wait(gen, timeout=300)["view"] == deep
        want = picture(client, deep, iters)
        np.testing.assert_array_equal(seen.frame(gen), want)
        assert len(np.unique(np.asarray(want).reshape(-1, 4), axis=0)) > 1
        assert len(np.unique(render(deep, iters, client=client).iterations.values)) > 20  # structure
        gen = s.zoom(4.0)
        v = s.wait(gen, timeout=300)["view"]
        assert v.extended and exact(v.span) == Decimal("2.5E-501") and v.centre == deep.centre
        np.testing.assert_array_equal(seen.frame(gen), picture(client, v, iters))
        assert any("span 2.5e-501 ·" in t for t in seen.status), seen.status[-3:]
        assert s.last_frame.re.attrs["units"] == f"2**{v.step_parts[1]}"
        back = s.wait(s.zoom(0.25), timeout=5)  # back out: that frame is in the cache, found in decimals
        assert back["cached"] and back["view"] == deep
        np.testing.assert_array_equal(seen.frame(back["gen"]), seen.frame(gen - 1))
    finally:
        s.close()
