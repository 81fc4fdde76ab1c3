"""Issue 13, "Why" 1: a session ref is its user's credential, and no other user ever gets it.

The attack: a read-only user took root's ref from ``event.from(["session"], "", t)`` (or ``["*"]``)
and changed the pool with it; ``session.get_record`` / ``get_by_uuid`` on root's session worked too.
Each test runs against a real server over HTTP with the SDK.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from farside.model.roles import Role

from pools import PoolServer
from vms import make_sr

pytestmark = pytest.mark.e2e


def failure(call: Any, *args: Any) -> list[str]:
    with pytest.raises(XenAPI.Failure) as caught:
        call(*args)
    return list(caught.value.details)


@pytest.fixture(scope="module")
def pool(shared_server: PoolServer) -> Iterator[tuple[XenAPI.Session, XenAPI.Session]]:
    """root's session and a read-only user's ("reader"), on one server."""
    shared_server.add_user("reader", Role.READ_ONLY, "pw")
    root, reader = shared_server.session(), shared_server.session("reader", "pw")
    yield root, reader
    for s in (root, reader):
        s.xenapi.session.logout()


def event_from(s: XenAPI.Session, classes: list[str], token: str, timeout: float) -> Any:
    return getattr(s.xenapi.event, "from")(classes, token, timeout)  # "from" is a Python keyword


def session_refs(batch: dict[str, Any]) -> set[str]:
    return {e["ref"] for e in batch["events"] if e["class"] == "session"}


def test_event_snapshot_carries_only_own_sessions(pool: tuple[XenAPI.Session, XenAPI.Session]) -> None:
    root, reader = pool
    for classes in (["session"], ["*"]):
        batch = event_from(reader, classes, "", 0.0)
        assert session_refs(batch) == {reader._session}, classes
        assert root._session not in str(batch)
        assert int(batch["valid_ref_counts"]["session"]) == 1
    # The attack's next step, had it found the ref: root's ref used as a bearer credential.
    pool_ref = reader.xenapi.pool.get_all()[0]
    assert reader.xenapi.pool.get_name_label(pool_ref) == root.xenapi.pool.get_name_label(pool_ref)


def test_event_feed_carries_no_other_logins(
    shared_server: PoolServer, pool: tuple[XenAPI.Session, XenAPI.Session]
) -> None:
    """Another user's login neither appears in nor ends the reader's wait; the reader's own does."""
    _, reader = pool
    token = event_from(reader, ["session"], "", 0.0)["token"]
    with ThreadPoolExecutor(1) as waiter:
        waiting = waiter.submit(event_from, reader, ["session"], token, 20.0)
        time.sleep(0.3)  # let the wait begin before the logins
        other = shared_server.session()  # root again: another user's session
        mine = shared_server.session("reader", "pw")
        batch = waiting.result()
    theirs, own = other._session, mine._session
    assert theirs not in str(batch)
    assert session_refs(batch) == {own}, "only the reader's own login may end its wait"
    for s in (other, mine):
        s.xenapi.session.logout()
    batch = event_from(reader, ["*"], batch["token"], 20.0)
    assert theirs not in str(batch)
    dels = [(e["ref"], e["operation"]) for e in batch["events"] if e["class"] == "session"]
    assert dels == [(own, "del")]


def test_pool_admin_sees_every_session_in_events_only_its_own(
    shared_server: PoolServer, pool: tuple[XenAPI.Session, XenAPI.Session]
) -> None:
    """Events never carry another user's session, whatever the role; reads show a pool admin all."""
    root, reader = pool
    assert reader._session not in str(event_from(root, ["session"], "", 0.0))
    assert reader._session in root.xenapi.session.get_all()
    assert reader._session in root.xenapi.session.get_all_records()
    assert root.xenapi.session.get_auth_user_name(reader._session) == "reader"


def test_reads_of_another_users_session_answer_as_if_it_did_not_exist(
    pool: tuple[XenAPI.Session, XenAPI.Session],
) -> None:
    root, reader = pool
    theirs, uuid = root._session, root.xenapi.session.get_uuid(root._session)
    assert failure(reader.xenapi.session.get_record, theirs) == ["HANDLE_INVALID", "session", theirs]
    assert failure(reader.xenapi.session.get_this_user, theirs) == ["HANDLE_INVALID", "session", theirs]
    assert failure(reader.xenapi.session.get_by_uuid, uuid) == ["UUID_INVALID", "session", uuid]
    unknown = "OpaqueRef:00000000-0000-0000-0000-000000000000"
    assert failure(reader.xenapi.session.get_record, unknown) == ["HANDLE_INVALID", "session", unknown]
    assert reader.xenapi.session.get_all() == [reader._session]
    assert list(reader.xenapi.session.get_all_records()) == [reader._session]
    own = reader.xenapi.session.get_record(reader._session)
    assert own["auth_user_name"] == "reader"
    assert reader.xenapi.session.get_by_uuid(own["uuid"]) == reader._session


def test_a_task_result_that_is_a_session_reaches_only_its_owner(shared_server: PoolServer, tmp_path: Path) -> None:
    """``Async.VDI.open_database`` makes a session; its task is visible to all, its result is not."""
    shared_server.add_user("operator", Role.POOL_OPERATOR, "pw")
    shared_server.add_user("peeker", Role.READ_ONLY, "pw")
    operator, peeker = shared_server.session("operator", "pw"), shared_server.session("peeker", "pw")
    try:
        sr = make_sr(operator, tmp_path / "lun")
        operator.xenapi.SR.enable_database_replication(sr)
        [vdi] = [v for v in operator.xenapi.SR.get_VDIs(sr) if operator.xenapi.VDI.get_type(v) == "metadata"]
        task = operator.xenapi.Async.VDI.open_database(vdi)
        deadline = time.monotonic() + 20
        while operator.xenapi.task.get_status(task) == "pending" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert operator.xenapi.task.get_status(task) == "success"
        result = operator.xenapi.task.get_result(task)
        db = result.removeprefix("<value>").removesuffix("</value>")
        assert db.startswith("OpaqueRef:") and operator.xenapi.session.get_record(db)["parent"] == operator._session
        assert operator.xenapi.task.get_record(task)["result"] == result
        assert peeker.xenapi.task.get_result(task) == ""
        assert peeker.xenapi.task.get_record(task)["result"] == ""
        assert db not in str(peeker.xenapi.task.get_all_records())
        assert db not in str(event_from(peeker, ["task", "session"], "", 0.0))
        operator.xenapi.task.destroy(task)
    finally:
        for s in (operator, peeker):
            s.xenapi.session.logout()
