"""``/fractal`` on the scheduler's dashboard: a live preview of the render
filling in, and per-worker throughput.

Plain HTML + a little JavaScript (``templates/fractal.html``) that polls two
endpoints, ``fractal/data.json`` and ``fractal/preview.png``, by relative URLs:
served by the dashboard's own web server, so no extra port and no CDN, and it
works offline and behind jupyter-server-proxy.

The routes are a distributed HTTP route module: :data:`routes` is the
``(pattern, handler, kwargs)`` list that ``distributed.http.get_handlers``
reads from each module named in the ``distributed.scheduler.http.routes``
config, and each handler is a ``distributed.http.utils.RequestHandler``, given
the scheduler as ``self.server``.  The config is read once, when a scheduler is
made, and the plugin is often registered later (``ensure_plugin`` from a
client), so :func:`install` adds the same module's routes to a running
scheduler, as distributed adds its own websocket routes at run time
(``http_application.add_handlers``, in ``distributed.comm.ws``).  Listing the
module in the config works too (then put it before
``distributed.http.scheduler.info``, whose ``individual-plots.json`` the first
listed module would otherwise shadow).
"""

from __future__ import annotations

import sys
from importlib import resources
from typing import Any

from distributed.http import get_handlers
from distributed.http.scheduler.info import IndividualPlots as _DaskIndividualPlots
from distributed.http.utils import RequestHandler
from tornado import httputil, routing, web

from ..protocol import PAGE_PATH, PLUGIN_NAME, to_json

__all__ = ["PAGE", "PAGE_TITLE", "FractalPage", "IndividualPlots", "install", "routes"]

PAGE = resources.files(__package__).joinpath("templates", "fractal.html").read_text("utf-8")
PAGE_TITLE = "Fractal"  # its name in the dashboard's "More..." menu and dask-labextension's list


class _Base(RequestHandler):
    def _plugin(self) -> Any:
        return self.server.plugins.get(PLUGIN_NAME)


class FractalPage(_Base):
    """The page (static: it reads everything from ``fractal/data.json``)."""

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.write(PAGE)


class _Data(_Base):
    def get(self) -> None:
        plugin = self._plugin()
        report = None if plugin is None else plugin.report(self.get_argument("render", None))
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(to_json(report or {}))


class _Preview(_Base):
    def get(self) -> None:
        plugin = self._plugin()
        png = None if plugin is None else plugin.preview_png(self.get_argument("render", None))
        if png is None:
            raise web.HTTPError(404, "no render yet")
        self.set_header("Content-Type", "image/png")
        self.set_header("Cache-Control", "no-store")
        self.write(png)


class IndividualPlots(_DaskIndividualPlots):
    """distributed's ``individual-plots.json`` (the dashboard's single pages,
    which dask-labextension lists in JupyterLab's Dask sidebar), plus this page.

    distributed builds that list from its bokeh applications and its static
    files only, with no way to add to it, so this handler, routed before
    distributed's own, extends what it writes.
    """

    def write(self, chunk: Any) -> None:
        if isinstance(chunk, dict):  # the listing (an error page is written as text)
            chunk = {**chunk, PAGE_TITLE: "/" + PAGE_PATH}  # as distributed's: from the dashboard's root
        super().write(chunk)


routes: list[tuple[str, type, dict]] = [
    (PAGE_PATH, FractalPage, {}),  # no trailing slash: the page's relative URLs assume none
    (PAGE_PATH + r"/data\.json", _Data, {}),
    (PAGE_PATH + r"/preview\.png", _Preview, {}),
    (r"individual-plots\.json", IndividualPlots, {}),
]


def _routed(app: web.Application, path: str) -> type:
    """The handler class ``app`` answers a GET of ``path`` with."""
    request = httputil.HTTPServerRequest(start_line=httputil.RequestStartLine("GET", path, "HTTP/1.0"))
    return app.find_handler(request).handler_class


def _prefix(app: web.Application) -> str:
    """The dashboard's URL prefix (``dask scheduler --dashboard-prefix``): where
    distributed routed its own ``individual-plots.json`` (the scheduler keeps
    no record of it)."""
    for rule in app.wildcard_router.rules:
        if rule.target is _DaskIndividualPlots and isinstance(rule.matcher, routing.PathMatches):
            return rule.matcher.regex.pattern.removesuffix("$").removesuffix("individual-plots.json")
    return "/"


def install(scheduler: Any) -> None:
    """Serve the page on a scheduler's dashboard, and list it there.

    Adds :data:`routes` under the dashboard's prefix unless they are served
    already (the config named this module, or an earlier plugin added them),
    and the page to the "More..." menu of the dashboard's bokeh pages.

    Parameters
    ----------
    scheduler : distributed.Scheduler
        A running scheduler; one without an HTTP server is left alone.
    """
    app = getattr(scheduler, "http_application", None)
    if app is None:
        return
    prefix = _prefix(app)
    if _routed(app, prefix + PAGE_PATH) is not FractalPage:
        app.add_handlers(r".*", get_handlers(scheduler, [__name__], prefix=prefix))
    _add_to_menu(scheduler)


def _add_to_menu(scheduler: Any) -> None:
    # The menu lists distributed.dashboard.scheduler.template_variables(scheduler)["plots"]: memoized per
    # scheduler, its list is the one every bokeh page of the dashboard renders (distributed offers no other way).
    if "bokeh" not in sys.modules:  # no bokeh pages yet (an embedded cluster adds them later: then again)
        return
    try:
        from bokeh.server.tornado import BokehTornado
        from distributed.dashboard.scheduler import template_variables
    except ImportError:  # no bokeh, no bokeh pages
        return
    if not any(isinstance(a, BokehTornado) for a in scheduler.http_application.applications):
        return
    plots = template_variables(scheduler)["plots"]
    if all(p["url"] != PAGE_PATH for p in plots):
        plots.append({"url": PAGE_PATH, "name": PAGE_TITLE})  # relative, as distributed's: from /status and others
        plots.sort(key=lambda p: p["name"])
