"""Fixtures shared by every suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import pools
from pools import PoolServer, make_pool, pair


@pytest.fixture(autouse=True, scope="session")
def lun_roots(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every test's tmp_path is under the LUN root of the pools make_pool makes."""
    pools.LUN_ROOTS[:] = [str(tmp_path_factory.getbasetemp().resolve())]


@pytest.fixture
def pool_dir(tmp_path: Path) -> Path:
    make_pool(tmp_path / "pool")
    return tmp_path / "pool"


@pytest.fixture
def server(pool_dir: Path) -> Iterator[PoolServer]:
    srv = PoolServer(pool_dir).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolServer]:
    """One server for a module's read-mostly tests (starting one costs about a second)."""
    data = tmp_path_factory.mktemp("shared") / "pool"
    make_pool(data)
    srv = PoolServer(data).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def two_pools(tmp_path: Path) -> Iterator[tuple[PoolServer, PoolServer]]:
    """Site A and Site B: two pool servers on loopback ports, stopped (with their QEMUs) afterwards."""
    make_pool(tmp_path / "a", "Site A")
    make_pool(tmp_path / "b", "Site B")
    pair(tmp_path / "a", tmp_path / "b")
    a, b = PoolServer(tmp_path / "a").start(), PoolServer(tmp_path / "b").start()
    try:
        yield a, b
    finally:
        a.stop()
        b.stop()
