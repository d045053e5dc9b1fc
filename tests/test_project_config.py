"""The project's own configuration: what the wheel ships (package data, the
py.typed marker), the test markers under --strict-markers, and the warning
filter that makes the package's own warnings errors (pyproject.toml)."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
import warnings
from pathlib import Path

import pytest

from dfractal_dask.deprecation import DfractalWarning, RenamedWarning

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
colorize_module = importlib.import_module("dfractal_dask.colorize")  # (the package's colorize is the function)


def _pytest(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """``python -m pytest`` with this project's configuration, in a fresh interpreter."""
    return subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"), "-p", "no:cacheprovider",
                           *argv], cwd=cwd, capture_output=True, text=True, timeout=300)  # fmt: skip


# -- the wheel's files -----------------------------------------------------------
def test_every_package_data_glob_names_files_and_py_typed_is_shipped():
    package_data = PYPROJECT["tool"]["setuptools"]["package-data"]
    assert "py.typed" in package_data["dfractal_dask"]
    assert (ROOT / "dfractal_dask" / "py.typed").is_file()
    for package, globs in package_data.items():
        folder = ROOT.joinpath(*package.split("."))
        assert (folder / "__init__.py").is_file(), f"package-data names {package}, not a package"
        for pattern in globs:
            assert [p for p in folder.glob(pattern) if p.is_file()], f"{package}: {pattern} matches no file"


# -- warnings --------------------------------------------------------------------
def test_a_warning_of_the_package_is_an_error_wherever_its_stacklevel_points():
    """The old spelling's RenamedWarning names this file (stacklevel: the
    line that used the name), which no module filter could catch; the
    category filter makes it an error (a test that expects it uses pytest.warns)."""
    assert issubclass(RenamedWarning, DfractalWarning) and issubclass(RenamedWarning, DeprecationWarning)
    with pytest.raises(RenamedWarning, match="colour_picture is renamed color_picture"):
        colorize_module.colour_picture  # noqa: B018
    with pytest.warns(RenamedWarning) as seen:
        colorize_module.colour_picture  # noqa: B018
    assert seen[0].filename == __file__


def test_a_warning_located_in_the_package_is_an_error_and_others_are_not():
    """Any category, when the warning's location is a module of the package
    (e.g. a dependency's deprecation that a line of ours triggers)."""
    for module in ("dfractal_dask", "dfractal_dask.colorize", "dfractal_dask.cli.render"):
        with pytest.raises(UserWarning, match="from inside"):
            warnings.warn_explicit("from inside", UserWarning, "x.py", 1, module=module)
    with warnings.catch_warnings(record=True) as seen:  # (the suite's filters stay: errors would raise)
        for k, module in enumerate(("numpy.core", "dfractal_daskish", "test_something")):
            warnings.warn_explicit(f"from outside {k}", UserWarning, "x.py", k + 1, module=module)
    assert {str(w.message) for w in seen} == {"from outside 0", "from outside 1", "from outside 2"}


# -- markers ---------------------------------------------------------------------
def test_the_markers_are_registered():
    markers = {m.split(":")[0] for m in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}
    assert markers == {"slow", "cluster", "browser"}
    assert PYPROJECT["tool"]["pytest"]["ini_options"]["strict_markers"] is True


def test_an_unknown_marker_fails_under_strict_markers(tmp_path):
    (tmp_path / "test_marked.py").write_text(
        "import pytest\n\n@pytest.mark.slow\ndef test_known():\n    pass\n\n"
        "@pytest.mark.nonesuch\ndef test_unknown():\n    pass\n"
    )
    done = _pytest("--rootdir", str(tmp_path), str(tmp_path / "test_marked.py"), cwd=tmp_path)
    assert done.returncode != 0
    assert "'nonesuch' not found in `markers` configuration option" in done.stdout + done.stderr


@pytest.mark.slow
def test_a_quick_selection_collects_fewer_tests_and_no_browser_one():
    """``-m "not slow and not browser"`` deselects some tests, keeps most,
    and none of the browser modules' remain."""
    done = _pytest("--collect-only", "-q", "-m", "not slow and not browser")
    assert done.returncode == 0, done.stdout + done.stderr
    counts = re.search(r"(\d+)/(\d+) tests collected \((\d+) deselected\)", done.stdout)
    assert counts, done.stdout[-2000:]
    kept, total, deselected = map(int, counts.groups())
    assert 0 < kept < total and deselected == total - kept
    ids = [line for line in done.stdout.splitlines() if "::" in line]
    assert len(ids) == kept
    assert not [i for i in ids if i.startswith(("tests/test_browser.py", "tests/test_adversarial_html.py"))]
    assert any(i.startswith("tests/test_palettes.py") for i in ids)
