"""Bad input over real HTTP: xapi's failure codes, client errors for broken bodies, no half-done change."""

from __future__ import annotations

import xmlrpc.client
from typing import Any

import orjson
import pytest
import XenAPI

from pools import MINIMAL_VM, PoolServer

GOOD_VM = MINIMAL_VM


def raw(server: PoolServer, method: str, *params: Any) -> list[str]:
    """The ErrorDescription of a call made without the SDK's help ([] on success)."""
    body = xmlrpc.client.dumps(params, method, allow_none=True)
    result = xmlrpc.client.loads(server.post("/", body).content)[0][0]
    return [] if result["Status"] == "Success" else list(result["ErrorDescription"])


@pytest.fixture(scope="module")
def handle(shared_server: PoolServer) -> str:
    return str(shared_server.session().handle)


class TestFailureCodes:
    def test_unknown_message(self, shared_server: PoolServer, handle: str) -> None:
        """A message Farside does not have: MESSAGE_METHOD_UNKNOWN with its name."""
        assert raw(shared_server, "VM.fly", handle) == ["MESSAGE_METHOD_UNKNOWN", "VM.fly"]
        assert raw(shared_server, "Nope.get_all", handle) == ["MESSAGE_METHOD_UNKNOWN", "Nope.get_all"]
        assert raw(shared_server, "Async.VM.get_all", handle) == [
            "MESSAGE_METHOD_UNKNOWN",
            "Async.VM.get_all",
        ]

    def test_wrong_argument_count(self, shared_server: PoolServer, handle: str) -> None:
        """Too few or too many parameters: expected and received counts after the session, as xapi."""
        assert raw(shared_server, "VM.get_record", handle) == [
            "MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "0"
        ]  # fmt: skip
        assert raw(shared_server, "VM.get_all", handle, "x")[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"

    def test_bad_ref(self, shared_server: PoolServer, handle: str) -> None:
        """A ref naming nothing: HANDLE_INVALID with the class and the ref."""
        assert raw(shared_server, "VM.get_record", handle, "OpaqueRef:nothing") == [
            "HANDLE_INVALID", "VM", "OpaqueRef:nothing"
        ]  # fmt: skip

    def test_ref_of_another_class(self, shared_server: PoolServer, handle: str) -> None:
        """A live ref of another class is not a VM."""
        pool = shared_server.session().xenapi.pool.get_all()[0]
        assert raw(shared_server, "VM.get_name_label", handle, pool) == ["HANDLE_INVALID", "VM", pool]

    def test_unknown_uuid(self, shared_server: PoolServer, handle: str) -> None:
        """An unknown uuid: UUID_INVALID with the class and the uuid."""
        uuid = "00000000-0000-0000-0000-000000000000"
        assert raw(shared_server, "VM.get_by_uuid", handle, uuid) == ["UUID_INVALID", "VM", uuid]

    def test_wrong_type(self, shared_server: PoolServer, handle: str) -> None:
        """An argument of the wrong type: FIELD_TYPE_ERROR with the parameter's name."""
        s = shared_server.session()
        vm = s.xenapi.VM.create(GOOD_VM)
        assert raw(shared_server, "VM.set_order", handle, vm, "many") == ["FIELD_TYPE_ERROR", "value"]
        assert raw(shared_server, "VM.set_name_label", handle, vm, 5) == ["FIELD_TYPE_ERROR", "value"]
        assert raw(shared_server, "VM.add_to_other_config", handle, vm, "k", ["v"]) == [
            "FIELD_TYPE_ERROR", "value"
        ]  # fmt: skip
        assert raw(shared_server, "VM.create", handle, {**GOOD_VM, "VCPUs_max": [1]}) == [
            "FIELD_TYPE_ERROR", "VCPUs_max"
        ]  # fmt: skip

    def test_out_of_range_and_unknown_enum(self, shared_server: PoolServer, handle: str) -> None:
        """Well typed but not allowed: INVALID_VALUE with the field and the value."""
        vm = shared_server.session().xenapi.VM.create(GOOD_VM)
        assert raw(shared_server, "VM.set_order", handle, vm, -1) == ["INVALID_VALUE", "order", "-1"]
        assert raw(shared_server, "VM.set_start_delay", handle, vm, "-5") == [
            "INVALID_VALUE",
            "start_delay",
            "-5",
        ]
        assert raw(shared_server, "VM.set_actions_after_reboot", handle, vm, "explode") == [
            "INVALID_VALUE", "value", "explode"
        ]  # fmt: skip
        assert raw(shared_server, "VM.set_ha_restart_priority", handle, vm, "3")[0] == "INVALID_VALUE"
        assert raw(shared_server, "VM.set_order", handle, vm, str(2**64))[0] == "INVALID_VALUE"

    def test_appliance_refuses_templates(self, shared_server: PoolServer) -> None:
        """set_appliance on a template: OPERATION_NOT_ALLOWED, and the VM stays outside."""
        s = shared_server.session()
        template = s.xenapi.VM.create({**GOOD_VM, "is_a_template": True})
        app = s.xenapi.VM_appliance.create({"name_label": "a", "name_description": ""})
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.set_appliance(template, app)
        assert info.value.details[0] == "OPERATION_NOT_ALLOWED"
        assert s.xenapi.VM.get_appliance(template) == "OpaqueRef:NULL"

    def test_duplicate_map_key(self, shared_server: PoolServer) -> None:
        """add_to_<map> with a key already there: MAP_DUPLICATE_KEY, the old value kept."""
        s = shared_server.session()
        vm = s.xenapi.VM.create(GOOD_VM)
        s.xenapi.VM.add_to_other_config(vm, "k", "1")
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.add_to_other_config(vm, "k", "2")
        assert info.value.details[0] == "MAP_DUPLICATE_KEY"
        assert s.xenapi.VM.get_other_config(vm) == {"k": "1"}


class TestNothingHalfDone:
    def test_rejected_create_leaves_no_vm(self, shared_server: PoolServer) -> None:
        """A VM.create that fails validation creates neither the VM nor its metrics."""
        s = shared_server.session()
        before = (set(s.xenapi.VM.get_all()), set(s.xenapi.VM_metrics.get_all()))
        bad = {**GOOD_VM, "memory_static_min": str(32 << 20)}
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.create(bad)
        assert info.value.details[0] == "MEMORY_CONSTRAINT_VIOLATION"
        assert (set(s.xenapi.VM.get_all()), set(s.xenapi.VM_metrics.get_all())) == before

    def test_destroy_keeps_nothing_dangling(self, shared_server: PoolServer) -> None:
        """VM.destroy removes its VBDs, VIFs and metrics; a vApp's destroy frees its VMs."""
        s = shared_server.session()
        vm = s.xenapi.VM.create(GOOD_VM)
        net = s.xenapi.network.get_all()[0]
        vif = s.xenapi.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500"})
        metrics = s.xenapi.VM.get_metrics(vm)
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.network.destroy(net)
        assert info.value.details == ["NETWORK_CONTAINS_VIF", vif]
        s.xenapi.VM.destroy(vm)
        assert vif not in s.xenapi.VIF.get_all()
        assert metrics not in s.xenapi.VM_metrics.get_all()
        assert vif not in s.xenapi.network.get_VIFs(net)


class TestBrokenBodies:
    def test_malformed_xml_is_a_client_error(self, shared_server: PoolServer) -> None:
        """Not XML: HTTP 400 with a readable body, no traceback."""
        response = shared_server.post("/", b"<methodCall><methodName>VM.get_all")
        assert response.status_code == 400
        assert "Bad Request" in response.text and "Traceback" not in response.text

    def test_dtd_is_refused(self, shared_server: PoolServer) -> None:
        """A DTD (entity expansion) is refused before parsing."""
        body = (
            b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]>'
            b"<methodCall><methodName>&a;</methodName></methodCall>"
        )
        assert shared_server.post("/", body).status_code == 400

    def test_malformed_json_is_a_client_error(self, shared_server: PoolServer) -> None:
        """Not JSON, or not a request object: HTTP 400 with a readable body."""
        for body in (b"{", b"[1,2]", b'{"params": []}', b'{"method": "x", "params": {}}'):
            response = shared_server.post("/jsonrpc", body)
            assert response.status_code == 400, body
            assert "Bad Request" in response.text

    def test_oversized_body(self, shared_server: PoolServer) -> None:
        """A body over the size limit: HTTP 413."""
        response = shared_server.post("/", b"x" * (17 << 20))
        assert response.status_code == 413

    def test_json_errors_keep_the_envelope(self, shared_server: PoolServer, handle: str) -> None:
        """A XenAPI failure over JSON-RPC is an error in the envelope, not an HTTP error."""
        body = orjson.dumps({"method": "VM.get_record", "params": [handle, "OpaqueRef:x"], "id": 7})
        response = shared_server.post("/jsonrpc", body)
        assert response.status_code == 200
        assert response.json() == {"result": None, "error": ["HANDLE_INVALID", "VM", "OpaqueRef:x"], "id": 7}


def test_refs_do_not_cross_pools(two_pools: tuple[PoolServer, PoolServer]) -> None:
    """A ref or a session of one pool is rejected by the other; uuids are what cross sites."""
    a, b = two_pools
    sa, sb = a.session(), b.session()
    vm = sa.xenapi.VM.create(GOOD_VM)
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.VM.get_record(vm)
    assert info.value.details == ["HANDLE_INVALID", "VM", vm]
    pool_a = sa.xenapi.pool.get_all()[0]
    assert pool_a not in sb.xenapi.pool.get_all()
    result = XenAPI.Session(b.url).pool.get_all(sa.handle)
    assert result["ErrorDescription"] == ["SESSION_INVALID", sa.handle]
