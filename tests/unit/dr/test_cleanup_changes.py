"""A test failover's cleanup says in words how the pool differs from before the test."""

from __future__ import annotations

from farside.dr.steps.cleanup import changes


def test_added_and_removed_read_as_a_sentence() -> None:
    differences = {
        "VM": {"added": ["x", "y"], "removed": []},
        "SR": {"added": [], "removed": ["z"]},
    }
    assert changes(differences) == "VM added x, y; SR removed z"


def test_both_ways_in_one_class() -> None:
    assert changes({"VDI": {"added": ["a"], "removed": ["b"]}}) == "VDI added a; VDI removed b"
