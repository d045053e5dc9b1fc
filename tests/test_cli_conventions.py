"""Command-line conventions: ``python -m dfractal_dask``, ``--version``, bare
``dfractal``, ``--span`` everywhere, choices in the help, dask's own
configuration (``DASK_SCHEDULER_ADDRESS``, the ``dfractal`` YAML defaults),
``--outfile`` formats, dates in ``info``, and which errors are bad input."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import dask
import numpy as np
import pytest
import yaml
from PIL import Image

import dfractal_dask.cli.render as render_command
from dfractal_dask import __version__, open_render
from dfractal_dask.cli import build_parser, main
from dfractal_dask.cli.errors import flag_terms
from dfractal_dask.config import DEFAULTS_PATH
from dfractal_dask.store import check_writable

SMALL = ["--width", "40", "--height", "30", "--smoothness", "2", "--iters", "200"]
ROOT = Path(__file__).resolve().parents[1]


def _python_m(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dfractal_dask", *argv], capture_output=True, text=True,
                          timeout=300, env=env)  # fmt: skip


def _one_line(err: str, words: str) -> None:
    assert err.count("\n") == 1 and err.startswith("dfractal: error: ") and words in err, err
    assert "Traceback" not in err


def test_python_m_and_version():
    done = _python_m("--version")
    assert done.returncode == 0 and done.stdout == f"dfractal {__version__}\n"
    assert _python_m("version").stdout == f"dfractal {__version__}\n"


def test_bare_dfractal_prints_the_usage_and_the_commands_exit_2():
    done = _python_m()
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: dfractal [-h] [--version] COMMAND ...")
    for command in ("render", "zoom", "recolor", "explore", "bench", "info", "palettes", "version"):
        assert re.search(rf"^    {command} +\S", done.stderr, re.M), command
    assert "with no command, dfractal prints this and exits 2" in " ".join(done.stderr.split())


@pytest.mark.parametrize("command", [["render"], ["zoom", "--to-span", "1e-3"], ["explore"], ["bench"]])
@pytest.mark.parametrize("flag", ["--span", "--escape-radius"])
def test_span_and_its_seed_alias_on_every_view_command(command, flag):
    args = build_parser().parse_args([*command, flag, "0.5"])
    assert args.span == 0.5


@pytest.mark.cluster
def test_span_reaches_the_render(tmp_path):
    assert main(["render", "-q", *SMALL, "--span", "0.25", "--outfile", str(tmp_path / "s.png")]) == 0
    assert open_render(tmp_path / "s.zarr").attrs["span"] == 0.25


HELP_CHOICES = [
    (["render"], ["seed, smooth, histogram, distance", "mandelbrot, julia, burning-ship, multibrot",
                  "Hippi, Plan9, Vivid", ".png, .jpg, .jpeg, .webp, .tif, .tiff", "threads, processes"]),
    (["recolor"], ["seed, smooth, histogram, distance", "Hippi, Plan9, Vivid", ".jpg"]),
    (["zoom"], ["{seed,smooth,histogram}", "burning-ship", ".gif or .png", "threads, processes"]),
    (["explore"], ["{seed,smooth,histogram,distance}", "burning-ship", "Hippi, Plan9", "threads, processes"]),
    (["bench"], ["{store,gather}"]),
]  # fmt: skip


@pytest.mark.parametrize(("command", "choices"), HELP_CHOICES, ids=[c[0][0] for c in HELP_CHOICES])
def test_help_lists_the_choices(command, choices, capsys):
    assert main([*command, "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in choices:
        assert words in text, words


def test_a_type_error_is_a_bug_with_its_traceback(monkeypatch, capsys):
    def broken(args):
        raise TypeError("unsupported operand type(s) for +: 'int' and 'str'")

    monkeypatch.setattr(render_command, "run", broken)
    with pytest.raises(TypeError, match="unsupported operand"):
        main(["render"])
    assert capsys.readouterr().err == ""


def test_a_value_error_is_bad_input_in_flag_terms(monkeypatch, capsys):
    def refuses(args):
        raise ValueError("resume=True needs a store_path (pass overwrite=True, retries=3, chunk_rows, iters)")

    monkeypatch.setattr(render_command, "run", refuses)
    assert main(["render"]) == 2
    printed = "--resume needs a --store (pass --overwrite, --retries 3, --chunk-rows, --iters)"
    _one_line(capsys.readouterr().err, printed)


FLAG_TERMS = [
    ("pass overwrite=True to replace it", "pass --overwrite to replace it"),
    ("or resume=True", "or --resume"),
    ("retries=-1 is negative", "--retries -1 is negative"),
    ("store_path is required", "--store is required"),
    ("bad storage_options", "bad --storage-option"),
    ("render(..., distance=True)", "`dfractal render --mode distance`"),
    ("chunk_rows must be > 0", "--chunk-rows must be > 0"),
    ("iters must be >= 1", "--iters must be >= 1"),
    # whole words only, and what is a flag already stays one
    ("--iters 5, 1000 iterations, presume=True, my_store_paths, overwrite=Truely", None),
]


@pytest.mark.parametrize(("library", "printed"), FLAG_TERMS)
def test_flag_terms(library, printed):
    assert flag_terms(library) == (library if printed is None else printed)


@pytest.mark.cluster
def test_an_existing_store_is_named_in_flag_terms_on_the_command_line(tmp_path, capsys):
    """The library says ``overwrite=True``; the command line says ``--overwrite``."""
    store = tmp_path / "x.zarr"
    assert main(["render", "-q", *SMALL, "--outfile", str(tmp_path / "x.png")]) == 0
    with pytest.raises(ValueError, match=r"already exists \(pass overwrite=True to replace it\)"):
        check_writable(store, overwrite=False)
    assert main(["render", *SMALL, "--outfile", str(tmp_path / "x.png")]) == 2
    _one_line(capsys.readouterr().err, f"store {store} already exists (pass --overwrite to replace it)")


# -- dask's configuration ----------------------------------------------------------
def test_the_dfractal_yaml_is_dask_configs_default():
    shipped = yaml.safe_load(DEFAULTS_PATH.read_text())["dfractal"]
    assert dask.config.get("dfractal") == shipped
    assert set(shipped) >= {"block-samples", "stall-seconds", "min-stall-seconds", "lease-seconds", "explorer",
                            "cluster"}  # fmt: skip


def test_the_config_tunes_the_library():
    from dfractal_dask import View
    from dfractal_dask.cluster import stall_seconds
    from dfractal_dask.graph import default_chunk_rows
    from dfractal_dask.store.lease import _seconds

    view = View(width=1024, height=768, supersample=1)
    with dask.config.set({"dfractal.block-samples": 1024 * 8}):
        assert default_chunk_rows(view) == 8
    assert default_chunk_rows(view) == 96  # 768 / 8: at least 8 blocks
    with dask.config.set({"dfractal.min-stall-seconds": 7.0}):
        assert stall_seconds() == 7.0
    with dask.config.set({"dfractal.lease-seconds": 3.0}):
        assert _seconds() == 3.0


@pytest.mark.slow
def test_dask_config_scheduler_address_selects_the_cluster(client, tmp_path, capsys):
    address = client.scheduler.address
    out = str(tmp_path / "c.png")
    with dask.config.set({"scheduler-address": address}):
        assert main(["render", *SMALL, "--outfile", out]) == 0
    assert f"dashboard: {client.dashboard_link}" in capsys.readouterr().err
    # the flag wins over the config
    with dask.config.set({"scheduler-address": "tcp://127.0.0.1:1"}):
        assert main(["render", *SMALL, "--outfile", out, "--overwrite", "--scheduler", address]) == 0
        capsys.readouterr()
        assert main(["recolor", str(tmp_path / "c.zarr"), "--outfile", str(tmp_path / "r.png")]) == 2
        _one_line(capsys.readouterr().err, "cannot reach dask scheduler")


def test_dask_scheduler_address_environment_variable(client, tmp_path):
    done = _python_m("render", *SMALL, "--outfile", str(tmp_path / "e.png"),
                     env={"DASK_SCHEDULER_ADDRESS": client.scheduler.address})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"dashboard: {client.dashboard_link}" in done.stderr
    assert f"on {len(client.scheduler_info()['workers'])} workers" in done.stderr


# -- --outfile formats ----------------------------------------------------------------
@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    d = tmp_path_factory.mktemp("formats")
    assert main(["render", "-q", *SMALL, "--mode", "smooth", "--outfile", str(d / "m.png")]) == 0
    with Image.open(d / "m.png") as im:
        return d, np.asarray(im)


# (libwebp leaves out an alpha channel that is opaque everywhere, as a picture's is)
FORMATS = [(".jpg", "JPEG", "RGB"), (".jpeg", "JPEG", "RGB"), (".webp", "WEBP", "RGB"), (".tif", "TIFF", "RGBA"),
           (".TIFF", "TIFF", "RGBA")]  # fmt: skip


@pytest.mark.parametrize(("suffix", "fmt", "mode"), FORMATS, ids=[f[0] for f in FORMATS])
def test_recolor_writes_the_format_its_outfile_names(suffix, fmt, mode, rendered):
    d, png = rendered
    out = d / f"r{suffix}"
    assert main(["recolor", "-q", str(d / "m.zarr"), "--mode", "smooth", "--outfile", str(out)]) == 0
    with Image.open(out) as im:
        assert (im.format, im.mode, im.size) == (fmt, mode, (40, 30))
        pixels = np.asarray(im.convert("RGBA")).astype(int)
    lossy = 24 if fmt == "JPEG" else 8  # JPEG and WebP (lossy by default) change pixels a little
    assert np.abs(pixels - png).mean() < lossy and (fmt == "JPEG" or np.array_equal(pixels[..., 3], png[..., 3]))
    assert not list(d.glob("*.part"))


@pytest.mark.cluster
def test_render_writes_a_jpeg(tmp_path):
    out = tmp_path / "m.jpg"
    assert main(["render", "-q", *SMALL, "--outfile", str(out)]) == 0
    with Image.open(out) as im:
        assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (40, 30))
    assert (tmp_path / "m.zarr").is_dir()


@pytest.mark.parametrize("command", ["render", "recolor"])
def test_an_unknown_outfile_ending_is_refused_before_any_work(command, rendered, tmp_path, capsys):
    d, _ = rendered
    argv = ["render", *SMALL] if command == "render" else ["recolor", str(d / "m.zarr")]
    assert main([*argv, "--outfile", str(tmp_path / "m.bmp")]) == 2
    _one_line(capsys.readouterr().err, f"--outfile {tmp_path / 'm.bmp'}: unknown picture format '.bmp' (endings: .png")
    assert list(tmp_path.iterdir()) == []  # no store, no picture


# -- info -----------------------------------------------------------------------------
def test_info_prints_dates_not_epochs(rendered, capsys):
    d, _ = rendered
    assert main(["info", str(d / "m.zarr")]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((d / "m.zarr" / "zarr.json").read_text())["attributes"]["metrics"]
    line = next(line for line in out.splitlines() if line.startswith("rendered: "))
    start, end = re.fullmatch(r"rendered: (\S+) to (\S+) \(\d+\.\d s\)", line).groups()
    for text, epoch in ((start, metrics["started"]), (end, metrics["ended"])):
        date = datetime.fromisoformat(text)
        assert date.utcoffset() is not None and abs(date.timestamp() - epoch) < 1e-3
    worker_times = re.findall(r"^METRICS WORKER .* (?:start|stop): (\S+)$", out, re.M)
    assert len(worker_times) == 2 * len(metrics["workers"])
    assert all(datetime.fromisoformat(t).utcoffset() is not None for t in worker_times)
    assert not re.search(r"\b1\d{9}\.\d", out)  # no epoch seconds left


def test_the_console_script_exits_with_main_s_code_and_freezes_the_collector(tmp_path):
    # run(): main's exit code, then gc.freeze() so the interpreter's final collection skips every object
    import subprocess
    import sys

    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 10000, file=sys.stderr))\n"
        "from dfractal_dask.cli import run\n"
        "sys.argv = ['dfractal'] + sys.argv[1:]\n"
        "run()\n"
    )
    ok = subprocess.run([sys.executable, "-c", probe, "palettes"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "frozen True" in ok.stderr
    bad = subprocess.run([sys.executable, "-c", probe, "render", "--iters", "0"], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)  # fmt: skip
    assert bad.returncode == 2 and "--iters" in bad.stderr and "Traceback" not in bad.stderr
