"""What a person sees, in a real browser: Debian's Chromium driven by Playwright."""

import os
import shutil

import pytest

from dfractal_dask import RenderStats, View, render

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

if not shutil.which(CHROMIUM) and os.environ.get("CI"):
    raise RuntimeError("CI must install Debian's chromium (see .ci/run)")
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"
)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


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
