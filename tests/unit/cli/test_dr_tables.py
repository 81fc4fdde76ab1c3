"""Tables and times as ``farside dr`` prints them."""

from __future__ import annotations

import io
import xmlrpc.client

from rich.console import Console

from farside.cli.dr.tables import age, show, when


def test_plain_columns_when_not_a_terminal() -> None:
    out = io.StringIO()
    show(Console(file=out, width=40), "Runs", ["uuid", "state"], [("abc", "done"), ("a-much-longer-one", "[failed]")])
    assert out.getvalue().splitlines() == [
        "Runs",
        "uuid               state",
        "abc                done",
        "a-much-longer-one  [failed]",  # brackets are text, not markup
    ]


def test_a_drawn_table_on_a_terminal() -> None:
    out = io.StringIO()
    show(Console(file=out, width=80, force_terminal=True, color_system=None), "", ["uuid"], [("[x] y",)])
    assert "uuid" in out.getvalue() and "[x] y" in out.getvalue() and "┃" in out.getvalue()


def test_ages_and_dates_for_people() -> None:
    assert [age(s) for s in (None, 3.7, 150, 7300, 3 * 86400)] == ["?", "3 s", "2 min", "2 h 1 min", "3 d"]
    assert when(xmlrpc.client.DateTime("20260502T10:04:05Z")) == "2026-05-02 10:04:05"
    assert when("19700101T00:00:00Z") == "" and when("") == ""
