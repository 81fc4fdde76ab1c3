"""event: ``event.from`` long-polls for changes; ``get_current_id`` and ``inject`` as in xapi.

Events about sessions reach only a subscriber of the session's own user, whatever its role: a
session ref is a credential (xapi sends no session events at all; Farside sends a client its
own, so a console sees its logins come and go). Classes whose records need a stronger role
than the subscriber's (secret) have no events for it.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from farside.api import xmlrpc
from farside.api.context import Context
from farside.api.events import Event
from farside.api.records import Encoded, public
from farside.api.registry import handles
from farside.api.sessions import may_hear
from farside.config import MAX_EVENT_TIMEOUT_S
from farside.errors import EventsLost, XenAPIFailure
from farside.model import STORED, class_named
from farside.model.types import now


@handles("event.from")
async def event_from(ctx: Context, classes: list[str], token: str, timeout: float) -> Encoded:
    # A class whose records the caller may not read (secret) has no events for it either.
    wanted = {c for c in _classes(classes) if ctx.caller.role.allows(STORED[c].reader)}
    hub = ctx.services.events
    if token == "":
        return _snapshot(ctx, wanted)
    try:
        since = int(token)
    except ValueError:
        raise XenAPIFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None
    deadline = time.monotonic() + min(max(timeout, 0.0), MAX_EVENT_TIMEOUT_S)
    while True:
        current = hub.generation
        events = hub.since(since)
        if events is None:
            raise EventsLost()
        relevant = [e for e in events if e.change.cls in wanted]
        remaining = deadline - time.monotonic()
        if relevant or remaining <= 0:
            out, touched = _collect(ctx, relevant)
            # Changes the subscriber may not hear (other users' logins) do not end the wait.
            if out or remaining <= 0:
                return _encode(out, max(current, since), now(), _counts(ctx, touched))
        since = current
        await hub.wait(current, remaining)


@handles("event.get_current_id")
def get_current_id(ctx: Context) -> int:
    return ctx.services.events.generation


@handles("event.inject")
def inject(ctx: Context, cls_name: str, ref: str) -> str:
    c = class_named(cls_name)
    if c is None or c.name not in STORED:
        raise XenAPIFailure("EVENT_SUBSCRIPTION_PARSE_FAILURE", cls_name)
    with ctx.db.write() as tx:
        tx.check(c.name, ref)
        tx.touch(c.name, ref)
    return str(ctx.db.generation)


def _classes(names: list[str]) -> set[str]:
    if "*" in names:
        return set(STORED)
    wanted = set()
    for name in names:
        c = class_named(name.partition("/")[0])  # "vm/OpaqueRef:..." subscribes to one object
        if c is None:
            raise XenAPIFailure("EVENT_SUBSCRIPTION_PARSE_FAILURE", name)
        if c.name in STORED:
            wanted.add(c.name)
    return wanted


def _snapshot(ctx: Context, wanted: set[str]) -> Encoded:
    """Every current object as an ``add``: how a client with an empty token starts."""
    stamp = now()
    events: list[tuple[str, str, str, dict[str, Any]]] = []
    with ctx.db.read() as tx:
        generation = ctx.db.generation
        for cls in sorted(wanted):
            for ref, record in tx.get_records(cls).items():
                if _heard(ctx, cls, record):
                    events.append((cls, "add", ref, public(cls, record)))
    return _encode(events, generation, stamp, _counts(ctx, wanted))


def _collect(ctx: Context, events: list[Event]) -> tuple[list[tuple[str, str, str, dict[str, Any]]], set[str]]:
    """The events the subscriber may hear, one per object, and every class they touched."""
    latest: dict[tuple[str, str], Event] = {}
    first_op: dict[tuple[str, str], str] = {}
    for e in events:
        key = (e.change.cls, e.change.ref)
        first_op.setdefault(key, e.change.op)
        latest[key] = e
    out: list[tuple[str, str, str, dict[str, Any]]] = []
    with ctx.db.read() as tx:
        for key, e in latest.items():
            cls, ref = key
            if e.change.op == "del":
                gone = dict(e.change.snapshot or {})
                if _heard(ctx, cls, gone):
                    out.append((cls, "del", ref, public(cls, gone)))
            elif tx.exists(cls, ref):
                record = tx.get_record(cls, ref)
                if _heard(ctx, cls, record):
                    op = "add" if first_op[key] == "add" else "mod"
                    out.append((cls, op, ref, public(cls, record)))
    return out, {cls for cls, _ in latest}


def _heard(ctx: Context, cls: str, record: dict[str, Any]) -> bool:
    """Whether an event about this object may reach the subscriber (see the module's doc)."""
    return cls != "session" or may_hear(ctx.caller, record.get("this_user"))


def _counts(ctx: Context, classes: set[str]) -> dict[str, int]:
    with ctx.db.read() as tx:
        return {
            cls.lower(): len(tx.find(cls, "this_user", ctx.caller.user) if cls == "session" else tx.refs(cls))
            for cls in classes
        }


def _encode(
    events: list[tuple[str, str, str, dict[str, Any]]], token: int, stamp: str, counts: dict[str, int]
) -> Encoded:
    records = []
    xml_events = []
    for index, (cls, op, ref, snapshot) in enumerate(events):
        wire_cls = cls.lower()
        ident = token - len(events) + index + 1
        records.append(
            {
                "id": ident,
                "timestamp": stamp,
                "class": wire_cls,
                "operation": op,
                "ref": ref,
                "snapshot": snapshot,
            }
        )
        xml_events.append(
            "<value><struct>"
            f"<member><name>id</name><value>{ident}</value></member>"
            f"<member><name>timestamp</name><value><dateTime.iso8601>{stamp}</dateTime.iso8601></value></member>"
            f"<member><name>class</name><value>{wire_cls}</value></member>"
            f"<member><name>operation</name><value>{op}</value></member>"
            f"<member><name>ref</name>{xmlrpc.string(ref)}</member>"
            f"<member><name>snapshot</name>{_snapshot_xml(cls, snapshot)}</member>"
            "</struct></value>"
        )
    text_token = str(token)
    batch_xml = (
        "<value><struct><member><name>events</name><value><array><data>"
        + "".join(xml_events)
        + "</data></array></value></member>"
        + "<member><name>valid_ref_counts</name>"
        + xmlrpc.generic(counts)
        + "</member><member><name>token</name>"
        + xmlrpc.string(text_token)
        + "</member></struct></value>"
    )
    batch_json = orjson.dumps({"events": records, "valid_ref_counts": counts, "token": text_token})
    return Encoded(batch_xml, batch_json)


def _snapshot_xml(cls: str, snapshot: dict[str, Any]) -> str:
    encode = xmlrpc.record_encoder(cls)
    try:
        return encode(snapshot)
    except KeyError:
        return xmlrpc.generic(snapshot)  # a deleted object's partial snapshot
