"""The fencing declaration as a DR_run option: kept trimmed, and refused for a test failover."""

from __future__ import annotations

import pytest

from farside.dr.plan import STEPS, Options


def test_a_declaration_is_an_option_of_a_failover_or_failback() -> None:
    for kind in ("failover", "failback"):
        assert Options.parse(kind, {"luns": "/l", "declare_site_down": " Site A "}).declare_site_down == "Site A"
    assert Options.parse("failover", {"luns": "/l"}).declare_site_down == ""


def test_a_test_failover_needs_no_declaration() -> None:
    with pytest.raises(ValueError, match="needs no site declared down"):
        Options.parse("test", {"luns": "/l", "declare_site_down": "Site A"})


def test_the_fence_comes_before_anything_is_split_attached_or_started() -> None:
    assert STEPS.index("fence") < STEPS.index("claim") < STEPS.index("split") < STEPS.index("attach")
