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
import sys
from functools import partial

__all__ = [
    "BAD_INPUT",
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "FLAG_NAMES",
    "INTERRUPTED",
    "UsageError",
    "error_line",
    "flag_terms",
    "interrupted",
    "one_line",
]

EXIT_BAD_INPUT = 2
#: The exit code after a Ctrl-C (128 + SIGINT, as a shell's), and the line printed on stderr.
EXIT_INTERRUPTED = 130
INTERRUPTED = "dfractal: interrupted"


class UsageError(Exception):
    """Bad input from the command line: reported as one line, exit 2."""


#: The exceptions that are bad input (one line, exit 2), not bugs.
BAD_INPUT: tuple[type[BaseException], ...] = (UsageError, ValueError, OSError)


def _term(name: str) -> str:
    # the library's name ``name`` as a word of a message, not part of a path
    # (``/tmp/burning_ship.zarr``), a longer name or a flag (``--to-span``), nor
    # a store's attribute named as such (``its attribute chunk_rows is missing``)
    return rf"(?<![\w./\\-])(?<!attribute ){re.escape(name)}(?![\w/\\-]|\.\w)"


#: The same on the command line: ``dfractal render --resume --pyramid`` (with
#: the render's flags) builds, finishes or repairs a render store's pyramid.
_BUILD_PYRAMID = "`dfractal render --resume --pyramid`"

#: A store's attributes that a refused resume lists (``K V here, W in the
#: store``), by the flag that sets each on the command line.
_ATTRIBUTE_FLAGS = {
    "fractal": "--fractal",
    "power": "--power",
    "width": "--width",
    "height": "--height",
    "span": "--span",
    "xpos": "--xpos",
    "ypos": "--ypos",
    "supersample": "--smoothness",
    "frames": "--frames",
    "distance": "--mode distance",
    "perturbation": "deep view (perturbation)",
    "bla": "bilinear approximation (off with --exact)",
}

#: A check's message that starts with the name of what it checks, by the flag that sets it.
_CHECKED_FLAGS = {
    "span": "--span",
    "width": "--width",
    "height": "--height",
    "supersample": "--smoothness",
    "frames": "--frames",
    "xpos": "--xpos",
    "ypos": "--ypos",
}

#: The library's Python terms and what the command line says instead, in this
#: order (phrases first; a name only as a word: :func:`_term`, so
#: ``resume=True`` is translated but ``presume=True`` or a path is not).
FLAG_NAMES: tuple[tuple[re.Pattern[str], str | dict[str, str]], ...] = tuple(
    (re.compile(pattern), flag)
    for pattern, flag in (
        (r"\brender\(\.\.\., distance=True\)", "`dfractal render --mode distance`"),
        (r"\bopen it with open_zoom\b", "`dfractal recolor` and `dfractal info` read it"),
        (r"\bopen it with open_render\b", "`dfractal recolor`, `dfractal explore --store` and `dfractal info` read it"),
        (r"\bbuild_pyramid, or (`dfractal [^`]+`),?", r"\1"),  # (a message that names both)
        (_term("build_pyramid"), _BUILD_PYRAMID),
        (r"\boverwrite=True\b", "--overwrite"),
        (r"\bresume=True\b", "--resume"),
        (r"\bretries=(?=\S)", "--retries "),
        (_term("store_path"), "--store"),
        (_term("storage_options") + " are ", "--storage-option is "),
        (_term("storage_options"), "--storage-option"),
        (r"\bdistance=True\b", "--mode distance"),
        (r"\bpyramid=True\b", "--pyramid"),
        (_term("chunk_rows"), "--chunk-rows"),
        (_term("to_span"), "--to-span"),
        (_term("julia_c"), "--julia-c"),
        (_term("julia_re"), "--julia-c's real part"),
        (_term("julia_im"), "--julia-c's imaginary part"),
        (_term("centre_re"), "--xpos"),
        (_term("centre_im"), "--ypos"),
        (_term("n_blocks"), "blocks"),
        (_term("n_workers"), "--workers"),
        (_term("store_id"), "store id"),
        (_term("burning_ship"), "burning-ship"),  # (a family's name, as --fractal spells it)
        (r"(?:(?<=\()|(?<=; ))(?:" + "|".join(_ATTRIBUTE_FLAGS) + r")(?= \S+ here, )", _ATTRIBUTE_FLAGS),
        (r"^(?:" + "|".join(_CHECKED_FLAGS) + r")(?= must\b| \S+ does not\b| \S+ and centre\b)", _CHECKED_FLAGS),
        (r"(?<![-\w])iters\b", "--iters"),
    )
)


def flag_terms(text: str) -> str:
    """``text`` with the library's parameter names put as the CLI's flags."""
    for pattern, flag in FLAG_NAMES:
        text = pattern.sub(partial(_flag_of, flag) if isinstance(flag, dict) else flag, text)  # (a dict: by name)
    return text


def _flag_of(flags: dict[str, str], match: re.Match[str]) -> str:
    return flags[match.group()]


def one_line(text: str) -> str:
    """Escape what would break the one error line (e.g. a newline echoed from an argument)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def error_line(exc: BaseException | str) -> str:
    """The line printed for bad input ``exc`` (an exception or its message): in flag terms, on one line."""
    return f"dfractal: error: {one_line(flag_terms(str(exc)))}"


def interrupted() -> int:
    """After a Ctrl-C: say so on stderr; the exit code."""
    print(INTERRUPTED, file=sys.stderr)
    return EXIT_INTERRUPTED
