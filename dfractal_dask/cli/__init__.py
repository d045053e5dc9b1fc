"""``dfractal``: the command line.  A thin layer over the public API.

One module a command (``render``, ``zoom``, ``recolor``, ``explore``,
``bench``, ``info``, ``palettes``, ``version``), each with
``add_parser(subparsers)`` and ``run(args) -> int``; the flag groups they
share in :mod:`.options`; :func:`main` in :mod:`.app`, the error mapping in
:mod:`.errors`.  ``dfractal render`` takes every flag of the seed's
``fractal leader`` with the same defaults; bad input gives one line on stderr
and exit code 2.

Importing this package (the console script's ``dfractal_dask.cli:run``)
brings in no command: :mod:`.app` and the library (numba, xarray,
distributed) are loaded by :func:`run`, inside its handling of Ctrl-C, or on
first use of :func:`build_parser` or :func:`main`.
"""

import importlib as _importlib

from .entry import run
from .errors import EXIT_BAD_INPUT, UsageError

__all__ = ["EXIT_BAD_INPUT", "UsageError", "build_parser", "main", "run"]


def __getattr__(name: str) -> object:
    if name in ("build_parser", "main"):
        value = getattr(_importlib.import_module(".app", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
