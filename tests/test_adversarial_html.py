"""Hostile text in the pages, in a real browser (Debian's Chromium driven by
Playwright): worker names, render metadata, save names, save folders, palette
names and Julia parameters are shown as text, never run as HTML.

Each hostile value, were it put into ``innerHTML``, would set the page's title
to "pwned" and open a dialog; the tests check that neither happened, that no
element of it exists in the page, and that the value is there letter for letter.
"""

import json
import os
import re
import time

import pytest
from chromium import explore_process, launch, needs_chromium
from daskprocs import dask_processes
from distributed import Client

from dfractal_dask import View, render
from dfractal_dask.diagnostics import ensure_plugin

pytestmark = [needs_chromium, pytest.mark.browser, pytest.mark.slow]

IMG = "<img src=x onerror=\"document.title='pwned';alert(1)\">"
# closes a <script>, opens one, and breaks out of attributes quoted either way
SCRIPT = "</script><script>document.title='pwned';alert(2)</script>\"'><b>bold</b>"
# hostile, and still a plain file name (no slash): a save folder and a save name can be this
IMG_FILE = "<img src=x onerror=document.title='pwned';alert(3)>"


@pytest.fixture(scope="module")
def browser():
    with launch() as b:
        yield b


class Watched:
    """A page, and the dialogs and script errors it had."""

    def __init__(self, browser, **kwargs) -> None:
        self.page = browser.new_page(**kwargs)
        self.dialogs: list[str] = []
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def assert_nothing_ran(self, title: str) -> None:
        self.page.wait_for_timeout(700)  # an injected <img src=x> fails to load, then runs its onerror
        assert self.page.title() == title
        assert self.dialogs == []
        assert self.page.locator("img[src='x']").count() == 0  # none anywhere, shadow roots included

    def close(self) -> None:
        self.page.close()


# -- the scheduler's /fractal page -------------------------------------------------------------------------------


def _dashboard(address: str) -> str:
    with Client(address, timeout="30s") as c:
        return c.dashboard_link.rsplit("/status", 1)[0]


@pytest.mark.cluster
def test_fractal_page_shows_hostile_worker_names_as_text(browser, tmp_path):
    """`dask worker --name '<img ... onerror=...>'` (and one closing the
    page's <script>): the names are in the worker table letter for letter, and
    no element of them, in every viewer's browser."""
    (tmp_path / SCRIPT).parent.mkdir(parents=True)  # dask_processes gives each worker tmp/NAME: this one has "/"
    with dask_processes(tmp_path, names=(IMG, SCRIPT)) as (address, _):
        view = View(-0.5, 0.0, 3.0, 96, 72, 1)
        # 18 blocks with some work each, so that both workers take some (a worker is listed once it has)
        render(view, 20_000, store_path=tmp_path / "r.zarr", client=address, chunk_rows=4)
        base = _dashboard(address)
        w = Watched(browser, viewport={"width": 1100, "height": 900})
        try:
            w.page.goto(base + "/fractal")
            w.page.wait_for_function("document.querySelectorAll('tr.worker').length == 2", timeout=20_000)
            assert "18 / 18 blocks (done)" in w.page.text_content("#status")
            names = sorted(
                re.match(r"(.*) \(tcp://127\.0\.0\.1:\d+\)$", w.page.locator("tr.worker td").nth(6 * i).text_content(),
                         re.S).group(1)
                for i in range(2)
            )  # fmt: skip
            assert names == sorted([IMG, SCRIPT])
            assert w.page.locator("#workers img, #workers script, #workers b").count() == 0
            assert w.page.locator("#workers td").count() == 12  # nothing broke out of its cell
            tasks = [int(w.page.locator("tr.worker td").nth(6 * i + 1).text_content()) for i in range(2)]
            assert sum(tasks) == 2 * 18 and min(tasks) > 0  # a kernel and a write task a block, on both
            w.assert_nothing_ran("dfractal render")
            w.page.screenshot(path=os.environ.get("DFRACTAL_ADVERSARIAL_SCREENSHOT", str(tmp_path / "hostile.png")))
        finally:
            w.close()


def test_fractal_page_shows_hostile_data_as_text(browser, client):
    """Whatever data.json says (strings where numbers go, markup in the render
    id, the metadata, the addresses) the page shows it as text."""
    ensure_plugin(client)  # its /fractal page, whatever ran before
    base = client.dashboard_link.rsplit("/status", 1)[0]
    hostile = {
        "render_id": IMG,
        "blocks_done": SCRIPT,
        "ended": None,
        "meta": {"n_blocks": SCRIPT},
        "workers": {
            IMG: {"name": SCRIPT, "tasks": IMG, "rows": "<b>7</b>", "iterations": "2e9<img src=x>",
                  "iterations_per_second": {"valueOf": IMG}},
            "tcp://127.0.0.1:1": {"name": "plain", "tasks": 3, "rows": 12, "iterations": 4e9,
                                  "iterations_per_second": 2e9},
            "<b>nothing</b>": None,
        },
    }  # fmt: skip
    w = Watched(browser)
    try:
        w.page.route("**/fractal/data.json", lambda route: route.fulfill(json=hostile))
        w.page.goto(base + "/fractal")
        w.page.wait_for_function("document.querySelectorAll('tr.worker').length == 3", timeout=20_000)
        assert w.page.text_content("#status") == f"render {IMG[:8]}: 0 / {SCRIPT} blocks"
        cells = [[td.text_content() for td in tr.locator("td").all()] for tr in w.page.locator("tr.worker").all()]
        assert cells == [
            [f"{SCRIPT} ({IMG})", "0", "0", "?", "?", ""],  # not numbers: shown as none
            ["plain (tcp://127.0.0.1:1)", "3", "12", "4.000", "2.000", ""],
            ["? (<b>nothing</b>)", "0", "0", "?", "?", ""],
        ]
        widths = w.page.eval_on_selector_all("tr.worker .bar", "bars => bars.map(b => b.style.width)")
        assert widths == ["0px", "200px", "0px"]
        assert w.page.locator("#status *, #workers img, #workers script, #workers b").count() == 0
        w.assert_nothing_ran("dfractal render")
    finally:
        w.close()


# -- the explorer ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile_explorer(client, tmp_path_factory):
    """`dfractal explore` (widget.serve) saving into a folder named like an
    <img> tag; yields its URL and the folder.  Nothing may be raised out of a
    bokeh callback: its log is checked when it stops."""
    save_dir = tmp_path_factory.mktemp("saves") / IMG_FILE
    save_dir.mkdir()
    size = ("--width", "160", "--height", "120", "--iters", "100")
    with explore_process(client.scheduler.address, save_dir, *size) as url:
        yield url, save_dir


def _explorer_page(browser, url: str) -> Watched:
    w = Watched(browser, viewport={"width": 1000, "height": 800})
    w.page.goto(url)
    w.page.get_by_text(re.compile(r"^full frame 160x120 .* frame 1$")).wait_for(timeout=60_000)
    return w


def _status(w: Watched, pattern: str):
    """The status line once it matches ``pattern`` (a regular expression): its
    element holds only text, and nothing of it ran."""
    status = w.page.get_by_text(re.compile(pattern, re.S))
    status.wait_for(timeout=60_000)
    assert status.evaluate("e => e.children.length") == 0
    w.assert_nothing_ran("dfractal explorer")
    return status.text_content()


def _save_as(w: Watched, name: str) -> None:
    box = w.page.get_by_label("save as (name)")
    box.fill(name)
    box.press("Enter")  # the name reaches the server before the click
    w.page.get_by_role("button", name="Save full resolution").click()


def test_explorer_refuses_hostile_save_names_as_text(browser, hostile_explorer):
    url, save_dir = hostile_explorer
    mine = b"a PNG that is someone else's"
    (save_dir / "taken.png").write_bytes(mine)
    w = _explorer_page(browser, url)
    try:
        for name, message in [
            (SCRIPT, "save name must be a plain file name, not a path: got "),
            (IMG_FILE + "x" * 300, f"save name is too long: {len(IMG_FILE) + 300} bytes, and {save_dir} takes"),
            ("taken", f"{save_dir / 'taken.png'} already exists (choose another name"),
        ]:
            _save_as(w, name)
            text = _status(w, "^not saved: " + re.escape(message))
            if name == SCRIPT:
                assert text.endswith(repr(name)), text  # the name, letter for letter
        assert sorted(p.name for p in save_dir.iterdir()) == ["taken.png"]  # nothing written
        assert (save_dir / "taken.png").read_bytes() == mine
    finally:
        w.close()


def test_explorer_saves_under_a_hostile_name_into_a_hostile_folder(browser, hostile_explorer):
    """A name and a folder that are HTML, and legal file names: the save is
    made, said as text; saving it again is refused, and nothing is replaced."""
    url, save_dir = hostile_explorer
    name = IMG_FILE.replace("(3)", "(4)")
    w = _explorer_page(browser, url)
    try:
        _save_as(w, name)
        png, store = save_dir / f"{name}.png", save_dir / f"{name}.zarr"
        text = _status(w, r"^saved .*\(160x120, 4² samples/pixel\)$")
        assert text == f"saved {png} and {store} (160x120, 4² samples/pixel)"
        before = png.read_bytes()
        assert before.startswith(b"\x89PNG")
        _save_as(w, name)  # the same again
        text = _status(w, "^not saved: store .* already exists")
        assert text == f"not saved: store {store} already exists (pass overwrite=True to replace it)"
        time.sleep(1)
        assert png.read_bytes() == before
        w.page.screenshot(
            path=os.environ.get("DFRACTAL_ADVERSARIAL_EXPLORE_SCREENSHOT", str(save_dir.parent / "explorer.png"))
        )
    finally:
        w.close()


def test_explorer_shows_hostile_palette_and_julia_c_as_text(browser, hostile_explorer):
    """Values the page's controls can be made to send (a crafted page, the
    devtools) reach the status line in error messages: as text."""
    url, _ = hostile_explorer
    w = _explorer_page(browser, url)
    try:
        for value, message in [
            (IMG, f"palette not changed: unknown palette {IMG!r}"),
            (f"#000000,{SCRIPT}", f"palette not changed: malformed hex colour {SCRIPT!r}"),
        ]:
            w.page.evaluate(f"Bokeh.documents[0].get_model_by_name('palette').value = {json.dumps(value)}")
            text = _status(w, "^" + re.escape(message))
            assert text.startswith(message)
            # the menu shows the palette in use again
            w.page.wait_for_function("Bokeh.documents[0].get_model_by_name('palette').value == 'Hippi'")
            from playwright.sync_api import expect

            # (the DOM follows the model a moment later: expect retries)
            expect(w.page.locator("select:has(option[value='Viridis256'])")).to_have_value("Hippi", timeout=20_000)
        w.page.locator("select:has(option[value='julia'])").select_option("julia")
        w.page.get_by_text(re.compile(r"julia c=.* frame 2$")).wait_for(timeout=60_000)
        box = w.page.get_by_label("julia c")
        box.fill(IMG)
        box.press("Enter")
        text = _status(w, "^cannot render: bad julia c ")
        assert text == f"cannot render: bad julia c {IMG!r}; expected e.g. -0.8+0.156j or -0.8,0.156"
    finally:
        w.close()
