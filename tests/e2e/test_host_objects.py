"""The host's own objects over real HTTP: its control domain, its PIFs, network purposes,
secrets, and host/session messages with xapi's answers on a one-host pool."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import XenAPI

from farside.db import Database
from farside.hypervisor import netif
from farside.model.roles import Role
from farside.model.types import NULL_REF

from pools import PoolServer


def failure(call: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return list(info.value.details)


@pytest.fixture(scope="module")
def users(shared_server: PoolServer) -> Iterator[dict[str, XenAPI.Session]]:
    for name, role in (("reader", Role.READ_ONLY), ("operator", Role.POOL_OPERATOR)):
        shared_server.add_user(name, role)
    sessions = {"root": shared_server.session(), "reader": shared_server.session("reader", "pw"),
                "operator": shared_server.session("operator", "pw")}  # fmt: skip
    yield sessions
    for s in sessions.values():
        s.xenapi.session.logout()


def test_control_domain(users: dict[str, XenAPI.Session]) -> None:
    """The host's control domain runs as domid 0 on it, and refuses every lifecycle operation."""
    s = users["root"]
    host = s.xenapi.host.get_all()[0]
    dom0 = s.xenapi.host.get_control_domain(host)
    record = s.xenapi.VM.get_record(dom0)
    assert record["is_control_domain"] and record["power_state"] == "Running"
    assert (record["domid"], record["resident_on"], record["allowed_operations"]) == ("0", host, [])
    assert dom0 in s.xenapi.host.get_resident_VMs(host)
    for call in (s.xenapi.VM.start, s.xenapi.VM.resume):
        assert failure(call, dom0, False, False)[0] == "OPERATION_NOT_ALLOWED"
    for call in (s.xenapi.VM.hard_shutdown, s.xenapi.VM.clean_shutdown, s.xenapi.VM.suspend, s.xenapi.VM.destroy):
        assert failure(call, dom0)[0] == "OPERATION_NOT_ALLOWED"
    assert s.xenapi.VM.get_power_state(dom0) == "Running"
    # Nothing to evacuate: the control domain stays with its host.
    assert s.xenapi.host.get_vms_which_prevent_evacuation(host) == {}
    s.xenapi.host.evacuate(host, NULL_REF, "0")


def test_control_domain_made_for_an_older_pool(server: PoolServer) -> None:
    """A pool database from before control domains gets one when its server starts."""
    server.stop()
    db = Database.open(server.data_dir / "pool.db")
    try:
        with db.write() as tx:
            host = tx.refs("host")[0]
            tx.destroy("VM", tx.get_field("host", host, "control_domain"))
            tx.set_fields("host", host, {"control_domain": NULL_REF})
    finally:
        db.close()
    server.start()
    s = server.session()
    dom0 = s.xenapi.host.get_control_domain(s.xenapi.host.get_all()[0])
    assert s.xenapi.VM.get_is_control_domain(dom0)
    assert [vm for vm, r in s.xenapi.VM.get_all_records().items() if r["is_control_domain"]] == [dom0]


def test_management_pif(users: dict[str, XenAPI.Session]) -> None:
    """The management PIF is the host's real interface, on the default network, read-only to clients."""
    s = users["root"]
    host = s.xenapi.host.get_all()[0]
    pifs = s.xenapi.PIF.get_all_records()
    [(ref, pif)] = [(r, p) for r, p in pifs.items() if p["management"]]
    real = {i.device: i for i in netif.interfaces()}[pif["device"]]
    assert (pif["MAC"], pif["MTU"], pif["IP"], pif["netmask"]) == (real.mac, str(real.mtu), real.ipv4, real.netmask)
    assert (pif["host"], pif["managed"], pif["VLAN"]) == (host, False, "-1")
    assert s.xenapi.network.get_bridge(pif["network"]) == "xenbr0"
    assert ref in s.xenapi.host.get_PIFs(host) and ref in s.xenapi.network.get_PIFs(pif["network"])
    assert s.xenapi.PIF.get_by_uuid(pif["uuid"]) == ref
    # Farside never reconfigures the host's network.
    assert failure(s.xenapi.PIF.reconfigure_ip, ref, "DHCP", "", "", "", "") == ["PIF_UNMANAGED", ref]
    assert failure(s.xenapi.PIF.unplug, ref) == ["PIF_UNMANAGED", ref]
    assert failure(s.xenapi.PIF.forget, ref) == ["PIF_IS_MANAGEMENT_INTERFACE", ref]
    assert failure(s.xenapi.PIF.plug, "OpaqueRef:nope") == ["HANDLE_INVALID", "PIF", "OpaqueRef:nope"]
    s.xenapi.PIF.scan(host)
    assert s.xenapi.PIF.get_all_records() == pifs  # a scan of an unchanged host changes nothing
    assert failure(users["reader"].xenapi.PIF.scan, host)[0] == "RBAC_PERMISSION_DENIED"
    assert users["reader"].xenapi.PIF.get_record(ref) == pif


def test_network_purpose(users: dict[str, XenAPI.Session]) -> None:
    """Purposes are a set; nbd and insecure_nbd exclude each other; only pool-admin changes them."""
    s = users["root"]
    net = s.xenapi.network.create({"name_label": "nbd net"})
    s.xenapi.network.add_purpose(net, "nbd")
    s.xenapi.network.add_purpose(net, "nbd")
    assert s.xenapi.network.get_purpose(net) == ["nbd"]
    assert failure(s.xenapi.network.add_purpose, net, "insecure_nbd") == [
        "NETWORK_INCOMPATIBLE_PURPOSES", "insecure_nbd", "nbd"]  # fmt: skip
    assert failure(s.xenapi.network.add_purpose, net, "fast")[0] == "INVALID_VALUE"
    assert failure(users["operator"].xenapi.network.remove_purpose, net, "nbd")[0] == "RBAC_PERMISSION_DENIED"
    s.xenapi.network.remove_purpose(net, "nbd")
    assert s.xenapi.network.get_purpose(net) == []
    s.xenapi.network.destroy(net)


def test_secrets_for_pool_admin_only(users: dict[str, XenAPI.Session]) -> None:
    """Only pool-admin creates, reads and changes secrets; weaker roles get no events of them either."""
    s, operator = users["root"], users["operator"]
    before = getattr(operator.xenapi.event, "from")(["secret"], "", 0.0)
    assert before["events"] == [] and "secret" not in before["valid_ref_counts"]
    ref = s.xenapi.secret.create({"value": "hunter2", "other_config": {"for": "iscsi"}})
    assert s.xenapi.secret.get_value(ref) == "hunter2"
    s.xenapi.secret.set_value(ref, "s3cret")
    assert s.xenapi.secret.get_record(ref)["value"] == "s3cret"
    for call, args in (
        (operator.xenapi.secret.get_value, (ref,)),
        (operator.xenapi.secret.get_all_records, ()),
        (operator.xenapi.secret.create, ({"value": "x"},)),
        (operator.xenapi.secret.destroy, (ref,)),
    ):
        assert failure(call, *args)[0] == "RBAC_PERMISSION_DENIED"  # fmt: skip
    later = getattr(operator.xenapi.event, "from")(["secret", "pool"], before["token"], 0.0)
    assert all(e["class"] != "secret" for e in later["events"])
    uuid = "1e0a6b2c-5d7e-4f80-9a1b-2c3d4e5f6a7b"
    introduced = s.xenapi.secret.introduce(uuid, "v", {})
    assert s.xenapi.secret.get_by_uuid(uuid) == introduced
    assert failure(s.xenapi.secret.introduce, uuid, "v", {})[0] == "INVALID_VALUE"
    for r in (ref, introduced):
        s.xenapi.secret.destroy(r)
    assert s.xenapi.secret.get_all() == []


def test_host_messages(users: dict[str, XenAPI.Session]) -> None:
    """The clock, plugins, status capabilities and subjects, as xapi answers them here."""
    s = users["root"]
    host = s.xenapi.host.get_all()[0]
    servertime = str(s.xenapi.host.get_servertime(host))
    assert len(servertime) == 18 and servertime.endswith("Z")
    assert len(str(s.xenapi.host.get_server_localtime(host))) == 17
    assert failure(s.xenapi.host.call_plugin, host, "echo", "main", {}) == ["XENAPI_MISSING_PLUGIN", "echo"]
    assert failure(users["operator"].xenapi.host.call_plugin, host, "echo", "main", {})[0] == "RBAC_PERMISSION_DENIED"
    assert "<system-status-capabilities>" in s.xenapi.host.get_system_status_capabilities(host)
    assert users["reader"].xenapi.session.get_all_subject_identifiers() == []
    assert failure(users["reader"].xenapi.host.evacuate, host, NULL_REF, "0")[0] == "RBAC_PERMISSION_DENIED"
