"""The zoom explorer: a bokeh figure of a view that re-renders on the Dask
cluster as you zoom and pan.

Two parts: :class:`~dfractal_dask.explorer.session.ExplorerSession` renders
(views, settings, frames, cancellation, saving; no bokeh) and
:class:`~dfractal_dask.explorer.panel.ExplorerPanel` is the bokeh page that
draws it and drives it.  :class:`Explorer` is the two together, and runs in
two places:

* JupyterLab: :meth:`Explorer.widget` is an ipywidget (``jupyter_bokeh``), so
  it needs no port of its own;
* a browser: ``dfractal explore`` serves it with a bokeh server bound to
  127.0.0.1 (:func:`serve`).

Importing this package (or its ``session``) does not import bokeh.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import Future as SaveFuture
from pathlib import Path
from typing import Any

from distributed import Client

from ..fractals import Fractal
from ..location import Location
from ..view import View
from .session import EXPLORER_MODES, MODE, PALETTE, SAVE_DIR, STEP, ExplorerSession, check_settings, frame_tasks
from .stored import StoredPicture, check_store

__all__ = ["EXPLORER_MODES", "Explorer", "ExplorerSession", "StoredPicture", "frame_tasks", "serve"]


def _part(part: str, name: str) -> property:
    """``Explorer.<name>``: the attribute ``name`` of its session or its panel."""
    return property(
        lambda self: getattr(getattr(self, part), name),
        lambda self, value: setattr(getattr(self, part), name, value),
        doc=f"The {part}'s ``{name}``.",
    )


class Explorer:
    """An interactive view of a fractal, rendered on a Dask cluster: a session
    (:attr:`session`) drawn by a bokeh panel (:attr:`panel`).

    The parameters are :class:`ExplorerSession`'s (``store``: a stored render
    to browse, read from its pyramid); in the page, ``iters``,
    the colouring and ``fractal`` are controls too (with Julia's ``c`` and
    Multibrot's power), and its Save button saves into ``save_dir``.
    ``dispatch`` runs the changes of the bokeh document, from the threads
    that collect frames: ``doc.add_next_tick_callback`` in a bokeh server;
    ``None`` (direct, under a lock) in Jupyter, where ipywidgets may be
    updated from threads.
    """

    def __init__(
        self,
        client: Client,
        view: View | None = None,
        iters: int | None = None,
        palette: str = PALETTE,
        mode: str = MODE,
        step: int = STEP,
        *,
        dispatch: Callable[[Callable[[], None]], Any] | None = None,
        save_dir: str | Path | Location = SAVE_DIR,
        fractal: Fractal | None = None,
        store: str | Path | Location | StoredPicture | None = None,
    ) -> None:
        from .panel import ExplorerPanel  # bokeh: only for a page

        self.session = ExplorerSession(client, view, iters, palette, mode, step, dispatch=dispatch,
                                       save_dir=save_dir, fractal=fractal, store=store)  # fmt: skip
        self.panel = ExplorerPanel(self.session)
        self.session.goto(self.session.view)

    # the session's state
    client = _part("session", "client")
    view = _part("session", "view")
    home = _part("session", "home")
    iters = _part("session", "iters")
    palette = _part("session", "palette")
    mode = _part("session", "mode")
    step = _part("session", "step")
    fractal = _part("session", "fractal")
    stored = _part("session", "stored")
    save_dir = _part("session", "save_dir")
    frames = _part("session", "frames")
    cancelled = _part("session", "cancelled")
    last_frame = _part("session", "last_frame")
    _gen = _part("session", "_gen")
    # the page's bokeh models
    layout = _part("panel", "root")
    figure = _part("panel", "figure")
    source = _part("panel", "source")
    status = _part("panel", "status")
    palette_select = _part("panel", "palette_select")
    mode_select = _part("panel", "mode_select")
    iters_spinner = _part("panel", "iters_spinner")
    fractal_select = _part("panel", "fractal_select")
    julia_c_input = _part("panel", "julia_c_input")
    power_spinner = _part("panel", "power_spinner")
    save_name = _part("panel", "save_name")
    save_button = _part("panel", "save_button")
    reset_button = _part("panel", "reset_button")

    def goto(self, view: View) -> int:
        """Render ``view``: :meth:`ExplorerSession.goto`."""
        return self.session.goto(view)

    def zoom(self, factor: float, x: float | None = None, y: float | None = None) -> int:
        """Zoom by ``factor`` about ``(x, y)``: :meth:`ExplorerSession.zoom`."""
        return self.session.zoom(factor, x, y)

    def set_coloring(self, palette: str | None = None, mode: str | None = None) -> int:
        """Change palette and/or mode: :meth:`ExplorerSession.set_coloring`."""
        return self.session.set_coloring(palette, mode)

    def set_colouring(self, palette: str | None = None, mode: str | None = None) -> int:
        """Deprecated spelling of :meth:`set_coloring`."""
        return self.session.set_colouring(palette, mode)

    def set_fractal(self, fractal: Fractal) -> int:
        """Change the fractal: :meth:`ExplorerSession.set_fractal`."""
        return self.session.set_fractal(fractal)

    def set_iters(self, iters: int) -> int:
        """Change the iteration limit: :meth:`ExplorerSession.set_iters`."""
        return self.session.set_iters(iters)

    def wait(self, gen: int | None = None, level: str = "full", timeout: float = 60.0) -> dict[str, Any]:
        """Wait for a frame: :meth:`ExplorerSession.wait`."""
        return self.session.wait(gen, level, timeout)

    def save(self, name: str, supersample: int = 4, overwrite: bool = False) -> SaveFuture:
        """Save the view at full resolution: :meth:`ExplorerSession.save`."""
        return self.session.save(name, supersample, overwrite)

    def _on_save(self, *_) -> None:
        self.panel._on_save()  # the page's Save button (tests press it)

    def close(self) -> None:
        """Cancel what is still rendering and stop the explorer's threads."""
        self.session.close()

    def widget(self):
        """The explorer as an ipywidget for JupyterLab (``jupyter_bokeh``).

        Loads BokehJS into the page first, from the installed bokeh rather than
        a CDN, so it works offline and behind Binder's proxy.
        """
        from bokeh.io import output_notebook
        from bokeh.resources import INLINE
        from jupyter_bokeh import BokehModel

        output_notebook(INLINE, hide_banner=True)
        return BokehModel(self.layout)


def serve(
    client: Client,
    *,
    port: int = 5006,
    address: str = "127.0.0.1",
    view: View | None = None,
    iters: int | None = None,
    palette: str = PALETTE,
    mode: str = MODE,
    save_dir: str | Path | Location = SAVE_DIR,
    fractal: Fractal | None = None,
    store: str | Path | Location | StoredPicture | None = None,
):
    """A bokeh server of the explorer on ``address:port`` (each browser tab its
    own :class:`Explorer`; with a ``store``, all browsing it, sharing its tile
    cache).  Returns the started, not yet running, server: run its
    ``io_loop``.  Port 0 picks a free one (``server.port``)."""
    from bokeh.server.server import Server

    store = check_store(store)  # opened (and checked) once for every tab
    check_settings(client, view, iters, palette, mode, fractal, store)
    with socket.socket() as s:
        # port 0: the websocket origin check needs the real port up front; a taken port is
        # refused here (OSError), where the socket is closed: tornado's bind_sockets leaves
        # the one it made open when its bind fails (a ResourceWarning); SO_REUSEADDR as it sets it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
        port = s.getsockname()[1]

    def app(doc) -> None:
        ex = Explorer(client, view, iters, palette, mode, dispatch=doc.add_next_tick_callback, save_dir=save_dir,
                      fractal=fractal, store=store)  # fmt: skip
        doc.add_root(ex.layout)
        doc.title = "dfractal explorer"
        doc.on_session_destroyed(lambda ctx: ex.close())

    origins = sorted({f"{host}:{port}" for host in (address, "localhost", "127.0.0.1")})
    server = Server({"/": app}, address=address, port=port, allow_websocket_origin=origins)
    server.start()
    return server
