"""Results of a graph's futures as they finish, every wait bounded: a stalled
cluster, a result stuck on a lost worker or a lost scheduler becomes one
:class:`~dfractal_dask.cluster.ClusterError` saying which, never a hang."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from distributed import CancelledError, Client, as_completed

from .cluster import ClusterError, probe_scheduler, stall_seconds

__all__ = ["gather_results"]


def _holders(c: Client, fut) -> str:
    # the workers holding a finished task's result, by name and address
    try:
        holders = c.who_has([fut]).get(fut.key, ())
        info = c.scheduler_info(n_workers=-1)["workers"]
    except Exception:
        return "the scheduler does not answer"
    return "held by " + (", ".join(f"{info.get(w, {}).get('name', w)} ({w})" for w in holders) or "no worker")


def _busy_workers(c: Client, render_id: str) -> str:
    # the workers processing this render's tasks (their keys hold its id), by name and address
    try:
        processing = c.processing()
        info = c.scheduler_info(n_workers=-1)["workers"]
    except Exception:  # the scheduler is not answering either
        return "the scheduler does not answer"
    busy = [f"{info.get(w, {}).get('name', w)} ({w})" for w, keys in processing.items()
            if any(render_id in str(k) for k in keys)]  # fmt: skip
    return "stalled: " + ", ".join(busy) if busy else "no worker is processing its blocks"


def _scheduler_lost(c: Client) -> bool:
    # whether the scheduler has gone (not merely a task's error): ask it directly, briefly
    address = getattr(c.scheduler, "address", None)
    if c.status not in ("running", "newly-created") or not address:
        return True
    try:
        probe_scheduler(address, timeout=5, security=c.security)
    except ConnectionError:
        return True
    return False


def gather_results(
    c: Client,
    futures: list,
    progress: Callable[[int, int], None] | None,
    render_id: str,
    kind: str = "render",
    more: Iterator | None = None,
    total: int | None = None,
    work: float = 0.0,
    counts: Callable[[object], bool] | None = None,
    unit: str | None = None,
    resume: str = "resume it (resume=True) to finish the store",
):
    """Yield each future's result as it finishes, calling ``progress``; on
    the first error, cancel the rest (a store that was replaced, or that a
    worker cannot see, must not keep its other blocks computing).  ``more``:
    further futures, one taken in as each finishes (a window of work in
    flight), ``total`` in all; ``work``: the most iterations one of them may
    take (see :func:`dfractal_dask.cluster.stall_seconds`); ``counts``: which
    results are one of the ``total`` (default all; e.g. not a picture's pieces);
    ``unit`` and ``resume``: what the error calls them and how to go on.

    Raises :class:`ClusterError` when nothing finishes for
    dask config ``dfractal.min-stall-seconds`` (naming the workers still holding its tasks) or when
    the scheduler is lost."""
    total, finished, stall = len(futures) if total is None else total, 0, stall_seconds(work)
    unit = unit or ("frames" if kind == "zoom" else "blocks")
    if progress:
        progress(0, total)
    ac = as_completed(futures, loop=c.loop)
    last = time.monotonic()
    try:
        while not ac.is_empty():
            batch = ac.next_batch(block=False)
            if not batch:
                if time.monotonic() - last > stall:
                    raise ClusterError(
                        f"nothing of this {kind} finished for {stall:g} s ({_busy_workers(c, render_id)}); "
                        f"{finished} of {total} {unit} had finished: {resume}"
                    )
                time.sleep(0.02)
                continue
            last = time.monotonic()
            for fut in batch:
                try:
                    # bounded: a finished task's result may sit on a worker that stopped since
                    result = fut.result(timeout=stall)
                except TimeoutError:
                    raise ClusterError(
                        f"the result of a finished task of this {kind} could not be fetched for {stall:g} s "
                        f"({_holders(c, fut)}); {finished} of {total} {unit} had finished: {resume}"
                    ) from None
                except (CancelledError, OSError) as exc:  # OSError: distributed's CommClosedError and kin
                    if not _scheduler_lost(c):
                        raise
                    raise ClusterError(
                        f"lost the dask scheduler {getattr(c.scheduler, 'address', '')} while this {kind} ran "
                        f"({type(exc).__name__}); {finished} of {total} {unit} had finished: {resume}"
                    ) from None
                counted = counts is None or counts(result)
                finished += counted
                yield result
                if progress and counted:
                    progress(finished, total)
                nxt = next(more, None) if more is not None else None
                if nxt is not None:
                    futures.append(nxt)
                    ac.add(nxt)
    except BaseException:
        with contextlib.suppress(Exception):
            c.cancel(futures)
        raise
