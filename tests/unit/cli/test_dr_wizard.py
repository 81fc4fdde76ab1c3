"""The wizard's checklist and what it offers, driven through input() as a terminal would be."""

from __future__ import annotations

import builtins
import io
from collections.abc import Iterator
from typing import Any

import pytest
from rich.console import Console

from farside.cli.dr.driver import Drive
from farside.cli.dr.options import Request
from farside.cli.dr.wizard import Wizard, checklist

LOADED: dict[str, Any] = {
    "vapps": {"a1": {"name": "shop", "members": ["v1", "v2"]}, "a2": {"name": "empty", "members": []}},
    "vms": {
        "v1": {"name": "shop-web", "appliance": "a1", "pool_name": "Site A", "memory": 16 << 20},
        "v2": {"name": "shop-db", "appliance": "a1", "pool_name": "Site A", "memory": 16 << 20},
        "v3": {"name": "lone", "appliance": "", "pool_name": "Site A", "memory": 32 << 20},
        "v4": {"name": "alone", "appliance": "", "pool_name": "Site A", "memory": 16 << 20},
    },
}


def drive(wishes: Request | None = None) -> tuple[Drive, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, highlight=False)
    return Drive(session=None, url="", out=console, err=console, wishes=wishes), out  # type: ignore[arg-type]


def answers(monkeypatch: pytest.MonkeyPatch, *lines: str) -> None:
    feed: Iterator[str] = iter(lines)
    monkeypatch.setattr(builtins, "input", lambda *_: next(feed))


def test_items_are_vapps_then_vms_outside_them() -> None:
    items = Wizard._items(LOADED)
    assert items == [
        ("a1", "vApp shop: shop-db, shop-web  (Site A)"),  # an empty vApp has nothing to recover
        ("v4", "VM alone  (Site A, 16 MiB)"),
        ("v3", "VM lone  (Site A, 32 MiB)"),
    ]


def test_the_command_line_preticks(monkeypatch: pytest.MonkeyPatch) -> None:
    wishes = Request("failover", ["/l"], False, [], ["lone"], None, False, False, "")
    d, _ = drive(wishes)
    assert Wizard(d)._preticked(Wizard._items(LOADED), LOADED) == {3}
    d, _ = drive(None)
    assert Wizard(d)._preticked(Wizard._items(LOADED), LOADED) == {1, 2, 3}


def test_checklist_toggles_until_enter(monkeypatch: pytest.MonkeyPatch) -> None:
    d, out = drive()
    answers(monkeypatch, "1 3", "9", "x", "none", "", "all", "2", "")
    assert checklist(d, ["vApp shop", "VM alone", "VM lone"], {1, 2, 3}) == {1, 3}
    text = out.getvalue()
    assert "   2 [x] VM alone" in text and "   1 [ ] vApp shop" in text
    assert "Numbers from 1 to 3, please." in text and "Tick at least one item." in text
    assert "Enter when done:" in text and "()" not in text  # no empty default shown
