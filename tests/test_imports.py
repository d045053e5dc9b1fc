"""The package's modules import in a fresh interpreter, and the imports between
them (at module level or inside functions) form no circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import dfractal_dask

PACKAGE = Path(dfractal_dask.__file__).resolve().parent


def modules(root: Path, name: str) -> dict[str, Path]:
    """Every module of the package at ``root``, by dotted name (a package is its ``__init__``)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def internal_imports(root: Path, name: str) -> dict[str, set[str]]:
    """Module → the package's modules it imports, from every import statement in it."""
    mods = modules(root, name)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{base}.{node.module}" if node.module else base
                else:
                    base = node.module or ""
                # `from . import x`: x is a module of the package or a name in its __init__
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            graph[mod].update(t for t in targets if t in mods and t != mod)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                return [*path[path.index(n) :], n]
            if n not in state and (found := visit(n)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_circle_in_the_package():
    graph = internal_imports(PACKAGE, "dfractal_dask")
    assert find_cycle(graph) is None
    # the split of the metrics: graph and the protocol import no diagnostics
    assert graph["dfractal_dask.graph"] >= {"dfractal_dask.protocol"}
    assert not any(m.startswith("dfractal_dask.diagnostics") for m in graph["dfractal_dask.graph"])
    assert graph["dfractal_dask.protocol"] == set()


def test_the_circle_check_finds_a_circle(tmp_path):
    """A package like ours whose modules import each other in a ring,
    relatively, absolutely and inside a function: the check names the ring."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .a import x\n")
    (pkg / "a.py").write_text("from .sub.b import y\nx = 1\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import z\n\ny = 2\n")
    (pkg / "c.py").write_text("import pkg.d\nz = 3\n")
    (pkg / "d.py").write_text("from . import a\n")
    graph = internal_imports(pkg, "pkg")
    assert graph["pkg.d"] == {"pkg.a"} and graph["pkg.sub.b"] == {"pkg.c"}
    assert find_cycle(graph) == ["pkg.a", "pkg.sub.b", "pkg.c", "pkg.d", "pkg.a"]
    (pkg / "d.py").write_text("from .sub import b\n")  # a shorter ring: b → c → d → b
    assert find_cycle(internal_imports(pkg, "pkg")) == ["pkg.sub.b", "pkg.c", "pkg.d", "pkg.sub.b"]
    (pkg / "d.py").write_text("")
    assert find_cycle(internal_imports(pkg, "pkg")) is None


def test_every_module_imports_in_a_fresh_interpreter():
    names = sorted(modules(PACKAGE, "dfractal_dask"))
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint('ok')"
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "ok\n", done.stderr
    assert "dfractal_dask.diagnostics.routes" in names and "dfractal_dask.metrics" in names


@pytest.mark.parametrize("first", ["dfractal_dask.metrics", "dfractal_dask.diagnostics.report", "dfractal_dask.graph"])
def test_each_entry_point_imports_first(first):
    """Imported first, in a fresh interpreter, a module finds the others it needs
    (an import circle shows as a partly initialised module here)."""
    done = subprocess.run([sys.executable, "-c", f"import {first}"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def test_the_protocol_loads_without_distributed_or_tornado():
    """Workers' and clients' shared module stands alone: loaded from its file,
    it brings in no dask, distributed, tornado or bokeh."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('protocol', {str(PACKAGE / 'protocol.py')!r})\n"
        "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'dask', 'distributed', 'tornado', 'bokeh'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "[]\n"


@pytest.mark.parametrize("before", ["enabled", "disabled"])
def test_the_package_imports_with_the_collector_off_and_leaves_it_as_it_found_it(before):
    # dfractal_dask/__init__.py turns collection off for its imports (their full passes
    # over a million objects), and back on only if it was on
    code = (
        "import gc\n"
        + ("gc.disable()\n" if before == "disabled" else "")
        + "import dfractal_dask\n"
        + "print(gc.isenabled(), gc.get_stats()[2]['collections'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    enabled, full_passes = out.stdout.split()
    assert enabled == ("True" if before == "enabled" else "False")
    assert int(full_passes) <= 1  # (one may come from the interpreter's own start-up imports)


def private_crossings(root: Path, name: str) -> list[str]:
    """``module: name`` for each private name (``_x``) of another module of the
    package that a module imports or reaches for as ``module._x``."""
    mods = modules(root, name)
    found = []
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        aliases: set[str] = set()  # names bound to the package's modules here
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                base = node.module or ""
                if node.level:
                    up = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                    base = f"{up}.{node.module}" if node.module else up
                for a in node.names:
                    if f"{base}.{a.name}" in mods:
                        aliases.add(a.asname or a.name)
                    elif base in mods and a.name.startswith("_") and not a.name.startswith("__"):
                        found.append(f"{mod}: from {base} import {a.name}")
            elif isinstance(node, ast.Import):
                aliases.update((a.asname or a.name).split(".")[0] for a in node.names if a.name in mods)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):  # fmt: skip
                found.append(f"{mod}: {node.value.id}.{node.attr}")
    return found


def test_no_module_uses_another_modules_private_names():
    # (issue 27: the store's layout and records are reached through public names only)
    assert private_crossings(PACKAGE, "dfractal_dask") == []


def test_the_private_name_check_can_fail(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("_hidden = 1\n")
    (pkg / "b.py").write_text("from .a import _hidden\nfrom . import a\nx = a._hidden\n")
    assert private_crossings(pkg, "pkg") == ["pkg.b: from pkg.a import _hidden", "pkg.b: a._hidden"]
