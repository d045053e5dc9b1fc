"""What a person sees, in a real browser: Debian's Chromium driven by Playwright."""

import io
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from chromium import explore_process, launch, needs_chromium
from labserver import running_lab
from PIL import Image

from dfractal_dask import RenderStats, View, render

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [needs_chromium, pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def browser():
    with launch() as b:
        yield b


def test_fractal_dashboard_page_in_chromium(browser, client, tmp_path):
    stats = RenderStats()
    view = View(xpos=-0.5, ypos=0.0, span=3.0, width=100, height=75, supersample=2)
    render(view, 200, store_path=tmp_path / "b.zarr", client=client, chunk_rows=10, stats=stats)
    base = client.dashboard_link.rsplit("/status", 1)[0]
    page = browser.new_page()
    try:
        page.goto(base + "/fractal")
        page.wait_for_selector("tr.worker", timeout=20_000)
        page.wait_for_function("document.getElementById('preview').naturalWidth > 0", timeout=20_000)
        status = page.text_content("#status")
        assert "15 / 15 blocks" in status and "(done)" in status
        assert page.evaluate("document.getElementById('preview').naturalWidth") == 200  # 200 samples wide
        rows = page.locator("tr.worker")
        assert 1 <= rows.count() <= 2
        assert "tcp://127.0.0.1:" in rows.first.text_content()
        page.screenshot(path=os.environ.get("DFRACTAL_SCREENSHOT", str(tmp_path / "dashboard.png")))
    finally:
        page.close()


def _canvas_picture(page, box) -> np.ndarray:
    """Pixels of the plot's frame, as the browser painted them."""
    png = page.screenshot(clip=box)
    with Image.open(io.BytesIO(png)) as im:
        return np.asarray(im.convert("RGB"))


def _repainted(page, box, before: np.ndarray, seconds: float = 60.0) -> np.ndarray:
    """The frame's pixels once the canvas has repainted after the data arrived
    (more than 30% of them changed), or as they are after ``seconds``: the
    repaint follows the status line by a moment that a busy machine stretches."""
    deadline = time.monotonic() + seconds
    while True:
        after = _canvas_picture(page, box)
        if np.mean(np.any(before != after, axis=-1)) > 0.3 or time.monotonic() > deadline:
            return after
        page.wait_for_timeout(100)


@pytest.fixture
def explore_server(client, tmp_path):
    """`dfractal explore` as a user starts it, on the test cluster."""
    size = ("--width", "320", "--height", "240", "--iters", "200")
    with explore_process(client.scheduler.address, tmp_path, *size) as url:
        yield url


def test_explore_page_renders_and_a_wheel_zoom_renders_the_new_view(browser, explore_server):
    page = browser.new_page()
    try:
        page.goto(explore_server)
        status = page.get_by_text(re.compile(r"full frame 320x240 .* frame 1$"))
        status.wait_for(timeout=60_000)
        assert "span 3 " in status.text_content()
        # the plot's canvas: the 320x240 frame plus axes and title
        box = page.locator("canvas").first.bounding_box()
        assert box["width"] >= 320 and box["height"] >= 240
        before = _canvas_picture(page, box)
        assert len(np.unique(before.reshape(-1, 3), axis=0)) > 50  # a fractal, not a blank canvas
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.5)
        page.mouse.wheel(0, -300)  # zoom in
        zoomed = page.get_by_text(re.compile(r"full frame 320x240 .* frame [2-9]$"))
        zoomed.wait_for(timeout=60_000)
        span = float(re.search(r"span (\S+)", zoomed.text_content()).group(1))
        assert span < 3.0
        after = _repainted(page, box, before)
        assert np.mean(np.any(before != after, axis=-1)) > 0.3  # a new picture, not the old one
        page.screenshot(path=os.environ.get("DFRACTAL_EXPLORE_SCREENSHOT", "/tmp/dfractal-explore.png"))
    finally:
        page.close()


def test_explore_page_fractal_select_draws_a_julia_set(browser, explore_server):
    """Choosing "julia" in the page's fractal menu renders the Julia set: the
    status names it and the painted picture changes."""
    page = browser.new_page()
    try:
        page.goto(explore_server)
        page.get_by_text(re.compile(r"full frame 320x240 .* frame 1$")).wait_for(timeout=60_000)
        box = page.locator("canvas").first.bounding_box()
        before = _canvas_picture(page, box)
        page.locator("select:has(option[value='julia'])").select_option("julia")
        status = page.get_by_text(re.compile(r"full frame 320x240 .*julia c=\(-0\.8\+0\.156j\) · frame 2$"))
        status.wait_for(timeout=60_000)
        assert "span 3.2 " in status.text_content()
        after = _repainted(page, box, before)
        assert np.mean(np.any(before != after, axis=-1)) > 0.3
        assert len(np.unique(after.reshape(-1, 3), axis=0)) > 50
    finally:
        page.close()


def test_jupyterlab_runs_the_explore_notebook_and_the_explorer_answers_a_zoom(browser, tmp_path):
    """JupyterLab, headless on 127.0.0.1, opens 04-explore, runs every cell; the
    explorer appears in the page and a wheel-zoom over it renders the new view."""
    env = dict(os.environ, DFRACTAL_NOTEBOOK_SIZE="small", DFRACTAL_NOTEBOOK_DIR=str(tmp_path / "out"))
    env.pop("DFRACTAL_SCHEDULER", None)
    work = tmp_path / "work"  # a copy: Lab saves the notebooks it runs, and the repository's stay clean
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    with running_lab(tmp_path, root_dir=work, env=env) as lab:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        try:
            page.goto(f"{lab.base}lab/tree/notebooks/04-explore.ipynb?token={lab.token}")
            page.locator(".jp-Notebook").wait_for(timeout=120_000)
            page.wait_for_selector("#jp-main-statusbar >> text=Idle", timeout=120_000)  # the kernel is up
            page.click("#jp-MainMenu >> text=Run")
            page.click("text=Run All Cells")
            page.wait_for_selector("text=seahorse.zarr", timeout=300_000)  # the last cell has run
            # the explorer is in the output of its cell: the figure, the controls, the last status
            out = page.locator(".jp-OutputArea-output", has=page.locator("canvas")).first
            out.scroll_into_view_if_needed()
            assert out.get_by_text("Save full resolution").is_visible()
            status = out.get_by_text(re.compile(r"^saved .*seahorse\.png"))
            status.wait_for(timeout=60_000)
            canvas = out.locator("canvas").first
            box = canvas.bounding_box()
            before = _canvas_picture(page, box)
            assert len(np.unique(before.reshape(-1, 3), axis=0)) > 50  # the fractal is drawn
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            page.mouse.wheel(0, -300)
            zoomed = out.get_by_text(re.compile(r"full frame 320x240 .* frame \d+$"))
            zoomed.wait_for(timeout=60_000)
            span = float(re.search(r"span (\S+)", zoomed.text_content()).group(1))
            assert span < 3.0 / 40  # deeper than where the notebook left it
            page.wait_for_timeout(300)
            after = _canvas_picture(page, box)
            assert np.mean(np.any(before != after, axis=-1)) > 0.3
            page.screenshot(path=os.environ.get("DFRACTAL_LAB_SCREENSHOT", str(tmp_path / "lab.png")))
        finally:
            page.close()
    assert not [e for e in errors if "dfractal" in e or "bokeh" in e.lower()], errors


@pytest.fixture(scope="module")
def pyramid_store(client, tmp_path_factory) -> Path:
    """A 1280x960 render with its pyramid: levels 0: 1280x960, 1: 640x480, 2: 320x240."""
    path = tmp_path_factory.mktemp("browse") / "big.zarr"
    render(View(-0.5, 0.0, 3.0, 1280, 960, 1), 200, store_path=path, client=client, pyramid=True)
    return path


def _page_image(page) -> np.ndarray:
    """The RGBA frame the page's image glyph got (bokeh's rows bottom first, put back top first)."""
    flat = page.evaluate(
        """() => {
            for (const m of Bokeh.documents[0].all_models) {
                const img = m.data && m.data.image && m.data.image[0];
                if (img && img.length) {
                    return Array.from(new Uint8Array(img.buffer, img.byteOffset, img.byteLength));
                }
            }
            return null;
        }"""
    )
    assert flat is not None, "no image in the page"
    return np.array(flat, np.uint8).reshape(240, 320, 4)[::-1]


def test_explore_store_page_shows_the_stored_levels_and_escapes_its_name(browser, client, pyramid_store, tmp_path):
    """`dfractal explore --store`: the page shows the stored level 2 (the pixels the page got are the level's
    nearest samples, coloured), a wheel zoom shows a finer level, and the store's name, hostile HTML, is text."""
    from dfractal_dask import read_window
    from dfractal_dask.colorize import color_samples

    hostile = tmp_path / '<img src=x onerror="window.pwned=1">.zarr'
    hostile.symlink_to(pyramid_store, target_is_directory=True)
    with explore_process(client.scheduler.address, tmp_path, "--store", str(hostile), "--width", "320",
                         "--height", "240") as url:  # fmt: skip
        page = browser.new_page()
        try:
            page.goto(url)
            status = page.get_by_text(re.compile(r"full frame 320x240 .* stored level 2 \(320x240\), \d+ tiles .*"
                                                 r"frame 1$"))  # fmt: skip
            status.wait_for(timeout=60_000)
            assert '<img src=x onerror="window.pwned=1">.zarr' in status.text_content()  # shown as text
            assert page.locator("img[src=x]").count() == 0 and page.evaluate("window.pwned") is None
            # the pixels the page got: level 2's nearest samples, coloured with the default palette
            store_view, screen = View(-0.5, 0.0, 3.0, 1280, 960, 1), View(-0.5, 0.0, 3.0, 320, 240, 1)
            m, step0 = 4, store_view.step
            cols = np.rint(((screen.re(np.arange(320)) - store_view.re0) / step0 - (m - 1) / 2) / m).astype(int)
            rows = np.rint(((store_view.im0 - screen.im(np.arange(240))) / step0 - (m - 1) / 2) / m).astype(int)
            level = read_window(pyramid_store, 2, 0, 240, 0, 320)
            want = color_samples(level["iterations"][np.ix_(rows, cols)], level["norm"][np.ix_(rows, cols)], 200)
            np.testing.assert_array_equal(_page_image(page), want)
            box = page.locator("canvas").first.bounding_box()
            before = _canvas_picture(page, box)
            assert len(np.unique(before.reshape(-1, 3), axis=0)) > 50  # the picture is painted
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            page.mouse.wheel(0, -300)  # zoom in: a finer level
            zoomed = page.get_by_text(
                re.compile(r"full frame 320x240 .* stored level [01] \(\d+x\d+\), .* frame [2-9]$")
            )
            zoomed.wait_for(timeout=60_000)
            assert float(re.search(r"span (\S+)", zoomed.text_content()).group(1)) < 3.0
            after = _repainted(page, box, before)
            assert np.mean(np.any(before != after, axis=-1)) > 0.3
            page.screenshot(path=os.environ.get("DFRACTAL_STORE_SCREENSHOT", str(tmp_path / "explore-store.png")))
        finally:
            page.close()
