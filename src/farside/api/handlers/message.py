"""message: XenAPI's alerts, read by clients (XenCenter's Notifications), raised by the server.

As xapi: ``create`` needs pool-operator and a uuid of a live object of the class named, ``get_since``
and ``get`` return the messages stamped after ``since``, and the ``message`` class has events
(``event.from(["message"], ...)``) for each message added or destroyed.
"""

from __future__ import annotations

from typing import Any

from farside.api.context import Context
from farside.api.records import AllRecords
from farside.api.registry import handles


@handles("message.create")
def create(ctx: Context, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    return ctx.services.messages.raise_(name, priority, cls, obj_uuid, body)


@handles("message.destroy")
def destroy(ctx: Context, message: str) -> str:
    with ctx.db.write() as tx:
        tx.destroy("message", tx.check("message", message))
    return ""


@handles("message.destroy_many")
def destroy_many(ctx: Context, messages: list[str]) -> str:
    with ctx.db.write() as tx:  # all or none: one unknown ref leaves every message in place
        for ref in [tx.check("message", m) for m in messages]:
            tx.destroy("message", ref)
    return ""


@handles("message.get_all")
def get_all(ctx: Context) -> list[str]:
    with ctx.db.read() as tx:
        return tx.refs("message")


@handles("message.get_all_records")
def get_all_records(ctx: Context) -> AllRecords:
    return ctx.records.all_records("message")


@handles("message.get_all_records_where")
def get_all_records_where(ctx: Context, expr: str) -> AllRecords:
    return ctx.records.all_records("message")  # xapi does not use the expression either


@handles("message.get_record")
def get_record(ctx: Context, message: str) -> dict[str, Any]:
    with ctx.db.read() as tx:
        return ctx.records.record(tx, "message", tx.check("message", message))


@handles("message.get_by_uuid")
def get_by_uuid(ctx: Context, uuid: str) -> str:
    with ctx.db.read() as tx:
        return tx.ref_of_uuid("message", uuid)


@handles("message.get_since")
def get_since(ctx: Context, since: str) -> dict[str, dict[str, Any]]:
    return _after(ctx, since)


@handles("message.get")
def get(ctx: Context, cls: str, obj_uuid: str, since: str) -> dict[str, dict[str, Any]]:
    return {ref: r for ref, r in _after(ctx, since).items() if r["cls"] == cls and r["obj_uuid"] == obj_uuid}


def _after(ctx: Context, since: str) -> dict[str, dict[str, Any]]:
    # Wire datetimes (20240131T12:00:00Z) sort as they read.
    with ctx.db.read() as tx:
        records = {ref: ctx.records.record(tx, "message", ref) for ref in tx.refs("message")}
    return {ref: r for ref, r in records.items() if r["timestamp"] > since}
