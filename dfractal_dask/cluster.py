"""Which cluster a render runs on: a scheduler address, or an embedded LocalCluster.

The embedded cluster and its dashboard listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import re
import threading
from collections.abc import Iterator

import dask
from distributed import Client, LocalCluster, default_client
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin
from distributed.security import Security

from . import settings
from .checks import check_bools
from .protocol import PLUGIN_NAME

__all__ = [
    "CLUSTER_KINDS", "ClusterError", "DASHBOARD_JOIN_SECONDS", "LateDashboard", "SLOWEST_RATE",
    "WarmKernels", "cluster_kind", "connect", "default_workers", "late_dashboard", "local_cluster", "probe_scheduler",
    "stall_seconds", "tls_security", "warm_kernels",
]  # fmt: skip

#: The scheduler's HTTP route that proxies worker dashboards (not served by the embedded cluster).
_PROXY_ROUTE = "distributed.http.proxy"
_ADDRESS = re.compile(r"^(?:(?P<proto>[a-z]+)://)?(?P<host>\[[0-9a-fA-F:.]+\]|[\w.-]+):(?P<port>\d+)$")


#: Iterations a second a core does at the least (the perturbation kernel does
#: ~150 M, the plain one ~2 G): bounds a block's time from its work.
SLOWEST_RATE = 5e7


#: The kinds of embedded cluster (dask config ``dfractal.cluster``, the CLI's
#: ``--cluster``): ``threads``, workers in this process (their kernels release
#: the GIL); ``processes``, one worker process each.
CLUSTER_KINDS: tuple[str, ...] = settings.SETTINGS["cluster"].choices


class ClusterError(ConnectionError):
    """The cluster stopped making progress, or its scheduler was lost, while a
    render ran: the store keeps every finished block (resume it)."""


def stall_seconds(work: float = 0.0) -> float:
    """How long nothing may finish: ``dfractal.stall-seconds`` if configured,
    else ``dfractal.min-stall-seconds``, or longer for a task of ``work`` iterations."""
    configured = settings.get("stall-seconds")
    if configured is not None:
        return configured
    return max(settings.get("min-stall-seconds"), work / SLOWEST_RATE)


def default_workers() -> int:
    """Workers of the embedded cluster: one single-threaded worker per core."""
    return max(1, os.cpu_count() or 1)


def cluster_kind(cluster: str | None = None) -> str:
    """The embedded cluster's kind: ``cluster``, else dask config
    ``dfractal.cluster``; one of :data:`CLUSTER_KINDS`.

    Raises
    ------
    ValueError
        For any other kind (naming ``cluster``, or the config key it came from).
    """
    if cluster is None:
        return settings.get("cluster")
    if cluster not in CLUSTER_KINDS:
        raise ValueError(f"cluster must be one of {', '.join(map(repr, CLUSTER_KINDS))}, got {cluster!r}")
    return cluster


def warm_kernels(escape: bool = True) -> None:
    """Compile (or load from Numba's cache) the fractal and colouring kernels
    of this process (:func:`dfractal_dask.kernels.warm_up` unless not
    ``escape``, and the colouring one)."""
    from .colorize import warm_up as warm_coloring  # (the package exports the function colorize)
    from .kernels import warm_up as warm_escape

    if escape:
        warm_escape()
    warm_coloring()  # recolouring and the explorer colour blocks on the workers


def _warm_in_background(escape: bool = True) -> threading.Thread:
    # Numba's compiler lock makes a kernel's first call wait for the load under
    # way, so nothing has to wait for the warm-up itself: it overlaps the rest
    # of the start (cluster, client, the render's cost probe).
    thread = threading.Thread(target=warm_kernels, args=(escape,), name="dfractal-warm-kernels", daemon=True)
    thread.start()
    return thread


class WarmKernels(WorkerPlugin):
    """Load the fractal and colouring kernels (:func:`warm_kernels`) in a
    thread of each worker as it joins, so the first block of every render does
    not pay for it, and the worker is ready at once."""

    name = "dfractal-warm-kernels"
    idempotent = True

    def setup(self, worker) -> None:
        _warm_in_background()


#: Seconds the close of an embedded cluster waits for its dashboard's late start (:class:`LateDashboard`).
DASHBOARD_JOIN_SECONDS = 30.0


class LateDashboard(SchedulerPlugin):
    """The embedded scheduler's Bokeh dashboard, started once the first graph
    arrives (:func:`local_cluster` with ``dashboard_later``).

    Importing Bokeh and the dashboard's components takes ~0.21 s of one core
    (measured here: the embedded cluster starts in 0.39 s with it, 0.13 s
    without), all of it holding the GIL.  Done as the cluster starts, nothing
    else can run meanwhile; done in a thread once the first graph is
    submitted, it shares the machine with that graph's kernels (which release
    the GIL).  The HTTP server, its routes (the ``/fractal`` page among them)
    and the link are there from the start; the Bokeh pages (``/status``) join
    them moments later, added the way the scheduler adds them itself
    (``distributed.dashboard.scheduler.connect``), on its event loop.
    """

    name = "dfractal-late-dashboard"

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()  # set once the pages are up (or could not be: no Bokeh)

    def update_graph(self, scheduler, **kwargs) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._start, args=(scheduler,), name=self.name, daemon=True)
            self.thread.start()

    def _start(self, scheduler) -> None:
        try:
            import distributed.dashboard.scheduler as pages
        except ImportError:  # no (suitable) Bokeh: the scheduler itself then serves no pages either
            self.ready.set()
            return

        def connect() -> None:
            from .diagnostics.routes import install

            try:
                pages.connect(scheduler.http_application, scheduler.http_server, scheduler, prefix="/")
                if PLUGIN_NAME in scheduler.plugins:  # the /fractal page, listed in the pages' menu now
                    install(scheduler)
            finally:
                self.ready.set()

        try:
            scheduler.loop.add_callback(connect)
        except RuntimeError:  # the loop closed meanwhile (a close that did not wait: no pages to add)
            self.ready.set()

    def start_now(self, scheduler, timeout: float = DASHBOARD_JOIN_SECONDS) -> bool:
        """Start the pages now if no graph has, and wait for them (at most
        ``timeout`` seconds): whether they are up."""
        self.update_graph(scheduler)
        return self.ready.wait(timeout)

    def join(self, timeout: float = DASHBOARD_JOIN_SECONDS) -> None:
        """Wait (at most ``timeout`` seconds) for a start under way: not left
        importing as the cluster closes."""
        if self.thread is not None:
            self.thread.join(timeout)


def local_cluster(n_workers: int, cluster: str | None = None, dashboard_later: bool = False) -> LocalCluster:
    """The embedded cluster: ``n_workers`` single-threaded workers, threads of
    this process or processes of their own (``cluster``, see :func:`cluster_kind`),
    scheduler, workers and dashboard all on 127.0.0.1 (dashboard on a free port).
    With ``dashboard_later``, the dashboard's Bokeh pages start with the first
    graph (:class:`LateDashboard`, the scheduler's plugin of that name)."""
    processes = cluster_kind(cluster) == "processes"
    # Its workers have no dashboards for the scheduler's /proxy route to reach, and that route's
    # import (jupyter-server-proxy, aiohttp) is ~0.15 s of every start.
    routes = [r for r in dask.config.get("distributed.scheduler.http.routes") if r != _PROXY_ROUTE]
    with dask.config.set({"distributed.scheduler.http.routes": routes}):
        embedded = LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=processes,
            host="127.0.0.1",
            protocol="tcp",  # threads too: inproc:// would name this host's public address in the dashboard's link
            dashboard_address="127.0.0.1:0",
            scheduler_kwargs={"dashboard": False} if dashboard_later else None,  # its HTTP server all the same
            silence_logs=logging.CRITICAL,  # a failed task is reported once, by the client, not by every worker
        )
    if dashboard_later and embedded.scheduler is not None:  # (an embedded cluster's scheduler is here, started)
        embedded.scheduler.add_plugin(LateDashboard())
    return embedded


def late_dashboard(embedded: LocalCluster) -> LateDashboard | None:
    """The embedded cluster's :class:`LateDashboard`, if it was started with one."""
    plugin = None if embedded.scheduler is None else embedded.scheduler.plugins.get(LateDashboard.name)
    return plugin if isinstance(plugin, LateDashboard) else None


def _check_address(address: str) -> str:
    if not isinstance(address, str):
        raise TypeError(f"scheduler address must be a string like tcp://127.0.0.1:8786, got {address!r}")
    m = _ADDRESS.match(address.strip())
    if not m or not 0 < int(m["port"]) < 65536 or (m["proto"] or "tcp") not in ("tcp", "tls", "ws", "wss", "inproc"):
        raise ValueError(f"bad scheduler address {address!r}; expected e.g. tcp://127.0.0.1:8786")
    return address.strip()


def tls_security(ca_file: str | os.PathLike, cert: str | os.PathLike, key: str | os.PathLike) -> Security:
    """Client TLS credentials for a ``dask scheduler --tls-*`` cluster, encryption required.

    Raises
    ------
    ValueError
        If a file is missing or unreadable.
    """
    for what, path in (("CA file", ca_file), ("certificate", cert), ("key", key)):
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            raise ValueError(f"TLS {what} {path} is not a readable file")
    return Security(tls_ca_file=str(ca_file), tls_client_cert=str(cert), tls_client_key=str(key),
                    require_encryption=True)  # fmt: skip


async def _identity(address: str, timeout: float, security: Security | None) -> dict:
    from distributed.comm import connect as comm_connect

    args = (security or Security()).get_connection_args("client")
    # (connect's own timeout first: it says why, e.g. connection refused)
    comm = await asyncio.wait_for(comm_connect(address, timeout=timeout, **args), timeout + 2)
    try:
        await asyncio.wait_for(comm.write({"op": "identity", "reply": True}), timeout)
        return await asyncio.wait_for(comm.read(), timeout)
    finally:
        comm.abort()


def probe_scheduler(address: str, timeout: float = 10.0, security: Security | None = None) -> None:
    """Make sure a dask scheduler answers at ``address`` within ``timeout``
    seconds, whatever listens there: a silent server, or a web server (the
    dashboard's port, 8787, is an easy typo for 8786), would otherwise keep a
    Client waiting forever.  Raises ``ConnectionError`` in one line."""
    hint = " (is that a dask scheduler's port? by default 8786; 8787 is its dashboard)"
    # its own thread and event loop: callers may be inside one (Jupyter)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(asyncio.run, _identity(address, timeout, security))
        try:
            reply = future.result(2 * timeout + 5)
        except (TimeoutError, concurrent.futures.TimeoutError):
            raise ConnectionError(f"no dask scheduler answered at {address} within {timeout:g} s{hint}") from None
        except Exception as exc:  # refused, reset, TLS mismatch, garbage: distributed raises many kinds
            text = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise ConnectionError(f"cannot reach dask scheduler at {address}: {text}") from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise ConnectionError(f"{address} answered, but not as a dask scheduler{hint}")


def current_client() -> Client | None:
    """The client of this context (``distributed.default_client``), or ``None``."""
    try:
        return default_client()
    except ValueError:
        return None


@contextlib.contextmanager
def connect(
    scheduler: str | Client | None = None,
    *,
    n_workers: int | None = None,
    timeout: float = 10.0,
    security: Security | None = None,
    cluster: str | None = None,
    dashboard_later: bool = False,
    escape_kernels: bool = True,
) -> Iterator[Client]:
    """A dask Client for a render, closed (with its embedded cluster) on exit.

    Parameters
    ----------
    scheduler
        ``None``: start an embedded LocalCluster (``n_workers`` single-threaded
        workers of the kind ``cluster``, on 127.0.0.1).  A string: the address of a running
        ``dask scheduler``.  A Client: used as is and left open.
    n_workers
        Size of the embedded cluster (default: one per core).
    timeout
        Seconds to wait for a remote scheduler.
    security
        TLS credentials for a ``tls://`` scheduler (see :func:`tls_security`).
    cluster
        The embedded cluster's kind, ``"threads"`` or ``"processes"``
        (default: dask config ``dfractal.cluster``); unused with a scheduler.
    dashboard_later
        The embedded cluster's Bokeh pages start with the first graph, not
        before it (:class:`LateDashboard`): for a command that submits its
        work at once (``dfractal render``, ``dfractal zoom``).
    escape_kernels
        Whether the embedded threads' warm-up loads the plain escape kernels
        (:func:`warm_kernels`): not for a render by perturbation alone, which
        never calls them (their load is 0.13 s of a core).

    Raises
    ------
    ValueError
        For a malformed address, a bad ``n_workers`` or ``cluster``.
    ConnectionError
        If the scheduler cannot be reached within ``timeout``.
    """
    settings.check()  # every dfractal.* setting, before anything starts
    check_bools(dashboard_later=dashboard_later, escape_kernels=escape_kernels)
    kind = cluster_kind(cluster) if cluster is not None or scheduler is None else None  # before anything starts
    if isinstance(scheduler, Client):
        yield scheduler
        return
    if scheduler is None:
        n = default_workers() if n_workers is None else n_workers
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n_workers must be a positive integer, got {n_workers!r}")
        # threads share this process's kernels: warmed here as the cluster starts
        warming = _warm_in_background(escape_kernels) if kind == "threads" else None
        try:
            with local_cluster(n, kind, dashboard_later) as embedded, Client(embedded) as client:
                if kind == "processes":
                    client.register_plugin(WarmKernels())
                try:
                    yield client
                finally:
                    late = late_dashboard(embedded)
                    if late is not None:
                        late.join()
        finally:
            if warming is not None:
                warming.join()  # not left in Numba's compiler as the interpreter exits
        return
    address = _check_address(scheduler)
    probe_scheduler(address, timeout, security)
    try:
        client = Client(address, timeout=f"{timeout}s", security=security)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(f"cannot reach dask scheduler at {address}: {exc}") from None
    with client:
        client.register_plugin(WarmKernels())
        yield client
