"""Where a store lives: a local folder or any URL fsspec opens (``s3://``,
``gs://``, ``az://``, ``file://``), with its storage options.

A :class:`Location` is made once, on the client, and travels to the workers
inside the graph: a plain path is made absolute there and then, so a worker
started in another folder writes where the client reads, never into a store
of the same name in its own folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

__all__ = [
    "EXTRAS",
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


@dataclass(frozen=True)
class Location:
    """A store's place: ``url`` is an absolute local path or a full URL;
    ``storage_options`` go to fsspec (credentials, ``endpoint_url``, ...)."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __str__(self) -> str:
        return self.url

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
        return self.fs.exists(self.key(key) if key else self.fs_path)

    def read_bytes(self, key: str) -> bytes:
        """The bytes at ``key`` (``FileNotFoundError`` if there are none)."""
        if self.is_local:
            return Path(self.url, key).read_bytes()
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
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.key(key))

    def list_keys(self) -> list[str]:
        """Every file under the location, relative to it."""
        if self.is_local:
            root = Path(self.url)
            return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir())
        base = self.fs_path.rstrip("/") + "/"
        return sorted(p[len(base) :] for p in self.fs.find(self.fs_path) if p.startswith(base))

    def size(self) -> int:
        """Bytes under the location."""
        if self.is_local:
            return sum(p.stat().st_size for p in Path(self.url).rglob("*") if p.is_file())
        return int(self.fs.du(self.fs_path))

    def remove(self) -> None:
        """Delete the location and everything under it."""
        if self.is_local:
            import shutil

            shutil.rmtree(self.url)
        else:
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


def as_location(
    target: str | os.PathLike | Location, storage_options: Mapping[str, Any] | None = None, *, name: str = "store"
) -> Location:
    """``target`` as a :class:`Location`: a plain path made absolute, a
    ``file://`` URL made a path, any other URL kept whole (its fsspec
    backend must be installed: a :class:`LocationError` says which extra).

    ``name`` is the parameter named in errors."""
    if isinstance(target, Location):
        if storage_options:
            return Location(target.url, {**target.storage_options, **storage_options})
        return target
    if not isinstance(target, str | os.PathLike):
        raise TypeError(f"{name} must be a path or a URL, got {target!r}")
    if storage_options is not None and not isinstance(storage_options, Mapping):
        raise TypeError(f"storage_options must be a dict, got {storage_options!r}")
    text = os.fspath(target)
    if isinstance(text, bytes):
        raise TypeError(f"{name} must be a path or a URL, got {target!r}")
    if not text.strip():
        raise ValueError(f"{name} must not be empty")
    if "://" in text:
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
        if not sep or not key.strip():
            raise ValueError(f"--storage-option takes KEY=VALUE, got {pair!r}")
        try:
            parsed: Any = json.loads(value)
        except ValueError:
            parsed = value
        options[key.strip()] = parsed
    return options
