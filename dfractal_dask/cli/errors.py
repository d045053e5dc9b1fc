"""What ``dfractal`` does with an error: bad input is one line and exit 2.

Bad input is a :class:`UsageError` (the command line itself), a ``ValueError``
(the library's checks, and its own errors: ``StoreError``, ``LocationError``,
``StoreBusy`` are ValueErrors) or an ``OSError`` (a disk full, a path gone, a
scheduler out of reach: ``ClusterError``).  Anything else, a ``TypeError``
first of all, is a bug and keeps its traceback.

The library names its parameters (``pass overwrite=True``); the printed line
names the flags that set them (:data:`FLAG_NAMES`).
"""

from __future__ import annotations

import re

__all__ = ["BAD_INPUT", "EXIT_BAD_INPUT", "FLAG_NAMES", "UsageError", "error_line", "flag_terms", "one_line"]

EXIT_BAD_INPUT = 2


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit 2."""


#: The exceptions that are bad input (one line, exit 2), not bugs.
BAD_INPUT: tuple[type[BaseException], ...] = (UsageError, ValueError, OSError)

#: The library's Python terms and the flag that sets each (word boundaries on
#: both sides, so ``resume=True`` is translated but ``presume=True`` is not).
FLAG_NAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), flag)
    for pattern, flag in (
        (r"\boverwrite=True\b", "--overwrite"),
        (r"\bresume=True\b", "--resume"),
        (r"\bretries=(?=\S)", "--retries "),
        (r"\bstore_path\b", "--store"),
        (r"\bstorage_options\b", "--storage-option"),
        (r"\bdistance=True\b", "--mode distance"),
        (r"\bpyramid=True\b", "--pyramid"),
        (r"\bchunk_rows\b", "--chunk-rows"),
        (r"(?<![-\w])iters\b", "--iters"),
    )
)


def flag_terms(text: str) -> str:
    """``text`` with the library's parameter names put as the CLI's flags."""
    for pattern, flag in FLAG_NAMES:
        text = pattern.sub(flag, text)
    return text


def one_line(text: str) -> str:
    """Escape what would break the one error line (e.g. a newline echoed from an argument)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def error_line(exc: BaseException | str) -> str:
    """The line printed for bad input ``exc`` (an exception or its message): in flag terms, on one line."""
    return f"dfractal: error: {one_line(flag_terms(str(exc)))}"
