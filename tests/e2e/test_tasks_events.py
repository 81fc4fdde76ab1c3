"""Async messages with tasks, and event.from, over real HTTP."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
import XenAPI

from pools import MINIMAL_VM, PoolServer

VM = MINIMAL_VM


def wait_task(s: XenAPI.Session, task: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        record: dict[str, Any] = s.xenapi.task.get_record(task)
        if record["status"] not in ("pending", "cancelling"):
            return record
        time.sleep(0.02)
    raise AssertionError("task did not finish")


def event_from(s: XenAPI.Session, classes: list[str], token: str, timeout: float) -> Any:
    """event.from: "from" is a Python keyword, so the SDK's attribute syntax cannot name it."""
    return getattr(s.xenapi.event, "from")(classes, token, timeout)


class TestAsync:
    def test_async_call_returns_a_task_with_the_result(self, shared_server: PoolServer) -> None:
        """Async.VM.create returns a task whose result is the new VM's ref, XML-encoded as xapi does."""
        s = shared_server.session()
        task = s.xenapi.Async.VM.create(VM)
        assert task.startswith("OpaqueRef:")
        record = wait_task(s, task)
        assert record["status"] == "success"
        assert s.xenapi.task.get_progress(task) == 1.0
        vm = record["result"].removeprefix("<value>").removesuffix("</value>")
        assert s.xenapi.VM.get_name_label(vm) == "vm"
        assert s.xenapi.task.get_result(task) == record["result"]
        assert task in s.xenapi.session.get_tasks(s.handle)
        s.xenapi.task.destroy(task)
        assert task not in s.xenapi.task.get_all()

    def test_async_failure_lands_in_error_info(self, shared_server: PoolServer) -> None:
        """A failing Async call gives a task with status failure and the failure in error_info."""
        s = shared_server.session()
        vm = s.xenapi.VM.create(VM)
        task = s.xenapi.Async.VM.set_order(vm, -3)
        record = wait_task(s, task)
        assert record["status"] == "failure"
        assert s.xenapi.task.get_error_info(task) == ["INVALID_VALUE", "order", "-3"]

    def test_async_checks_happen_before_the_task(self, shared_server: PoolServer) -> None:
        """Bad refs' types, arity and roles fail the call itself, with no task made."""
        s = shared_server.session()
        tasks = set(s.xenapi.task.get_all())
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.Async.VM.set_order("OpaqueRef:x")
        assert info.value.details[0] == "MESSAGE_PARAMETER_COUNT_MISMATCH"
        assert set(s.xenapi.task.get_all()) == tasks

    def test_client_tasks(self, shared_server: PoolServer) -> None:
        """task.create makes a pending task its owner can cancel; a cancelled task ends cancelling."""
        s = shared_server.session()
        task = s.xenapi.task.create("backup", "made by a client")
        assert s.xenapi.task.get_status(task) == "pending"
        assert s.xenapi.task.get_allowed_operations(task) == ["cancel"]
        s.xenapi.task.cancel(task)
        assert s.xenapi.task.get_status(task) == "cancelling"
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.task.cancel(task)
        assert info.value.details[0] == "OPERATION_NOT_ALLOWED"

    def test_tasks_of_others_are_protected(self, shared_server: PoolServer) -> None:
        """A session cannot cancel or destroy another user's task."""
        from farside.model.roles import Role

        shared_server.add_user("tasker", Role.POOL_OPERATOR, "pw")
        owner = shared_server.session()
        other = shared_server.session("tasker", "pw")
        task = owner.xenapi.task.create("mine", "")
        with pytest.raises(XenAPI.Failure) as info:
            other.xenapi.task.destroy(task)
        assert info.value.details[0] == "OPERATION_NOT_ALLOWED"


class TestEvents:
    def test_empty_token_gives_every_object(self, shared_server: PoolServer) -> None:
        """event.from with token "" lists every current object of the classes as 'add'."""
        s = shared_server.session()
        batch = event_from(s, ["pool", "host"], "", 1.0)
        classes = sorted(e["class"] for e in batch["events"])
        assert classes == ["host", "pool"]
        assert all(e["operation"] == "add" for e in batch["events"])
        # Ints, for every class (xapi counts every table, whatever was asked for).
        assert batch["valid_ref_counts"]["host"] == 1 and batch["valid_ref_counts"]["pool"] == 1
        assert batch["valid_ref_counts"]["vm"] >= 0
        assert batch["token"]

    def test_change_by_another_session_arrives(self, shared_server: PoolServer) -> None:
        """A waiting event.from gets a change made by another session, within 100 ms of it."""
        watcher = shared_server.session()
        actor = shared_server.session()
        vm = actor.xenapi.VM.create(VM)
        token = event_from(watcher, ["vm"], "", 1.0)["token"]
        changed_at: list[float] = []

        def change() -> None:
            time.sleep(0.5)
            changed_at.append(time.monotonic())
            actor.xenapi.VM.set_name_label(vm, "renamed")

        thread = threading.Thread(target=change)
        thread.start()
        batch = event_from(watcher, ["vm"], token, 30.0)
        arrived = time.monotonic()
        thread.join()
        events = [e for e in batch["events"] if e["ref"] == vm]
        assert [e["operation"] for e in events] == ["mod"]
        assert events[0]["snapshot"]["name_label"] == "renamed"
        assert arrived - changed_at[0] < 0.5  # generous: the contract is 100 ms, see bench for numbers
        assert batch["token"] > token  # xapi's zero-padded tokens compare as strings

    def test_timeout_returns_no_events(self, shared_server: PoolServer) -> None:
        """With nothing changing, event.from returns an empty batch after its timeout."""
        s = shared_server.session()
        token = event_from(s, ["vm_appliance"], "", 1.0)["token"]
        started = time.monotonic()
        batch = event_from(s, ["vm_appliance"], token, 0.5)
        assert batch["events"] == []
        assert 0.4 < time.monotonic() - started < 5

    def test_add_del_and_related_objects(self, shared_server: PoolServer) -> None:
        """Creating a VIF reports it as 'add' and its VM as 'mod'; destroying reports 'del', with no
        snapshot, as xapi sends it."""
        s = shared_server.session()
        vm = s.xenapi.VM.create(VM)
        token = event_from(s, ["vm", "vif"], "", 1.0)["token"]
        net = s.xenapi.network.get_all()[0]
        vif = s.xenapi.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500"})
        batch = event_from(s, ["vm", "vif"], token, 5.0)
        ops = {(e["class"], e["ref"]): e["operation"] for e in batch["events"]}
        assert ops[("vif", vif)] == "add"
        assert ops[("vm", vm)] == "mod"
        s.xenapi.VIF.destroy(vif)
        batch = event_from(s, ["vif"], batch["token"], 5.0)
        gone = [e for e in batch["events"] if e["ref"] == vif]
        assert gone[0]["operation"] == "del"
        assert "snapshot" not in gone[0]

    def test_bad_token_and_unknown_class(self, shared_server: PoolServer) -> None:
        """A token that is not ours is refused; a class that does not exist matches nothing (xapi)."""
        s = shared_server.session()
        with pytest.raises(XenAPI.Failure) as info:
            event_from(s, ["vm"], "not-a-token", 0.1)
        assert info.value.details == ["EVENT_FROM_TOKEN_PARSE_FAILURE", "not-a-token"]
        assert event_from(s, ["spaceship"], "", 0.1)["events"] == []
