"""xe's field names, markers, values and filters over XenAPI records, and failures as xe prints them."""

from __future__ import annotations

from typing import Any

import pytest

from farside.cli.xe.command import Params, field_param, matches, selected_fields
from farside.cli.xe.failures import XeError, describe
from farside.cli.xe.fields import Lookup, Row, parse_bool, parse_int
from farside.cli.xe.records import PBD, VDI, VM

HOST = "OpaqueRef:host"
APP = "OpaqueRef:app"
TABLES: dict[str, dict[str, dict[str, Any]]] = {
    "host": {HOST: {"uuid": "host-uuid", "name_label": "node1"}},
    "VM_appliance": {APP: {"uuid": "app-uuid", "name_label": "shop"}},
    "VM_metrics": {},
    "VM_guest_metrics": {},
}


def fake_call(method: str, *args: Any) -> Any:
    cls, _, message = method.partition(".")
    assert message == "get_all_records", method
    return TABLES[cls]


def vm_row(**changes: Any) -> Row:
    record = {"uuid": "vm-uuid", "name_label": "web", "power_state": "Running", "appliance": APP, "tags": ["a", "b"],
              "other_config": {"tier": "front"}, "resident_on": HOST, "metrics": "OpaqueRef:NULL",
              "ha_always_run": False, "HVM_shadow_multiplier": 1.0, "is_a_template": False,
              "affinity": "OpaqueRef:NULL"}  # fmt: skip
    record.update(changes)
    return Row("VM", "OpaqueRef:vm", record, Lookup(fake_call))


def test_labels_carry_xe_markers() -> None:
    """RO/RW for plain fields, MRO/MRW for maps, SRO/SRW for sets, [DEPRECATED] where xe says so."""
    labels = {f.name: f.label for f in VM.fields}
    assert labels["uuid"] == "uuid ( RO)"
    assert labels["name-label"] == "name-label ( RW)"
    assert labels["other-config"] == "other-config (MRW)"
    assert labels["VBDs"] == "VBDs (SRO)"
    assert labels["tags"] == "tags (SRW)"
    assert labels["ha-always-run"] == "ha-always-run ( RO) [DEPRECATED]"  # Farside has no HA: not settable
    assert {f.name: f.label for f in PBD.fields}["device-config"] == "device-config (MRO)"


def test_values_as_xe_shows_them() -> None:
    """Power states in lower case, refs as uuids (or <not in database>), sets and maps joined, floats to 3 places."""
    row = vm_row()
    got = {f.name: f.get(row) for f in VM.fields if f.name in (
        "power-state", "appliance", "resident-on", "affinity", "tags", "other-config", "ha-always-run",
        "HVM-shadow-multiplier", "memory-actual")}  # fmt: skip
    assert (
        got
        == {
            "power-state": "running",
            "appliance": "app-uuid",
            "resident-on": "host-uuid",
            "affinity": "<not in database>",
            "tags": "a, b",
            "other-config": "tier: front",
            "ha-always-run": "false",
            "HVM-shadow-multiplier": "1.000",
            "memory-actual": "<not in database>",
        }
        if "affinity" in got
        else got
    )
    assert VM.by_name["affinity"].get(vm_row(affinity="OpaqueRef:NULL")) == "<not in database>"
    vdi = Row("VDI", "r", {"type": "metadata"}, Lookup(fake_call))
    assert VDI.by_name["type"].get(vdi) == "Metadata"


def test_filters() -> None:
    """Filters match a field's shown value, a map entry (map:key=value) or a set member (set:contains=value)."""
    row = vm_row()
    assert matches(row, VM, "power-state", "running") and not matches(row, VM, "power-state", "Running")
    assert matches(row, VM, "other-config:tier", "front") and not matches(row, VM, "other-config:tier", "back")
    assert matches(row, VM, "tags:contains", "b") and not matches(row, VM, "tags:contains", "c")
    accepts = field_param(VM)
    assert accepts("name-label") and accepts("other-config:any") and accepts("tags:contains")
    assert not accepts("colour") and not accepts("name-label:x") and not accepts("tags:other")


def test_params_selection_keeps_xe_order() -> None:
    """params= picks fields in the class's order, not the order typed; params=all picks every one."""
    chosen = selected_fields(VDI, Params([("params", "metadata-latest,uuid,sr-uuid")]), ())
    assert [f.name for f in chosen] == ["uuid", "sr-uuid", "metadata-latest"]
    assert len(selected_fields(VM, Params([("params", "all")]), ("uuid",))) == len(VM.fields)
    assert [f.name for f in selected_fields(VM, Params([]), VM.list_params)] == ["uuid", "name-label", "power-state"]
    with pytest.raises(XeError, match="Unknown field 'colour'"):
        selected_fields(VM, Params([("params", "uuid,colour")]), ())


def test_failures_as_xe_prints_them() -> None:
    """A known code prints its description and named parameters (refs as uuids); others print code and params."""
    lines = describe("VM_BAD_POWER_STATE", ["OpaqueRef:vm", "halted", "running"], lambda cls, ref: f"{cls}-uuid")
    assert lines[0].startswith("You attempted an operation on a VM that was not in an appropriate power state")
    assert lines[1:] == ["vm: VM-uuid", "expected: halted", "actual: running"]
    assert describe("UUID_INVALID", ["VM", "x"]) == ["The uuid you supplied was invalid.", "type: VM", "uuid: x"]
    leased = ["/luns/a", "pool-uuid", "Site A", "2026-11-27T16:00:00Z"]
    assert describe("LUN_LEASED_BY_OTHER_POOL", leased) == [
        "Error code: LUN_LEASED_BY_OTHER_POOL",
        "Error parameters: /luns/a, pool-uuid, Site A, 2026-11-27T16:00:00Z",
        "Pool Site A has /luns/a plugged (lease until 2026-11-27T16:00:00Z): unplug its SR there, "
        "or if it is down, retry after that.",
    ]
    assert describe("LUN_IS_MIRROR_TARGET", ["/luns/b", "lun1"])[-1] == (
        "The mirror lun1 still replicates into /luns/b: split it first (farside mirror split lun1)."
    )
    assert describe("SOMETHING_ELSE", ["a"]) == ["Error code: SOMETHING_ELSE", "Error parameters: a"]
    assert describe("SR_HAS_PBD", [])[1] == "sr: <unknown>"


def test_values_to_set_are_checked() -> None:
    """Ints and bools given to param-set are checked before any call, with xe's message."""
    assert parse_int("order")("2") == "2" and parse_bool("shared")("yes") is True
    with pytest.raises(XeError, match="Failed to parse parameter 'order': expecting an integer"):
        parse_int("order")("first")
    with pytest.raises(XeError, match="expecting a boolean"):
        parse_bool("shared")("maybe")
