"""Debian's Chromium, driven by Playwright, for the browser tests (it never
downloads a browser of its own): where it is, how it starts, and the rule that
CI must have it."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip

if not shutil.which(CHROMIUM) and os.environ.get("CI"):
    raise RuntimeError("CI must install Debian's chromium (see .ci/run)")

#: ``pytestmark = needs_chromium`` in a browser test module.
needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs Debian's chromium (apt-get install chromium)"
)


@contextlib.contextmanager
def launch() -> Iterator:
    """A headless Chromium browser (Playwright's), closed at exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def explore_process(scheduler: str, save_dir: str | os.PathLike, *flags: str) -> Iterator[str]:
    """`dfractal explore` as a user starts it (``flags`` added), on ``scheduler``,
    saving into ``save_dir``; yields its URL.  It must stop cleanly on SIGTERM."""
    import re
    import subprocess

    argv = ["dfractal", "explore", "--port", "0", *flags, "--scheduler", scheduler, "--save-dir", str(save_dir)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        line = proc.stdout.readline()
        m = re.match(r"explorer: (http://127\.0\.0\.1:\d+/)$", line.strip())
        assert m, f"no explorer URL, got {line!r}; stderr: {proc.stderr.read() if proc.poll() is not None else ''}"
        yield m.group(1)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err  # SIGTERM stops it cleanly
    assert "Traceback" not in err and "error handling message" not in err, err  # nothing raised out of a callback
