"""Shared fixtures.

Cluster tests run on real worker processes: a session-wide LocalCluster of two
single-threaded worker processes on 127.0.0.1 (``client``), one of a single
worker (``client1``), and in test_integration.py the ``dask scheduler`` and
``dask worker`` command-line programs themselves.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distributed import Client

from dfractal_dask.cluster import local_cluster

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def seed_vectors() -> dict:
    """Tables and pixels computed by the seed's own code (shared/data)."""
    return json.loads((DATA / "seed_colour_vectors.json").read_text())


@pytest.fixture(scope="session")
def client():
    """A client of a two-worker cluster (worker processes), shared by the session."""
    with local_cluster(2) as cluster, Client(cluster, set_as_default=False) as c:
        yield c


@pytest.fixture(scope="session")
def client1():
    """A client of a one-worker cluster."""
    with local_cluster(1) as cluster, Client(cluster, set_as_default=False) as c:
        yield c
