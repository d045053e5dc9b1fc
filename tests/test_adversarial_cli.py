"""Issue 28, the command line under pressure: a Ctrl-C at any moment (while
the commands are imported, during a render, while the interpreter exits) is
``dfractal: interrupted`` and exit code 130, never a traceback; and every
line the CLI prints speaks in flags and commands, never in the library's
Python parameters (``resume=True``, ``to_span``, ``build_pyramid``,
``burning_ship``), a negative number reaching its flag's own check.

The CLI runs as users run it: the console script, or ``python -m
dfractal_dask``, in a process of its own."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import zarr
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from dfractal_dask import pyramid as pyr
from dfractal_dask.cli import main
from dfractal_dask.cli.app import build_parser, join_negative_values
from dfractal_dask.cli.errors import flag_terms

#: The console script beside this interpreter (a virtualenv's, pyenv's), else the one on PATH.
SCRIPT = next((str(p) for p in [Path(sys.executable).with_name("dfractal")] if p.exists()), None) or shutil.which(
    "dfractal"
)
#: The two ways the CLI starts.
ENTRIES = {"script": [SCRIPT], "module": [sys.executable, "-m", "dfractal_dask"]}
#: A cheap render (2.5-4 s here, most of it the imports and the embedded cluster).
SMALL = ["render", "--width", "8", "--height", "6", "--iters", "10"]

#: What the library says and the command line must not: a keyword argument
#: (``resume=True``, ``store_path=``), a call (``render(...,``), or one of its names.
PYTHONISM = re.compile(
    r"\b[a-z]+_[a-z_]+=|=(?:True|False|None)\b|\b[a-z_]+\(\.\.\.|"
    r"\b(?:to_span|burning_ship|build_pyramid|open_render|open_zoom|open_level|read_window|store_path|"
    r"storage_options|chunk_rows|julia_c|julia_re|julia_im|centre_re|centre_im|n_blocks|n_workers|"
    r"allow_incomplete|write_deep_zoom|write_dzi|color_picture|save_png|supersample)\b"
)


def _pythonisms(text: str) -> list[str]:
    # the lines of ``text`` that name a Python parameter (METRICS lines are
    # the seed's format: key=value pairs by design)
    return [line for line in text.splitlines() if PYTHONISM.search(line) and not line.startswith("METRICS")]


def _cli(*args: str, cwd: Path, entry: str = "script", timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ENTRIES[entry], *args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


def _bad(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a refused command line (exit 2), its message after ``dfractal: error: ``."""
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("dfractal: error: "), done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr.removeprefix("dfractal: error: ").rstrip("\n")


# -- Ctrl-C ---------------------------------------------------------------------------------
class _Reader(threading.Thread):
    """Collects a pipe's bytes as they come (a progress bar's updates end in no newline)."""

    def __init__(self, pipe) -> None:
        super().__init__(daemon=True)
        self.pipe, self.data = pipe, b""
        self.start()

    def run(self) -> None:
        for chunk in iter(lambda: os.read(self.pipe.fileno(), 4096), b""):
            self.data += chunk

    def wait_for(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while text.encode() not in self.data:
            if time.monotonic() > end or not self.is_alive():
                return text.encode() in self.data
            time.sleep(0.02)
        return True


def _interrupt(cmd: list[str], cwd: Path, *, delay: float = 0.0, after: str | None = None) -> tuple[bool, int, str]:
    """Start ``cmd``, send SIGINT ``delay`` seconds later (or once its stderr
    says ``after``); whether it was still running then, its exit code and stderr."""
    p = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = _Reader(p.stderr)
    try:
        if after is not None:
            assert err.wait_for(after, 240), err.data.decode(errors="replace")[-2000:]
        time.sleep(delay)
        running = p.poll() is None
        if running:
            p.send_signal(signal.SIGINT)
        code = p.wait(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err.join(10)
    return running, code, err.data.decode(errors="replace")


def _check_interrupted(running: bool, code: int, err: str) -> None:
    assert "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    if running:  # signalled: said so, exit 130, whenever it came
        assert code == 130, (code, err[-3000:])
        assert err.splitlines()[-1] == "dfractal: interrupted", err[-3000:]
        assert err.count("dfractal: interrupted") == 1
    else:  # (finished first: a plain exit)
        assert code == 0, (code, err[-3000:])


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("entry", ["script", "module"])
@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0, 1.5])
def test_a_ctrl_c_during_start_up_is_one_line_and_130(entry, delay, tmp_path):
    """Sent while the package and the commands are imported (they take 1.5-2 s
    here): it was a KeyboardInterrupt traceback from the console script's own
    import of ``dfractal_dask``, outside any ``try``."""
    running, code, err = _interrupt([*ENTRIES[entry], *SMALL], tmp_path, delay=delay)
    assert running  # (the imports alone outlast 1.5 s here; a render, more)
    _check_interrupted(running, code, err)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.parametrize("delay", [0.0, 0.3])
def test_a_ctrl_c_during_the_render_is_one_line_and_130(delay, tmp_path):
    running, code, err = _interrupt([*ENTRIES["script"], *SMALL], tmp_path, delay=delay, after="rendering ")
    _check_interrupted(running, code, err)
    if running:
        assert "rendering mandelbrot" in err


_PROBE = """
import atexit, sys, time
from dfractal_dask.cli import app, entry

def fake_main():
    {body}

app.main = fake_main
sys.argv = ["dfractal"]
entry.run()
"""


@pytest.mark.slow
def test_a_ctrl_c_that_python_drops_is_sent_again(tmp_path):
    """A KeyboardInterrupt raised in a garbage collector's callback or a
    ``__del__`` (distributed's GCDiagnosis callback: seen here about once in
    thirty Ctrl-Cs during a render) is printed with a traceback and dropped by
    Python, and the command went on to exit 0: run() sends it again."""
    body = (
        "class Dropped:\n"
        "        def __del__(self):\n"
        "            raise KeyboardInterrupt  # as a Ctrl-C landing here would\n"
        "    Dropped()\n"
        "    time.sleep(20)\n"
        "    print('not interrupted')\n"
        "    return 0"
    )
    t0 = time.monotonic()
    done = subprocess.run([sys.executable, "-c", _PROBE.format(body=body)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert time.monotonic() - t0 < 15  # (not after the sleep)
    assert done.returncode == 130, done.stderr
    assert done.stderr == "dfractal: interrupted\n" and done.stdout == ""


@pytest.mark.slow
def test_a_ctrl_c_while_the_interpreter_exits_ends_the_exit(tmp_path):
    """After the command, during the exit's handlers (here one that takes 30 s):
    the exit ends at once, saying so, with 130; no traceback from the handler."""
    body = "atexit.register(time.sleep, 30)\n    print('done', flush=True)\n    return 0"
    p = subprocess.Popen([sys.executable, "-c", _PROBE.format(body=body)], cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert p.stdout.readline() == "done\n"
        time.sleep(0.5)  # (in the handler's sleep)
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
    assert time.monotonic() - t0 < 10
    assert p.returncode == 130 and err == "dfractal: interrupted\n" and out == ""


def test_the_package_and_the_cli_import_nothing_heavy():
    """``import dfractal_dask`` and the console script's ``dfractal_dask.cli``
    bring in no numba, xarray, dask or distributed, freeze nothing of the
    caller's (issue 29: the package's gc.freeze() froze the importer's objects
    too), and the public names still load on first use, in full."""
    code = (
        "import gc, sys\n"
        "import dfractal_dask, dfractal_dask.cli\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'numba', 'xarray', 'dask', 'distributed', 'zarr'})\n"
        "print(heavy, gc.get_freeze_count(), gc.isenabled())\n"
        "from dfractal_dask import render, colorize, View, __version__\n"
        "import dfractal_dask.colorize, dask.config\n"
        "assert dfractal_dask.colorize is colorize and callable(colorize)  # the function, not its module\n"
        "assert set(dfractal_dask.__all__) <= set(dir(dfractal_dask))\n"
        "assert all(getattr(dfractal_dask, name) is not None for name in dfractal_dask.__all__)\n"
        "print(render.__module__, dask.config.get('dfractal.cluster'), gc.get_freeze_count(), gc.isenabled())\n"
        "from dfractal_dask.cli import main, build_parser, run\n"
        "print(main.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[] 0 True", "dfractal_dask.pipeline threads 0 True", "dfractal_dask.cli.app"]


@pytest.mark.parametrize("module", ["dfractal_dask.spec", "dfractal_dask.cluster", "dfractal_dask.store.lease"])
def test_a_module_that_reads_the_config_loads_its_defaults_itself(module):
    # (the package no longer imports them all, config first: a module imported by
    # itself, as a worker unpickling a task does, finds dfractal.yaml's defaults)
    code = f"import dask.config, {module}\nprint(dask.config.get('dfractal.lease-seconds'))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip(), done.stderr


# -- flags, not parameters -------------------------------------------------------------------
@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A render store with a pyramid, made by the CLI (its embedded cluster)."""
    d = tmp_path_factory.mktemp("cli")
    flags = ["--width", "64", "--height", "48", "--iters", "50", "--chunk-rows", "16", "--pyramid", "-q"]
    done = _cli("render", *flags, "--store", "s.zarr", "--outfile", "s.png", cwd=d)
    assert done.returncode == 0, done.stderr
    return d / "s.zarr"


def _copy(store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "d.zarr"
    shutil.copytree(store, copy)
    return copy


@pytest.mark.slow
@pytest.mark.cluster
def test_info_on_a_damaged_store_names_the_flags(stored, tmp_path):
    copy = _copy(stored, tmp_path)
    (copy / "iterations" / "c" / "3" / "0").write_bytes(b"garbage")  # a block's chunk
    (copy / "pyramid" / "1" / "zarr.json").unlink()  # a level's document
    done = _cli("info", str(copy), cwd=tmp_path)
    assert done.returncode == 2
    text = done.stdout + done.stderr
    assert "damaged: block 3:" in done.stdout and "damaged: pyramid: pyramid/1/zarr.json is missing" in done.stdout
    # the pyramid's summary: the library says build_pyramid, or the command
    assert "pyramid: damaged (" in done.stdout and "; `dfractal render --resume` repairs it)" in done.stdout
    assert done.stderr.startswith("dfractal: error: ") and "`dfractal render --resume` with the same flags" in text
    assert "resume=True" not in text and "build_pyramid" not in text
    assert _pythonisms(text) == []


@pytest.mark.slow
@pytest.mark.cluster
def test_info_on_an_unfinished_pyramid_names_the_command_that_finishes_it(stored, tmp_path):
    copy = _copy(stored, tmp_path)
    group = zarr.open_group(str(copy / "pyramid"), mode="r+")
    group.attrs[pyr.PYRAMID_ATTR] = {**group.attrs[pyr.PYRAMID_ATTR], "done": []}
    done = _cli("info", str(copy), cwd=tmp_path)
    line = next(line for line in done.stdout.splitlines() if line.startswith("pyramid: "))
    assert line == "pyramid: unfinished, levels [] of 1..1 done (`dfractal render --resume --pyramid` finishes it)"
    recolored = _cli("recolor", str(copy), "--dzi", str(tmp_path / "p.dzi"), cwd=tmp_path)
    assert "has no finished pyramid" in _bad(recolored) and "`dfractal render --resume --pyramid`" in recolored.stderr
    assert _pythonisms(done.stdout + done.stderr + recolored.stderr) == []


@pytest.mark.slow
@pytest.mark.cluster
def test_a_resume_refused_names_the_flags_that_differ(stored, tmp_path):
    copy = _copy(stored, tmp_path)
    flags = ["--width", "64", "--height", "48", "--iters", "50", "--chunk-rows", "16", "--smoothness", "2"]
    done = _cli("render", "--fractal", "burning-ship", *flags, "--resume", "--store", str(copy), "--outfile", "x.png",
                cwd=tmp_path)  # fmt: skip
    line = _bad(done)
    assert "(--fractal 'burning-ship' here, 'mandelbrot' in the store; --smoothness 2 here, 8 in the store; " in line
    assert "use another --store, or --overwrite to start again" in line
    assert _pythonisms(line) == []
    explored = _bad(_cli("explore", "--store", str(tmp_path / "nowhere.zarr"), cwd=tmp_path))
    assert _pythonisms(explored) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "said"),
    [
        ("zoom --to-span 0 --frames 3", "--to-span must be > 0, got 0.0"),
        ("zoom --to-span -1e-20 --frames 3", "--to-span must be > 0, got -1e-20"),
        ("zoom --to-span 1e-2000 --frames 3", "--to-span must be at least 1E-1500, got 1E-2000"),
        ("zoom --to-span 0.1 --frames 1", "--frames must be >= 2, got 1"),
        ("render --span -1e-20", "--span must be > 0, got -1e-20"),
        ("render --escape-radius -1e-20", "--span must be > 0, got -1e-20"),
        ("render --span -1", "--span must be > 0, got -1.0"),
        ("render --fractal burning-ship --mode distance", "mandelbrot, julia, multibrot, not burning-ship"),
        ("render --fractal burning_ship --span 1e-20", "renders the Mandelbrot set only, not burning-ship;"),
        ("render --fractal multibrot --power 20", "multibrot power must be from 2 to 16, got 20"),
        ("render --fractal julia --julia-c 3", "julia c must be finite with |c| <= 2, got (3+0j)"),
        ("render --storage-option a=b", "--storage-option is for URLs such as s3://"),
        ("render --width -1e-3", "argument --width: expected a whole number, got '-1e-3'"),
        ("render --span --iters 5", "argument --span/--escape-radius: expected one argument"),
    ],
)
def test_a_bad_value_is_refused_by_its_flag(argv, said, tmp_path):
    line = _bad(_cli(*argv.split(), cwd=tmp_path))
    assert said in line, line
    assert _pythonisms(line) == []
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_negative_values_reach_their_flags():
    parser = build_parser()
    join = lambda line: join_negative_values(line.split(), parser)  # noqa: E731
    assert join("render --span -1e-20 --iters -.5") == ["render", "--span=-1e-20", "--iters=-.5"]
    assert join("zoom --to-span -INF --frames -3") == ["zoom", "--to-span=-INF", "--frames=-3"]
    assert join("render --julia-c -0.8+0.156j --xpos -1e-30") == ["render", "--julia-c=-0.8+0.156j", "--xpos=-1e-30"]
    # a flag, not a value: left to argparse (which says the flag expects one argument)
    assert join("render --span --iters 5 -q") == ["render", "--span", "--iters", "5", "-q"]
    assert join("render --span") == ["render", "--span"]
    assert join("render --store -x.zarr") == ["render", "--store", "-x.zarr"]
    assert join("render -- --span -1") == ["render", "--", "--span", "-1"]
    assert join_negative_values(["render", "--span", "-1e-20"]) == ["render", "--span=-1e-20"]  # (its own parser)


def test_flag_terms_leave_paths_and_attributes_alone():
    path = "cannot write /tmp/burning_ship.zarr/to_span: no"
    assert flag_terms(path) == path
    assert flag_terms("its attribute chunk_rows is missing") == "its attribute chunk_rows is missing"
    assert flag_terms("not burning_ship; use --to-span") == "not burning-ship; use --to-span"
    assert flag_terms("to_span must be > 0") == "--to-span must be > 0"
    assert flag_terms("the blocks of width 3 and span 1") == "the blocks of width 3 and span 1"  # (not a check's own)


#: Flags and values that are wrong, and flags that are fine, for any command they are given to.
_WRONG = [
    "--span -1e-20", "--span 0", "--span -3", "--span 1e-2000", "--span nan", "--escape-radius -1e-20",
    "--to-span -1e-20", "--to-span 0", "--to-span 1e-99999", "--frames 1", "--frames -2", "--frames 1e9",
    "--width 0", "--width -1e-3", "--height -7", "--smoothness 0", "--iters -1", "--iters 0", "--chunk-rows -2",
    "--retries -1", "--workers -1", "--xpos 1e200", "--ypos -1e999", "--fractal burning_ship --mode distance",
    "--fractal burning-ship --span 1e-30", "--fractal julia --julia-c 9", "--fractal multibrot --power 99",
    "--power 3", "--julia-c 1", "--fractal nope", "--mode smoth", "--palette Nope", "--interior #ggg",
    "--step 0", "--resume --overwrite", "--storage-option a=b", "--storage-option x", "--cluster nope",
    "--outfile x.txt", "--store s3://user:pw@bucket/x.zarr", "--port -1", "--dzi x.png", "--tls-cert c.pem",
]  # fmt: skip
_FINE = ["--width 16", "--height 12", "--iters 20", "-q", "--smoothness 1", "--span 0.5", "--xpos -0.5"]
#: Pieces that a command takes (none now: the explorer refuses a deep burning ship before its server starts)
_TAKEN: dict[str, set[str]] = {}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    command=st.sampled_from(["render", "zoom", "recolor", "explore", "bench", "info"]),
    wrong=st.lists(st.sampled_from(_WRONG), min_size=1, max_size=2),
    fine=st.lists(st.sampled_from(_FINE), max_size=3),
)
def test_no_bad_command_line_speaks_python(command, wrong, fine, tmp_path, capsys):
    """Command lines with a wrong flag or value, in process (each is refused
    before any cluster starts): their error line names flags, never Python."""
    assume(not _TAKEN.get(command, set()) & set(wrong))
    argv = [command, *(["--to-span", "0.01"] if command == "zoom" else [])]
    argv += [str(tmp_path / "missing.zarr")] if command in ("recolor", "info") else []
    argv += [a for piece in [*fine, *wrong] for a in piece.split()]
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(argv) == 2, argv
    finally:
        os.chdir(cwd)
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("dfractal: error: ") and out == "", (argv, err)
    assert _pythonisms(err) == [], argv


@pytest.mark.slow
def test_bad_command_lines_speak_in_flags_through_the_console_script(tmp_path):
    """The wrong pieces, each through the console script (two at a time)."""
    lines = [["render", *w.split()] for w in _WRONG if not w.startswith(("--dzi", "--port", "--to-span", "--frames"))]
    lines += [["zoom", "--to-span", "0.1", *w.split()] for w in ("--to-span -1e-20", "--frames 1", "--span -2")]
    lines += [["recolor", "nowhere.zarr", "--dzi", "x.png"], ["explore", "--port", "-1"], ["info", "nowhere.zarr"]]
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda argv: (argv, _cli(*argv, cwd=tmp_path)), lines))
    for argv, done in results:
        line = _bad(done)
        assert _pythonisms(line) == [], (argv, line)


def test_recolor_distance_on_a_store_without_distances_is_a_usage_error(tmp_path, capsys):
    """The store is sound: the line says what the flag needs, not that the store cannot be read."""
    store = tmp_path / "plain.zarr"
    assert main(["render", "--width", "16", "--height", "12", "--iters", "20", "-q", "--store", str(store),
                 "--outfile", str(tmp_path / "plain.png")]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["recolor", str(store), "--mode", "distance", "--outfile", str(tmp_path / "d.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--mode distance needs a render made with distance estimation" in err, err
    assert "cannot read" not in err and not (tmp_path / "d.png").exists()


def test_explore_refuses_a_deep_view_of_a_family_perturbation_does_not_render(tmp_path, capsys):
    """Before any cluster or server starts: one line, exit 2."""
    assert main(["explore", "--fractal", "burning-ship", "--span", "1e-30", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "burning-ship" in err and "Mandelbrot set only" in err, err
