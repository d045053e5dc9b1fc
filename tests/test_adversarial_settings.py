"""Hostile settings and arguments: every ``dfractal.*`` dask setting and every
flag-like parameter is checked before anything is touched (issue 28).

Random values (strings, lists, huge, negative, NaN, bools) reach every
setting and the parameters of the public functions that write: each is
accepted as what it says, or refused with one line (a ``ValueError`` /
``TypeError`` naming the setting or parameter) before a cluster starts or a
store is touched.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import dask
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dfractal_dask
from dfractal_dask import View
from dfractal_dask import settings as dfractal_settings
from dfractal_dask.settings import SETTINGS, SettingError

BIN = Path(sys.executable).parent

#: Values no setting should be taken as something else from.
HOSTILE = st.one_of(
    st.text(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.booleans(),
    st.none(),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["abc", "1e400", "[1,2]", "-5", "0", "NaN", "threads ", "null", "True"]),
)


def _digest(folder: Path) -> dict[str, str]:
    # every file of a folder and its bytes' hash: "untouched" is this unchanged
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


@pytest.mark.parametrize("key", sorted(SETTINGS))
@settings(max_examples=60, deadline=None)
@given(value=HOSTILE)
def test_every_setting_takes_what_it_says_or_names_itself(key, value):
    setting = SETTINGS[key]
    with dask.config.set({f"dfractal.{key}": value}):
        try:
            got = dfractal_settings.get(key)
            dfractal_settings.check()
        except SettingError as exc:
            text = str(exc)
            assert f"dfractal.{key}" in text and "\n" not in text and "must be" in text, text
            return
    # accepted: exactly the value, of the setting's kind and in its range
    if value is None:
        assert setting.nullable and got is None
        return
    assert not isinstance(value, bool)
    if setting.kind is str:
        assert got == value and value in setting.choices
        return
    assert isinstance(value, int | float) and math.isfinite(value) and got == value
    assert isinstance(got, setting.kind)
    assert setting.minimum <= got <= setting.maximum and not (setting.above and got == setting.minimum)
    if setting.kind is int:
        assert isinstance(value, int)


def test_the_settings_are_the_yamls_and_their_defaults_are_accepted():
    """Every key of dfractal.yaml is a setting of the schema and the other way
    round; the defaults pass; a key that is no setting (a typo) is named."""
    dfractal_settings.check()
    from dfractal_dask.settings import _leaves

    assert {k for k, _ in _leaves(dask.config.get("dfractal"))} == set(SETTINGS)
    with dask.config.set({"dfractal.stall-second": 5}), pytest.raises(SettingError, match="stall-second is no setting"):
        dfractal_settings.check()


@pytest.fixture(scope="module")
def complete_store(tmp_path_factory):
    """A small finished render store, made once."""
    path = tmp_path_factory.mktemp("keep") / "keep_me.zarr"
    argv = ["render", "--width", "24", "--height", "18", "--iters", "40", "--smoothness", "1", "--chunk-rows", "4",
            "--store", path, "--outfile", path.with_suffix(".png"), "-q"]  # fmt: skip
    done = subprocess.run([BIN / "dfractal", *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return path


# the cases: each with `render --overwrite` on a complete store, which STALL_SECONDS=abc wiped
BAD_ENV = [
    ("DASK_DFRACTAL__STALL_SECONDS", "abc", "stall-seconds"),
    ("DASK_DFRACTAL__STALL_SECONDS", "0", "stall-seconds"),
    ("DASK_DFRACTAL__STALL_SECONDS", "-5", "stall-seconds"),
    ("DASK_DFRACTAL__STALL_SECONDS", "1e400", "stall-seconds"),
    ("DASK_DFRACTAL__STALL_SECONDS", "[1,2]", "stall-seconds"),
    ("DASK_DFRACTAL__MIN_STALL_SECONDS", "[1]", "min-stall-seconds"),
    ("DASK_DFRACTAL__LEASE_SECONDS", "-5", "lease-seconds"),
    ("DASK_DFRACTAL__LEASE_SECONDS", "0", "lease-seconds"),
    ("DASK_DFRACTAL__LEASE_SECONDS", "[1]", "lease-seconds"),
    ("DASK_DFRACTAL__BLOCK_SAMPLES", "[1]", "block-samples"),
    ("DASK_DFRACTAL__BLOCK_SAMPLES", "0", "block-samples"),
    ("DASK_DFRACTAL__BLOCK_SAMPLES", "-1", "block-samples"),
    ("DASK_DFRACTAL__BLOCK_SAMPLES", "1.5", "block-samples"),
    ("DASK_DFRACTAL__CLUSTER", "fibers", "cluster"),
    ("DASK_DFRACTAL__EXPLORER__COARSE", "0", "explorer.coarse"),
    ("DASK_DFRACTAL__EXPLORER__CACHE_BYTES", "-1", "explorer.cache-bytes"),
    ("DASK_DFRACTAL__STALL_SECOND", "5", "stall-second"),
]


def test_a_bad_setting_is_one_line_and_exit_2_before_the_store_is_touched(complete_store, tmp_path, monkeypatch,
                                                                           capsys):  # fmt: skip
    """Each case through the CLI's main() in this process, its environment
    variable read by dask as at start (dask.config.refresh); two of them in
    real processes as well."""
    from dfractal_dask.cli import main

    before = _digest(complete_store)
    render = ["render", "--width", "24", "--height", "18", "--iters", "40", "--smoothness", "1", "--chunk-rows", "4",
              "--store", str(complete_store), "--overwrite", "--outfile", str(tmp_path / "o.png")]  # fmt: skip
    zoom = ["zoom", "--to-span", "0.1", "--frames", "2", "--store", str(tmp_path / "z.zarr"),
            "--outfile", str(tmp_path / "z.gif")]  # fmt: skip
    try:
        for var, value, key in BAD_ENV:
            monkeypatch.setenv(var, value)
            dask.config.refresh()
            for argv in (render, ["info", str(complete_store)], zoom):
                assert main(argv) == 2, (var, value, argv[0])
                err = capsys.readouterr().err
                assert err.count("\n") == 1 and f"dfractal.{key}" in err and var in err, err
                assert not (tmp_path / "o.png").exists() and not (tmp_path / "z.zarr").exists()
            monkeypatch.delenv(var)
    finally:
        dask.config.refresh()
    for var, value, key in BAD_ENV[:1] + BAD_ENV[6:7]:
        run = subprocess.run([BIN / "dfractal", *render], capture_output=True, text=True, timeout=120,
                             env={**os.environ, var: value}, stdin=subprocess.DEVNULL)  # fmt: skip
        assert run.returncode == 2, (var, value, run.stderr)
        assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
        assert f"dfractal.{key}" in run.stderr and var in run.stderr, run.stderr
    assert _digest(complete_store) == before


class _Reached(Exception):
    """The call got past its checks to where a cluster would start."""


def _no_cluster(*args, **kwargs):
    raise _Reached


# every parameter of the writing entry points, and a valid value for each
RENDER_ARGS = {"iters": 40, "chunk_rows": None, "overwrite": False, "resume": False, "retries": 0,
               "balance": True, "distance": False, "perturbation": None, "exact": False, "pyramid": False,
               "client": None, "security": None, "stats": None, "progress": None}  # fmt: skip
ZOOM_ARGS = {"iters": 40, "frames": 2, "chunk_rows": None, "overwrite": False, "resume": False, "retries": 0,
             "perturbation": None, "exact": False, "client": None, "security": None, "progress": None}  # fmt: skip


@pytest.mark.parametrize(("function", "param"), [*(("render", p) for p in RENDER_ARGS),
                                                 *(("zoom", p) for p in ZOOM_ARGS)])  # fmt: skip
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
def test_a_public_functions_parameters_are_checked_before_the_store(function, param, value, complete_store,
                                                                      tmp_path, monkeypatch):  # fmt: skip
    """``render``/``zoom`` with one parameter hostile: a ``TypeError``/``ValueError``
    naming it, or accepted (then stopped where the cluster would start); the
    complete store beside it untouched either way, and no new store made."""
    import dfractal_dask.pipeline as pipeline

    monkeypatch.setattr(pipeline, "connect", _no_cluster)
    monkeypatch.chdir(tmp_path)
    before = _digest(complete_store)
    args = dict(RENDER_ARGS if function == "render" else ZOOM_ARGS)
    args[param] = value
    target = complete_store if args.get("overwrite") is not True else tmp_path / "new.zarr"
    view = View(width=16, height=12, supersample=1)
    call = getattr(dfractal_dask, function)
    extra = {"to_span": 0.5} if function == "zoom" else {}
    try:
        call(view, store_path=str(target), **args, **extra)
    except _Reached:
        pass
    except (TypeError, ValueError) as exc:
        text = str(exc)
        assert "\n" not in text, text
        # the parameter named (a store refused as existing names the flag that would replace it)
        assert param in text or "overwrite" in text or "resume" in text, (param, value, text)
    assert _digest(complete_store) == before
    assert not (tmp_path / "new.zarr").exists()


def test_workers_not_in_the_cluster_and_huge_retries_are_refused_before_the_store(client, tmp_path):
    """A worker address the cluster does not have would never run a block (the
    render waited for its stall limit and left an empty store); a huge
    ``retries`` killed the scheduler's workers (a 64-bit overflow)."""
    view = View(width=16, height=12, supersample=1)
    with pytest.raises(ValueError, match=r"workers tcp://1\.2\.3\.4:1 are not in the cluster"):
        dfractal_dask.render(view, 20, client=client, store_path=tmp_path / "w.zarr", workers=["tcp://1.2.3.4:1"])
    for retries in (2**70, 101):
        with pytest.raises(ValueError, match="retries must be from 0 to 100"):
            dfractal_dask.render(view, 20, client=client, store_path=tmp_path / "w.zarr", retries=retries)
    assert not (tmp_path / "w.zarr").exists()
    worker = next(iter(client.scheduler_info()["workers"]))
    ds = dfractal_dask.render(view, 20, client=client, store_path=tmp_path / "w.zarr", workers=[worker], retries=100)
    assert int(ds.block_done.sum()) == ds.block_done.size


# every other public function: a valid call, each parameter then made hostile in turn
# (the store's path is given to the readers; their results are not written anywhere)
def _calls(store: Path, out: Path) -> dict[str, tuple]:
    import numpy as np

    rgba = np.zeros((4, 4, 4), np.uint8)
    iters = np.ones((4, 4), np.uint32)
    norm = np.ones((4, 4), np.float32)
    return {
        "View": (
            dfractal_dask.View,
            {"xpos": -0.5, "ypos": 0.0, "span": 3.0, "width": 8, "height": 6, "supersample": 1},
        ),
        "Fractal": (dfractal_dask.Fractal, {"family": "mandelbrot", "power": 2, "c": None}),
        "zoom_views": (
            dfractal_dask.zoom_views,
            {"view": View(width=8, height=6, supersample=1), "frames": 3, "to_span": 0.01},
        ),
        "open_render": (
            dfractal_dask.open_render,
            {"path": store, "allow_incomplete": False, "storage_options": None},
        ),
        "colorize": (
            lambda **kw: dfractal_dask.colorize(dfractal_dask.open_render(store), **kw),
            {"palette": "Hippi", "step": 60, "mode": "seed", "interior": "#000000", "supersample": None},
        ),
        "seed_lut": (dfractal_dask.seed_lut, {"name": "Hippi", "step": 60}),
        "seed_colors": (
            dfractal_dask.seed_colors,
            {"iterations": iters, "norm": norm, "iters": 40, "lut": dfractal_dask.seed_lut("Hippi", 60)},
        ),
        "save_png": (dfractal_dask.save_png, {"rgba": rgba, "path": out / "p.png"}),
        "pyramid_levels": (dfractal_dask.pyramid_levels, {"path": store, "storage_options": None}),
        "save_animation": (
            dfractal_dask.save_animation,
            {"frames": [rgba, rgba], "path": out / "a.gif", "fps": 12.0},
        ),
        "fractal_dataset": (
            dfractal_dask.fractal_dataset,
            {
                "view": View(width=8, height=6, supersample=1),
                "iters": 40,
                "chunk_rows": None,
                "fractal": None,
                "distance": False,
                "perturbation": None,
                "exact": False,
            },
        ),
    }


_CALLS = [(name, param) for name, (_, args) in _calls(Path("."), Path(".")).items() for param in args]


@pytest.mark.parametrize(("name", "param"), _CALLS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=HOSTILE)
def test_every_public_functions_parameters_are_checked(name, param, value, complete_store, tmp_path_factory):
    """Each public function with one parameter hostile: it works, or raises a
    one-line ``TypeError``/``ValueError`` (never another exception); the store
    it reads is never changed."""
    out = tmp_path_factory.mktemp("out")
    before = _digest(complete_store)
    function, args = _calls(complete_store, out)[name]
    args[param] = value
    cwd = os.getcwd()
    os.chdir(out)  # (a hostile path is a file name written here)
    try:
        function(**args)
    except (TypeError, ValueError) as exc:
        assert "\n" not in str(exc).strip(), (name, param, value, str(exc))
    finally:
        os.chdir(cwd)
    assert _digest(complete_store) == before
