"""A metadata VDI written ahead of this host's clock: "in the future", never a negative age."""

from __future__ import annotations

from farside.cli.dr.tables import age
from farside.dr.plan import Options
from farside.dr.report import render


def test_a_write_time_in_the_future_is_said_so() -> None:
    metadata = {"pool_name": "Site A", "pool_uuid": "p", "vdi": "v", "generation": 3, "written": "20991231T00:00:00Z"}
    journal = {"choose": {"state": "done", "data": {"metadata": [metadata]}}}
    text, report = render(Options.parse("failover", {"luns": "/l"}), journal, "failed")
    assert "written 20991231T00:00:00Z (in the future: this host's clock or the source's is wrong)" in text
    assert report["metadata_age_seconds"]["Site A"] < 0  # the JSON keeps the measure


def test_the_cli_says_in_the_future_too() -> None:
    assert age(-30.0) == "in the future" and age(42.0) == "42 s" and age(None) == "?"
