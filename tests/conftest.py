"""Shared fixtures.  Cluster tests use distributed's own test fixtures
(``client``: a real scheduler and two worker processes) or real
``dask scheduler``/``dask worker`` processes (see test_integration.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from distributed.utils_test import (  # noqa: F401 - pytest fixtures
    cleanup,
    client,
    cluster_fixture,
    loop,
    loop_in_thread,
)

DATA = Path(__file__).parent / "data"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def seed_vectors() -> dict:
    """Tables and pixels computed by the seed's own code (shared/data)."""
    return json.loads((DATA / "seed_colour_vectors.json").read_text())
