"""RBAC over real HTTP: each of the six roles calls one message per role threshold with the SDK.

The messages come from Farside's role table: for every role, the first message needing exactly that
role which can be called on a freshly created VM, the pool, or the caller's own session, with
arguments built from its parameter types. A role at or above the threshold must get the call
through; any weaker role must get ``RBAC_PERMISSION_DENIED``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from farside.model.messages import Signature, lookup, role_table
from farside.model.roles import Role
from farside.model.types import BoolType, IntType, MapType, RefType, SetType, StringType, XType

from pools import PoolServer

pytestmark = pytest.mark.e2e

DATAMODEL = Path(__file__).parents[3] / "shared" / "xenapi-datamodel.json"
MIB16 = str(16 << 20)

# What a call can be made on, most preferred first; the session is always the caller's own.
SUBJECTS = ("VM", "pool", "session")
# Message kinds most preferred first: reads, then modifiers that can be repeated harmlessly.
KINDS = ("get_all", "get_record", "get", "add", "set", "explicit", "add_to", "remove", "remove_from")


@dataclass(frozen=True)
class Targets:
    """The objects the tested messages act on."""

    vm: str
    pool: str
    host: str


def buildable(xtype: XType) -> bool:
    """Whether ``arguments`` can make a valid value of this type."""
    if isinstance(xtype, RefType):
        return xtype.target in ("VM", "pool", "session", "host")
    return isinstance(xtype, StringType | IntType | BoolType | SetType | MapType)


def callable_here(sig: Signature) -> bool:
    # Farside's own fields (pool.lun_roots) have no xapi roles to compare with.
    xapis = sig.field is None or not sig.field.farside
    return sig.cls.name in SUBJECTS and sig.kind in KINDS and xapis and all(buildable(x) for _, x in sig.params)


def pick_per_threshold() -> dict[Role, str]:
    """For each role, the most preferred message that needs exactly it and can be called here."""
    chosen: dict[Role, str] = {}
    table = list(role_table().items())
    for role in Role:
        candidates = []
        for position, (wire, needed) in enumerate(table):
            sig = lookup(wire)
            if needed is role and sig is not None and callable_here(sig):
                key = (SUBJECTS.index(sig.cls.name), KINDS.index(sig.kind), position)
                candidates.append((key, wire))
        if candidates:
            chosen[role] = min(candidates)[1]
    return chosen


THRESHOLDS = pick_per_threshold()
MESSAGES = list(THRESHOLDS.values())  # weakest threshold first


def arguments(sig: Signature, targets: Targets, session: XenAPI.Session, caller: Role) -> list[Any]:
    """Valid arguments for ``sig`` (after the session), distinct per caller where it matters."""
    # The SDK keeps its session ref in ``_session``; no public call returns it.
    refs = {"VM": targets.vm, "pool": targets.pool, "host": targets.host, "session": session._session}
    args: list[Any] = []
    for _, xtype in sig.params:
        if isinstance(xtype, RefType):
            args.append(refs[xtype.target])
        elif isinstance(xtype, StringType):
            args.append(f"by-{caller.wire}")  # distinct, so that an add_to never meets its own key
        elif isinstance(xtype, IntType):
            args.append(1)
        elif isinstance(xtype, BoolType):
            args.append(False)
        else:
            args.append(xtype.zero())
    return args


def call(session: XenAPI.Session, sig: Signature, args: list[Any]) -> Any:
    return getattr(getattr(session.xenapi, sig.cls.name), sig.name)(*args)


def user_name(role: Role) -> str:
    return f"u-{role.wire}"


@pytest.fixture(scope="module")
def sessions(shared_server: PoolServer) -> Iterator[dict[Role, XenAPI.Session]]:
    """One logged-in session per role, each for a user holding that role alone."""
    for role in Role:
        shared_server.add_user(user_name(role), role, "pw")
    opened = {role: shared_server.session(user_name(role), "pw") for role in Role}
    yield opened
    for s in opened.values():
        s.xenapi.session.logout()


@pytest.fixture(scope="module")
def targets(shared_server: PoolServer) -> Iterator[Targets]:
    """A halted VM made by root, with the pool and its master."""
    root = shared_server.session()
    vm = root.xenapi.VM.create(
        {
            "name_label": "rbac-target",
            "memory_static_min": MIB16,
            "memory_dynamic_min": MIB16,
            "memory_dynamic_max": MIB16,
            "memory_static_max": MIB16,
            "VCPUs_max": "1",
            "VCPUs_at_startup": "1",
        }
    )
    pool = root.xenapi.pool.get_all()[0]
    yield Targets(vm, pool, root.xenapi.pool.get_master(pool))
    root.xenapi.session.logout()


def outcome(sessions: dict[Role, XenAPI.Session], targets: Targets, wire: str, caller: Role) -> list[str]:
    """The failure details of ``wire`` called by ``caller``, or [] when the call succeeded."""
    sig = lookup(wire)
    assert sig is not None
    session = sessions[caller]
    try:
        call(session, sig, arguments(sig, targets, session, caller))
    except XenAPI.Failure as failure:
        return [str(d) for d in failure.details]
    return []


def test_every_role_has_a_tested_message() -> None:
    """The table of tested messages has one message for each of the six role thresholds."""
    assert {role: role_table()[wire] for role, wire in THRESHOLDS.items()} == {role: role for role in Role}


@pytest.mark.parametrize("caller", list(Role), ids=lambda r: r.wire)
@pytest.mark.parametrize("wire", MESSAGES)
def test_role_is_allowed_exactly_from_the_threshold(
    sessions: dict[Role, XenAPI.Session], targets: Targets, wire: str, caller: Role
) -> None:
    """A call succeeds when the caller's role is at least the message's, else RBAC_PERMISSION_DENIED."""
    needed = role_table()[wire]
    assert needed is not None
    details = outcome(sessions, targets, wire, caller)
    if caller >= needed:
        assert details == []
    else:
        assert details[:2] == ["RBAC_PERMISSION_DENIED", wire]
        assert len(details) == 3 and details[2]


@pytest.mark.parametrize("wire", MESSAGES)
def test_allowed_roles_are_xapis(sessions: dict[Role, XenAPI.Session], targets: Targets, wire: str) -> None:
    """The roles a message is allowed to over the wire are xapi's, without client-cert."""
    if not DATAMODEL.is_file():
        pytest.skip(f"xapi's datamodel is not at {DATAMODEL}: nothing to compare Farside with")
    cls, _, name = wire.partition(".")
    classes = {c["name"]: c for c in json.loads(DATAMODEL.read_text())}
    (message,) = [m for m in classes[cls]["messages"] if m["name"] == name]
    allowed = {role.wire for role in Role if outcome(sessions, targets, wire, role)[:1] != ["RBAC_PERMISSION_DENIED"]}
    assert allowed == set(message["roles"]) - {"client-cert"}
