"""The zoom explorer, driven from Python on a real 2-worker cluster."""

import re
import time
from dataclasses import replace

import numpy as np
import pytest
from bokeh.events import RangesUpdate
from distributed import get_task_stream
from PIL import Image

from dfractal_dask import View, colorize, open_render, render
from dfractal_dask.widget import Explorer, frame_tasks

VIEW = View(-0.5, 0.0, 3.0, 120, 90, 1)


@pytest.fixture
def explorer(client, tmp_path):
    ex = Explorer(client, VIEW, iters=150, save_dir=tmp_path)
    yield ex
    ex.close()


def _reference(client, view, iters, palette="Hippi", mode="smooth"):
    return colorize(render(replace(view, supersample=1), iters, client=client), palette, mode=mode)


def test_coarse_then_full_frame_equals_a_render(explorer, client):
    full = explorer.wait(1, "full")
    coarse = explorer.wait(1, "coarse")
    assert coarse["view"].width == 30 and coarse["view"].height == 22  # a quarter of the resolution
    assert full["shown"] and full["view"] == VIEW
    np.testing.assert_array_equal(explorer.last_frame, _reference(client, VIEW, 150))
    # what bokeh draws: the same pixels, bottom row first, packed RGBA, placed on the view's extent
    data = explorer.source.data
    assert data["image"][0].shape == (90, 120) and data["image"][0].dtype == np.uint32
    np.testing.assert_array_equal(data["image"][0].view(np.uint8).reshape(90, 120, 4), explorer.last_frame[::-1])
    assert data["x"][0] == pytest.approx(-2.0 - VIEW.step / 2)
    assert data["dw"][0] == pytest.approx(120 * VIEW.step)
    assert "full frame 120x90" in explorer.status.text


def test_a_wheel_zoom_renders_the_new_view(explorer, client):
    explorer.wait(1)
    # what the browser sends after a wheel zoom: the new ranges
    explorer.figure._trigger_event(RangesUpdate(explorer.figure, x0=-0.8, x1=-0.6, y0=0.05, y1=0.2))
    frame = explorer.wait(2)
    v = frame["view"]
    assert (v.xpos, v.ypos) == pytest.approx((-0.7, 0.125)) and v.span == pytest.approx(0.2)
    np.testing.assert_array_equal(explorer.last_frame, _reference(client, v, 150))
    # a zoom from Python moves the axes onto the new view
    gen = explorer.zoom(4.0)
    v = explorer.wait(gen)["view"]
    assert (explorer.figure.x_range.start, explorer.figure.x_range.end) == pytest.approx((-0.725, -0.675))
    assert explorer.figure.y_range.end - explorer.figure.y_range.start == pytest.approx(0.05 * 90 / 120)
    assert explorer._gen == gen  # that axis change renders nothing more
    explorer.goto(replace(v, xpos=-0.7, ypos=0.125, span=0.2))
    explorer.wait(gen + 1)
    # the same ranges again (e.g. bokeh echoing our own update) do not re-render
    explorer.figure._trigger_event(RangesUpdate(explorer.figure, x0=-0.8, x1=-0.6, y0=0.05, y1=0.2))
    time.sleep(0.5)
    assert explorer._gen == gen + 1


def test_stale_renders_are_cancelled_on_the_cluster(explorer, client):
    explorer.wait(1)
    deep = View(-0.7436, 0.1318, 1e-4, 120, 90, 1)
    explorer.set_iters(200_000)  # slow frames: they will still be running
    explorer.goto(deep)
    last = explorer.zoom(2.0)
    frame = explorer.wait(last, timeout=120)
    assert frame["shown"] and frame["view"].span == pytest.approx(5e-5)
    assert explorer.cancelled > 0
    stale = [f for f in explorer.frames if f["gen"] < last and f["gen"] > 1]
    assert all(not f["shown"] for f in stale)  # nothing older was drawn over the newest

    # the cancelled keys are gone from the scheduler, not still computing
    def explorer_keys(dask_scheduler):
        return [str(k) for k in dask_scheduler.tasks if str(k).startswith("explore-")]

    deadline = time.monotonic() + 10
    while client.run_on_scheduler(explorer_keys) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.run_on_scheduler(explorer_keys) == []


def test_palette_mode_and_iterations_controls(explorer, client):
    explorer.wait(1)
    explorer.palette_select.value = "Viridis256"  # as the page's Select would
    explorer.wait(2)
    np.testing.assert_array_equal(explorer.last_frame, _reference(client, VIEW, 150, "Viridis256"))
    explorer.mode_select.value = "seed"
    explorer.wait(3)
    np.testing.assert_array_equal(explorer.last_frame, _reference(client, VIEW, 150, "Viridis256", "seed"))
    explorer.iters_spinner.value = 40
    explorer.wait(4)
    np.testing.assert_array_equal(explorer.last_frame, _reference(client, VIEW, 40, "Viridis256", "seed"))
    # set from Python: the controls follow, and their echo renders nothing more
    explorer.set_coloring(palette="#000000,#ffffff", mode="smooth")
    gen = explorer.set_iters(60)
    explorer.wait(gen)
    assert explorer._gen == gen == 6
    controls = (explorer.palette_select.value, explorer.mode_select.value, explorer.iters_spinner.value)
    assert controls == ("#000000,#ffffff", "smooth", 60)
    np.testing.assert_array_equal(explorer.last_frame, _reference(client, VIEW, 60, "#000000,#ffffff"))


def test_save_writes_a_full_resolution_store_and_png(explorer, tmp_path):
    explorer.wait(1)
    png = explorer.save("here", supersample=2).result(timeout=120)
    ds = open_render(tmp_path / "here.zarr")
    assert ds.attrs["supersample"] == 2 and ds.iterations.shape == (180, 240)
    with Image.open(png) as im:
        saved = np.asarray(im)
    np.testing.assert_array_equal(saved, colorize(ds, "Hippi", mode="smooth"))
    with pytest.raises(ValueError, match="exists"):
        explorer.save("here")  # never replaced without overwrite
    explorer.save_name.value = "here"
    explorer._on_save()  # the page's Save button: said in the status line, nothing raised
    assert explorer.status.text.startswith("not saved:")
    with pytest.raises(ValueError, match="plain file name"):
        explorer.save("../elsewhere")


def test_save_never_replaces_an_existing_png(explorer, tmp_path):
    """Only the store was checked once: an existing NAME.png is refused too,
    before anything is rendered, and its bytes stay as they were."""
    explorer.wait(1)
    mine = b"a picture that is not the explorer's"
    (tmp_path / "pic.png").write_bytes(mine)
    with pytest.raises(ValueError, match=r"pic\.png already exists \(choose another name"):
        explorer.save("pic")
    explorer.save_name.value = "pic"
    explorer._on_save()  # the page's Save button: said in the status line, nothing raised
    assert explorer.status.text.startswith(f"not saved: {tmp_path / 'pic.png'} already exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pic.png"]  # no store begun
    assert (tmp_path / "pic.png").read_bytes() == mine
    (tmp_path / "dir.png").mkdir()  # a folder where the PNG would go: refused even with overwrite
    with pytest.raises(ValueError, match="is a folder, not a PNG"):
        explorer.save("dir", overwrite=True)
    assert not (tmp_path / "dir.zarr").exists()
    # overwrite=True replaces it, as it does a store
    png = explorer.save("pic", supersample=1, overwrite=True).result(timeout=120)
    with Image.open(png) as im:
        saved = np.asarray(im)
    np.testing.assert_array_equal(saved, colorize(open_render(tmp_path / "pic.zarr"), "Hippi", mode="smooth"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("x" * 300, "save name is too long: 300 bytes, and .* takes file names of at most 255 bytes"),
        ("é" * 124, "save name is too long: 248 bytes"),  # bytes count, not characters
        ("a/b", "not a path"),
        ("a\\b", "not a path"),
        ("..", "plain file name"),
        ("  ", "plain file name"),
        ("tab\there", "control characters"),
        ("new\nline", "control characters"),
        ("nul\x00", "control characters"),
        ("\ud800", "characters no file name can hold"),
    ],
)
def test_save_refuses_a_name_the_folder_cannot_hold(explorer, tmp_path, name, message):
    """Refused in the status line with one message, before anything is
    rendered or written (a 300-character name once raised OSError out of the
    Save button's handler)."""
    explorer.wait(1)
    with pytest.raises(ValueError, match=message):
        explorer.save(name)
    explorer.save_name.value = name
    explorer._on_save()  # nothing raised out of the bokeh callback
    assert explorer.status.text.startswith("not saved: save name")
    assert re.search(message, explorer.status.text)
    assert "\n" not in explorer.status.text  # one line: control characters are shown escaped
    assert list(tmp_path.iterdir()) == []


def test_save_takes_the_longest_name_the_folder_holds(explorer, tmp_path):
    """255 bytes a name on this file system, the PNG's ".png.part" while it is written included."""
    explorer.wait(1)
    name = "x" * (255 - len(".png.part"))
    png = explorer.save(name, supersample=1).result(timeout=120)
    assert png == tmp_path / f"{name}.png" and png.stat().st_size > 0
    assert (tmp_path / f"{name}.zarr").is_dir()


def test_status_line_is_text_and_page_controls_with_bad_values_are_refused(explorer):
    """The status line echoes what users typed: bokeh shows it as text, not
    HTML.  A page can send any value for a control: refused in the status line,
    the control shows the setting in use again, nothing re-rendered."""
    assert explorer.status.render_as_text and explorer.status.disable_math
    explorer.wait(1)
    explorer.palette_select.value = "<img src=x onerror=alert(1)>"  # as a crafted page would send
    assert explorer.status.text == "palette not changed: unknown palette '<img src=x onerror=alert(1)>' " + (
        "(`dfractal palettes` lists them all)"
    )
    assert explorer.palette_select.value == "Hippi" and explorer.palette == "Hippi"
    explorer.mode_select.value = "<b>histogram</b>"
    assert explorer.status.text.startswith("colouring not changed: unknown explorer mode '<b>histogram</b>'")
    assert explorer.mode_select.value == "smooth"
    explorer.iters_spinner.value = 0
    assert explorer.status.text == "max iterations not changed: iters must be between 1 and 4294967294, got 0"
    assert explorer.iters_spinner.value == 150
    explorer.iters_spinner.value = None  # an emptied spinner
    assert explorer.status.text == "max iterations not changed: iters must be an integer, got None"
    assert explorer._gen == 1
    explorer.iters_spinner.value = 160.0  # a spinner's whole number is a limit
    assert explorer.wait(2)["shown"] and explorer.iters == 160


def test_jupyter_widget_wraps_the_layout(explorer):
    from jupyter_bokeh import BokehModel

    w = explorer.widget()
    assert isinstance(w, BokehModel)
    assert "dfractal explorer" in str(w.render_bundle["docs_json"])


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"view": "big"}, TypeError, "View"),
        ({"iters": 0}, ValueError, "iters"),
        ({"iters": 2.5}, TypeError, "iters"),
        ({"palette": "Nope"}, ValueError, "Nope"),
        ({"mode": "histogram"}, ValueError, "mode"),
    ],
)
def test_bad_arguments(client, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        Explorer(client, **kwargs)


def test_bad_client():
    with pytest.raises(TypeError, match="Client"):
        Explorer("tcp://127.0.0.1:1")


def test_frame_tasks_cover_the_view_in_row_order(client):
    tasks = frame_tasks(VIEW, 150, "Hippi", "smooth", blocks=4)
    assert len(tasks) == 4
    parts = client.compute(tasks, sync=True)
    assert [p.shape[0] for p in parts] == [23, 23, 23, 21]
    np.testing.assert_array_equal(np.concatenate(parts), _reference(client, VIEW, 150))


@pytest.mark.parametrize("mode", ["smooth", "seed"])
def test_explorer_frames_equal_brute_force_pixels(client, mode):
    """In smooth mode the explorer's kernel skips the cardioid and bulb; the
    picture is still the brute-force one, pixel for pixel (seed mode, which
    needs interior norms, keeps them exact)."""
    import dask

    from dfractal_dask.colorize import color_samples
    from dfractal_dask.kernels import BRUTE, escape_block

    view = View(-0.6, 0.0, 2.8, 160, 120, 1)  # a quarter of it cardioid and bulb
    frame = np.concatenate(client.compute(frame_tasks(view, 400, "Hippi", mode, blocks=3), sync=True), axis=0)
    it, norm, _ = escape_block(view.re0, view.im0, view.step, 0, 120, 160, 400, BRUTE)
    assert (it == 400).mean() > 0.2
    np.testing.assert_array_equal(frame, color_samples(it, norm, 400, "Hippi", mode))
    assert dask.is_dask_collection(frame_tasks(view, 400, "Hippi", mode)[0])


def test_fractal_controls(explorer, client):
    """The page's fractal controls: a new family starts from its whole set; a
    new Julia c or power keeps the view; frames equal a render of the same."""
    from dfractal_dask.fractals import Fractal

    def reference(view, fractal):
        ds = render(replace(view, supersample=1), 150, client=client, fractal=fractal)
        return colorize(ds, "Hippi", mode="smooth")

    explorer.wait(1)
    explorer.fractal_select.value = "julia"  # as the page's Select would
    rec = explorer.wait(2)
    assert (rec["view"].xpos, rec["view"].ypos, rec["view"].span) == (0.0, 0.0, 3.2)
    np.testing.assert_array_equal(explorer.last_frame, reference(rec["view"], Fractal("julia")))
    assert "julia c=(-0.8+0.156j)" in explorer.status.text
    explorer.julia_c_input.value = "-0.1226+0.7449j"
    rec = explorer.wait(3)
    assert rec["view"].span == 3.2 and rec["fractal"] == Fractal("julia", c=-0.1226 + 0.7449j)
    np.testing.assert_array_equal(explorer.last_frame, reference(rec["view"], rec["fractal"]))
    explorer.julia_c_input.value = "3"  # |c| > 2: said in the page, nothing rendered
    assert explorer.status.text.startswith("cannot render: julia c must be finite with |c| <= 2")
    assert explorer._gen == 3
    explorer.fractal_select.value = "multibrot"
    explorer.wait(4)
    explorer.power_spinner.value = 4
    rec = explorer.wait(5)
    assert rec["fractal"] == Fractal("multibrot", 4) and "multibrot d=4" in explorer.status.text
    np.testing.assert_array_equal(explorer.last_frame, reference(rec["view"], rec["fractal"]))
    # set from Python: the controls follow, their echo renders nothing more
    gen = explorer.set_fractal(Fractal("burning_ship"))
    explorer.wait(gen)
    assert explorer.fractal_select.value == "burning_ship" and explorer._gen == gen == 6


def test_the_explorer_zooms_past_float64_by_perturbation(explorer, client):
    from dfractal_dask import Fractal

    explorer.wait(1)
    # a Misiurewicz point at span 1e-20: float64 cannot resolve it, perturbation can
    deep = View("-0.101096363845622161025785445738622565463805443", "0.956286510809141500771096057729977435809833337",
                1e-20, 120, 90, 1)  # fmt: skip
    assert deep.deep
    explorer.wait(explorer.set_iters(1000))
    frame = explorer.wait(explorer.goto(deep), timeout=60)
    assert frame["shown"] and frame["view"] == deep
    expected = colorize(render(deep, 1000, client=client), "Hippi", mode="smooth")
    np.testing.assert_array_equal(explorer.last_frame, expected)
    assert len(np.unique(np.asarray(explorer.last_frame).reshape(-1, 4), axis=0)) > 10
    # a Julia set there cannot be: said in the status line, the view stays
    gen = explorer._gen
    explorer.fractal = Fractal("julia", c=-0.8 + 0.156j)
    assert explorer.goto(deep) == gen
    assert "cannot render this view: deep zoom (perturbation) renders the Mandelbrot set only" in explorer.status.text
    assert explorer.view == deep


def test_frames_are_drawn_in_the_documents_next_tick(client):
    """In a bokeh server frames reach the page through ``doc.add_next_tick_callback``
    (here a list run by hand): nothing is drawn from the thread that collects them."""
    ticks: list = []
    ex = Explorer(client, VIEW, iters=150, dispatch=ticks.append)
    try:
        deadline = time.monotonic() + 60
        while len(ticks) < 2 and time.monotonic() < deadline:  # the coarse and the full frame arrived
            time.sleep(0.05)
        assert len(ticks) == 2 and ex.source.data["image"] == [] and ex.status.text == "starting…"
        for tick in ticks:
            tick()
        assert ex.wait(1, timeout=0)["shown"]
        drawn = ex.source.data["image"][0].view(np.uint8).reshape(90, 120, 4)[::-1]
        np.testing.assert_array_equal(drawn, _reference(client, VIEW, 150))
        assert ex.status.text.startswith("full frame 120x90 in ")
    finally:
        ex.close()


def test_wheel_zooms_past_float64_in_plot_offsets(client):
    # at span 1e-400 the axes hold offsets from the centre in units of the span (float64 ranges hold them)
    from decimal import Decimal

    from dfractal_dask.places import branch_point
    from dfractal_dask.view import exact

    deep, iters = View(*branch_point(430), "1e-400", 120, 90, 1), 12_000
    ex = Explorer(client, deep, iters=iters)
    try:
        ex.wait(1, timeout=300)
        assert (ex.figure.x_range.start, ex.figure.x_range.end) == pytest.approx((-0.5, 0.5))
        assert ex.source.data["dw"][0] == pytest.approx(120 / 119)  # 120 pixels of 1/119 of the span
        ex.figure._trigger_event(RangesUpdate(ex.figure, x0=0.1, x1=0.3, y0=-0.075, y1=0.075))
        v = ex.wait(2, timeout=300)["view"]
        x, y = deep.centre
        assert v.extended and exact(v.span) == Decimal("2E-401")
        assert v.centre[0] - x == Decimal("2E-401") and v.centre[1] == y
        np.testing.assert_array_equal(ex.last_frame, _reference(client, v, iters))
        # the axes stay in offsets of the same anchor: the echo renders nothing more
        assert (ex.figure.x_range.start, ex.figure.x_range.end) == pytest.approx((0.1, 0.3))
        ex.figure._trigger_event(RangesUpdate(ex.figure, x0=0.1, x1=0.3, y0=-0.075, y1=0.075))
        time.sleep(0.5)
        assert ex._gen == 2
        # zoomed far in from Python: re-anchored on the new view, the page's ranges its offsets again
        v = ex.wait(ex.zoom(1e6), timeout=300)["view"]
        assert exact(v.span) == Decimal("2E-407")
        assert (ex.figure.x_range.start, ex.figure.x_range.end) == pytest.approx((-0.5, 0.5))
    finally:
        ex.close()


def test_the_widget_browses_a_stored_render(client, tmp_path):
    """Given a store, the widget draws its pyramid's level that fits, the page's
    modes gain histogram, and a wheel zoom reads the next level, all with no task."""
    from jupyter_bokeh import BokehModel

    from dfractal_dask import read_window
    from dfractal_dask.colorize import color_samples

    stored = View(-0.5, 0.0, 3.0, 480, 360, 1)  # levels 0: 480x360, 1: 240x180
    path = tmp_path / "w.zarr"
    render(stored, 150, store_path=path, client=client, pyramid=True)
    ex = Explorer(client, VIEW, store=path)
    try:
        assert ex.stored is not None and ex.iters == 150
        with get_task_stream(client) as stream:
            record = ex.wait(1, timeout=30)
            assert record["stored"]["level"] == 1  # 3/119 per pixel: 4.03 samples of level 0
            assert "stored level 1 (240x180)" in ex.status.text and "of w.zarr" in ex.status.text
            assert "histogram" in ex.mode_select.options
            data = ex.source.data["image"][0].view(np.uint8).reshape(90, 120, 4)[::-1]
            np.testing.assert_array_equal(data, ex.last_frame)
            # each pixel: the level's nearest sample, from its own coordinate
            m, step0 = 2, stored.step
            cols = np.rint(((VIEW.re(np.arange(120)) - stored.re0) / step0 - (m - 1) / 2) / m).astype(int)
            rows = np.rint(((stored.im0 - VIEW.im(np.arange(90))) / step0 - (m - 1) / 2) / m).astype(int)
            level = read_window(path, 1, 0, 180, 0, 240)
            want = color_samples(level["iterations"][np.ix_(rows, cols)], level["norm"][np.ix_(rows, cols)], 150)
            np.testing.assert_array_equal(data, want)
            # a wheel zoom to a span of 1: 1.34 samples of level 0 a pixel
            ex.figure._trigger_event(RangesUpdate(ex.figure, x0=-1.0, x1=0.0, y0=-0.375, y1=0.375))
            record = ex.wait(2, timeout=30)
            assert record["stored"]["level"] == 0 and "stored level 0 (480x360)" in ex.status.text
            ex.mode_select.value = "histogram"
            assert ex.wait(3, timeout=30)["stored"]["read"] == 0  # recoloured: nothing read again
            time.sleep(0.5)  # (the task stream hears of a task a moment after it ran)
        assert stream.data == []
        assert isinstance(ex.widget(), BokehModel)
    finally:
        ex.close()
