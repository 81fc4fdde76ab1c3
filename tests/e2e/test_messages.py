"""The message class (XenAPI alerts) over real HTTP: create, read, get_since, destroy, events, roles,
the bound on their number, and that they outlive a server restart."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from farside.api.messages import MessageService
from farside.db import Database
from farside.model.roles import Role
from farside.model.types import now

from pools import PoolServer, make_pool


def event_from(s: XenAPI.Session, classes: list[str], token: str, timeout: float) -> Any:
    return getattr(s.xenapi.event, "from")(classes, token, timeout)


def pool_uuid(s: XenAPI.Session) -> str:
    uuid: str = s.xenapi.pool.get_uuid(s.xenapi.pool.get_all()[0])
    return uuid


def test_create_read_and_destroy(server: PoolServer) -> None:
    """message.create returns a ref whose record, by ref, uuid and in get_all_records, says what was raised."""
    s = server.session()
    pool = pool_uuid(s)
    ref = s.xenapi.message.create("BACKUP_FAILED", "2", "Pool", pool, "the nightly backup failed")
    record = s.xenapi.message.get_record(ref)
    assert {k: record[k] for k in ("name", "priority", "cls", "obj_uuid", "body")} == {
        "name": "BACKUP_FAILED",
        "priority": "2",
        "cls": "Pool",
        "obj_uuid": pool,
        "body": "the nightly backup failed",
    }
    assert "seq" not in record
    assert s.xenapi.message.get_by_uuid(record["uuid"]) == ref
    assert s.xenapi.message.get_all() == [ref]
    assert s.xenapi.message.get_all_records() == {ref: record}
    assert s.xenapi.message.get_all_records_where("true") == {ref: record}
    s.xenapi.message.destroy(ref)
    assert s.xenapi.message.get_all() == []
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.message.get_record(ref)
    assert info.value.details[0] == "HANDLE_INVALID"


def test_get_since_and_get(server: PoolServer) -> None:
    """get_since gives the messages stamped after the cutoff; get narrows them to one object."""
    s = server.session()
    pool = pool_uuid(s)
    host = s.xenapi.host.get_uuid(s.xenapi.host.get_all()[0])
    old = s.xenapi.message.create("OLD", "5", "Pool", pool, "")
    stamp = str(s.xenapi.message.get_record(old)["timestamp"])
    # Timestamps have whole seconds: the next message must fall in a later one.
    while now() <= stamp:
        time.sleep(0.05)
    s.xenapi.message.create("ON_HOST", "5", "Host", host, "")
    new = s.xenapi.message.create("NEW", "1", "Pool", pool, "x")
    since = s.xenapi.message.get_since(stamp)
    assert old not in since and new in since
    assert sorted(r["name"] for r in since.values()) == ["NEW", "ON_HOST"]
    assert list(s.xenapi.message.get("Pool", pool, stamp)) == [new]
    assert set(s.xenapi.message.get_since("19700101T00:00:00Z")) == set(s.xenapi.message.get_all())
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.message.get_since("yesterday")
    assert info.value.details[0] == "INVALID_VALUE"


def test_bad_input_is_refused(server: PoolServer) -> None:
    """A uuid that names no object of the class, an unknown class, an empty name: clear failures, nothing made."""
    s = server.session()
    pool = pool_uuid(s)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.message.create("X", "1", "VM", pool, "")
    assert info.value.details == ["UUID_INVALID", "VM", pool]
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.message.create("X", "1", "Spaceship", pool, "")
    assert info.value.details[0] == "INVALID_VALUE"
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.message.create("", "1", "Pool", pool, "")
    assert info.value.details[0] == "INVALID_VALUE"
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.message.destroy_many([s.xenapi.message.create("A", "1", "Pool", pool, ""), "OpaqueRef:nope"])
    assert info.value.details[0] == "HANDLE_INVALID"
    assert [r["name"] for r in s.xenapi.message.get_all_records().values()] == ["A"]  # none destroyed


def test_roles(server: PoolServer) -> None:
    """As xapi: read-only may read messages, only pool-operator and stronger create or destroy them."""
    server.add_user("reader", Role.READ_ONLY)
    server.add_user("operator", Role.POOL_OPERATOR)
    admin = server.session()
    ref = admin.xenapi.message.create("A", "1", "Pool", pool_uuid(admin), "")
    reader = server.session("reader", "pw")
    assert reader.xenapi.message.get_all() == [ref]
    for call in (lambda: reader.xenapi.message.create("B", "1", "Pool", pool_uuid(reader), ""),
                 lambda: reader.xenapi.message.destroy(ref)):  # fmt: skip
        with pytest.raises(XenAPI.Failure) as info:
            call()
        assert info.value.details[0] == "RBAC_PERMISSION_DENIED"
    operator = server.session("operator", "pw")
    operator.xenapi.message.destroy_many([ref])
    assert admin.xenapi.message.get_all() == []


def test_events_deliver_messages(server: PoolServer) -> None:
    """event.from(["message"]) delivers a message as it is added, and its destruction."""
    s = server.session()
    token = event_from(s, ["message"], "", 0)["token"]
    ref = s.xenapi.message.create("A", "3", "Pool", pool_uuid(s), "hello")
    batch = event_from(s, ["message"], token, 5)
    adds = [e for e in batch["events"] if e["class"] == "message" and e["operation"] == "add"]
    assert [(e["ref"], e["snapshot"]["body"]) for e in adds] == [(ref, "hello")]
    s.xenapi.message.destroy(ref)
    batch = event_from(s, ["message"], batch["token"], 5)
    assert [(e["ref"], e["operation"]) for e in batch["events"]] == [(ref, "del")]


def test_messages_outlive_a_restart(tmp_path: Path) -> None:
    """Messages are kept in the pool database, as xapi keeps them on disk."""
    make_pool(tmp_path / "pool")
    server = PoolServer(tmp_path / "pool").start()
    try:
        s = server.session()
        refs = {s.xenapi.message.create(f"M{i}", "5", "Pool", pool_uuid(s), "") for i in range(3)}
        server.stop()
        server.start()
        assert set(server.session().xenapi.message.get_all()) == refs
    finally:
        server.stop()


def test_the_oldest_go_past_the_bound(tmp_path: Path) -> None:
    """Past the bound the oldest messages go first, in the order they were raised."""
    make_pool(tmp_path / "pool")
    db = Database.open(tmp_path / "pool" / "pool.db")
    try:
        with db.read() as tx:
            pool = tx.get_field("pool", tx.refs("pool")[0], "uuid")
        messages = MessageService(db, limit=3)
        refs = [messages.raise_(f"M{i}", 5, "Pool", pool, "") for i in range(5)]
        with db.read() as tx:
            assert set(tx.refs("message")) == set(refs[2:])
    finally:
        db.close()
