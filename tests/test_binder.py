"""The Binder set-up: binder/environment.yml matches pyproject.toml, binder/postBuild and
binder/start are usable, and the dashboard link that binder/start configures really
reaches the Dask dashboard through JupyterLab's jupyter-server-proxy.

The last test runs a real ``jupyter lab`` (launched through ``binder/start``, as
repo2docker does) with JupyterHub's per-user base URL, everything on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from distributed import LocalCluster
from labserver import get, running_lab
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / "binder"
START = BINDER / "start"
POSTBUILD = BINDER / "postBuild"
LINK_TEMPLATE = "/user/{user}/proxy/{{port}}/status"


def _name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(specs) -> dict[str, str]:
    """{normalised name: version specifier} of PEP 508 strings (extras and markers dropped)."""
    out = {}
    for spec in specs:
        req = Requirement(spec)
        name = _name(req.name)
        assert name not in out, f"{name} is listed twice"
        out[name] = str(req.specifier)
    return out


def _pyproject_dependencies() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return _requirements([*project["dependencies"], *project["optional-dependencies"]["notebook"]])


def _environment() -> dict:
    return yaml.safe_load((BINDER / "environment.yml").read_text())


def _environment_dependencies() -> dict[str, str]:
    specs = []
    for dep in _environment()["dependencies"]:
        if isinstance(dep, dict):
            assert set(dep) == {"pip"}, f"unexpected section {dep}"
            specs += dep["pip"]
        elif _name(re.split(r"[=<>!~ ]", dep, maxsplit=1)[0]) not in ("python", "pip"):
            specs.append(dep)  # a conda package: `name>=1.2` is PEP 508 too
    return _requirements(specs)


# -- environment.yml -----------------------------------------------------------------------------


def test_environment_matches_pyproject():
    expected = _pyproject_dependencies()
    got = _environment_dependencies()
    assert set(got) == set(expected), f"missing: {set(expected) - set(got)}, extra: {set(got) - set(expected)}"
    assert got == expected, {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    # the notebook extra, the server side of Binder, is really there
    assert {"jupyterlab", "jupyter-server-proxy", "dask-labextension", "jupyter-bokeh"} <= set(got)


def test_environment_is_conda_forge_python_311_with_pip():
    env = _environment()
    assert env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    assert "python=3.11" in deps
    assert "pip" in deps
    assert any(isinstance(d, dict) and d.get("pip") for d in deps), "no pip section"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version("3.11") in Requirement(f"python{requires}").specifier


# -- postBuild and start -------------------------------------------------------------------------


@pytest.mark.parametrize("script", [POSTBUILD, START], ids=lambda p: p.name)
def test_scripts_are_executable_bash(script):
    assert script.exists()
    assert os.access(script, os.X_OK), f"{script.relative_to(ROOT)} is not executable (chmod +x)"
    assert script.read_text().startswith("#!/bin/bash\n")
    subprocess.run(["bash", "-n", str(script)], check=True)  # syntax


def test_postbuild_installs_the_package_without_dependencies():
    text = POSTBUILD.read_text()
    assert re.search(r"^pip install --no-deps -e \.$", text, re.M)
    assert "set -euo pipefail" in text


def _start_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("JUPYTERHUB_USER", "DASK_DISTRIBUTED__DASHBOARD__LINK")}
    env.update(extra)
    return env


def test_start_sets_the_dashboard_link_and_execs():
    text = START.read_text()
    assert 'exec "$@"' in text
    out = subprocess.run(
        [str(START), "sh", "-c", 'printf %s "$DASK_DISTRIBUTED__DASHBOARD__LINK"'],
        env=_start_env(JUPYTERHUB_USER="tester"),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == LINK_TEMPLATE.format(user="tester") == "/user/tester/proxy/{port}/status"
    # exec: the command's exit status is the script's
    assert subprocess.run([str(START), "sh", "-c", "exit 7"], env=_start_env(JUPYTERHUB_USER="tester")).returncode == 7
    # outside JupyterHub the link is left alone
    out = subprocess.run(
        [str(START), "sh", "-c", 'printf %s "${DASK_DISTRIBUTED__DASHBOARD__LINK-unset}"'],
        env=_start_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout == "unset"


# -- the dashboard through jupyter-server-proxy --------------------------------------------------


@pytest.mark.cluster
def test_dashboard_link_reaches_the_dashboard_through_the_proxy(tmp_path):
    user = "tester"
    # a scheduler and its dashboard, no workers needed
    with (
        LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address="127.0.0.1:0") as cluster,
        running_lab(
            tmp_path,
            root_dir=tmp_path,
            base_url=f"/user/{user}/",
            prefix=(str(START),),
            env=_start_env(JUPYTERHUB_USER=user),
        ) as lab,  # fmt: skip
    ):
        dash_port = cluster.scheduler.services["dashboard"].port
        # what a kernel started on Binder sees: the config, and the link dask makes of it
        code = (
            "import dask; from distributed.utils import format_dashboard_link; "
            "print(dask.config.get('distributed.dashboard.link')); "
            f"print(format_dashboard_link('127.0.0.1', {dash_port}))"
        )
        out = subprocess.run(
            [str(START), sys.executable, "-c", code], env=lab.env, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        assert out[0] == f"/user/{user}/proxy/{{port}}/status"
        link = out[1]
        assert link == f"/user/{user}/proxy/{dash_port}/status"

        status, body = get(f"http://127.0.0.1:{lab.port}{link}?token={lab.token}", timeout=30)
        assert status == 200, body[:2000]
        assert "Dask" in body and "bokeh" in body.lower(), body[:2000]
        # and the Lab itself is served under the same base URL
        assert get(f"{lab.base}lab?token={lab.token}", timeout=30)[0] == 200
