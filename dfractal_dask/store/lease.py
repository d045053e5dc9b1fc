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

from .. import settings
from ..location import Location
from .layout import LEASE_KEY, METADATA

__all__ = ["LEASE_KEY", "LeaseError", "LeaseLost", "check_held", "Lease", "StoreBusy", "holder", "is_stale"]

#: After taking over a stale lease, wait this long and read it back: of two
#: clients taking it over at once, the one whose record was overwritten steps back.
_SETTLE_SECONDS = 0.5


class StoreBusy(ValueError):
    """Another render or zoom holds the store's lease."""


def _seconds() -> float:
    return settings.get("lease-seconds")


class LeaseLost(StoreBusy):
    """This writer's lease was taken by another (it stopped renewing it for
    longer than its life, e.g. a stopped process): it writes nothing more."""


class LeaseError(StoreBusy):
    """A lease record that is not what dfractal writes: whether a writer holds
    the store cannot be told, so nothing takes it over by itself."""


# the fields a lease record holds (Lease._record) and what each must be
_TIME = "a time in seconds since 1970"
_FIELDS: dict[str, str] = {"token": "a string", "what": "a string", "host": "a string",
                           "pid": "a process id (an integer > 0)", "started": _TIME, "renewed": _TIME,
                           "expires": _TIME}  # fmt: skip
_LATEST = 2.0**40  # seconds since 1970: ~36 800 AD, far past any clock (and time.localtime's reach)


def _bad_field(record: dict[str, Any]) -> str | None:
    # the first field of ``record`` that is not what Lease._record writes, or None
    for name, what in _FIELDS.items():
        value = record.get(name)
        if what == "a string":
            ok = isinstance(value, str) and 0 < len(value) <= 1000
        elif what == _TIME:
            ok = not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value < _LATEST
        else:
            ok = not isinstance(value, bool) and isinstance(value, int) and 0 < value < 2**31
        if not ok:
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            return f"{name} is {shown}, not {what}" if name in record else f"it has no {name} ({what})"
    return None


def holder(loc: Location) -> dict[str, Any] | None:
    """The lease record of the store at ``loc``, or ``None`` if it has none.

    Raises
    ------
    LeaseError
        If there is a record that is not what dfractal writes (unreadable, or
        a field missing or of another kind), naming what is wrong with it.
    """
    try:
        raw = loc.read_bytes(LEASE_KEY)
    except FileNotFoundError:
        return None
    try:
        record = json.loads(raw)["attributes"]
    except (ValueError, KeyError, TypeError):
        record = None
    problem = "it is not a Zarr group's JSON with attributes" if not isinstance(record, dict) else _bad_field(record)
    if problem is not None:
        raise LeaseError(
            f"the lease record of {loc} ({LEASE_KEY}) is not one dfractal writes: {problem}; if no render is "
            f"writing this store, delete {LEASE_KEY} from it and try again"
        )
    return record


def check_held(loc: Location, token: str) -> None:
    """Refuse (:class:`LeaseLost`) to write into ``loc`` unless its lease is
    still the one whose token is ``token``: called by a writer before each
    write it commits (a block, a frame's done flag), on the worker."""
    try:
        record = holder(loc)
    except LeaseError as exc:
        raise LeaseLost(f"this render's lease of {loc} was replaced: {exc}") from None
    if record is None and not loc.exists(METADATA):  # the store is gone (e.g. its bucket), not its lease alone
        raise LeaseLost(
            f"the store {loc} vanished while being written (its lease and its Zarr group are gone); nothing more "
            "was written into it and nothing of it was read back"
        )
    if record is None or record.get("token") != token:
        now = "no render holds it now" if record is None else f"it is now held by {describe(record)}"
        raise LeaseLost(
            f"this render lost the lease of {loc} (it was not renewed in time: a stopped or stalled client); "
            f"{now}; nothing more was written by this render"
        )


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
    if record["expires"] < now:  # (a record holder() returned: its fields checked)
        return True
    return record["host"] == socket.gethostname() and not _pid_alive(record["pid"])


def describe(record: dict[str, Any]) -> str:
    """Who holds a lease (a record :func:`holder` returned): what, which process, since when."""
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record["started"]))
    return f"{_printable(record['what'])} (pid {record['pid']} on {_printable(record['host'])}, since {started})"


def _printable(text: str, most: int = 80) -> str:
    # a record's string in a one-line message: no control characters, not too long
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= most else text[: most - 3] + "..."


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
                who = "another writer" if record is None else describe(record)
                raise StoreBusy(f"{self.loc} was taken by {who} at the same moment") from None
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
            except LeaseError:  # replaced by something that is not our record
                self.lost = True
                return
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
