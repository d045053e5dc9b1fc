"""A real ``jupyter lab`` for the tests: on 127.0.0.1, a fresh token, config and
settings of its own (shared by test_binder.py and test_browser.py)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jupyter_server
from packaging.version import Version


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 10) -> tuple[int, str]:
    """``(status, body)`` of a GET, HTTP errors included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode("utf-8", "replace")


def _token_option() -> str:
    # jupyter_server 2 moved the token to the IdentityProvider (ServerApp.token is deprecated)
    return "IdentityProvider" if Version(jupyter_server.__version__) >= Version("2") else "ServerApp"


@dataclass
class Lab:
    port: int
    token: str
    base: str  # http://127.0.0.1:PORT/BASE_URL/
    env: dict[str, str]


# Lab settings for a browser test: every cell in the DOM (no windowing), no news pop-up
_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


@contextlib.contextmanager
def running_lab(
    tmp_path: Path,
    *,
    root_dir: Path,
    base_url: str = "/",
    prefix: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
) -> Iterator[Lab]:
    """Run ``jupyter lab`` (after ``prefix``, e.g. ``binder/start``) until the block ends."""
    port, token = free_port(), secrets.token_hex(16)
    env = dict(os.environ if env is None else env)
    settings = tmp_path / "lab-settings"
    for name, value in _SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(value))
    env.update(
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
        JUPYTER_CONFIG_DIR=str(tmp_path / "config"),  # no user config; the sys-prefix extensions still load
        JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTERLAB_SETTINGS_DIR=str(settings),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        IPYTHONDIR=str(tmp_path / "ipython"),
    )
    log_path = tmp_path / "lab.log"
    argv = [
        *prefix, sys.executable, "-m", "jupyterlab", "--no-browser",
        "--ip=127.0.0.1", f"--port={port}", "--ServerApp.port_retries=0",
        f"--ServerApp.base_url={base_url}", f"--{_token_option()}.token={token}",
        f"--ServerApp.root_dir={root_dir}",
        *(["--allow-root"] if os.geteuid() == 0 else []),  # e.g. in a container
    ]  # fmt: skip
    base = f"http://127.0.0.1:{port}{base_url}"
    with log_path.open("w") as log:
        lab = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert lab.poll() is None, f"jupyter lab exited: {log_path.read_text()[-3000:]}"
                try:
                    if get(f"{base}api/status?token={token}", timeout=5)[0] == 200:
                        break
                except OSError:
                    pass
                assert time.monotonic() < deadline, f"jupyter lab did not answer: {log_path.read_text()[-3000:]}"
                time.sleep(0.5)
            yield Lab(port, token, base, env)
        finally:
            lab.terminate()
            try:
                lab.wait(timeout=20)
            except subprocess.TimeoutExpired:
                lab.kill()
                lab.wait()
