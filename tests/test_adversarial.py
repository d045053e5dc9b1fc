"""What a hostile user tries, grouped by the claim it tests (issue 16; the
README's "Reliability" section says what is guaranteed).  HTML injection and
the explorer's Save: tests/test_adversarial_html.py; zoom memory:
tests/test_animation.py."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from daskprocs import BIN, SLOW, dask_processes, done_blocks, wait_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dfractal_dask import View, graph, open_render, places
from dfractal_dask import store as store_mod
from dfractal_dask.cli import main
from dfractal_dask.store import StoreError, verify

DEEP_X, DEEP_Y = places.BRANCH_POINT
TINY = ["--width", "16", "--height", "12", "--smoothness", "1", "--iters", "50"]


def _make_store(path: Path) -> Path:
    view = View(-0.5, 0.0, 3.0, 16, 12, 1)
    bs = graph.blocks(view, 4)
    store_mod.create_store(path, graph.fractal_dataset(view, 50, 4), len(bs))
    for b in bs:
        store_mod.write_block(path, b, *graph.compute_block(view, 50, b)[:2])
    return path


def _snapshot(path: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def _one_line(capsys, *words) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dfractal: error: "), err
    assert "Traceback" not in err and "dashboard:" not in err, err  # no cluster was started
    for w in words:
        assert w in err, err
    return err


# -- 1. bad input: one line, exit 2, before any cluster starts or store is touched ----------------------------------

BAD = [
    (["render", *TINY, "--ypos", "1e200"], ["1e+150"]),
    (["render", *TINY, "--xpos", "-1e151", "--escape-radius", "1"], ["1e+150"]),
    (["render", *TINY, "--step", "20000000"], ["--step must be at most 10000000"]),
    (["render", *TINY[:-1], "10000001"], ["--iters 10000001 in --mode seed", "max(--step, --iters)"]),
    (["render", *TINY, "--metrics-json", "{tmp}"], ["metrics file", "is a folder"]),
    (["render", *TINY, "--xpos", DEEP_X, "--ypos", DEEP_Y, "--escape-radius", "1e-25", "--no-perturbation"],
     ["too deep for float64", "needs perturbation"]),
    (["render", *TINY, "--outfile", "/dev/null"], ["/dev/null", "not a regular file"]),
    (["render", *TINY, "--outfile", "{store}/x.png"], ["inside the store"]),
    (["render", *TINY, "--scheduler", "tcp://127.0.0.1:1", "--tls-ca-file", "a", "--tls-cert", "b", "--tls-key", "c"],
     ["--tls-* flags need a tls:// scheduler address"]),
    (["recolor", "{store}", "--outfile", "{store}/zarr.json"], ["inside the store"]),
    (["zoom", "--to-span", "1e-10", "--frames", "100000", "--store", "{store}"], ["800,000 tasks"]),
    (["zoom", "--to-span", "1e-10", "--frames", "10001", "--width", "8", "--height", "6", "--store", "{store}"],
     ["frames must be at most 10000"]),
    (["zoom", "--to-span", "1e-200", "--xpos", DEEP_X, "--ypos", DEEP_Y, "--frames", "3", "--no-perturbation",
      "--store", "{store}"], ["too deep for float64"]),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "words"), BAD, ids=[f"{k}-{a[0]}" for k, (a, _) in enumerate(BAD)])
def test_bad_input_is_one_line_exit_2_and_nothing_is_touched(argv, words, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keep = _make_store(tmp_path / "keep.zarr")
    before = _snapshot(keep)
    null = os.stat("/dev/null")
    argv = [a.format(tmp=tmp_path, store=keep) for a in argv]
    if argv[0] == "render":
        argv += ["--overwrite"] if "--store" in argv else ["--store", str(keep), "--overwrite"]
    t0 = time.perf_counter()
    assert main(argv) == 2
    seconds = time.perf_counter() - t0
    _one_line(capsys, *words)
    assert _snapshot(keep) == before  # the store offered for --overwrite is untouched
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode) and os.stat("/dev/null").st_ino == null.st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.zarr"]  # nothing else written
    assert seconds < 60  # (a bound, not a benchmark: before, a zoom of 100 000 frames never finished checking)


@pytest.mark.cluster
def test_metrics_json_into_a_new_folder_works(tmp_path):
    out = tmp_path / "deep" / "er" / "m.json"
    assert main(["render", *TINY, "--outfile", str(tmp_path / "m.png"), "--metrics-json", str(out), "-q"]) == 0
    assert json.loads(out.read_text())["render"]["blocks_done"] >= 1


# -- 2. no hangs: every wait has a bound -----------------------------------------------------------------------------


@contextlib.contextmanager
def _silent_server():
    """Accepts TCP connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    held, stop = [], threading.Event()

    def serve():
        sock.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(sock.accept()[0])

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"tcp://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        sock.close()


@contextlib.contextmanager
def _web_server():
    """A web server, like the dashboard's port (8787), an easy typo for 8786."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"tcp://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.slow
@pytest.mark.parametrize("server", [_silent_server, _web_server], ids=["silent", "web"])
def test_something_that_is_not_a_scheduler_fails_within_the_connect_timeout(server, tmp_path):
    with server() as address:
        done = subprocess.run([BIN / "dfractal", "render", "--scheduler", address, *TINY, "--outfile",
                               tmp_path / "x.png"], capture_output=True, text=True, timeout=90)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "dask scheduler" in done.stderr and "8786" in done.stderr
    assert not (tmp_path / "x.zarr").exists()


# a shorter SLOW (a third as wide, blocks of 8 rows: 45): ~12 s on one worker
STALLABLE = [*SLOW[:-5], "--iters", "1000000", "--chunk-rows", "8", "-q"]
STALLABLE[STALLABLE.index("--width") + 1] = "160"


@pytest.mark.slow
@pytest.mark.cluster
def test_a_stopped_worker_is_named_and_the_store_resumes(tmp_path):
    store = tmp_path / "stall.zarr"
    env = {**os.environ, "DASK_DFRACTAL__STALL_SECONDS": "6"}
    with dask_processes(tmp_path, worker_args=("--no-nanny",)) as (address, procs):
        # the kernels compiled (or loaded from numba's cache) on the workers first, without the 6 s limit: on a
        # fresh clone under load their first compilation outlasted it, and the render stalled before the stop
        warm = [*STALLABLE]
        warm[warm.index("--width") + 1], warm[warm.index("--iters") + 1] = "32", "3000"
        warmed = subprocess.run([BIN / "dfractal", "render", "--scheduler", address, *warm, "--store",
                                 tmp_path / "warm.zarr", "--outfile", tmp_path / "warm.png"],
                                capture_output=True, text=True, timeout=600)  # fmt: skip
        assert warmed.returncode == 0, warmed.stderr
        argv = [BIN / "dfractal", "render", "--scheduler", address, *STALLABLE, "--store", store,
                "--outfile", tmp_path / "s.png"]  # fmt: skip
        client = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
        try:
            # (a render that ended first says why, not a time-out)
            wait_for(lambda: done_blocks(store) >= 3 or client.poll() is not None, "the render to be under way",
                     timeout=240)  # fmt: skip
            assert client.poll() is None, client.communicate(timeout=30)[1]
            procs["w2"].send_signal(signal.SIGSTOP)  # alive to the OS, silent to the cluster
            _, err = client.communicate(timeout=240)
        finally:
            procs["w2"].send_signal(signal.SIGCONT)
            client.kill()
        assert client.returncode == 2, err
        # (nothing finished; or a finished block's result sits on the stopped worker)
        assert err.count("\n") == 1 and "for 6 s" in err, err
        assert ("stalled: " in err or "held by " in err) and "w2 (tcp://127.0.0.1:" in err
        assert re.search(r"--resume|resume=True", err), err  # the library's spelling, or the CLI's translation
        assert done_blocks(store) < 45 and not (tmp_path / "s.png").exists()
        resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert done_blocks(store) == 45 and verify(store) == []


@pytest.mark.slow
@pytest.mark.cluster
def test_a_lost_scheduler_is_one_line_and_resume_finishes(tmp_path):
    store = tmp_path / "lost.zarr"
    argv = [BIN / "dfractal", "render", *STALLABLE, "--store", store, "--outfile", tmp_path / "l.png"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with dask_processes(tmp_path / "a") as (address, procs):
        client = subprocess.Popen([*argv, "--scheduler", address], stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: done_blocks(store) >= 3, "the render to be under way", timeout=120)
            procs["scheduler"].kill()
            _, err = client.communicate(timeout=120)
        finally:
            client.kill()
    assert client.returncode == 2, err
    assert err.count("\n") == 1 and "lost the dask scheduler" in err, err
    assert re.search(r"--resume|resume=True", err), err  # the library's spelling, or the CLI's translation
    with dask_processes(tmp_path / "b") as (address, _):
        resumed = subprocess.run([*argv, "--scheduler", address, "--resume"], capture_output=True, text=True,
                                 timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert done_blocks(store) == 45 and verify(store) == []


# -- 3. damaged stores: every command answers one line, or works ---------------------------------------------------


def _edit_attrs(path: Path, change) -> None:
    meta = json.loads((path / "zarr.json").read_text())
    change(meta["attributes"])
    (path / "zarr.json").write_text(json.dumps(meta))


DAMAGE = {
    "iters missing": (lambda p: _edit_attrs(p, lambda a: a.pop("iters")), "iters is missing"),
    "width missing": (lambda p: _edit_attrs(p, lambda a: a.pop("width")), "width is missing"),
    "iters -5": (lambda p: _edit_attrs(p, lambda a: a.update(iters=-5)), "iters is -5"),
    "iters 0": (lambda p: _edit_attrs(p, lambda a: a.update(iters=0)), "iters is 0"),
    "power 99": (lambda p: _edit_attrs(p, lambda a: a.update(power=99)), "do not make a view, fractal"),
    "fractal bogus": (lambda p: _edit_attrs(p, lambda a: a.update(fractal="bogus")), "do not make a view, fractal"),
    "n_blocks 7": (lambda p: _edit_attrs(p, lambda a: a.update(n_blocks=7)), "n_blocks is 7"),
    "block_done chunk garbled": (lambda p: (p / "block_done" / "c" / "1").write_bytes(b"\x00"), "block_done"),
    "iterations metadata gone": (lambda p: (p / "iterations" / "zarr.json").unlink(), "damaged"),
    # (issue 27: the attributes' own record catches the edit first)
    "width 17": (lambda p: _edit_attrs(p, lambda a: a.update(width=17)), "its attributes are not what was written"),
}
REPAIRED = {"block_done chunk garbled", "iterations metadata gone"}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_store_is_one_line_for_every_command(damage, tmp_path, capsys):
    path = _make_store(tmp_path / "d.zarr")
    edit, words = DAMAGE[damage]
    edit(path)
    before = _snapshot(path)
    same = ["--xpos", "-0.5", "--ypos", "0", "--escape-radius", "3", *TINY, "--chunk-rows", "4"]  # the store's render
    resume = ["render", *same, "--store", str(path), "--outfile", str(tmp_path / "x.png"), "--resume"]
    for argv in (["info", str(path)], ["recolor", str(path), "--outfile", str(tmp_path / "r.png")]):
        assert main(argv) == 2, argv
        _one_line(capsys, words)
    with pytest.raises(StoreError, match=words):
        open_render(path).iterations.values  # noqa: B018
    assert _snapshot(path) == before and not list(tmp_path.glob("*.png"))
    if damage in REPAIRED:  # (issue 27) what the render itself can write again, a resume repairs
        assert main(resume) == 0
        capsys.readouterr()
        assert main(["info", str(path)]) == 0
        return
    assert main(resume) == 2
    _one_line(capsys, words)
    assert _snapshot(path) == before


def test_info_reads_a_store_whose_metrics_were_edited(tmp_path, capsys):
    path = _make_store(tmp_path / "m.zarr")
    for metrics in (["not", "a", "dict"], {"started": "yesterday", "workers": 3}):
        _edit_attrs(path, lambda a, m=metrics: a.update(metrics=m))
        assert main(["info", str(path)]) == 0
        assert "metrics: unreadable" in capsys.readouterr().out


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return _make_store(tmp_path_factory.mktemp("pristine") / "p.zarr")


_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(),
                                                                                   max_size=2),
)  # fmt: skip
_ATTRS = ["dfractal_format", "dfractal_kind", "store_id", "fractal", "power", "julia_re", "julia_im", "distance",
          "perturbation", "iters", "chunk_rows", "n_blocks", "xpos", "ypos", "centre_re", "centre_im", "span", "width",
          "height", "supersample", "metrics"]  # fmt: skip
_ARRAYS = ["iterations", "norm", "block_done", "block_crc", "im", "re"]


@st.composite
def _mutations(draw):
    kind = draw(st.sampled_from(["set", "delete", "meta", "chunk"]))
    if kind in ("set", "delete"):
        return kind, draw(st.sampled_from(_ATTRS)), draw(_VALUES)
    if kind == "meta":
        key = draw(st.sampled_from(["shape", "data_type", "chunk_grid", "codecs", "fill_value", "node_type", "*"]))
        return kind, (draw(st.sampled_from(_ARRAYS)), key), draw(_VALUES)
    return kind, draw(st.sampled_from(_ARRAYS)), draw(st.binary(max_size=24))


def _mutate(path: Path, mutation) -> None:
    kind, what, value = mutation
    if kind == "set":
        _edit_attrs(path, lambda a: a.update({what: value}))
    elif kind == "delete":
        _edit_attrs(path, lambda a: a.pop(what, None))
    elif kind == "meta":
        name, key = what
        meta_file = path / name / "zarr.json"
        if key == "*":
            meta_file.write_text(json.dumps(value))
        else:
            meta = json.loads(meta_file.read_text())
            meta[key] = value
            meta_file.write_text(json.dumps(meta))
    else:
        chunks = sorted(p for p in (path / what / "c").rglob("*") if p.is_file())
        chunks[len(chunks) // 2].write_bytes(value)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(mutation=_mutations())
def test_any_edit_of_a_store_gets_one_line_or_works(pristine, tmp_path, capsys, mutation):
    """A property: whatever is changed in a real store's attributes, array
    metadata or chunks, info and recolor exit 0 or print one line and exit 2
    (an exception escaping main would fail this test), and open_render either
    reads it or raises a StoreError/ValueError."""
    work = tmp_path / f"case-{abs(hash(repr(mutation)))}"
    shutil.copytree(pristine, work / "s.zarr")
    _mutate(work / "s.zarr", mutation)
    capsys.readouterr()
    for argv in (["info", str(work / "s.zarr")], ["recolor", str(work / "s.zarr"), "--outfile", str(work / "r.png")]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code in (0, 2), (argv, mutation, err)
        if code == 2:
            assert err.count("\n") == 1 and err.startswith("dfractal: error: "), (mutation, err)
    try:
        ds = open_render(work / "s.zarr")
        np.asarray(ds.iterations.values)
    except (StoreError, ValueError, TypeError):
        pass
    shutil.rmtree(work)


# -- 4. nothing lost: a full disk, then --resume -------------------------------------------------------------------


def _can_mount() -> bool:
    try:
        return subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True,
                              timeout=10).returncode == 0  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.skipif(not _can_mount(), reason="needs unshare -m and mount (root)")
def test_a_full_disk_is_named_in_one_line_and_resume_finishes(tmp_path):
    """A 600 kB tmpfs (the store needs ~1 MB): the render stops at the first
    block that does not fit, naming the store and the block; after the disk
    grows, --resume finishes it, and no temporary file is left behind."""
    disk = tmp_path / "disk"
    disk.mkdir()
    flags = ("--xpos -0.7436 --ypos 0.1318 --escape-radius 0.01 --width 320 --height 240 --smoothness 2 "
             "--iters 2000 -q --workers 2")  # fmt: skip
    script = f"""
mount -t tmpfs -o size=600k tmpfs "{disk}"
set +e
"{BIN}/dfractal" render {flags} --store "{disk}/m.zarr" --outfile "{tmp_path}/m.png" 2> "{tmp_path}/first.err"
echo "first=$?"
mount -o remount,size=20m "{disk}"
"{BIN}/dfractal" render {flags} --store "{disk}/m.zarr" --outfile "{tmp_path}/m.png" --resume 2> "{tmp_path}/second.err"
echo "second=$?"
"{BIN}/dfractal" info "{disk}/m.zarr" | tail -1
find "{disk}" -name '.*' -o -name '*.partial' | wc -l
"""
    done = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    first = (tmp_path / "first.err").read_text()
    out = done.stdout.splitlines()
    assert out[0] == "first=2", (done.stdout, first)
    assert first.count("\n") == 1 and "No space left on device" in first and str(disk / "m.zarr") in first
    assert "cannot write " in first and "block" in first and "resume" in first
    assert out[1] == "second=0", (tmp_path / "second.err").read_text()
    assert out[2].startswith("verified: 8 blocks, 2 coordinates") and out[3] == "0"  # no temporary files left
    with Image.open(tmp_path / "m.png") as im:
        assert im.size == (320, 240)


def test_the_stall_limit_grows_with_a_blocks_possible_work():
    """A deep render's block may take minutes: it is not called stalled for
    that (unless dfractal.stall-seconds is set, which is then exact)."""
    import dask

    from dfractal_dask.cluster import SLOWEST_RATE
    from dfractal_dask.cluster import stall_seconds as _stall_seconds

    assert _stall_seconds(800 * 2**20) == dask.config.get("dfractal.min-stall-seconds")  # a seed block: 0.1-1 s
    assert _stall_seconds(1_000_000 * 2**20) == 1_000_000 * 2**20 / SLOWEST_RATE  # 1 M iterations a sample
    with dask.config.set({"dfractal.stall-seconds": 6}):
        assert _stall_seconds(1_000_000 * 2**20) == 6
