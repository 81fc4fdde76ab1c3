"""event: ``event.from`` long-polls for changes; ``register``/``unregister``/``next`` (xapi's older
event API), ``get_current_id`` and ``inject``, with xapi's subscription rules and wire types
(xapi_event.ml, event_types.ml).

- A token is ``"<generation>,<message generation>"``, each zero-padded to 20 digits as xapi's
  (messages live in the database here, so the second is always 0). ``""`` starts from nothing;
  Farside also takes a bare generation (what ``get_current_id`` returns).
- Event ids are strings (the generation of the object's change), valid_ref_counts are ints, the
  timestamp is a string of Unix seconds, and a ``del`` carries no snapshot: all as xapi sends them.

Events about sessions reach only a subscriber of the session's own user, whatever its role: a
session ref is a credential (xapi sends no session events at all; Farside sends a client its
own, so a console sees its logins come and go). Classes whose records need a stronger role
than the subscriber's (secret) have no events for it.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from farside.api import xmlrpc
from farside.api.context import Context
from farside.api.events import Event, Subscription, selects, subscriptions
from farside.api.records import Encoded, public
from farside.api.registry import handles
from farside.api.sessions import may_hear
from farside.config import MAX_EVENT_TIMEOUT_S
from farside.errors import EventsLost, HandleInvalid, SessionInvalid, XenAPIFailure
from farside.model import STORED

# One wire event: (class, operation, ref, snapshot or None, id, timestamp).
WireEvent = tuple[str, str, str, dict[str, Any] | None, int, str]
# event.next blocks until something it selects happens, as xapi's does; it re-checks its session
# at every commit and at least this often.
_NEXT_RECHECK_S = 60.0


@handles("event.from")
async def event_from(ctx: Context, classes: list[str], token: str, timeout: float) -> Encoded:
    subs = subscriptions(classes)
    wanted = [c for c in _classes(subs) if _readable(ctx, c)]
    hub = ctx.services.events
    since = _parse_token(token)
    if since is None:
        return _snapshot(ctx, subs, wanted)
    deadline = time.monotonic() + min(max(timeout, 0.0), MAX_EVENT_TIMEOUT_S)
    while True:
        current = hub.generation
        events = hub.since(since)
        if events is None:
            raise EventsLost()
        relevant = [e for e in events if selects(subs, e.change.cls, e.change.ref)]
        remaining = deadline - time.monotonic()
        if relevant or remaining <= 0:
            out = _collect(ctx, relevant)
            # Changes the subscriber may not hear (other users' logins) do not end the wait.
            if out or remaining <= 0:
                return _batch(out, max(current, since), _counts(ctx))
        since = current
        await hub.wait(current, remaining)


@handles("event.register")
def register(ctx: Context, classes: list[str]) -> str:
    registrations = ctx.services.events.registrations
    with ctx.db.read() as tx:
        registrations.forget_except(set(tx.refs("session")))
    registration = registrations.obtain(ctx.caller.session, ctx.services.events.generation)
    registration.subs = subscriptions(classes) + registration.subs
    return ""


@handles("event.unregister")
def unregister(ctx: Context, classes: list[str]) -> str:
    registration = ctx.services.events.registrations.obtain(ctx.caller.session, ctx.services.events.generation)
    gone = set(subscriptions(classes))
    registration.subs = [s for s in registration.subs if s not in gone]
    return ""


@handles("event.next")
async def event_next(ctx: Context) -> Encoded:
    hub = ctx.services.events
    session = ctx.caller.session
    registration = hub.registrations.get(session)
    if registration is None:
        # xapi echoes a hash of the session, never the session ref itself (context.ml).
        raise XenAPIFailure("SESSION_NOT_REGISTERED", "trackid=" + hashlib.md5(session.encode()).hexdigest())
    while True:
        current = hub.generation
        events = hub.since(registration.last)
        if events is None:
            raise EventsLost()
        registration.last = current
        relevant = [e for e in events if selects(registration.subs, e.change.cls, e.change.ref)]
        out = _collect(ctx, relevant) if relevant else []
        if out:
            return _events(out)
        await hub.wait(current, _NEXT_RECHECK_S)
        with ctx.db.read() as tx:
            if not tx.exists("session", session):
                raise SessionInvalid(session)


@handles("event.get_current_id")
def get_current_id(ctx: Context) -> int:
    return ctx.services.events.generation


@handles("event.inject")
def inject(ctx: Context, cls_name: str, ref: str) -> str:
    """Touch the object; the token returned makes event.from deliver that touch (xapi's rule)."""
    with ctx.db.write() as tx:
        if cls_name not in STORED or not tx.exists(cls_name, ref):
            raise HandleInvalid(cls_name, ref)
        tx.touch(cls_name, ref)
    return token_of(ctx.db.generation - 1)


def token_of(generation: int) -> str:
    return f"{generation:020d},{0:020d}"


def _parse_token(token: str) -> int | None:
    """The generation a token stands for; None for ``""``; EVENT_FROM_TOKEN_PARSE_FAILURE for
    anything that is neither a token of ours nor a bare generation."""
    if token == "":
        return None
    parts = token.split(",")
    if len(parts) <= 2 and all(_is_int(p) for p in parts):
        return max(int(parts[0]), 0)
    raise XenAPIFailure("EVENT_FROM_TOKEN_PARSE_FAILURE", token)


def _is_int(text: str) -> bool:
    digits = text[1:] if text[:1] in "-+" else text
    return digits.isascii() and digits.isdigit()


def _readable(ctx: Context, cls: str) -> bool:
    """A class whose records the caller may not read (secret) has no events for it either."""
    c = STORED.get(cls)
    return c is None or ctx.caller.role.allows(c.reader)


def _classes(subs: list[Subscription]) -> list[str]:
    """The stored classes some subscription selects objects of, in declared order."""
    return [cls for cls in STORED if any(s.matches_class(cls) for s in subs)]


def _snapshot(ctx: Context, subs: list[Subscription], wanted: list[str]) -> Encoded:
    """Every current object as an ``add``: how a client with an empty token starts."""
    stamp = _stamp(time.time())
    events: list[WireEvent] = []
    with ctx.db.read() as tx:
        generation = ctx.db.generation
        for cls in wanted:
            for ref, record in tx.get_records(cls).items():
                if selects(subs, cls, ref) and _heard(ctx, cls, record):
                    ident = ctx.db.last_modified(cls, ref)
                    events.append((cls, "add", ref, public(cls, record), ident, stamp))
    return _batch(events, generation, _counts(ctx))


def _collect(ctx: Context, events: list[Event]) -> list[WireEvent]:
    """The events the subscriber may hear, one per object (its latest state), in commit order."""
    latest: dict[tuple[str, str], Event] = {}
    first_op: dict[tuple[str, str], str] = {}
    for e in events:
        key = (e.change.cls, e.change.ref)
        first_op.setdefault(key, e.change.op)
        latest.pop(key, None)  # keep dict order = order of each object's latest change
        latest[key] = e
    out: list[WireEvent] = []
    with ctx.db.read() as tx:
        for (cls, ref), e in latest.items():
            if not _readable(ctx, cls):
                continue
            stamp = _stamp(e.unix_time)
            if e.change.op == "del":
                if first_op[(cls, ref)] != "add" and _heard(ctx, cls, dict(e.change.snapshot or {})):
                    out.append((cls, "del", ref, None, e.generation, stamp))
            elif tx.exists(cls, ref):
                record = tx.get_record(cls, ref)
                if _heard(ctx, cls, record):
                    op = "add" if first_op[(cls, ref)] == "add" else "mod"
                    out.append((cls, op, ref, public(cls, record), e.generation, stamp))
    return out


def _heard(ctx: Context, cls: str, record: dict[str, Any]) -> bool:
    """Whether an event about this object may reach the subscriber (see the module's doc)."""
    return cls != "session" or may_hear(ctx.caller, record.get("this_user"))


def _counts(ctx: Context) -> dict[str, int]:
    """Objects per class, every class as xapi counts them (sessions: the caller's user's own)."""
    with ctx.db.read() as tx:
        return {
            cls.lower(): len(tx.find(cls, "this_user", ctx.caller.user)) if cls == "session" else tx.count(cls)
            for cls in STORED
            if _readable(ctx, cls)  # not even how many secrets there are
        }


def _stamp(unix_time: float) -> str:
    return repr(round(unix_time, 3))


def _event_json(cls: str, op: str, ref: str, snapshot: dict[str, Any] | None, ident: int, stamp: str) -> Any:
    event: dict[str, Any] = {"id": str(ident), "timestamp": stamp, "class": cls.lower(), "operation": op, "ref": ref}
    if snapshot is not None:
        event["snapshot"] = snapshot
    return event


def _event_xml(cls: str, op: str, ref: str, snapshot: dict[str, Any] | None, ident: int, stamp: str) -> str:
    body = _snapshot_xml(cls, snapshot) if snapshot is not None else ""
    return (
        "<value><struct>"
        f"<member><name>id</name><value>{ident}</value></member>"
        f"<member><name>timestamp</name><value>{stamp}</value></member>"
        f"<member><name>class</name><value>{cls.lower()}</value></member>"
        f"<member><name>operation</name><value>{op}</value></member>"
        f"<member><name>ref</name>{xmlrpc.string(ref)}</member>"
        + (f"<member><name>snapshot</name>{body}</member>" if body else "")
        + "</struct></value>"
    )


def _events(events: list[WireEvent]) -> Encoded:
    """event.next's answer: a set of event records."""
    xml = "<value><array><data>" + "".join(_event_xml(*e) for e in events) + "</data></array></value>"
    return Encoded(xml, orjson.dumps([_event_json(*e) for e in events]))


def _batch(events: list[WireEvent], generation: int, counts: dict[str, int]) -> Encoded:
    """event.from's answer: ``{events, valid_ref_counts, token}``."""
    token = token_of(generation)
    counts_xml = "".join(f"<member><name>{c}</name><value><int>{n}</int></value></member>" for c, n in counts.items())
    xml = (
        "<value><struct><member><name>events</name><value><array><data>"
        + "".join(_event_xml(*e) for e in events)
        + "</data></array></value></member>"
        + "<member><name>valid_ref_counts</name><value><struct>"
        + counts_xml
        + "</struct></value></member><member><name>token</name>"
        + xmlrpc.string(token)
        + "</member></struct></value>"
    )
    records = [_event_json(*e) for e in events]
    return Encoded(xml, orjson.dumps({"events": records, "valid_ref_counts": counts, "token": token}))


def _snapshot_xml(cls: str, snapshot: dict[str, Any]) -> str:
    return xmlrpc.record_encoder(cls)(snapshot)
