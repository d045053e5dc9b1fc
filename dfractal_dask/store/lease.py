"""One writer a store: a lease record inside the store.

A render or zoom writing a store holds its lease: a small record, the
attributes of an empty Zarr group ``dfractal_lease`` (so Zarr readers see a
valid hierarchy while a render runs), created only where none exists (``O_EXCL`` on a local
disk, a conditional PUT on S3), renewed by the client while it works and
deleted at the end.  Another writer that finds a live lease is refused,
naming the holder.  A lease is stale once its expiry passes (its writer
died: its client stopped renewing), or at once when it names a process on
this host that no longer runs (a killed client), so ``--resume`` still works
after a ``kill -9``.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

import dask

from ..location import Location
from .layout import LEASE_KEY

__all__ = ["LEASE_KEY", "LEASE_SECONDS", "Lease", "StoreBusy", "holder", "is_stale"]

#: The record's key inside a store: the metadata of a group that holds nothing.
#: How long a lease lives without renewal (dask config ``dfractal.lease-seconds``
#: overrides it); the client renews it every third of that.
LEASE_SECONDS = 60.0
#: After taking over a stale lease, wait this long and read it back: of two
#: clients taking it over at once, the one whose record was overwritten steps back.
_SETTLE_SECONDS = 0.5


class StoreBusy(ValueError):
    """Another render or zoom holds the store's lease."""


def _seconds() -> float:
    return float(dask.config.get("dfractal.lease-seconds", LEASE_SECONDS))


def holder(loc: Location) -> dict[str, Any] | None:
    """The lease record of the store at ``loc``, or ``None`` if it has none (or it is unreadable)."""
    try:
        record = json.loads(loc.read_bytes(LEASE_KEY))["attributes"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return None
    return record if isinstance(record, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def is_stale(record: dict[str, Any], now: float | None = None) -> bool:
    """A lease whose writer is gone: past its expiry, or naming a process of this host that no longer runs."""
    now = time.time() if now is None else now
    try:
        if float(record["expires"]) < now:
            return True
        if record.get("host") == socket.gethostname() and not _pid_alive(int(record["pid"])):
            return True
    except (KeyError, TypeError, ValueError):
        return True  # not a record we wrote
    return False


def describe(record: dict[str, Any]) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(record.get("started", 0))))
    return f"{record.get('what', 'a render')} (pid {record.get('pid')} on {record.get('host')}, since {started})"


def check_free(loc: Location, token: str | None = None) -> None:
    """Refuse (:class:`StoreBusy`) a store whose lease is held by a live
    writer (other than the holder of ``token``, a :attr:`Lease.token`, or
    this process, which may hold it over a whole command)."""
    mine = _HELD.get(loc.url)
    if token is None and mine is not None:
        token = mine.token
    record = holder(loc)
    if record is not None and not is_stale(record) and (token is None or record.get("token") != token):
        raise StoreBusy(f"{loc} is being written by {describe(record)}; wait for it to finish, or use another store")


# leases this process holds, by store: a nested Lease of the same store (the
# CLI holds one over a render and its PNG; render() takes one too) shares it
_HELD: dict[str, Lease] = {}
_HELD_LOCK = threading.Lock()


class Lease:
    """The lease of the store at ``loc``, held by this process for ``what``
    (e.g. ``"dfractal render"``) until :meth:`release`; a context manager.

    :meth:`acquire` raises :class:`StoreBusy` if another live writer holds it.
    Within one process it is re-entrant: a lease of a store this process
    already holds shares the outer one (and releasing it leaves that held).
    """

    def __init__(self, loc: Location, what: str) -> None:
        self.loc = loc
        self.what = what
        self.token = uuid.uuid4().hex
        self.lost = False
        self._nested = False
        self._started = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> bytes:
        now = time.time()
        record = {"token": self.token, "what": self.what, "host": socket.gethostname(), "pid": os.getpid(),
                  "started": self._started, "renewed": now, "expires": now + _seconds()}  # fmt: skip
        return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": record}).encode()

    def acquire(self) -> Lease:
        with _HELD_LOCK:
            outer = _HELD.get(self.loc.url)
            if outer is not None:
                self.token, self._nested = outer.token, True
                return self
            self._take()
            _HELD[self.loc.url] = self
        return self

    def _take(self) -> None:
        self._made = not self.loc.exists()  # a folder made for the lease alone goes with it
        try:
            self.loc.write_bytes(LEASE_KEY, self._record(), exclusive=True)
        except FileExistsError:
            record = holder(self.loc)
            if record is not None and not is_stale(record):
                raise StoreBusy(
                    f"{self.loc} is being written by {describe(record)}; wait for it to finish, or use another store"
                ) from None
            # stale: take it over, then make sure no other taker overwrote us
            self.loc.write_bytes(LEASE_KEY, self._record())
            time.sleep(_SETTLE_SECONDS)
            record = holder(self.loc)
            if record is None or record.get("token") != self.token:
                raise StoreBusy(f"{self.loc} was taken by {describe(record or {})} at the same moment") from None
        self._thread = threading.Thread(target=self._renew, name="dfractal-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(_seconds() / 3):
            try:
                record = holder(self.loc)
                if record is None or record.get("token") != self.token:
                    self.lost = True
                    return
                self.loc.write_bytes(LEASE_KEY, self._record())
            except Exception:  # a passing storage error: try again at the next turn
                continue

    def release(self) -> None:
        """Stop renewing and delete the record (if it is still ours)."""
        if self._nested:
            return
        with _HELD_LOCK:
            if _HELD.get(self.loc.url) is self:
                del _HELD[self.loc.url]
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            record = holder(self.loc)
            if record is not None and record.get("token") == self.token:
                self.loc.delete(LEASE_KEY)
                if self._made and self.loc.is_local:
                    os.rmdir(self.loc.url)  # only if empty: a store was not made after all
        except Exception:  # the store may be gone; an expired lease needs no deleting
            pass

    def __enter__(self) -> Lease:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
