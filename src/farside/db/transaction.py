"""Reads and writes of objects inside one database transaction.

A Transaction is handed out by ``Database.read()`` / ``Database.write()``; it checks refs and uuids
(``HANDLE_INVALID``, ``UUID_INVALID``), fills defaults, computes inverse sets and records what
changed so the commit can publish it.
"""

from __future__ import annotations

import functools
import sqlite3
import uuid as uuidlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from farside.db.changes import Change, ChangeLog
from farside.db.schema import CREDENTIAL_TABLE, REF, TABLES, Table, quote
from farside.errors import HandleInvalid, UuidInvalid
from farside.model import RELATIONS, Relation, inverse_of
from farside.model.types import NULL_REF, REF_PREFIX, MapType, SetType


def new_ref() -> str:
    """A fresh ref: random per object and per database, never the object's uuid."""
    return REF_PREFIX + str(uuidlib.uuid4())


def _table(cls: str) -> Table:
    try:
        return TABLES[cls]
    except KeyError:
        raise KeyError(f"{cls} is not a stored class") from None


class Transaction:
    """Object access within one transaction; not thread-safe, used by one caller at a time."""

    def __init__(self, conn: sqlite3.Connection, writable: bool) -> None:
        self._conn = conn
        self.writable = writable
        self.log = ChangeLog()

    # -- reading ------------------------------------------------------------------------------

    def exists(self, cls: str, ref: str) -> bool:
        t = _table(cls)
        return self._conn.execute(f"SELECT 1 FROM {t.name} WHERE {REF} = ?", (ref,)).fetchone() is not None

    def check(self, cls: str, ref: str) -> str:
        """``ref`` itself if it names a live object of ``cls``, else HANDLE_INVALID [cls, ref]."""
        if not isinstance(ref, str) or not self.exists(cls, ref):
            raise HandleInvalid(cls, ref)
        return ref

    def refs(self, cls: str) -> list[str]:
        t = _table(cls)
        return [row[0] for row in self._conn.execute(f"SELECT {REF} FROM {t.name}")]

    def count(self, cls: str) -> int:
        t = _table(cls)
        return int(self._conn.execute(f"SELECT COUNT(*) FROM {t.name}").fetchone()[0])

    def ref_of_uuid(self, cls: str, uuid: str) -> str:
        """The ref of the object of ``cls`` with ``uuid``, else UUID_INVALID [cls, uuid]."""
        t = _table(cls)
        row = self._conn.execute(f"SELECT {REF} FROM {t.name} WHERE uuid = ?", (uuid,)).fetchone()
        if row is None:
            raise UuidInvalid(cls, uuid)
        return str(row[0])

    def find(self, cls: str, field: str, value: Any) -> list[str]:
        """Refs of the objects whose ``field`` equals ``value`` (a scalar field)."""
        t = _table(cls)
        stored = t.cls.field(field).type.to_db(value)
        sql = f"SELECT {REF} FROM {t.name} WHERE {quote(field)} = ?"
        return [row[0] for row in self._conn.execute(sql, (stored,))]

    def get_field(self, cls: str, ref: str, field: str) -> Any:
        """One field's value; inverse sets are computed. HANDLE_INVALID for a bad ref."""
        t = _table(cls)
        rel = inverse_of(cls, field)
        if rel is not None:
            self.check(cls, ref)
            return self._members(rel, ref)
        f = t.cls.field(field)
        row = self._conn.execute(f"SELECT {quote(field)} FROM {t.name} WHERE {REF} = ?", (ref,)).fetchone()
        if row is None:
            raise HandleInvalid(cls, ref)
        return f.type.from_db(row[0])

    def get_fields(self, cls: str, ref: str, fields: tuple[str, ...]) -> dict[str, Any]:
        """Some stored fields of one object, in one query (no inverse sets). HANDLE_INVALID for a
        bad ref."""
        t = _table(cls)
        decoders = [t.cls.field(name).type.from_db for name in fields]
        columns = ", ".join(quote(name) for name in fields)
        row = self._conn.execute(f"SELECT {columns} FROM {t.name} WHERE {REF} = ?", (ref,)).fetchone()
        if row is None:
            raise HandleInvalid(cls, ref)
        return {name: decode(v) for name, decode, v in zip(fields, decoders, row, strict=True)}

    def get_record(self, cls: str, ref: str) -> dict[str, Any]:
        """The object's full record, internal fields included (callers drop them for clients)."""
        t = _table(cls)
        row = self._conn.execute(f"SELECT {t.columns} FROM {t.name} WHERE {REF} = ?", (ref,)).fetchone()
        if row is None:
            raise HandleInvalid(cls, ref)
        record = _decode(t, row)
        for rel in _inverses(cls):
            record[rel.set_field] = self._members(rel, ref)
        return record

    def get_records(self, cls: str, refs: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Records of every object of ``cls`` (or of ``refs`` only, skipping dead ones)."""
        t = _table(cls)
        rows, inverse = self.get_rows(cls, refs)
        records = {row[0]: _decode(t, row) for row in rows}
        for field, groups in inverse.items():
            for ref, record in records.items():
                record[field] = groups.get(ref, [])
        return records

    def get_rows(
        self, cls: str, refs: list[str] | None = None
    ) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, list[str]]]]:
        """What ``get_records`` reads, undecoded: rows (ref, then the table's columns in order) and
        each inverse set as ``{set field: {ref: members}}`` (a ref missing there has none)."""
        t = _table(cls)
        if refs is None:
            rows = self._conn.execute(f"SELECT {t.columns} FROM {t.name}").fetchall()
        else:
            rows = []
            for start in range(0, len(refs), 500):
                chunk = refs[start : start + 500]
                marks = ",".join("?" * len(chunk))
                sql = f"SELECT {t.columns} FROM {t.name} WHERE {REF} IN ({marks})"
                rows += self._conn.execute(sql, chunk).fetchall()
        inverse: dict[str, dict[str, list[str]]] = {}
        for rel in _inverses(cls):
            if refs is None or len(refs) > 50:
                inverse[rel.set_field] = self._all_members(rel)
            else:
                inverse[rel.set_field] = {row[0]: self._members(rel, row[0]) for row in rows}
        return rows, inverse

    def select(self, cls: str, fields: tuple[str, ...]) -> dict[str, dict[str, Any]]:
        """Every object of ``cls`` as a record of ``fields`` only (stored fields, no inverse sets).

        For whole-pool copies: only the columns asked for are read and decoded, and only the
        columns that need it (bools, sets, maps) go through a decoder.
        """
        sql, names, fixups = _select_plan(cls, fields)
        records: dict[str, dict[str, Any]] = {}
        for row in self._conn.execute(sql):
            record = dict(zip(names, row[1:], strict=True))
            for name, decode in fixups:
                record[name] = decode(record[name])
            records[row[0]] = record
        return records

    def _members(self, rel: Relation, ref: str) -> list[str]:
        many = _table(rel.many)
        sql = f"SELECT {REF} FROM {many.name} WHERE {quote(rel.ref_field)} = ?"
        return [row[0] for row in self._conn.execute(sql, (ref,))]

    def _all_members(self, rel: Relation) -> dict[str, list[str]]:
        many = _table(rel.many)
        groups: dict[str, list[str]] = defaultdict(list)
        sql = f"SELECT {quote(rel.ref_field)}, {REF} FROM {many.name} WHERE {quote(rel.ref_field)} != ?"
        for owner, member in self._conn.execute(sql, (NULL_REF,)):
            groups[owner].append(member)
        return groups

    # -- writing ------------------------------------------------------------------------------

    def create(self, cls: str, values: dict[str, Any], ref: str | None = None) -> str:
        """Insert an object; missing fields take their defaults and a missing uuid is generated."""
        self._require_write()
        t = _table(cls)
        ref = ref or new_ref()
        record: dict[str, Any] = {}
        for f in t.fields:
            record[f.name] = values[f.name] if f.name in values else _fresh(f.default)
        unknown = set(values) - set(record)
        if unknown:
            raise KeyError(f"{cls} has no stored fields {sorted(unknown)}")
        if "uuid" in record and not record["uuid"]:
            record["uuid"] = str(uuidlib.uuid4())
        cols = ", ".join([REF, *(quote(f.name) for f in t.fields)])
        marks = ", ".join("?" * (len(t.fields) + 1))
        params = [ref, *(f.type.to_db(record[f.name]) for f in t.fields)]
        self._conn.execute(f"INSERT INTO {t.name} ({cols}) VALUES ({marks})", params)
        self.log.note(Change(cls, "add", ref, t.cls.persistent))
        for rel in RELATIONS:
            if rel.many == cls:
                self.touch(rel.one, record[rel.ref_field])
        return ref

    def load(self, cls: str, records: dict[str, dict[str, Any]], fields: set[str] | None = None) -> None:
        """Insert whole objects under their own refs, in one statement: for filling a database
        nobody watches yet (a foreign pool's metadata). Only ``fields`` (default: all) are taken
        from the records, the others take their defaults; nothing is logged, no set is touched."""
        self._require_write()
        t = _table(cls)
        cols = ", ".join([REF, *(quote(f.name) for f in t.fields)])
        marks = ", ".join("?" * (len(t.fields) + 1))
        taken = [(f.name, f.default) for f in t.fields if fields is None or f.name in fields]
        fixed = {f.name: f.default for f in t.fields if fields is not None and f.name not in fields}
        # Only sets and maps change on their way into a column (JSON text); the rest go as they are.
        encoders = [(i, f.type.to_db) for i, f in enumerate(t.fields) if isinstance(f.type, SetType | MapType)]
        order = {f.name: i for i, f in enumerate(t.fields)}
        uuid_at = order.get("uuid")
        rows = []
        for ref, record in records.items():
            values: list[Any] = [None] * len(t.fields)
            for name, default in taken:
                values[order[name]] = record.get(name, default)
            for name, default in fixed.items():
                values[order[name]] = default
            if uuid_at is not None and not values[uuid_at]:
                values[uuid_at] = str(uuidlib.uuid4())
            for i, encode in encoders:
                values[i] = encode(values[i])
            rows.append((ref, *values))
        self._conn.executemany(f"INSERT INTO {t.name} ({cols}) VALUES ({marks})", rows)

    def set_fields(self, cls: str, ref: str, values: dict[str, Any]) -> None:
        """Write stored fields of one object. HANDLE_INVALID for a bad ref."""
        self._require_write()
        if not values:
            return
        t = _table(cls)
        fields = [t.cls.field(name) for name in values]
        pointers = [r for r in RELATIONS if r.many == cls and r.ref_field in values]
        old_owners = {r.ref_field: self.get_field(cls, ref, r.ref_field) for r in pointers}
        assignments = ", ".join(f"{quote(f.name)} = ?" for f in fields)
        params = [f.type.to_db(values[f.name]) for f in fields]
        cursor = self._conn.execute(f"UPDATE {t.name} SET {assignments} WHERE {REF} = ?", [*params, ref])
        if cursor.rowcount == 0:
            raise HandleInvalid(cls, ref)
        persistent = t.cls.persistent and any(f.persist for f in fields)
        self.log.note(Change(cls, "mod", ref, persistent))
        for rel in pointers:
            if old_owners[rel.ref_field] != values[rel.ref_field]:
                self.touch(rel.one, old_owners[rel.ref_field])
                self.touch(rel.one, values[rel.ref_field])

    def reset_fields(
        self, cls: str, values: dict[str, Any], where: tuple[str, Any] | None = None, refs: list[str] | None = None
    ) -> None:
        """Write the same runtime ``values`` into every object of ``cls`` (whose ``where`` field
        has the given value; of ``refs`` only, if given), in one statement (one per 500 refs).

        For start-up only: no change is logged (nobody is subscribed yet, and the fields are not
        persistent), and no field may be the ref side of a relation.
        """
        self._require_write()
        t = _table(cls)
        fields = [t.cls.field(name) for name in values]
        if any(r.many == cls and r.ref_field in values for r in RELATIONS):
            raise ValueError(f"reset_fields cannot write the relation fields of {cls}")
        assignments = ", ".join(f"{quote(f.name)} = ?" for f in fields)
        params = [f.type.to_db(values[f.name]) for f in fields]
        sql = f"UPDATE {t.name} SET {assignments}"
        if where is not None:
            sql += f" WHERE {quote(where[0])} = ?"
            params.append(t.cls.field(where[0]).type.to_db(where[1]))
        if refs is None:
            self._conn.execute(sql, params)
            return
        for start in range(0, len(refs), 500):
            chunk = refs[start : start + 500]
            marks = ",".join("?" * len(chunk))
            joiner = " AND" if where is not None else " WHERE"
            self._conn.execute(f"{sql}{joiner} {REF} IN ({marks})", [*params, *chunk])

    def destroy(self, cls: str, ref: str) -> None:
        """Delete one object; the relations pointing at it are left for the caller to clear."""
        self._require_write()
        t = _table(cls)
        snapshot = self.get_record(cls, ref)
        self._conn.execute(f"DELETE FROM {t.name} WHERE {REF} = ?", (ref,))
        self.log.note(Change(cls, "del", ref, t.cls.persistent, snapshot))
        for rel in RELATIONS:
            if rel.many == cls:
                self.touch(rel.one, snapshot[rel.ref_field])

    def touch(self, cls: str, ref: str) -> None:
        """Note a change of ``ref`` that no column shows (an inverse set, an injected event)."""
        if ref != NULL_REF and self.exists(cls, ref):
            self.log.note(Change(cls, "mod", ref, False))

    def _require_write(self) -> None:
        if not self.writable:
            raise RuntimeError("write inside a read transaction")

    # -- credentials: outside the datamodel, never in a record, never replicated --------------

    def password_hash(self, user_ref: str) -> str | None:
        sql = f"SELECT hash FROM {CREDENTIAL_TABLE} WHERE user_ref = ?"
        row = self._conn.execute(sql, (user_ref,)).fetchone()
        return None if row is None else str(row[0])

    def set_password_hash(self, user_ref: str, hashed: str | None) -> None:
        self._require_write()
        self._conn.execute(f"DELETE FROM {CREDENTIAL_TABLE} WHERE user_ref = ?", (user_ref,))
        if hashed is not None:
            self._conn.execute(f"INSERT INTO {CREDENTIAL_TABLE} VALUES (?, ?)", (user_ref, hashed))


def _fresh(value: Any) -> Any:
    """A default that callers may mutate without changing the declaration."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


@functools.cache
def _select_plan(
    cls: str, fields: tuple[str, ...]
) -> tuple[str, tuple[str, ...], list[tuple[str, Callable[[Any], Any]]]]:
    t = _table(cls)
    decoders = {name: decode for _, name, decode in t.decoders}
    missing = [f for f in fields if f not in decoders]
    if missing:
        raise KeyError(f"{cls} has no stored fields {missing}")
    sql = f"SELECT {', '.join([REF, *(quote(f) for f in fields)])} FROM {t.name}"
    fixups = [(f, d) for f in fields if (d := decoders[f]) is not None]
    return sql, fields, fixups


def _decode(t: Table, row: tuple[Any, ...]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for index, name, decode in t.decoders:
        value = row[index]
        record[name] = value if decode is None else decode(value)
    return record


_INVERSES: dict[str, list[Relation]] = defaultdict(list)
for _rel in RELATIONS:
    _INVERSES[_rel.one].append(_rel)


def _inverses(cls: str) -> list[Relation]:
    return _INVERSES.get(cls, [])
