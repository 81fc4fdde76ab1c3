"""Fixtures of the CLI's unit tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from login_servers import LoginServers


@pytest.fixture
def login_servers(tmp_path: Path) -> Iterator[LoginServers]:
    """Fake pool servers and broken ones, stopped when the test ends."""
    started = LoginServers(tmp_path)
    try:
        yield started
    finally:
        started.stop()
