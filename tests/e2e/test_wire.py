"""What real XenAPI clients depend on, over real HTTP: paths, content types, system.listMethods,
Class_message aliases, get_all_records_where, event.from's and event.next's rules and wire types,
allowed_operations and domid, the versions a host reports. Both wires, the SDK and raw requests."""

from __future__ import annotations

import json
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import XenAPI

from farside.model.messages import role_table
from farside.model.roles import Role

from pools import ADMIN_PASSWORD, MINIMAL_VM, PoolServer, make_pool
from vms import make_sr

pytestmark = pytest.mark.e2e
HISTORY = 300  # the server keeps this many changes; older tokens lose events


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PoolServer]:
    data = tmp_path_factory.mktemp("wire") / "pool"
    make_pool(data)
    server = PoolServer(data, env={"FARSIDE_EVENT_HISTORY": str(HISTORY)}).start()
    server.add_user("reader", Role.READ_ONLY, "pw")
    try:
        yield server
    finally:
        server.stop()


def xml_call(srv: PoolServer, method: str, *params: Any, path: str = "/") -> httpx.Response:
    return srv.post(path, xmlrpc.client.dumps(params, method))


def xml_value(answer: httpx.Response) -> Any:
    (result,), _ = xmlrpc.client.loads(answer.content)
    return result


def json_call(srv: PoolServer, method: str, *params: Any) -> dict[str, Any]:
    answer = srv.post("/jsonrpc", json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}))
    assert answer.headers["content-type"] == "application/json"
    data: dict[str, Any] = answer.json()
    return data


def event_from(s: XenAPI.Session, classes: list[str], token: str, timeout: float) -> Any:
    return s.xenapi.event_from(classes, token, timeout)  # the alias: "from" is a Python keyword


class TestPaths:
    def test_xml_rpc_on_any_unclaimed_path_with_xapis_content_type(self, srv: PoolServer) -> None:
        """The SDK works against /xmlrpc; answers say exactly text/xml, as xapi's do."""
        s = srv.session(path="/xmlrpc")
        assert s.xenapi.pool.get_all()
        for path in ("/", "/RPC2", "/xmlrpc", "/any/where"):
            answer = xml_call(srv, "session.login_with_password", "root", ADMIN_PASSWORD, path=path)
            assert answer.status_code == 200 and answer.headers["content-type"] == "text/xml"
            assert xml_value(answer)["Status"] == "Success"

    def test_paths_of_other_handlers_keep_their_answer(self, srv: PoolServer) -> None:
        """A POST to a path another handler claims is not taken for XML-RPC."""
        assert srv.post("/import_raw_vdi", b"<methodCall/>").status_code == 405
        assert srv.post("/jsonrpc", b"{}").headers["content-type"].startswith("text/plain")  # a 400, not XML


class TestSystem:
    def test_list_methods_needs_no_session_and_lists_every_message(self, srv: PoolServer) -> None:
        """system.listMethods: a bare XML-RPC array (as xapi sends it) of every message answered."""
        answer = xml_call(srv, "system.listMethods")
        assert answer.headers["content-type"] == "text/xml"
        names = xml_value(answer)
        assert isinstance(names, list)
        assert set(role_table()) <= set(names)
        assert {"event.from", "VM.get_all_records_where", "system.listMethods"} <= set(names)
        assert not any(n.startswith("Async.") or "_get_all" in n.split(".")[0] for n in names)
        assert xmlrpc.client.ServerProxy(srv.url).system.listMethods() == names
        assert json_call(srv, "system.listMethods")["result"] == names

    def test_is_alive_echoes(self, srv: PoolServer) -> None:
        """system.isAlive:<x> answers its first parameter, as xapi does."""
        assert xml_value(xml_call(srv, "system.isAlive:check", "hello")) == {"Status": "Success", "Value": "hello"}


class TestAliases:
    def test_class_message_aliases_on_both_wires(self, srv: PoolServer) -> None:
        """xapi's second names (VM_get_all, session_login_with_password) answer like the first."""
        s = srv.session()
        assert s.xenapi.VM_get_all() == s.xenapi.VM.get_all()
        assert s.xenapi.host_metrics_get_all() == s.xenapi.host_metrics.get_all()
        login = json_call(srv, "session_login_with_password", "root", ADMIN_PASSWORD, "1.0", "t")
        session = login["result"]
        assert json_call(srv, "pool_get_all", session)["result"] == s.xenapi.pool.get_all()
        assert xml_value(xml_call(srv, "Async.VM_get_all", session))["Status"] == "Failure"  # no Async of a getter
        assert xml_value(xml_call(srv, "VM_no_such_thing", session))["ErrorDescription"] == [
            "MESSAGE_METHOD_UNKNOWN",
            "VM_no_such_thing",
        ]


class TestWhere:
    def test_records_where_with_xapis_language(self, srv: PoolServer) -> None:
        """get_all_records_where selects by xapi's expressions; a read-only user may call it."""
        s = srv.session()
        web = s.xenapi.VM.create({**MINIMAL_VM, "name_label": "where-web"})
        s.xenapi.VM.create({**MINIMAL_VM, "name_label": "where-db"})
        reader = srv.session("reader", "pw")
        found = reader.xenapi.VM.get_all_records_where('field "name__label" = "where-web"')
        assert list(found) == [web] and found[web]["name_label"] == "where-web"
        either = 'field "name__label"="where-web" or field "name__label"="where-db"'
        assert len(reader.xenapi.VM.get_all_records_where(either)) == 2
        dom0 = reader.xenapi.VM.get_all_records_where('field "is_control_domain" = "true"')
        assert reader.xenapi.VM.get_all_records_where('not field "power_state" = "Halted"').keys() == dom0.keys()
        assert set(reader.xenapi.VM.get_all_records_where("true")) == set(s.xenapi.VM.get_all())
        assert reader.xenapi.pool.get_all_records_where("false") == {}
        session = json_call(srv, "session.login_with_password", "reader", "pw")["result"]
        by_json = json_call(srv, "VM.get_all_records_where", session, f'field "uuid" = "{found[web]["uuid"]}"')
        assert list(by_json["result"]) == [web]

    def test_bad_expressions_are_invalid_value(self, srv: PoolServer) -> None:
        """A malformed expression or an unknown field is xapi's INVALID_VALUE, never a traceback."""
        s = srv.session()
        for expr in ('field "name__label" = ', "name = 'x'", 'field "spaceship" = "x"'):
            with pytest.raises(XenAPI.Failure) as info:
                s.xenapi.VM.get_all_records_where(expr)
            assert info.value.details[:2] == ["INVALID_VALUE", expr]

    def test_sessions_of_others_stay_invisible(self, srv: PoolServer) -> None:
        """session.get_all_records_where shows a read-only user its own sessions only."""
        root = srv.session()
        reader = srv.session("reader", "pw")
        mine = reader.xenapi.session.get_all_records_where("true")
        assert reader._session in mine and root._session not in mine
        assert reader.xenapi.session.get_all_records_where(f'field "_ref" = "{root._session}"') == {}


class TestEvents:
    def test_wire_types_are_xapis(self, srv: PoolServer) -> None:
        """Ids are strings, valid_ref_counts ints, tokens xapi's zero-padded pairs; on both wires."""
        s = srv.session()
        batch = event_from(s, ["pool"], "", 0.0)
        assert batch["token"].count(",") == 1 and len(batch["token"]) == 41
        (event,) = batch["events"]
        assert isinstance(event["id"], str) and int(event["id"]) >= 0
        assert isinstance(event["timestamp"], str)
        assert batch["valid_ref_counts"]["pool"] == 1 and isinstance(batch["valid_ref_counts"]["vm"], int)
        session = json_call(srv, "session.login_with_password", "root", ADMIN_PASSWORD)["result"]
        by_json = json_call(srv, "event.from", session, ["pool"], "", 0.0)["result"]
        assert by_json["valid_ref_counts"]["pool"] == 1 and isinstance(by_json["events"][0]["id"], str)

    def test_subscription_rules(self, srv: PoolServer) -> None:
        """Unknown classes match nothing; vm/<ref> selects only that VM; "*" selects everything."""
        s = srv.session()
        one = s.xenapi.VM.create({**MINIMAL_VM, "name_label": "one"})
        other = s.xenapi.VM.create({**MINIMAL_VM, "name_label": "other"})
        start = event_from(s, ["VGPU", "no_such_class"], "", 0.0)  # classes Farside has none of
        assert start["events"] == []
        snapshot = event_from(s, [f"VM/{one}"], "", 0.0)
        assert [(e["class"], e["ref"]) for e in snapshot["events"]] == [("vm", one)]
        s.xenapi.VM.set_name_label(other, "other2")
        s.xenapi.VM.set_name_label(one, "one2")
        batch = event_from(s, [f"vm/{one}", "PIF"], start["token"], 5.0)
        assert [(e["ref"], e["operation"]) for e in batch["events"]] == [(one, "mod")]
        everything = event_from(s, ["*"], start["token"], 5.0)
        assert {one, other} <= {e["ref"] for e in everything["events"]}
        s.xenapi.VM.destroy(other)
        gone = event_from(s, ["vm"], everything["token"], 5.0)["events"]
        assert [(e["operation"], "snapshot" in e) for e in gone if e["ref"] == other] == [("del", False)]

    def test_inject_gives_a_token_that_delivers_the_touch(self, srv: PoolServer) -> None:
        """event.inject's token makes event.from deliver the injected event; a bad ref is HANDLE_INVALID."""
        s = srv.session()
        pool = s.xenapi.pool.get_all()[0]
        token = s.xenapi.event.inject("pool", pool)
        batch = event_from(s, ["pool"], token, 5.0)
        assert [e["ref"] for e in batch["events"]] == [pool]
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.event.inject("VM", pool)
        assert info.value.details == ["HANDLE_INVALID", "VM", pool]

    def test_register_next_unregister(self, srv: PoolServer) -> None:
        """event.next needs event.register first, then returns what the registered classes saw."""
        s = srv.session()
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.event.next()
        assert info.value.details[0] == "SESSION_NOT_REGISTERED"
        assert info.value.details[1].startswith("trackid=") and s._session not in info.value.details[1]
        vm = s.xenapi.VM.create(MINIMAL_VM)
        s.xenapi.event.register(["vm", "no_such_class"])
        s.xenapi.VM.set_name_label(vm, "next")
        events = s.xenapi.event.next()
        assert [(e["class"], e["operation"], e["ref"]) for e in events] == [("vm", "mod", vm)]
        assert isinstance(events[0]["id"], str) and events[0]["snapshot"]["name_label"] == "next"
        s.xenapi.event.register(["pool"])
        s.xenapi.event.unregister(["vm"])
        s.xenapi.VM.set_name_label(vm, "unheard")
        s.xenapi.pool.set_name_description(s.xenapi.pool.get_all()[0], "heard")
        assert [e["class"] for e in s.xenapi.event.next()] == ["pool"]

    def test_next_carries_no_other_users_sessions(self, srv: PoolServer) -> None:
        """event.next keeps the session rule: another user's login is never in a read-only user's events."""
        reader = srv.session("reader", "pw")
        reader.xenapi.event.register(["session"])
        theirs = srv.session()  # root: another user
        mine = srv.session("reader", "pw")
        events = reader.xenapi.event.next()
        assert [(e["ref"], e["operation"]) for e in events] == [(mine._session, "add")]
        assert theirs._session not in str(events)

    def test_events_lost(self, srv: PoolServer) -> None:
        """A token or a registration older than the kept history gets EVENTS_LOST, as xapi's."""
        s = srv.session()
        token = event_from(s, ["vm"], "", 0.0)["token"]
        s.xenapi.event.register(["vm"])
        vm = s.xenapi.VM.create(MINIMAL_VM)
        for n in range(HISTORY + 5):
            s.xenapi.VM.set_name_label(vm, f"n{n}")
        for call in (lambda: event_from(s, ["vm"], token, 0.0), s.xenapi.event.next):
            with pytest.raises(XenAPI.Failure) as info:
                call()
            assert info.value.details == ["EVENTS_LOST"]


class TestOperations:
    def test_a_new_vm_has_xapis_domid_and_real_operations(self, srv: PoolServer) -> None:
        """VM.create gives domid -1 and lists start, never a message Farside does not answer."""
        s = srv.session()
        vm = s.xenapi.VM.create(MINIMAL_VM)
        record = s.xenapi.VM.get_record(vm)
        assert int(record["domid"]) == -1
        assert "start" in record["allowed_operations"] and "destroy" in record["allowed_operations"]
        names = set(xml_value(xml_call(srv, "system.listMethods")))
        for op in ("clone", "copy", "snapshot", "start_on", "provision"):
            assert (op in record["allowed_operations"]) == (f"VM.{op}" in names), op

    def test_operations_change_with_an_event(self, srv: PoolServer, tmp_path: Path) -> None:
        """Plugging an SR changes its allowed_operations, and a client hears it as a mod."""
        s = srv.session()
        sr = make_sr(s, tmp_path / "lun")
        assert "vdi_create" in s.xenapi.SR.get_allowed_operations(sr)
        token = event_from(s, [f"sr/{sr}"], "", 0.0)["token"]
        (pbd,) = s.xenapi.SR.get_PBDs(sr)
        s.xenapi.PBD.unplug(pbd)
        batch = event_from(s, [f"sr/{sr}"], token, 5.0)
        (event,) = batch["events"]
        assert "vdi_create" not in event["snapshot"]["allowed_operations"]
        assert "plug" in event["snapshot"]["allowed_operations"]


def test_host_reports_a_xenserver_version(srv: PoolServer) -> None:
    """product_version is XenServer 8's; Farside's own is under farside_version."""
    s = srv.session()
    version = s.xenapi.host.get_software_version(s.xenapi.host.get_all()[0])
    assert version["product_version"] == "8.4.0" and version["platform_version"] == "3.4.0"
    assert version["farside_version"]


def test_xencenter_like_login_sequence(srv: PoolServer) -> None:
    """Login, listMethods, the whole-pool event.from, then waiting for changes: XenCenter's start."""
    client = xmlrpc.client.ServerProxy(srv.url)
    login = client.session.login_with_password("root", ADMIN_PASSWORD, "2.21", "XenCenter/2024")
    session = login["Value"]
    methods = client.system.listMethods()
    assert "event.from" in methods and "pool.get_all_records" in methods
    classes = ["*"]
    first = client.event_from(session, classes, "", 30.0)["Value"]
    kinds = {e["class"] for e in first["events"]}
    assert {"pool", "host", "sr", "network"} - kinds <= {"sr"}  # no SR in a new pool
    pool = client.pool.get_all(session)["Value"][0]
    client.pool.set_name_description(session, pool, "seen by XenCenter")
    batch = client.event_from(session, classes, first["token"], 30.0)["Value"]
    changed = [e for e in batch["events"] if e["class"] == "pool"]
    assert changed and changed[0]["snapshot"]["name_description"] == "seen by XenCenter"
    assert batch["token"] > first["token"]
    client.session.logout(session)
