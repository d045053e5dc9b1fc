"""Where things listen: the embedded cluster, its dashboard and `dfractal explore`
bind to 127.0.0.1 only (checked on the real sockets, not on printed links)."""

import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from dfractal_dask.cluster import connect

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
def test_the_embedded_cluster_listens_on_loopback_only():
    code = (
        "from dfractal_dask.cluster import connect\n"
        "import sys\n"
        "with connect(None, n_workers=2) as c:\n"
        "    print(c.scheduler.address, c.dashboard_link, *c.scheduler_info()['workers'], flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        addresses = proc.stdout.readline().split()
        assert len(addresses) == 4, addresses  # scheduler, dashboard, two workers
        assert all(re.match(r"(tcp|http)://127\.0\.0\.1:\d+", a) for a in addresses), addresses
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
