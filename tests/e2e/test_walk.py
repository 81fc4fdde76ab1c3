"""The datamodel walk: every message of xapi's 30 classes answers over the wire, with xapi's role check.

Reads xapi's datamodel (``/work/shared/xenapi-datamodel.json``, as tests/unit/model/test_messages.py
finds it) and calls each of its messages over JSON-RPC on one real server, as a read-only user and
as root (pool-admin), with arguments of the right types that name nothing (``OpaqueRef:walk``):
no call may answer ``MESSAGE_METHOD_UNKNOWN`` or ``INTERNAL_ERROR``; the read-only caller of a
message xapi keeps from read-only gets ``RBAC_PERMISSION_DENIED``; a refused message answers its
table's error, its reason last. Two more walks name live objects (a VM with a disk and a NIC, its
SR, the pool, ...) wherever a parameter is a ref of their class, as read-only and as root.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import XenAPI

from farside.model.refusals import parameter, refusal
from farside.model.roles import Role

from pools import ADMIN_PASSWORD, PoolServer
from vms import bootable_vm, make_sr

pytestmark = pytest.mark.e2e

DATAMODEL = Path(__file__).parents[3] / "shared" / "xenapi-datamodel.json"
READER = "walk-reader"
NOWHERE = "OpaqueRef:walk"
# Calling these would end the walking session itself; they are called last, on their own.
LAST = ("session.logout",)
_ids = itertools.count()


def xapi_messages() -> list[dict[str, Any]]:
    if not DATAMODEL.is_file():
        pytest.skip(f"xapi's datamodel is not at {DATAMODEL}")
    return [{**m, "wire": f"{c['name']}.{m['name']}"} for c in json.loads(DATAMODEL.read_text()) for m in c["messages"]]


def dummy(spelling: str) -> Any:
    """A value of the datamodel type ``spelling`` that names no object."""
    if spelling.endswith(" ref"):
        return NOWHERE
    if spelling.endswith(" set"):
        return []
    if spelling.endswith((" map", " record")):
        return {}
    return {"int": 0, "float": 0.0, "bool": False, "datetime": "19700101T00:00:00Z"}.get(spelling, "walk")


def sessionless(message: dict[str, Any]) -> bool:
    params = message["params"]
    return not params or params[0]["type"] != "session ref"


def rpc(client: httpx.Client, method: str, params: list[Any]) -> list[str]:
    """The call's failure (ErrorDescription), or [] when it succeeded."""
    body = {"method": method, "params": params, "id": next(_ids)}
    answer = client.post("/jsonrpc", json=body).json()
    return [] if answer["error"] is None else [str(x) for x in answer["error"]]


def call(client: httpx.Client, session: str, message: dict[str, Any]) -> list[str]:
    args = [dummy(p["type"]) for p in message["params"]]
    if not sessionless(message):
        args[0] = session
    return rpc(client, message["wire"], args)


@pytest.fixture(scope="module")
def client(shared_server: PoolServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=shared_server.url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def walked(shared_server: PoolServer, client: httpx.Client) -> dict[str, dict[str, list[str]]]:
    """Each message's answer for the read-only caller and for root."""
    shared_server.add_user(READER, Role.READ_ONLY, "pw")
    sessions = {
        "read-only": rpc_ok(client, "session.login_with_password", [READER, "pw", "1.0", "walk"]),
        "pool-admin": rpc_ok(client, "session.login_with_password", ["root", ADMIN_PASSWORD, "1.0", "walk"]),
    }
    messages = xapi_messages()
    answers: dict[str, dict[str, list[str]]] = {}
    for caller, session in sessions.items():
        for message in sorted(messages, key=lambda m: m["wire"] in LAST):
            answers.setdefault(message["wire"], {})[caller] = call(client, session, message)
    return answers


def rpc_ok(client: httpx.Client, method: str, params: list[Any]) -> str:
    answer = client.post("/jsonrpc", json={"method": method, "params": params, "id": 0}).json()
    assert answer["error"] is None, answer
    return str(answer["result"])


def test_walk_covers_xapis_messages(walked: dict[str, dict[str, list[str]]]) -> None:
    """All of xapi's messages were called (1205 in the datamodel this was written against)."""
    assert len(walked) == len(xapi_messages()) >= 1205


def test_no_message_is_unknown_or_an_internal_error(walked: dict[str, dict[str, list[str]]]) -> None:
    """No caller ever gets MESSAGE_METHOD_UNKNOWN or INTERNAL_ERROR, whatever the arguments."""
    bad = [
        f"{wire} as {caller}: {failure}"
        for wire, by_caller in walked.items()
        for caller, failure in by_caller.items()
        if failure[:1] in (["MESSAGE_METHOD_UNKNOWN"], ["INTERNAL_ERROR"])
    ]
    assert bad == [], "\n".join(bad)


def test_read_only_caller_is_denied_every_write(walked: dict[str, dict[str, list[str]]]) -> None:
    """Every message xapi keeps from read-only answers RBAC_PERMISSION_DENIED to a read-only caller."""
    wrong = []
    for message in xapi_messages():
        if sessionless(message) or not message["roles"] or "read-only" in message["roles"]:
            continue
        failure = walked[message["wire"]]["read-only"]
        if failure[:1] != ["RBAC_PERMISSION_DENIED"]:
            wrong.append(f"{message['wire']}: {failure or 'succeeded'}")
    assert wrong == [], "\n".join(wrong)


def test_refused_messages_answer_their_table_error(walked: dict[str, dict[str, list[str]]]) -> None:
    """A refused message gives root its group's error, parameters and reason (a missing object first)."""
    wrong = []
    for wire, by_caller in walked.items():
        refused = refusal(wire)
        if refused is None:
            continue
        group = refused.group
        reads_an_object = any(parameter(p)[2] is not None for p in group.params)
        failure = by_caller["pool-admin"]
        if reads_an_object:
            ok = failure[:1] == ["HANDLE_INVALID"]
        else:
            ok = failure[0] == group.code and failure[-1] == group.reason and len(failure) == len(group.params) + 2
        if not ok:
            wrong.append(f"{wire}: {failure}, table says {group.code}")
    assert wrong == [], "\n".join(wrong)


def test_refused_message_names_the_sr_of_its_disk(shared_server: PoolServer, client: httpx.Client) -> None:
    """A disk feature file SRs lack is refused with the disk's own SR, as xapi's SR_OPERATION_NOT_SUPPORTED."""
    session = rpc_ok(client, "session.login_with_password", ["root", ADMIN_PASSWORD, "1.0", "walk"])
    host = rpc_ok(client, "pool.get_master", [session, rpc_list(client, "pool.get_all", [session])[0]])
    lun = shared_server.data_dir.parent / "walk-lun"
    lun.mkdir(exist_ok=True)
    sr = rpc_ok(
        client,
        "SR.create",
        [session, host, {"path": str(lun)}, "0", "walk", "", "file", "user", True, {}],
    )
    vdi = rpc_ok(
        client,
        "VDI.create",
        [session, {"SR": sr, "virtual_size": str(1 << 20), "type": "user", "name_label": "walk"}],
    )
    failure = rpc(client, "VDI.enable_cbt", [session, vdi])
    assert failure[:2] == ["SR_OPERATION_NOT_SUPPORTED", sr]
    assert rpc(client, "Async.VDI.enable_cbt", [session, vdi])[:2] == ["SR_OPERATION_NOT_SUPPORTED", sr]


def rpc_list(client: httpx.Client, method: str, params: list[Any]) -> list[str]:
    answer = client.post("/jsonrpc", json={"method": method, "params": params, "id": 0}).json()
    assert answer["error"] is None, answer
    return [str(x) for x in answer["result"]]


def test_refusal_comes_after_count_and_session_checks(client: httpx.Client) -> None:
    """A refused message checks its parameter count and the session first, as any message."""
    assert rpc(client, "pool.enable_ha", ["OpaqueRef:x"]) == [  # counted after the session, as xapi
        "MESSAGE_PARAMETER_COUNT_MISMATCH",
        "pool.enable_ha",
        "2",
        "0",
    ]
    assert rpc(client, "pool.enable_ha", ["OpaqueRef:no-session", [], {}])[0] == "SESSION_INVALID"
    login = rpc(client, "session.slave_local_login_with_password", ["root", "x"])
    assert login[:2] == ["NOT_IMPLEMENTED", "session.slave_local_login_with_password"]


def test_sdk_sees_a_refusal_as_xapis_failure(shared_server: PoolServer) -> None:
    """Over XML-RPC the SDK raises the refusal as a XenAPI.Failure with the table's details."""
    s = shared_server.session()
    try:
        pool = s.xenapi.pool.get_all()[0]
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.pool.enable_ha([], {})
        refused = refusal("pool.enable_ha")
        assert refused is not None
        assert info.value.details == [refused.group.code, *refused.group.params, refused.group.reason]
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.pool.apply_edition(pool, "premium")
        assert info.value.details[:2] == ["INVALID_EDITION", "premium"]
    finally:
        s.xenapi.session.logout()


@pytest.fixture(scope="module")
def live(shared_server: PoolServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A ref of a live object for each class a walk can name one of: a VM with a disk and a NIC, ..."""
    root = shared_server.session()
    try:
        x = root.xenapi
        sr = make_sr(root, tmp_path_factory.mktemp("walk-live") / "lun")
        vm = bootable_vm(shared_server, root, sr, "walk-live")
        vbd, vif = x.VM.get_VBDs(vm)[0], x.VM.get_VIFs(vm)[0]
        refs = {
            "VM": vm,
            "SR": sr,
            "VBD": vbd,
            "VDI": x.VBD.get_VDI(vbd),
            "VIF": vif,
            "network": x.VIF.get_network(vif),
        }
        refs |= {"VM_metrics": x.VM.get_metrics(vm), "pool": x.pool.get_all()[0], "host": x.host.get_all()[0]}
        refs |= {cls: getattr(x, cls).get_all()[0] for cls in ("PBD", "role", "SM", "host_metrics", "host_cpu")}
        return refs
    finally:
        root.xenapi.session.logout()


def walk_live(client: httpx.Client, session: str, live: dict[str, str], skip: tuple[str, ...]) -> list[str]:
    """Every message but ``skip`` called with ``live`` refs where a class has one: the bad answers."""
    bad = []
    for message in xapi_messages():
        if message["wire"] in skip:
            continue
        args = [live.get(p["type"].removesuffix(" ref"), dummy(p["type"])) for p in message["params"]]
        if not sessionless(message):
            args = [
                session,
                *[
                    session if p["type"] == "session ref" else a
                    for p, a in zip(message["params"][1:], args[1:], strict=True)
                ],
            ]
        failure = rpc(client, message["wire"], args)
        if failure[:1] in (["MESSAGE_METHOD_UNKNOWN"], ["INTERNAL_ERROR"]):
            bad.append(f"{message['wire']}: {failure}")
    return bad


def test_read_only_walk_over_live_objects(client: httpx.Client, live: dict[str, str]) -> None:
    """With refs naming live objects, a read-only caller never gets MESSAGE_METHOD_UNKNOWN or INTERNAL_ERROR."""
    session = rpc_ok(client, "session.login_with_password", [READER, "pw", "1.0", "walk-live"])
    assert walk_live(client, session, live, LAST) == []


def test_admin_walk_over_live_objects(client: httpx.Client, live: dict[str, str]) -> None:
    """Root calling everything on live objects (power operations, setters, refusals...) meets no
    MESSAGE_METHOD_UNKNOWN or INTERNAL_ERROR either; this walk changes the pool, so it runs last."""
    session = rpc_ok(client, "session.login_with_password", ["root", ADMIN_PASSWORD, "1.0", "walk-live"])
    keep = tuple(m["wire"] for m in xapi_messages() if "destroy" in m["name"] or "forget" in m["name"])
    assert walk_live(client, session, live, (*LAST, "session.change_password", *keep)) == []
