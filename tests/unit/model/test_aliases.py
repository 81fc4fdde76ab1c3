"""xapi's second message names (``Class_message``) and the list system.listMethods gives."""

from __future__ import annotations

from farside.model.messages import lookup, role_table, wire_names


def test_aliases_name_the_same_message() -> None:
    """``VM_get_all`` is VM.get_all; a class with an underscore in its name splits right."""
    for alias, wire in (
        ("VM_get_all", "VM.get_all"),
        ("event_from", "event.from"),
        ("session_login_with_password", "session.login_with_password"),
        ("VM_metrics_get_VCPUs_number", "VM_metrics.get_VCPUs_number"),
        ("VM_appliance_start", "VM_appliance.start"),
    ):
        sig = lookup(alias)
        assert sig is not None and sig.wire_name == wire, alias


def test_unknown_names_stay_unknown() -> None:
    """Neither a near miss nor Async_ (which xapi does not answer) is taken."""
    for name in ("VM_fly", "Async_VM_start", "vm_get_all", "VM.get_all_records_where_"):
        assert lookup(name) is None, name


def test_the_list_is_every_message_once() -> None:
    """wire_names lists every message of the role table, sorted, with get_all_records_where."""
    names = wire_names()
    assert names == sorted(set(names)) and set(names) == set(role_table())
    assert "VM.get_all_records_where" in names and "event.next" in names
