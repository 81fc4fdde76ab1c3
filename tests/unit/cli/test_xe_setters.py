"""Every field xe shows as writable ( RW) is set through a message the pool server has."""

from __future__ import annotations

from typing import Any

import pytest

from farside.cli.xe.fields import Row
from farside.cli.xe.records import APPLIANCE, PBD, SR, VDI, VM, View
from farside.model.messages import lookup


class Calls:
    """Stands in for the lookup a command shares: records the messages a setter would send."""

    def __init__(self) -> None:
        self.made: list[str] = []

    def call(self, method: str, *args: Any) -> Any:
        self.made.append(method)
        return "OpaqueRef:x"


@pytest.mark.parametrize("view", [VM, SR, PBD, VDI, APPLIANCE], ids=lambda v: v.noun)
def test_writable_fields_have_a_message_on_the_server(view: View) -> None:
    missing = []
    for field in view.fields:
        if field.set is None:
            continue
        calls = Calls()
        row = Row(view.cls, "OpaqueRef:self", {}, calls)  # type: ignore[arg-type]
        for value in ("1", "true", "", "x"):
            try:
                field.set(row, value)
                break
            except Exception:  # a value this field refuses: try the next kind of value
                continue
        assert calls.made, f"{field.name}: no value could be set"
        setter = calls.made[-1]
        if lookup(setter) is None:
            missing.append(f"{field.name} ({setter})")
    assert not missing, f"xe shows these {view.noun} fields as RW, but the server has no setter: {missing}"
