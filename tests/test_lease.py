"""One writer a store: the lease, alone and between real processes."""

import json
import re
import subprocess
import sys
import time

import dask
import pytest
from daskprocs import BIN, SLOW, SLOW_VIEW, dask_processes, done_blocks, wait_for

from dfractal_dask import View, open_render
from dfractal_dask.location import as_location
from dfractal_dask.store import verify
from dfractal_dask.store.lease import LEASE_KEY, Lease, StoreBusy, check_free, holder


def _other_process_acquires(loc) -> subprocess.CompletedProcess:
    code = ("import sys\nfrom dfractal_dask.store.lease import Lease, StoreBusy\n"
            "from dfractal_dask.location import as_location\n"
            f"try: Lease(as_location({loc.url!r}), 'dfractal render B').acquire().release()\n"
            "except StoreBusy as e: sys.exit(str(e))")  # fmt: skip
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_lease_is_exclusive_renewed_and_released(tmp_path):
    loc = as_location(tmp_path / "s.zarr")
    with dask.config.set({"dfractal.lease-seconds": 0.6}), Lease(loc, "dfractal render A") as a:
        first = holder(loc)
        assert first["what"] == "dfractal render A" and first["token"] == a.token
        other = _other_process_acquires(loc)
        assert other.returncode == 1
        assert re.search(r"s\.zarr is being written by dfractal render A \(pid \d+ on ", other.stderr), other.stderr
        check_free(loc)  # this process holds it: free for it
        with Lease(loc, "nested") as inner:  # re-entrant within a process: shares the outer lease
            assert inner.token == a.token
        assert holder(loc)["token"] == a.token  # still held
        time.sleep(1.0)  # past one lifetime: renewed meanwhile, so still live
        assert holder(loc)["expires"] > first["expires"] and not a.lost
    assert holder(loc) is None and not (tmp_path / "s.zarr").exists()  # a folder made for the lease alone
    assert _other_process_acquires(loc).returncode == 0  # free again


def _plant(loc, **record):
    base = {"token": "t", "what": "dfractal render old", "host": "elsewhere", "pid": 1, "started": 0, "renewed": 0,
            "expires": time.time() + 600}  # fmt: skip
    doc = {"zarr_format": 3, "node_type": "group", "attributes": {**base, **record}}
    loc.write_bytes(LEASE_KEY, json.dumps(doc).encode())


def test_a_lease_whose_writer_is_gone_is_taken_over(tmp_path):
    import socket

    loc = as_location(tmp_path / "s.zarr")
    _plant(loc)  # live, on another host
    with pytest.raises(StoreBusy, match="dfractal render old"):
        Lease(loc, "new").acquire()
    with pytest.raises(StoreBusy, match="dfractal render old"):
        check_free(loc)
    _plant(loc, expires=time.time() - 1)  # expired: its client stopped renewing it
    with Lease(loc, "new") as lease:
        assert holder(loc)["token"] == lease.token
    dead = subprocess.Popen(["true"])
    dead.wait()
    _plant(loc, host=socket.gethostname(), pid=dead.pid)  # this host, a process that no longer runs
    with Lease(loc, "new") as lease:
        assert holder(loc)["token"] == lease.token


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with dask_processes(tmp_path_factory.mktemp("leasecluster")) as (address, _):
        yield address


@pytest.mark.slow
def test_a_second_writer_is_refused_while_a_render_runs(cluster, tmp_path):
    store = tmp_path / "busy.zarr"
    first = subprocess.Popen([BIN / "dfractal", "render", "--scheduler", cluster, *SLOW, "--store", store,
                              "--outfile", tmp_path / "a.png"], stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        wait_for(lambda: done_blocks(store) >= 2, "the first render to be under way", timeout=120)
        for extra in ([], ["--overwrite"], ["--resume"]):
            second = subprocess.run([BIN / "dfractal", "render", "--scheduler", cluster, "--width", "40", "--height",
                                     "30", "--store", store, "--outfile", tmp_path / "b.png", *extra],
                                    capture_output=True, text=True, timeout=120)  # fmt: skip
            assert second.returncode == 2, second.stderr
            assert second.stderr.count("\n") == 1 and "is being written by dfractal render" in second.stderr
        zoom = subprocess.run([BIN / "dfractal", "zoom", "--scheduler", cluster, "--to-span", "0.1", "--frames", "2",
                               "--store", store, "--outfile", tmp_path / "z.gif", "--overwrite"],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert zoom.returncode == 2 and "is being written by dfractal render" in zoom.stderr
        _, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    ds = open_render(store)  # the first render's, whole, every chunk as it wrote it
    assert View.from_attrs(ds.attrs) == SLOW_VIEW and int(ds.block_done.sum()) == 90
    assert verify(store) == []
    assert not (store / "dfractal_lease").exists() and not (tmp_path / "b.png").exists()


@pytest.mark.slow
def test_two_renders_started_at_once_into_one_new_store_exactly_one_proceeds(cluster, tmp_path):
    store = tmp_path / "race.zarr"
    argv = [BIN / "dfractal", "render", "--scheduler", cluster, *SLOW[:-5], "--iters", "3000", "--chunk-rows", "12",
            "--store", store, "-q"]  # fmt: skip
    procs = [
        subprocess.Popen([*argv, "--outfile", tmp_path / f"r{k}.png"], stderr=subprocess.PIPE, text=True)
        for k in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 2], results
    err = next(e for code, e in results if code == 2)
    assert err.count("\n") == 1 and ("is being written by dfractal render" in err or "already exists" in err), err
    assert done_blocks(store) == 30 and len(list(tmp_path.glob("r*.png"))) == 1


@pytest.mark.slow
def test_a_writer_that_lost_its_lease_stops_and_names_the_new_holder(cluster, tmp_path):
    """Client A stopped (SIGSTOP) past its lease's life, B takes the store over
    with --resume, A continues (SIGCONT): A's workers write nothing more (each
    checks the lease before the writes it commits) and A exits 2 naming B; B
    finishes the store, whole and verified."""
    import os
    import signal

    store = tmp_path / "taken.zarr"
    loc = as_location(store)
    argv = [BIN / "dfractal", "render", "--scheduler", cluster, *SLOW, "--store", store]
    a = subprocess.Popen([*argv, "--outfile", tmp_path / "a.png"], stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "DASK_DFRACTAL__LEASE_SECONDS": "3"})  # fmt: skip
    b = None
    try:
        wait_for(lambda: done_blocks(store) >= 2, "render A to be under way", timeout=240)
        a.send_signal(signal.SIGSTOP)
        wait_for(lambda: holder(loc)["expires"] < time.time(), "A's lease to expire", timeout=60)
        b = subprocess.Popen([*argv, "--resume", "--outfile", tmp_path / "b.png"], stderr=subprocess.PIPE, text=True)
        wait_for(lambda: (holder(loc) or {}).get("pid") == b.pid, "B to take the lease", timeout=120)
        a.send_signal(signal.SIGCONT)
        _, a_err = a.communicate(timeout=300)
        _, b_err = b.communicate(timeout=300)
    finally:
        a.send_signal(signal.SIGCONT)
        a.kill()
        if b is not None:
            b.kill()
    assert a.returncode == 2, a_err
    assert a_err.count("\n") == 1 and "Traceback" not in a_err, a_err
    assert "lost the lease" in a_err and f"pid {b.pid}" in a_err, a_err
    assert b.returncode == 0, b_err
    assert verify(store) == [] and done_blocks(store) == 90
    assert not (tmp_path / "a.png").exists() and (tmp_path / "b.png").exists()


def test_a_lease_record_that_is_not_ours_is_named_not_taken(tmp_path):
    """Every field of a lease record that is not what dfractal writes is named
    in one line (StoreBusy, a ValueError), and the record is left alone."""
    loc = as_location(tmp_path / "odd.zarr")
    cases = {"started": 1e300, "expires": "abc", "pid": True, "token": 5, "host": None, "renewed": float("nan")}
    for field, value in cases.items():
        _plant(loc, **{field: value})
        before = loc.read_bytes(LEASE_KEY)
        for attempt in (lambda: Lease(loc, "new").acquire(), lambda: check_free(loc)):
            with pytest.raises(StoreBusy, match=rf"lease record .* {field} is .*, not ") as info:
                attempt()
            assert "\n" not in str(info.value)
        assert loc.read_bytes(LEASE_KEY) == before  # not taken over, not deleted
    loc.write_bytes(LEASE_KEY, b"{not json")
    with pytest.raises(StoreBusy, match="not a Zarr group's JSON"):
        check_free(loc)
