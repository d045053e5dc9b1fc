"""Where a store lives: a local folder or any URL fsspec opens (``s3://``,
``gs://``, ``az://``, ``file://``), with its storage options.

A :class:`Location` is made once, on the client, and travels to the workers
inside the graph: a plain path is made absolute there and then, so a worker
started in another folder writes where the client reads, never into a store
of the same name in its own folder.

Secrets stay out of sight: a Location's ``repr`` names its storage options
but shows none of their values, a URL with credentials in it
(``s3://KEY:SECRET@bucket/m.zarr``, ``https://user:pass@host/m.zarr``) is
refused (they belong in the storage options or the environment, which no
message shows), and the storage's refusals (:class:`AccessDenied`) name the
store with any secret of its options or of the environment masked.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import re
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = [
    "EXTRAS",
    "AccessDenied",
    "Location",
    "LocationError",
    "as_location",
    "check_output",
    "nearest_existing",
    "parse_storage_options",
]

#: The pip extra that brings each scheme's fsspec backend.
EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "az": "azure", "abfs": "azure", "abfss": "azure"}


class LocationError(ValueError):
    """A store location that cannot be used: unknown scheme, missing backend,
    unreachable endpoint, missing bucket, refused credentials."""


class AccessDenied(PermissionError):
    """The storage refused access to a store (an S3 ``403``, ``AccessDenied``,
    a refused signature): the message names the store and hides every secret
    (:meth:`Location.denied`).  A ``PermissionError``, as the error it replaces,
    so code that tells a missing file from an unreadable one still does."""


#: Storage option names, and environment variable names, whose values are
#: secrets: masked in every message (:meth:`Location.redact`).
_SECRET_NAME = re.compile(r"key|secret|token|pass|auth|credential|sas|sig|connection_string|cookie", re.I)
_MASK = "***"


def _secret_values(value: Any, secret: bool) -> Iterator[str]:
    # every string (and number) under ``value``, when it or an enclosing name is a secret's
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _secret_values(v, secret or bool(_SECRET_NAME.search(str(k))))
    elif isinstance(value, list | tuple | set):
        for v in value:
            yield from _secret_values(v, secret)
    elif secret and isinstance(value, str | bytes | int | float) and not isinstance(value, bool):
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        if len(text) >= 4:  # (a one-letter value would mask every such letter)
            yield text


def _hide_userinfo(url: str) -> str:
    # ``scheme://user:pass@host/...`` as ``scheme://***@host/...``
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority = rest[:end]
    if "@" not in authority:
        return url
    return f"{scheme}://{_MASK}@{authority.rpartition('@')[2]}{rest[end:]}"


@dataclass(frozen=True)
class Location:
    """A store's place: ``url`` is an absolute local path or a full URL;
    ``storage_options`` go to fsspec (credentials, ``endpoint_url``, ...).

    ``str()`` is the URL (any credentials in it masked: :func:`as_location`
    refuses them); ``repr()`` names the storage options with their values
    hidden: ``Location('s3://b/m.zarr', storage_options=<key=***, secret=***>)``."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return _hide_userinfo(self.url)

    def __repr__(self) -> str:
        shown = repr(str(self))
        if not self.storage_options:
            return f"Location({shown})"
        names = ", ".join(f"{k}={_MASK}" for k in self.storage_options)
        return f"Location({shown}, storage_options=<{names}>)"

    def redact(self, text: str) -> str:
        """``text`` with the secrets of this location's storage options and of the
        environment (``AWS_SECRET_ACCESS_KEY``, ``AZURE_STORAGE_KEY``, ...) masked,
        and any credentials in a URL of it."""
        secrets = set(_secret_values(self.storage_options, False))
        secrets.update(v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 8)
        for secret in sorted(secrets, key=len, reverse=True):
            text = text.replace(secret, _MASK)
        return re.sub(r"(\b[a-zA-Z][\w+.-]*://)[^/\s@]*@", rf"\1{_MASK}@", text)

    def denied(self, exc: BaseException) -> AccessDenied:
        """The storage's refusal ``exc`` (a ``PermissionError``) as one line that
        names this store and shows no secret."""
        reason = self.redact(" ".join(str(exc).split()))[:200] or type(exc).__name__
        return AccessDenied(
            f"access denied to the store {self} ({reason}): check the credentials in storage_options or the environment"
        )

    @contextlib.contextmanager
    def _refusals(self) -> Iterator[None]:
        # the storage's PermissionError as AccessDenied (a local disk's stays as it is)
        try:
            yield
            return
        except AccessDenied:
            raise
        except PermissionError as exc:
            if self.is_local:
                raise
            denied = self.denied(exc)
        try:  # (raised alone: a worker's error reaches the client pickled with its chain, which may not unpickle)
            raise denied
        except AccessDenied as exc:
            exc.__context__ = None
            raise

    def __fspath__(self) -> str:  # so a local Location works wherever a path does
        if not self.is_local:
            raise TypeError(f"{self.url} is not a local path")
        return self.url

    def __dask_tokenize__(self) -> tuple:
        return (type(self).__name__, self.url, json.dumps(dict(self.storage_options), sort_keys=True, default=str))

    def __reduce__(self):  # cached filesystems and stores stay behind
        return (Location, (self.url, dict(self.storage_options)))

    @property
    def protocol(self) -> str:
        return self.url.split("://", 1)[0] if "://" in self.url else "file"

    @property
    def is_local(self) -> bool:
        return self.protocol == "file"

    @property
    def name(self) -> str:
        return posixpath.basename(self.url.rstrip("/"))

    def with_suffix(self, suffix: str) -> str:
        """The name of this store with another suffix (``m.zarr`` -> ``m.png``), no folder."""
        stem, _ = posixpath.splitext(self.name)
        return stem + suffix

    def child(self, name: str) -> Location:
        """A location inside this one (e.g. ``NAME.zarr`` in a save folder)."""
        return Location(self.url.rstrip("/") + "/" + name, self.storage_options)

    @property
    def _options(self) -> dict[str, Any]:
        # workers change the store under the client's feet: fsspec's cached
        # listings would hide their chunks (s3fs looks a key up in the cached
        # listing of its folder before reading it), so none are kept
        return {**({} if self.is_local else {"use_listings_cache": False}), **self.storage_options}

    @cached_property
    def fs(self):
        """The fsspec filesystem (its instance is cached by fsspec itself)."""
        import fsspec

        return fsspec.filesystem(self.protocol, **self._options)

    @property
    def fs_path(self) -> str:
        """The path of the store inside :attr:`fs` (no scheme)."""
        return self.url if self.is_local else self.fs._strip_protocol(self.url)

    def key(self, key: str) -> str:
        return self.fs_path.rstrip("/") + "/" + key

    def zarr_store(self, read_only: bool = False):
        """A zarr store over this location: zarr's own ``LocalStore`` for a
        local folder, its ``FsspecStore`` for a URL."""
        from zarr.storage import FsspecStore, LocalStore

        if self.is_local:
            return LocalStore(self.url, read_only=read_only)
        return FsspecStore.from_url(self.url, storage_options=self._options, read_only=read_only)

    # -- small files beside zarr's (a lease, a probe) ------------------------
    def exists(self, key: str = "") -> bool:
        if self.is_local:
            return os.path.lexists(os.path.join(self.url, key) if key else self.url)
        with self._refusals():
            return self.fs.exists(self.key(key) if key else self.fs_path)

    def read_bytes(self, key: str) -> bytes:
        """The bytes at ``key`` (``FileNotFoundError`` if there are none)."""
        if self.is_local:
            return Path(self.url, key).read_bytes()
        with self._refusals():
            return self.fs.cat_file(self.key(key))

    def write_bytes(self, key: str, data: bytes, *, exclusive: bool = False) -> None:
        """Write ``data`` at ``key``; ``exclusive``: only if nothing is there
        (``FileExistsError`` otherwise), atomically where the backend can:
        ``O_EXCL`` on a local disk, a conditional PUT (``If-None-Match``) on S3."""
        if self.is_local:
            # written whole to a temporary file, then put in place at once: a
            # reader never sees half a record; os.link refuses an existing target
            path = Path(self.url, key)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                if exclusive:
                    os.link(tmp, path)
                else:
                    os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
            return
        with self._refusals():
            if exclusive:
                try:
                    self.fs.pipe_file(self.key(key), data, mode="create")
                    return
                except TypeError:  # a backend with no conditional write: check, then write
                    if self.fs.exists(self.key(key)):
                        raise FileExistsError(self.key(key)) from None
            self.fs.pipe_file(self.key(key), data)

    def delete(self, key: str) -> None:
        """Delete the file at ``key`` (and, on a local disk, the folders it leaves empty)."""
        if self.is_local:
            path = Path(self.url, key)
            path.unlink(missing_ok=True)
            for folder in path.parents:
                if folder == Path(self.url) or not folder.is_relative_to(self.url):
                    break
                try:
                    folder.rmdir()
                except OSError:  # not empty
                    break
        else:
            with self._refusals(), contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.key(key))

    def list_keys(self) -> list[str]:
        """Every file under the location, relative to it."""
        if self.is_local:
            root = Path(self.url)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())
        base = self.fs_path.rstrip("/") + "/"
        with self._refusals():
            return sorted(p[len(base) :] for p in self.fs.find(self.fs_path) if p.startswith(base))

    def size(self) -> int:
        """Bytes under the location."""
        if self.is_local:
            return sum(p.stat().st_size for p in Path(self.url).rglob("*") if p.is_file())
        with self._refusals():
            return int(self.fs.du(self.fs_path))

    def remove(self) -> None:
        """Delete the location and everything under it."""
        if self.is_local:
            import shutil

            shutil.rmtree(self.url)
        else:
            with self._refusals():
                self.fs.rm(self.fs_path, recursive=True)


def _check_backend(protocol: str, url: str) -> None:
    import fsspec

    try:
        fsspec.get_filesystem_class(protocol)
    except ImportError:
        extra = EXTRAS.get(protocol)
        hint = f'pip install "dfractal_dask[{extra}]"' if extra else f"install the fsspec backend for {protocol}://"
        raise LocationError(f"{url}: the {protocol}:// storage backend is not installed ({hint})") from None
    except ValueError:
        raise LocationError(f"{url}: unknown storage scheme {protocol}:// (fsspec knows none by that name)") from None


def _check_url(text: str, name: str) -> None:
    # refuse a query string, a fragment, credentials (see as_location); never echo them
    shown = _hide_userinfo(text)
    cut = min((i for i in (shown.find("?"), shown.find("#")) if i >= 0), default=-1)
    if cut >= 0:
        raise ValueError(
            f"{name} {shown[:cut]}{shown[cut]}...: a query string (?...) or fragment (#...) is not supported "
            "in a store URL; name the store by its path alone"
        )
    if shown != text:
        raise ValueError(
            f"{name} {shown}: credentials in the URL are not supported (they would be shown wherever the store "
            "is named); give them in storage_options or the environment"
        )


def as_location(
    target: str | os.PathLike | Location, storage_options: Mapping[str, Any] | None = None, *, name: str = "store"
) -> Location:
    """``target`` as a :class:`Location`: a plain path made absolute, a
    ``file://`` URL made a path, any other URL kept whole (its fsspec
    backend must be installed: a :class:`LocationError` says which extra).

    A URL is refused (``ValueError``, before any work) when it has

    - a query string or a fragment (``s3://b/m.zarr?versionId=1``, ``...#x``):
      fsspec would read some as options (an object's version) and drop others,
      so the store written would not be the one named; the message shows the
      URL without them (a signed URL's query is a secret);
    - credentials (``s3://KEY:SECRET@bucket/m.zarr``, ``https://user:pass@host/m.zarr``,
      any ``...@`` before the host): they would be printed wherever the store is
      named; give them in ``storage_options`` or the environment.

    A plain path is a path: ``?`` and ``#`` are characters of its name there.

    ``name`` is the parameter named in errors."""
    if isinstance(target, Location):
        if storage_options:
            return Location(target.url, {**target.storage_options, **storage_options})
        return target
    if not isinstance(target, str | os.PathLike):
        raise TypeError(f"{name} must be a path or a URL, got {target!r}")
    if storage_options is not None and not isinstance(storage_options, Mapping):  # (its text may hold a secret)
        raise TypeError(f"storage_options must be a dict, got a {type(storage_options).__name__}")
    text = os.fspath(target)
    if isinstance(text, bytes):
        raise TypeError(f"{name} must be a path or a URL, got {target!r}")
    if not text.strip():
        raise ValueError(f"{name} must not be empty")
    if "://" in text:
        _check_url(text, name)
        protocol, rest = text.split("://", 1)
        protocol = protocol.lower()
        if protocol in ("file", "local"):
            return Location(os.path.abspath(os.path.expanduser(rest)), dict(storage_options or {}))
        _check_backend(protocol, text)
        if not rest.strip("/"):
            raise ValueError(f"{name} {text} names no bucket or folder")
        return Location(f"{protocol}://{rest.rstrip('/')}", dict(storage_options or {}))
    if storage_options:
        raise ValueError(f"storage_options are for URLs such as s3://bucket/m.zarr, not the local path {text}")
    return Location(os.path.abspath(os.path.expanduser(text)), {})


def nearest_existing(path: str | os.PathLike) -> Path:
    """The closest existing ancestor of ``path`` (its folders may be made later)."""
    parent = Path(path).absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def check_output(path: str | os.PathLike, what: str = "file", *, store: Location | None = None) -> Path:
    """Refuse (``ValueError``), before any work, a local output ``path`` that
    must not be written: a folder, anything but a regular file (a device such
    as ``/dev/null``, a pipe, a socket: replacing it would destroy it), a path
    inside ``store`` (e.g. its ``zarr.json``), or one whose nearest existing
    folder is a file or not writable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write the {what} {path}: it is a folder")
    if path.exists() and not path.is_file():
        raise ValueError(f"cannot write the {what} {path}: it exists and is not a regular file; refusing to replace it")
    if store is not None and store.is_local:
        root = Path(store.url).resolve()
        if path.resolve() == root or path.resolve().is_relative_to(root):
            raise ValueError(f"cannot write the {what} {path}: it is inside the store {store}")
    parent = nearest_existing(path)
    if not parent.is_dir():
        raise ValueError(f"cannot write the {what} {path}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write the {what} {path}: {parent} is not writable")
    return path


def parse_storage_options(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings (``--storage-option``) as fsspec storage options.

    Values are read as JSON where they parse (``anon=true``, ``client_kwargs={...}``),
    else kept as strings (``endpoint_url=http://127.0.0.1:9000``)."""
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():  # (its text is not shown: it may be a secret)
            what = "no '='" if not sep else "no KEY before '='"
            raise ValueError(f"--storage-option takes KEY=VALUE, got one with {what} ({len(pair)} characters)")
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        options[key.strip()] = parsed
    return options
