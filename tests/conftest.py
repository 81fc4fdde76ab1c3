"""Fixtures shared by every suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pools import PoolServer, make_pool


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
