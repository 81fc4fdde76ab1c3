"""The pool database: transactions, generations, the change feed, inverse sets, upgrades."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from farside.db import Commit, Database
from farside.errors import DatabaseError, HandleInvalid, UuidInvalid


@pytest.fixture
def db(tmp_path: Path) -> Database:
    return Database.create(tmp_path / "pool.db")


class TestTransactions:
    def test_each_commit_raises_the_generation_once(self, db: Database) -> None:
        """A write transaction with changes is one generation, however many changes it holds."""
        start = db.generation
        with db.write() as tx:
            tx.create("VM", {"name_label": "a"})
            tx.create("VM", {"name_label": "b"})
        assert db.generation == start + 1
        with db.write():
            pass
        assert db.generation == start + 1

    def test_failure_rolls_everything_back(self, db: Database) -> None:
        """An exception inside a write leaves no trace: no objects, no generation, no events."""
        seen: list[Commit] = []
        db.subscribe(seen.append)
        start = db.generation
        with pytest.raises(RuntimeError), db.write() as tx:
            tx.create("VM", {"name_label": "doomed"})
            raise RuntimeError("boom")
        with db.read() as tx:
            assert tx.refs("VM") == []
        assert db.generation == start and seen == []

    def test_reads_cannot_write(self, db: Database) -> None:
        """A read transaction refuses writes: a bug, not a silent commit."""
        with pytest.raises(RuntimeError), db.read() as tx:
            tx.create("VM", {})

    def test_bad_refs_and_uuids(self, db: Database) -> None:
        """Unknown refs and uuids raise XenAPI's errors with the class."""
        with db.read() as tx:
            with pytest.raises(HandleInvalid) as info:
                tx.get_record("VM", "OpaqueRef:x")
            assert info.value.failure == ["HANDLE_INVALID", "VM", "OpaqueRef:x"]
            with pytest.raises(UuidInvalid):
                tx.ref_of_uuid("VM", "nope")

    def test_refs_are_random_not_uuids(self, db: Database) -> None:
        """A ref is OpaqueRef:<random uuid>, never the object's own uuid."""
        with db.write() as tx:
            ref = tx.create("VM", {})
            uuid = tx.get_field("VM", ref, "uuid")
        assert ref.startswith("OpaqueRef:") and uuid not in ref


class TestFeed:
    def test_commits_arrive_in_order_with_their_changes(self, db: Database) -> None:
        """Subscribers see each commit's generation and changes, add/mod/del merged per object."""
        seen: list[Commit] = []
        db.subscribe(seen.append)
        with db.write() as tx:
            vm = tx.create("VM", {"name_label": "a"})
            tx.set_fields("VM", vm, {"name_label": "b"})
        with db.write() as tx:
            tx.set_fields("VM", vm, {"name_label": "c"})
        with db.write() as tx:
            tx.destroy("VM", vm)
        assert [c.generation for c in seen] == [1, 2, 3]
        assert [[(ch.op, ch.ref) for ch in c.changes] for c in seen] == [[("add", vm)], [("mod", vm)], [("del", vm)]]
        assert seen[2].changes[0].snapshot is not None and seen[2].changes[0].snapshot["name_label"] == "c"

    def test_runtime_changes_are_not_persistent(self, db: Database) -> None:
        """Changing only non-persistent fields (allowed_operations) is marked as such for replication."""
        seen: list[Commit] = []
        with db.write() as tx:
            vm = tx.create("VM", {})
        db.subscribe(seen.append)
        with db.write() as tx:
            tx.set_fields("VM", vm, {"allowed_operations": ["start"]})
        with db.write() as tx:
            tx.set_fields("VM", vm, {"name_label": "x"})
        assert [c.persistent for c in seen] == [False, True]


class TestRelations:
    def test_inverse_sets_are_computed(self, db: Database) -> None:
        """VM.VBDs lists the VBDs pointing at the VM and follows them as they move or go."""
        with db.write() as tx:
            a, b = tx.create("VM", {}), tx.create("VM", {})
            vbd = tx.create("VBD", {"VM": a})
        with db.read() as tx:
            assert tx.get_field("VM", a, "VBDs") == [vbd]
            assert tx.get_records("VM")[b]["VBDs"] == []
        with db.write() as tx:
            tx.set_fields("VBD", vbd, {"VM": b})
        with db.read() as tx:
            assert tx.get_record("VM", a)["VBDs"] == [] and tx.get_record("VM", b)["VBDs"] == [vbd]

    def test_owner_sees_a_change_when_its_set_changes(self, db: Database) -> None:
        """Creating a VBD is also a 'mod' of its VM, so events and caches see the VM change."""
        seen: list[Commit] = []
        with db.write() as tx:
            vm = tx.create("VM", {})
        db.subscribe(seen.append)
        with db.write() as tx:
            vbd = tx.create("VBD", {"VM": vm})
        assert {(c.cls, c.op, c.ref) for c in seen[0].changes} == {("VBD", "add", vbd), ("VM", "mod", vm)}
        assert db.last_modified("VM", vm) == seen[0].generation


class TestLifecycle:
    def test_reopen_keeps_data_and_generation(self, tmp_path: Path) -> None:
        """Closing and opening again gives the same objects and generation count."""
        db = Database.create(tmp_path / "p.db")
        with db.write() as tx:
            vm = tx.create("VM", {"name_label": "kept", "other_config": {"k": "v"}})
        generation = db.generation
        db.close()
        again = Database.open(tmp_path / "p.db")
        with again.read() as tx:
            assert tx.get_field("VM", vm, "other_config") == {"k": "v"}
        assert again.generation == generation

    def test_runtime_state_is_forgotten(self, db: Database) -> None:
        """Starting a server drops sessions and tasks and resets non-persistent fields."""
        with db.write() as tx:
            tx.create("session", {})
            tx.create("task", {})
            vm = tx.create("VM", {"allowed_operations": ["start"], "name_label": "kept"})
        db.reset_runtime_state()
        with db.read() as tx:
            assert tx.refs("session") == [] and tx.refs("task") == []
            assert tx.get_field("VM", vm, "allowed_operations") == []
            assert tx.get_field("VM", vm, "name_label") == "kept"

    def test_new_fields_are_added_with_defaults(self, tmp_path: Path) -> None:
        """An older database missing a declared column gets it, filled with the default."""
        db = Database.create(tmp_path / "p.db")
        with db.write() as tx:
            vm = tx.create("VM", {})
        db.close()
        conn = sqlite3.connect(tmp_path / "p.db")
        conn.execute('ALTER TABLE "VM" DROP COLUMN "start_delay"')
        conn.commit()
        conn.close()
        again = Database.open(tmp_path / "p.db")
        with again.read() as tx:
            assert tx.get_field("VM", vm, "start_delay") == 0

    def test_refuses_foreign_files(self, tmp_path: Path) -> None:
        """A file that is not a Farside database, or no file, is a clear DatabaseError."""
        with pytest.raises(DatabaseError, match="farside init"):
            Database.open(tmp_path / "missing.db")
        (tmp_path / "junk.db").write_bytes(b"not sqlite at all" * 100)
        with pytest.raises(DatabaseError, match="not a Farside pool database"):
            Database.open(tmp_path / "junk.db")
        other = sqlite3.connect(tmp_path / "other.db")
        other.execute("CREATE TABLE t (x)")
        other.close()
        with pytest.raises(DatabaseError):
            Database.open(tmp_path / "other.db")
        with pytest.raises(DatabaseError, match="already exists"):
            Database.create(tmp_path / "junk.db")
