"""Unit-test options for the hypervisor layer: ``--regenerate`` rewrites the golden argv files.

pytest reads ``pytest_addoption`` only from conftests it loads at start-up, so pass the option with
this directory on the command line: ``pytest tests/unit/hypervisor --regenerate``.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate",
        action="store_true",
        default=False,
        help="rewrite tests/unit/hypervisor/golden/*.argv from the current argv builder",
    )


@pytest.fixture
def regenerate(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--regenerate", default=False))
