"""allowed_operations: derived from each object's state and from the handlers this server has."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import farside.api.handlers  # noqa: F401 - registers the hand-written messages
from farside.api import operations
from farside.api.registry import HANDLERS
from farside.db import Database
from farside.errors import XenAPIFailure


@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database.create(tmp_path / "pool.db")
    database.before_commit(operations.refresh)
    return database


@pytest.fixture
def without_start() -> Iterator[None]:
    """A server without VM.start's handler (as VM.clone is today, before its module lands)."""
    handler = HANDLERS.pop("VM.start")
    try:
        yield
    finally:
        HANDLERS["VM.start"] = handler


def ops(db: Database, cls: str, ref: str) -> list[str]:
    with db.read() as tx:
        value: list[str] = tx.get_field(cls, ref, "allowed_operations")
        return value


class TestVM:
    def test_a_new_halted_vm_lists_what_is_answered(self, db: Database) -> None:
        """VM.create's VM can be started and destroyed at once; nothing Farside lacks is listed."""
        with db.write() as tx:
            vm = tx.create("VM", {"name_label": "a"})
            assert tx.get_field("VM", vm, "domid") == -1
        allowed = ops(db, "VM", vm)
        assert {"start", "destroy"} <= set(allowed)
        for missing in ("clone", "copy", "snapshot", "export", "start_on", "provision"):
            if not operations.answered(operations._VM_MESSAGES[missing]):
                assert missing not in allowed

    def test_lists_follow_the_power_state(self, db: Database) -> None:
        """A running VM lists its shutdowns, not start; an operation in progress empties the list."""
        with db.write() as tx:
            vm = tx.create("VM", {"name_label": "a"})
        with db.write() as tx:
            tx.set_fields("VM", vm, {"power_state": "Running"})
        assert "clean_shutdown" in ops(db, "VM", vm) and "start" not in ops(db, "VM", vm)
        with db.write() as tx:
            tx.set_fields("VM", vm, {"current_operations": {"t": "clean_shutdown"}})
        assert ops(db, "VM", vm) == []

    def test_the_list_is_derived_from_the_handlers(self, db: Database, without_start: None) -> None:
        """An operation whose message has no handler is not listed, and is once the handler lands."""
        with db.write() as tx:
            vm = tx.create("VM", {"name_label": "a"})
        assert "start" not in ops(db, "VM", vm) and "destroy" in ops(db, "VM", vm)
        HANDLERS["VM.start"] = lambda ctx, vm, paused, force: ""
        with db.write() as tx:
            tx.set_fields("VM", vm, {"name_label": "b"})
        assert "start" in ops(db, "VM", vm)

    def test_templates_are_never_started(self, db: Database) -> None:
        """A template lists no power operation."""
        with db.write() as tx:
            vm = tx.create("VM", {"name_label": "t", "is_a_template": True})
        assert "start" not in ops(db, "VM", vm)


class TestStorage:
    def test_sr_and_vdi_follow_the_pbd_and_the_vm(self, db: Database) -> None:
        """An SR lists VDI operations once plugged; a VDI in use by a running VM cannot be destroyed."""
        with db.write() as tx:
            sr = tx.create("SR", {"name_label": "sr", "type": "file"})
            pbd = tx.create("PBD", {"SR": sr, "currently_attached": False})
            vdi = tx.create("VDI", {"SR": sr, "virtual_size": 1 << 20})
        assert "plug" in ops(db, "SR", sr) and "vdi_create" not in ops(db, "SR", sr)
        assert ops(db, "VDI", vdi) == []
        with db.write() as tx:
            tx.set_fields("PBD", pbd, {"currently_attached": True})
        assert {"vdi_create", "scan"} <= set(ops(db, "SR", sr))
        assert "destroy" in ops(db, "VDI", vdi)
        with db.write() as tx:
            vm = tx.create("VM", {"name_label": "a"})
            tx.create("VBD", {"VM": vm, "VDI": vdi, "type": "Disk"})
        with db.write() as tx:
            tx.set_fields("VM", vm, {"power_state": "Running"})
        assert "destroy" not in ops(db, "VDI", vdi) and "snapshot" in ops(db, "VDI", vdi)
        with db.write() as tx:
            tx.set_fields("VM", vm, {"power_state": "Halted"})
        assert "destroy" in ops(db, "VDI", vdi)


class TestClaim:
    def test_an_operation_shows_and_excludes_others(self, db: Database) -> None:
        """While claimed, the VDI lists its operation and allows nothing; a second claim is refused."""
        with db.write() as tx:
            sr = tx.create("SR", {"name_label": "sr", "type": "file"})
            tx.create("PBD", {"SR": sr, "currently_attached": True})
            vdi = tx.create("VDI", {"SR": sr, "virtual_size": 1 << 20})
        with operations.claim(db, "VDI", vdi, "clone"):
            with db.read() as tx:
                assert list(tx.get_field("VDI", vdi, "current_operations").values()) == ["clone"]
            assert ops(db, "VDI", vdi) == []
            with pytest.raises(XenAPIFailure) as info, operations.claim(db, "VDI", vdi, "destroy"):
                pass
            assert info.value.failure == ["OTHER_OPERATION_IN_PROGRESS", "VDI", vdi]
        assert "destroy" in ops(db, "VDI", vdi)
        with db.read() as tx:
            assert tx.get_field("VDI", vdi, "current_operations") == {}

    def test_a_destroy_may_end_with_the_object_gone(self, db: Database) -> None:
        """Releasing the claim of an object destroyed inside it is not an error."""
        with db.write() as tx:
            vm = tx.create("VM", {"name_label": "a"})
        with operations.claim(db, "VM", vm, "destroy"), db.write() as tx:
            tx.destroy("VM", vm)
