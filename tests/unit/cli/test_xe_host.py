"""xe's pif-list, pif-param-list, message-list, console-list and host-call-plugin, pinned by golden text."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from farside.cli.xe import COMMANDS
from farside.cli.xe.command import Context, Params
from farside.cli.xe.failures import describe
from farside.cli.xe.printer import Printer
from farside.errors import XenAPIFailure

GOLDEN = Path(__file__).parent / "golden"
HOST, NET, PIF, VM = "OpaqueRef:host", "OpaqueRef:net", "OpaqueRef:pif", "OpaqueRef:vm"
TABLES: dict[str, dict[str, dict[str, Any]]] = {
    "host": {HOST: {"uuid": "6d1b6e1c-0000-4000-8000-000000000001", "name_label": "node1"}},
    "network": {NET: {"uuid": "6d1b6e1c-0000-4000-8000-000000000002", "name_label": "Pool-wide network"}},
    "VM": {VM: {"uuid": "6d1b6e1c-0000-4000-8000-000000000003", "name_label": "web"}},
    "PIF": {
        PIF: {"uuid": "6d1b6e1c-0000-4000-8000-000000000004", "device": "eth0", "MAC": "02:fc:00:00:00:01",
              "physical": True, "managed": False, "currently_attached": True, "MTU": "1400", "VLAN": "-1",
              "bond_master_of": [], "bond_slave_of": "OpaqueRef:NULL", "tunnel_access_PIF_of": [],
              "tunnel_transport_PIF_of": [], "management": True, "network": NET, "host": HOST,
              "ip_configuration_mode": "Static", "IP": "192.0.2.2", "netmask": "255.255.255.0",
              "gateway": "192.0.2.1", "ipv6_configuration_mode": "Static", "IPv6": ["fd00::2/64"],
              "ipv6_gateway": "", "primary_address_type": "IPv4", "DNS": "10.255.255.53", "properties": {},
              "capabilities": [], "disallow_unplug": True, "other_config": {}, "igmp_snooping_status": "unknown"},
    },
    "message": {
        "OpaqueRef:m1": {"uuid": "6d1b6e1c-0000-4000-8000-000000000005", "name": "LUN_LEASE_LOST", "priority": "1",
                         "cls": "SR", "obj_uuid": "6d1b6e1c-0000-4000-8000-000000000006",
                         "timestamp": "20261208T00:10:00Z", "body": "The lease on the LUN was lost."},
    },
    "console": {
        "OpaqueRef:c1": {"uuid": "6d1b6e1c-0000-4000-8000-000000000007", "VM": VM, "protocol": "vt100",
                         "location": "https://192.0.2.2/console?ref=OpaqueRef:c1", "other_config": {}},
    },
}  # fmt: skip


class FakeSession:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def call(self, method: str, *args: Any) -> Any:
        self.calls.append((method, *args))
        cls, _, message = method.partition(".")
        if message == "get_all_records":
            return TABLES[cls]
        if message == "get_by_uuid":
            return next(ref for ref, r in TABLES[cls].items() if r["uuid"] == args[0])
        if message == "get_record":
            return TABLES[cls][args[0]]
        if method == "host.call_plugin":
            raise XenAPIFailure("XENAPI_MISSING_PLUGIN", args[1])
        raise AssertionError(method)


def run(name: str, *params: tuple[str, str]) -> str:
    out = io.StringIO()
    printer = Printer(out, minimal=False)
    COMMANDS[name].run(Context(FakeSession(), Params(list(params)), printer))  # type: ignore[arg-type]
    printer.flush()
    return out.getvalue()


@pytest.mark.parametrize(
    ("golden", "command", "params"),
    [
        ("xe-pif-list.txt", "pif-list", ()),
        ("xe-pif-param-list.txt", "pif-param-list", (("uuid", "6d1b6e1c-0000-4000-8000-000000000004"),)),
        ("xe-message-list.txt", "message-list", ()),
        ("xe-console-list.txt", "console-list", ()),
    ],
)
def test_as_xe_prints_them(golden: str, command: str, params: tuple[tuple[str, str], ...]) -> None:
    assert run(command, *params) == (GOLDEN / golden).read_text()


def test_filters_and_param_get() -> None:
    """Lists filter on xe's field names; pif-param-get prints one field."""
    assert run("pif-list", ("management", "false")) == ""
    assert run("pif-param-get", ("uuid", "6d1b6e1c-0000-4000-8000-000000000004"), ("param-name", "IP")) == (
        "192.0.2.2\n"
    )


def test_call_plugin_refusal_as_xe_prints_it() -> None:
    """host-call-plugin passes host, plugin, fn and args; an unknown plugin prints xe's text."""
    session = FakeSession()
    printer = Printer(io.StringIO(), minimal=False)
    params = Params([("host-uuid", "6d1b6e1c-0000-4000-8000-000000000001"), ("plugin", "echo"), ("fn", "main"),
                     ("args:x", "1")])  # fmt: skip
    with pytest.raises(XenAPIFailure) as info:
        COMMANDS["host-call-plugin"].run(Context(session, params, printer))  # type: ignore[arg-type]
    assert session.calls[-1] == ("host.call_plugin", HOST, "echo", "main", {"x": "1"})
    lines = describe(info.value.failure[0], info.value.failure[1:])
    assert lines == ["The requested plugin could not be found.", "name: echo"]
