"""Unit-test options for the model: ``--regenerate-docs`` rewrites docs/api.md's refusal list.

pytest reads ``pytest_addoption`` only from conftests it loads at start-up, so pass the option with
this directory on the command line: ``pytest tests/unit/model --regenerate-docs``.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--regenerate-docs",
        action="store_true",
        default=False,
        help="rewrite the refused-message list in docs/api.md from farside.model.refusals",
    )


@pytest.fixture
def regenerate_docs(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--regenerate-docs", default=False))
