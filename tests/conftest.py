"""Shared fixtures.

Cluster tests run on real worker processes: a session-wide LocalCluster of two
single-threaded worker processes on 127.0.0.1 (``client``), one of a single
worker (``client1``), both asked for processes (the embedded cluster's default
kind is threads: the CLI's tests run on that), and in test_integration.py the ``dask scheduler`` and
``dask worker`` command-line programs themselves.

Markers (registered in pyproject.toml, ``--strict-markers``): ``browser`` and
``slow`` are set in the test modules; ``cluster`` is set there on tests that
start a cluster themselves (an embedded LocalCluster through the CLI,
``daskprocs.dask_processes``), and here, by :func:`pytest_collection_modifyitems`,
on every test that uses a fixture of :data:`CLUSTER_FIXTURES` (directly or
through another fixture).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distributed import Client

from dfractal_dask.cluster import local_cluster

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


#: Fixtures that start cluster processes: ``client``, ``client1`` here, and the
#: test modules' own (``cluster``, ``real_cluster``: ``dask scheduler`` and
#: ``dask worker`` processes; ``rendered``: a render on an embedded LocalCluster).
CLUSTER_FIXTURES = frozenset({"client", "client1", "cluster", "real_cluster", "rendered"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``cluster`` every test that uses a fixture of :data:`CLUSTER_FIXTURES`."""
    for item in items:
        if CLUSTER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def seed_vectors() -> dict:
    """Tables and pixels computed by the seed's own code (shared/data)."""
    return json.loads((DATA / "seed_colour_vectors.json").read_text())


@pytest.fixture(scope="session")
def client():
    """A client of a two-worker cluster (worker processes), shared by the session."""
    with local_cluster(2, "processes") as cluster, Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="session")
def client1():
    """A client of a one-worker cluster (a worker process)."""
    with local_cluster(1, "processes") as cluster, Client(cluster, set_as_default=False) as c:
        yield c
