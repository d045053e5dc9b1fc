"""``dfractal``: the command line.  A thin layer over the public API.

One module a command (``render``, ``zoom``, ``recolor``, ``explore``,
``bench``, ``info``, ``palettes``, ``version``), each with
``add_parser(subparsers)`` and ``run(args) -> int``; the flag groups they
share in :mod:`.options`; :func:`main` in :mod:`.app`, the error mapping in
:mod:`.errors`.  ``dfractal render`` takes every flag of the seed's
``fractal leader`` with the same defaults; bad input gives one line on stderr
and exit code 2.
"""

from .app import build_parser, main, run
from .errors import EXIT_BAD_INPUT, UsageError

__all__ = ["EXIT_BAD_INPUT", "UsageError", "build_parser", "main", "run"]
