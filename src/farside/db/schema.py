"""The SQLite schema, derived from the datamodel: one table a class, one column a stored field.

Computed inverse sets (``VM.VBDs``) are not columns. Sets and maps are JSON text. Opening an older
database adds the columns and tables that newer declarations bring, filled with their defaults, so
adding a field to the datamodel is one line and no migration script.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from farside.model import RELATIONS, STORED, stored_fields
from farside.model.schema import ClassDef, Field
from farside.model.types import BoolType, FloatType, IntType, MapType, SetType

REF = "_ref"
META_TABLE = "_meta"
CREDENTIAL_TABLE = "_credential"


def quote(name: str) -> str:
    """An SQL identifier; our names are datamodel names, never user input."""
    return '"' + name.replace('"', '""') + '"'


def _sql_type(f: Field) -> str:
    if isinstance(f.type, IntType | BoolType):
        return "INTEGER"
    if isinstance(f.type, FloatType):
        return "REAL"
    return "TEXT"


def _decoder(f: Field) -> Callable[[Any], Any] | None:
    """How a column's value becomes a record value; None where SQLite's value is already right."""
    if isinstance(f.type, BoolType):
        return bool
    if isinstance(f.type, SetType):
        decode_set = f.type.from_db
        return lambda v: [] if v == "[]" else decode_set(v)
    if isinstance(f.type, MapType):
        decode_map = f.type.from_db
        return lambda v: {} if v == "[]" else decode_map(v)
    return None


@dataclass(frozen=True)
class Table:
    """How one class is stored."""

    cls: ClassDef
    fields: list[Field]
    columns: str  # the SELECT list, ref first
    decoders: list[tuple[int, str, Callable[[Any], Any] | None]]

    @property
    def name(self) -> str:
        return quote(self.cls.name)


def _table(c: ClassDef) -> Table:
    fields = stored_fields(c)
    columns = ", ".join([REF, *(quote(f.name) for f in fields)])
    decoders = [(i + 1, f.name, _decoder(f)) for i, f in enumerate(fields)]
    return Table(c, fields, columns, decoders)


TABLES: dict[str, Table] = {name: _table(c) for name, c in STORED.items()}


def _indexes(t: Table) -> list[tuple[str, str]]:
    """(index name, column) pairs: uuid, name_label, and the ref side of each relation."""
    wanted = [f.name for f in t.fields if f.name in ("uuid", "name_label")]
    wanted += [r.ref_field for r in RELATIONS if r.many == t.cls.name]
    return [(f"ix_{t.cls.name}_{col}", col) for col in dict.fromkeys(wanted)]


def ensure(conn: sqlite3.Connection) -> None:
    """Create missing tables, columns and indexes; existing data is kept."""
    conn.execute(f"CREATE TABLE IF NOT EXISTS {META_TABLE} (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {CREDENTIAL_TABLE} (user_ref TEXT PRIMARY KEY, hash TEXT NOT NULL)")
    for t in TABLES.values():
        cols = ", ".join([f"{REF} TEXT PRIMARY KEY", *(f"{quote(f.name)} {_sql_type(f)}" for f in t.fields)])
        conn.execute(f"CREATE TABLE IF NOT EXISTS {t.name} ({cols})")
        have = {row[1] for row in conn.execute(f"PRAGMA table_info({t.name})")}
        for f in t.fields:
            if f.name not in have:
                conn.execute(f"ALTER TABLE {t.name} ADD COLUMN {quote(f.name)} {_sql_type(f)}")
                conn.execute(f"UPDATE {t.name} SET {quote(f.name)} = ?", (f.type.to_db(f.default),))
        for index, col in _indexes(t):
            conn.execute(f"CREATE INDEX IF NOT EXISTS {quote(index)} ON {t.name} ({quote(col)})")
