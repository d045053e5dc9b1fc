"""Where things listen: the embedded cluster, its dashboard and `dfractal explore`
bind to 127.0.0.1 only (checked on the real sockets, not on printed links)."""

import ipaddress
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import dask
import numpy as np
import psutil
import pytest

import dfractal_dask.cluster as cluster_module
from dfractal_dask import View, render
from dfractal_dask.cli import main
from dfractal_dask.cluster import CLUSTER_KINDS, cluster_kind, connect

BIN = Path(sys.executable).parent


def _listening(pid: int) -> list[str]:
    """Addresses a process and its children listen on."""
    procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    out = []
    for p in procs:
        try:
            conns = p.net_connections(kind="inet")
        except psutil.NoSuchProcess:
            continue
        out += [c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN]
    return out


@pytest.mark.cluster
@pytest.mark.parametrize("kind", CLUSTER_KINDS)
def test_the_embedded_cluster_listens_on_loopback_only(kind):
    code = (
        "from dfractal_dask.cluster import connect\n"
        "import sys\n"
        f"with connect(None, n_workers=2, cluster={kind!r}) as c:\n"
        "    print(c.scheduler.address, c.dashboard_link, *c.scheduler_info()['workers'], flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        addresses = proc.stdout.readline().split()
        assert len(addresses) == 4, addresses  # scheduler, dashboard, two workers
        assert all(re.match(r"(tcp|http)://127\.0\.0\.1:\d+", a) for a in addresses), addresses
        with urllib.request.urlopen(addresses[1], timeout=30) as page:  # the dashboard answers at its link
            assert page.status == 200 and b"Dask" in page.read()
        ips = _listening(proc.pid)
        assert len(ips) >= 4  # scheduler, dashboard, workers (and their own dashboards/nannies)
        assert all(ipaddress.ip_address(ip).is_loopback for ip in ips), ips
    finally:
        proc.stdin.close()
        proc.wait(timeout=60)


def test_explore_listens_on_loopback_only(client):
    proc = subprocess.Popen([BIN / "dfractal", "explore", "--port", "0", "--scheduler", client.scheduler.address],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)  # fmt: skip
    try:
        assert re.match(r"explorer: http://127\.0\.0\.1:\d+/$", proc.stdout.readline().strip())
        ips = _listening(proc.pid)
        assert ips and all(ipaddress.ip_address(ip).is_loopback for ip in ips), ips
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_bad_addresses():
    for bad, exc in (("not-an-address", ValueError), ("tcp://127.0.0.1:99999", ValueError), (42, TypeError)):
        with pytest.raises(exc), connect(bad):
            pass


# -- the embedded cluster's kind: threads (the default) or processes ----------------------------------------------
def test_the_default_kind_is_the_configured_one_and_threads():
    assert cluster_kind() == dask.config.get("dfractal.cluster") == "threads"
    with dask.config.set({"dfractal.cluster": "processes"}):
        assert cluster_kind() == "processes"
        assert cluster_kind("threads") == "threads"  # the parameter wins


@pytest.fixture
def no_cluster_starts(monkeypatch):
    """Fail the test if an embedded cluster would start."""

    def refuse(*args, **kwargs):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(cluster_module, "local_cluster", refuse)


@pytest.mark.parametrize("bad", ["thread", "Processes", "", 2, True])
def test_a_bad_kind_is_refused_naming_the_parameter_before_any_cluster_starts(bad, no_cluster_starts):
    with (
        pytest.raises(ValueError, match=r"^cluster must be one of 'threads', 'processes', got "),
        connect(None, cluster=bad),
    ):
        pass
    # also beside a scheduler address (where it is unused): a typo is not silently ignored
    with pytest.raises(ValueError, match=r"^cluster must be one of"), connect("tcp://127.0.0.1:1", cluster=bad):
        pass


def test_a_bad_configured_kind_is_refused_naming_the_config_key(no_cluster_starts):
    bad = pytest.raises(ValueError, match=r"^dask config dfractal\.cluster must be one of .*got 'bogus'")
    with dask.config.set({"dfractal.cluster": "bogus"}), bad, connect(None):
        pass


def test_local_cluster_refuses_a_bad_kind_before_starting():
    with pytest.raises(ValueError, match=r"^cluster must be one of .*got 'bogus'"):
        cluster_module.local_cluster(1, "bogus")
    with dask.config.set({"dfractal.cluster": "bogus"}), pytest.raises(ValueError, match=r"dfractal\.cluster"):
        cluster_module.local_cluster(1)


def _pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


@pytest.mark.cluster
def test_both_kinds_render_identical_counts():
    """Threads run in this process, processes in their own; the counts (and norms) are the same."""
    view = View(xpos=-0.7436, ypos=0.1318, span=0.02, width=64, height=48, supersample=2)
    out = {}
    for kind in CLUSTER_KINDS:
        with connect(None, n_workers=2, cluster=kind) as client:
            pids = _pids(client)
            assert len(client.scheduler_info()["workers"]) == 2
            assert (pids == {os.getpid()}) if kind == "threads" else (len(pids) == 2 and os.getpid() not in pids)
            out[kind] = render(view, 500, client=client, chunk_rows=8)
    a, b = out["threads"], out["processes"]
    assert int(a.iterations.max()) == 500 and len(np.unique(a.iterations.values)) > 50  # a real picture
    np.testing.assert_array_equal(a.iterations.values, b.iterations.values)
    np.testing.assert_array_equal(a.norm.values, b.norm.values)


@pytest.mark.cluster
def test_the_cluster_flag_reaches_the_embedded_cluster(tmp_path, monkeypatch, capsys):
    started = []
    real = cluster_module.local_cluster

    def spy(n_workers, cluster=None, dashboard_later=False):
        started.append(cluster)
        assert dashboard_later  # dfractal render starts the dashboard's pages with its graph
        return real(n_workers, cluster, dashboard_later)

    monkeypatch.setattr(cluster_module, "local_cluster", spy)
    small = ["-q", "--width", "40", "--height", "30", "--smoothness", "2", "--iters", "200", "--workers", "2"]
    for kind in CLUSTER_KINDS:
        assert main(["render", *small, "--cluster", kind, "--outfile", str(tmp_path / f"{kind}.png")]) == 0
    with dask.config.set({"dfractal.cluster": "processes"}):  # no flag: the config
        assert main(["render", *small, "--outfile", str(tmp_path / "config.png")]) == 0
    assert started == ["threads", "processes", "processes"]
    pictures = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    assert len(pictures) == 3 and len(set(pictures.values())) == 1  # the same picture, whichever kind


def test_a_bad_cluster_flag_or_config_is_one_line_exit_2(tmp_path, capsys, no_cluster_starts):
    out = str(tmp_path / "x.png")
    assert main(["render", "--cluster", "thread", "--outfile", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --cluster: invalid choice: 'thread'" in err, err
    assert "'threads', 'processes'" in err
    with dask.config.set({"dfractal.cluster": "bogus"}):
        for command in (["render"], ["zoom", "--to-span", "1e-3"], ["explore", "--port", "0"]):
            assert main([*command, "--outfile" if command[0] != "explore" else "--iters", out if
                         command[0] != "explore" else "100"]) == 2, command  # fmt: skip
            err = capsys.readouterr().err
            assert err == "dfractal: error: dask config dfractal.cluster must be one of threads, processes, " \
                          "got 'bogus'\n", err  # fmt: skip
        # a scheduler given: every setting is checked all the same (one schema, checked first)
        assert main(["render", "--scheduler", "tcp://127.0.0.1:1", "--outfile", out]) == 2
        assert "dask config dfractal.cluster must be one of" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # no store, no picture
