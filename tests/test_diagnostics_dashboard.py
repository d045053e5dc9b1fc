"""The /fractal page as part of the Dask dashboard: routed by distributed's own
HTTP route mechanism, listed in the dashboard's "More..." menu and in
``individual-plots.json`` (where dask-labextension finds the pages it offers in
JupyterLab), with relative links that work under a dashboard prefix and behind
jupyter-server-proxy."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from html.parser import HTMLParser
from urllib.parse import quote, urljoin, urlsplit

import dask
import pytest
from chromium import launch, needs_chromium
from daskprocs import dask_processes
from distributed import Client, LocalCluster
from labserver import running_lab

from dfractal_dask import RenderStats, View, render
from dfractal_dask.cluster import DASHBOARD_JOIN_SECONDS, connect, late_dashboard
from dfractal_dask.diagnostics import ensure_plugin, routes
from dfractal_dask.protocol import PLUGIN_NAME

VIEW = View(xpos=-0.5, ypos=0.0, span=3.0, width=40, height=30, supersample=1)


def _get(url: str) -> tuple[int, str, bytes]:
    """``(status, content type, body)`` of a GET, HTTP errors included."""
    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


class _Page(HTMLParser):
    """The elements of a page by id, and every URL it names (attributes and its script's string literals)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.ids: dict[str, str] = {}
        self.urls: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if "id" in a:
            self.ids[a["id"]] = tag
        self.urls += [v for k, v in a.items() if k in ("href", "src", "action") and v]
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:  # fetch("…"), .src = "…?t=" + …
            self.urls += re.findall(r"""(?:fetch\(|\.src\s*=\s*)["'`]([^"'`?]+)""", data)


def _check_page(page_url: str, query: str = "") -> list[str]:
    """GET the page: HTML with the preview, the status line, the worker table;
    every URL in it relative.  Returns its URLs resolved against ``page_url``
    (with ``query`` added, as Lab's token: a browser sends it as a cookie)."""
    status, ctype, body = _get(page_url + (f"?{query}" if query else ""))
    assert status == 200 and ctype.startswith("text/html"), body[:500]
    page = _Page(body.decode())
    assert page.ids == {"dashboard": "a", "status": "p", "preview": "img", "workers": "table"}
    assert sorted(page.urls) == ["fractal/data.json", "fractal/preview.png", "status"]
    for url in page.urls:  # relative to the page: no scheme, no host, no leading slash
        parts = urlsplit(url)
        assert not (parts.scheme or parts.netloc or url.startswith("/")), url
    return [urljoin(page_url, u) + (f"?{query}" if query else "") for u in page.urls]


def _check_links(page_url: str, render_id: str, n_blocks: int, query: str = "") -> None:
    """The page's links, resolved as a browser does, answer: its data, its
    preview, the dashboard's status page."""
    data, preview, dashboard = sorted(_check_page(page_url, query), key=lambda u: ("/status" in u, u))
    status, ctype, body = _get(data)
    assert status == 200 and ctype.startswith("application/json")
    doc = json.loads(body)
    assert doc["render_id"] == render_id and doc["blocks_done"] == doc["meta"]["n_blocks"] == n_blocks
    status, ctype, body = _get(preview)
    assert status == 200 and ctype == "image/png" and body.startswith(b"\x89PNG")
    status, ctype, body = _get(dashboard)
    assert status == 200 and ctype.startswith("text/html") and b"bokeh" in body.lower()


def _plots(base: str, query: str = "") -> dict[str, str]:
    status, ctype, body = _get(base + "/individual-plots.json" + (f"?{query}" if query else ""))
    assert status == 200 and ctype.startswith("application/json")
    return json.loads(body)


def _n_rules(scheduler) -> int:
    return len(scheduler.http_application.default_router.rules)


@pytest.fixture(scope="module")
def cluster():
    """One worker process; the plugin registered from the client, at run time."""
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0") as c:
        yield c


def test_a_plugin_registered_at_run_time_lists_its_page_in_the_dashboard(cluster, tmp_path):
    with Client(cluster) as client:
        ensure_plugin(client)
        sched = cluster.scheduler
        base = f"http://127.0.0.1:{sched.http_server.port}"
        plots = _plots(base)
        assert plots["Fractal"] == "/fractal"
        assert plots["Individual Task Stream"] == "/individual-task-stream"  # distributed's own, all still there
        assert sum(1 for v in plots.values() if v.startswith("/individual-")) > 10
        # the "More..." menu of the dashboard's bokeh pages, as relative a link as distributed's own
        status, _, body = _get(base + "/status")
        assert status == 200 and '<a href="fractal">Fractal</a>' in body.decode()
        assert '<a href="individual-task-stream">Task Stream</a>' in body.decode()
        _check_links(base + "/fractal", _render_on(client, tmp_path / "r.zarr"), 3)
        # a second plugin (it replaces the first) and a second install add nothing
        rules = _n_rules(sched)
        client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.remove_plugin(PLUGIN_NAME))
        ensure_plugin(client)
        routes.install(sched)
        assert _n_rules(sched) == rules
        assert _get(base + "/status")[2].decode().count('<a href="fractal">') == 1
        assert list(_plots(base)).count("Fractal") == 1


def _render_on(client: Client, path) -> str:
    """The render id of a 3-block render into a store at ``path``."""
    stats = RenderStats()
    render(VIEW, 100, store_path=path, client=client, chunk_rows=10, stats=stats)
    assert stats.render_id
    return stats.render_id


@pytest.mark.cluster
def test_the_route_module_in_the_config_serves_the_page_without_the_plugin():
    """``distributed.scheduler.http.routes``, distributed's static route list,
    names the module: the page is there before any plugin (waiting for a
    render); the plugin added later serves its data through the same routes."""
    default = dask.config.get("distributed.scheduler.http.routes")
    with (
        dask.config.set({"distributed.scheduler.http.routes": ["dfractal_dask.diagnostics.routes", *default]}),
        LocalCluster(
            n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address="127.0.0.1:0"
        ) as cluster,  # fmt: skip
        Client(cluster) as client,
    ):
        base = f"http://127.0.0.1:{cluster.scheduler.http_server.port}"
        assert PLUGIN_NAME not in cluster.scheduler.plugins
        _check_page(base + "/fractal")
        assert _get(base + "/fractal/data.json")[2] == b"{}"
        assert _get(base + "/fractal/preview.png")[0] == 404
        assert _plots(base)["Fractal"] == "/fractal"
        rules = _n_rules(cluster.scheduler)
        ensure_plugin(client)
        assert _n_rules(cluster.scheduler) == rules  # served already: not routed twice
        assert _get(base + "/fractal/data.json")[2] == b"{}"  # the plugin's: no render yet


@pytest.mark.cluster
def test_dask_scheduler_preload_with_a_dashboard_prefix(tmp_path):
    """``dask scheduler --preload dfractal_dask.diagnostics --dashboard-prefix``
    (the real programs): the page, its data and its listing are under the prefix."""
    prefix = "/user/someone/dask"
    args = ["--preload", "dfractal_dask.diagnostics", "--dashboard-prefix", prefix]
    with dask_processes(tmp_path, names=("w1",), scheduler_args=args) as (address, _), Client(address) as client:
        port = client.scheduler_info()["services"]["dashboard"]
        base = f"http://127.0.0.1:{port}{prefix}"
        assert _plots(base)["Fractal"] == "/fractal"  # from the dashboard's root, as distributed's own are
        assert _get(f"http://127.0.0.1:{port}/fractal")[0] == 404  # nothing outside the prefix
        render_id = _render_on(client, tmp_path / "r.zarr")
        _check_links(base + "/fractal", render_id, 3)


@pytest.mark.cluster
def test_only_the_diagnostics_preload(tmp_path):
    """The new preload alone (distributed's preload machinery, in process) adds
    the plugin and its page."""
    with LocalCluster(n_workers=0, processes=False, protocol="tcp", host="127.0.0.1", dashboard_address="127.0.0.1:0",
                      scheduler_kwargs={"preload": ["dfractal_dask.diagnostics"]}) as cluster:  # fmt: skip
        assert PLUGIN_NAME in cluster.scheduler.plugins
        base = f"http://127.0.0.1:{cluster.scheduler.http_server.port}"
        assert _plots(base)["Fractal"] == "/fractal"
        _check_page(base + "/fractal")


def test_jupyterlab_dask_extension_lists_the_page_and_the_proxy_serves_it(cluster, tmp_path):
    """A real JupyterLab with dask-labextension and jupyter-server-proxy: the
    extension's own dashboard check (what the Dask sidebar asks for a dashboard
    URL) lists the page, and through the proxy the page and its relative links answer."""
    with Client(cluster) as client:
        ensure_plugin(client)
        render_id = _render_on(client, tmp_path / "r.zarr")
        port = cluster.scheduler.http_server.port
        with running_lab(tmp_path, root_dir=tmp_path) as lab:
            # the sidebar asks the extension's server to check a dashboard it cannot fetch itself...
            dashboard = f"http://127.0.0.1:{port}/status"
            status, _, body = _get(f"{lab.base}dask/dashboard-check/{quote(dashboard, safe='')}?token={lab.token}")
            assert status == 200
            check = json.loads(body)
            assert check["isActive"] and check["plots"]["Fractal"] == "/fractal"
            # ...and fetches individual-plots.json itself from one under Lab's URL (Binder's: through the proxy)
            assert _plots(f"{lab.base}proxy/{port}", f"token={lab.token}")["Fractal"] == "/fractal"
            # the sidebar opens URLExt.join(dashboard, route); the token is Lab's cookie in a browser, a query here
            _check_links(f"{lab.base}proxy/{port}/fractal", render_id, 3, f"token={lab.token}")


@pytest.mark.slow
@needs_chromium
@pytest.mark.browser
def test_the_dask_sidebar_in_jupyterlab_opens_the_page(cluster, tmp_path):
    """In Chromium, JupyterLab's Dask sidebar, given the dashboard's URL through
    the proxy (as on Binder), offers "Fractal"; clicked, its panel shows the
    page with the render's blocks and workers."""
    from playwright.sync_api import expect

    with Client(cluster) as client:
        ensure_plugin(client)
        _render_on(client, tmp_path / "r.zarr")
        port = cluster.scheduler.http_server.port
        with running_lab(tmp_path, root_dir=tmp_path) as lab, launch() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            try:
                page.goto(f"{lab.base}lab?token={lab.token}")
                page.locator("li[data-id='dask-dashboard-launcher']").click(timeout=120_000)
                url = page.locator(".dask-URLInput input")
                url.fill(f"{lab.base}proxy/{port}")
                url.press("Enter")
                item = page.locator(".dask-DashboardListing-item", has_text=re.compile("^Fractal$"))
                item.click(timeout=60_000)
                frame = page.frame_locator(".dask-DaskDashboard-widget iframe")
                frame.locator("tr.worker").first.wait_for(timeout=60_000)
                assert "3 / 3 blocks (done)" in frame.locator("#status").text_content()
                expect(frame.locator("#preview")).to_have_js_property("naturalWidth", 40)  # the preview, loaded
                page.screenshot(path=str(tmp_path / "lab-fractal.png"))
            finally:
                page.close()


@pytest.mark.cluster
@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_a_late_dashboard_starts_its_pages_with_the_first_graph(kind, tmp_path):
    # dfractal render's embedded cluster (connect(dashboard_later=True)): the HTTP server,
    # its link and the /fractal page from the start, the Bokeh pages with the first graph
    with connect(None, n_workers=1, cluster=kind, dashboard_later=True) as client:
        base = client.dashboard_link.removesuffix("/status")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base), client.dashboard_link
        ensure_plugin(client)
        late = late_dashboard(client.cluster)
        assert late is not None and late.thread is None  # nothing imported yet
        assert _get(base + "/status")[0] == 404
        status, ctype, _ = _get(base + "/fractal")
        assert status == 200 and ctype.startswith("text/html")
        render_id = _render_on(client, tmp_path / "r.zarr")  # the first graph
        assert late.ready.wait(DASHBOARD_JOIN_SECONDS)
        status, _, body = _get(base + "/status")
        assert status == 200 and b"bokeh" in body.lower()
        assert '<a href="fractal">Fractal</a>' in body.decode()  # listed in the pages' menu once they are up
        assert _plots(base)["Fractal"] == "/fractal"
        _check_links(base + "/fractal", render_id, 3)
        assert late.thread is not None
    assert not late.thread.is_alive()  # joined as the cluster closed


def test_a_late_dashboard_without_a_graph_starts_when_asked(tmp_path):
    with connect(None, n_workers=1, cluster="threads", dashboard_later=True) as client:
        late = late_dashboard(client.cluster)
        assert late.start_now(client.cluster.scheduler)
        assert _get(client.dashboard_link)[0] == 200
        first = late.thread
        late.update_graph(client.cluster.scheduler)  # a later graph starts nothing more
        assert late.thread is first


def test_a_cluster_started_plainly_has_its_pages_at_once():
    with connect(None, n_workers=1, cluster="threads") as client:
        assert late_dashboard(client.cluster) is None
        status, _, body = _get(client.dashboard_link)
        assert status == 200 and b"bokeh" in body.lower()
