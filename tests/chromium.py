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
