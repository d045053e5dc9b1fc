"""The ``dfractal`` console script (and ``python -m dfractal_dask``): :func:`run`.

It imports nothing heavy itself: numba, xarray and distributed come in with
the commands (:mod:`.app`), inside the ``try`` that turns a Ctrl-C into
``dfractal: interrupted`` and exit code 130, during start-up as later.
"""

from __future__ import annotations

import atexit
import gc
import os
import signal
import sys
from collections.abc import Callable
from functools import partial
from typing import Any, NoReturn

from .errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, INTERRUPTED, error_line, interrupted

__all__ = ["run"]

#: Seconds after a Ctrl-C that Python dropped (:func:`_unraisable`) until it is sent again.
REDELIVERY_SECONDS = 0.05


def run() -> NoReturn:
    """:func:`~.app.main` on ``sys.argv``, then exit with its code.

    A Ctrl-C at any moment is ``dfractal: interrupted`` on stderr and exit
    code 130: while the commands are imported, during the command (where
    Python drops a ``KeyboardInterrupt`` raised in a garbage collector's
    callback or a ``__del__``, it is sent again: :func:`_unraisable`), and
    while the interpreter exits after it (the exit then ends at once; once
    the ``atexit`` handlers are done, the modules' teardown ignores it: the
    command's code stands).

    The commands' imports run with the garbage collector off, and what they
    made (about a million objects: modules and their functions, as long-lived
    as the interpreter) is then moved to its permanent generation
    (``gc.freeze``): its full passes during the imports took 0.15-0.2 s, and
    the collections during the command (the dashboard's imports, the
    render's) then walk only what it made.  So is everything before the
    interpreter's teardown: its final collection walked the whole of numba's,
    xarray's and distributed's objects, 0.4-1.2 s of every command (py-spy:
    ``gc_collect_main`` after the last ``atexit`` handler), as long as a small
    render itself (the memory goes back with the process)."""
    handled = signal.getsignal(signal.SIGINT) is signal.default_int_handler  # not ignored by whoever started us
    if handled:
        atexit.register(_ignore_interrupts)  # first registered, so run last (after distributed's)
        sys.unraisablehook = partial(_unraisable, sys.unraisablehook)
    try:
        collecting = gc.isenabled()
        gc.disable()
        try:
            from .app import main
        except ValueError as exc:  # dask reads its configuration as it is imported: a malformed YAML file
            main = partial(_bad_config, exc)
        finally:
            gc.freeze()
            if collecting:
                gc.enable()
        code = main()
        sys.stdout.flush()
    except KeyboardInterrupt:
        code = interrupted()
    if code == EXIT_INTERRUPTED:  # said, and ended here: on a fresh install (cold caches) the interpreter's
        _end_exit(True)  # teardown after a Ctrl-C at 1-1.5 s died by the signal (exit -2) in 2 of 16 runs
    if handled:
        said = code == EXIT_INTERRUPTED  # (main says so before it returns 130)
        signal.signal(signal.SIGINT, lambda signum, frame: _end_exit(said))
    gc.freeze()
    sys.exit(code)


def _bad_config(exc: ValueError) -> int:
    # dask's "A dask config file at '...' is malformed, original error message: ..." on one line
    text = " ".join(str(exc).split())
    if "dask config file" not in text:
        raise exc
    print(error_line(text.replace(", original error message:", ":")), file=sys.stderr)
    return EXIT_BAD_INPUT


def _unraisable(previous: Callable[[Any], object], unraisable: Any) -> None:
    # A KeyboardInterrupt raised where Python can only report it (a gc callback, such as
    # distributed's GCDiagnosis, a __del__, a weakref's callback) is printed with its
    # traceback and dropped, and the command would go on: the signal is sent again to the
    # main thread, a moment later (not from here: this hook would be interrupted itself).
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        import threading

        main = threading.main_thread().ident
        timer = threading.Timer(REDELIVERY_SECONDS, signal.pthread_kill, (main, signal.SIGINT))
        timer.daemon = True
        timer.start()
        return
    previous(unraisable)


def _end_exit(said: bool) -> None:
    # a Ctrl-C after the command, while the interpreter exits (threads joined, atexit handlers)
    try:
        sys.stdout.flush()
    finally:
        if not said:
            print(INTERRUPTED, file=sys.stderr)
        sys.stderr.flush()
        os._exit(EXIT_INTERRUPTED)


def _ignore_interrupts() -> None:
    # the last atexit handler: the modules' teardown follows, with Python's signal handlers
    # gone (a Ctrl-C would kill the process): the command's exit code stands
    signal.signal(signal.SIGINT, signal.SIG_IGN)
