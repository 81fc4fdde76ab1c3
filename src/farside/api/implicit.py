"""The messages xapi generates for every class: lookups, getters, setters, modifiers, create, destroy.

Behaviour-free by design: a class whose create or destroy needs more than a record written or
removed registers a handler of its own, which replaces the generic one.
"""

from __future__ import annotations

from typing import Any

from farside.api.context import Context
from farside.api.records import public
from farside.db import Transaction, where
from farside.errors import HandleInvalid, MapDuplicateKey
from farside.model import STORED, stored_fields
from farside.model.messages import Signature
from farside.model.schema import RT, ClassDef, Field
from farside.model.types import NULL_REF, RefType


def call(ctx: Context, sig: Signature, args: list[Any]) -> Any:
    """Run the implicit message ``sig`` with checked ``args``."""
    cls = sig.cls.name
    db = ctx.db
    kind = sig.kind
    if kind == "get_all_records":
        return ctx.records.all_records(cls)
    if kind == "get_all_records_where":
        with db.read() as tx:
            return {ref: public(cls, r) for ref, r in where.select(tx, sig.cls, args[0]).items()}
    if kind in ("get_all", "get_record", "get_by_uuid", "get_by_name_label", "get"):
        with db.read() as tx:
            if kind == "get_all":
                return tx.refs(cls)
            if kind == "get_record":
                return ctx.records.record(tx, cls, args[0])
            if kind == "get_by_uuid":
                return tx.ref_of_uuid(cls, args[0])
            if kind == "get_by_name_label":
                return tx.find(cls, "name_label", args[0])
            assert sig.field is not None
            return tx.get_field(cls, args[0], sig.field.name)
    with db.write() as tx:
        if kind == "create":
            return create(tx, sig.cls, args[0])
        if kind == "destroy":
            tx.check(cls, args[0])
            tx.destroy(cls, args[0])
            return ""
        assert sig.field is not None
        _modify(tx, sig.cls, sig.field, kind, args)
        return ""


def _modify(tx: Transaction, c: ClassDef, f: Field, kind: str, args: list[Any]) -> None:
    ref = tx.check(c.name, args[0])
    if kind == "set":
        check_refs(tx, f, args[1])
        tx.set_fields(c.name, ref, {f.name: args[1]})
        return
    if kind == "add_to":
        add_to_map(tx, c.name, ref, f.name, args[1], args[2])
        return
    if kind == "remove_from":
        remove_from_map(tx, c.name, ref, f.name, args[1])
        return
    current = tx.get_field(c.name, ref, f.name)
    if kind == "add":
        if args[1] not in current:
            current.append(args[1])
    elif kind == "remove":
        current = [v for v in current if v != args[1]]
    tx.set_fields(c.name, ref, {f.name: current})


def add_to_map(tx: Transaction, cls: str, ref: str, field: str, key: Any, value: Any) -> None:
    """``key`` added to the map ``field`` of a live object; MAP_DUPLICATE_KEY when it is there."""
    current = tx.get_field(cls, ref, field)
    if key in current:
        raise MapDuplicateKey(cls, field, ref, key)
    tx.set_fields(cls, ref, {field: {**current, key: value}})


def remove_from_map(tx: Transaction, cls: str, ref: str, field: str, key: Any) -> None:
    """``key`` removed from the map ``field`` of a live object; nothing when it is not there (xapi)."""
    current = tx.get_field(cls, ref, field)
    current.pop(key, None)
    tx.set_fields(cls, ref, {field: current})


def create(tx: Transaction, c: ClassDef, record: dict[str, Any]) -> str:
    """A new object from a client's record: constructor fields are taken, runtime ones ignored.

    Fields the record leaves out take their defaults; refs must name live objects.
    """
    return tx.create(c.name, checked_fields(tx, c, record))


def checked_fields(tx: Transaction, c: ClassDef, record: dict[str, Any]) -> dict[str, Any]:
    """The constructor fields of a client's record, type-checked, with refs checked to be live."""
    values: dict[str, Any] = {}
    for f in stored_fields(c):
        if f.qualifier is RT or f.internal or f.name not in record:
            continue
        value = f.type.check(record[f.name], f.name)
        check_refs(tx, f, value)
        values[f.name] = value
    return values


def check_refs(tx: Transaction, f: Field, value: Any) -> None:
    """HANDLE_INVALID unless a ref-typed value is null or names a live object of its class."""
    if not isinstance(f.type, RefType) or value == NULL_REF:
        return
    if f.type.target not in STORED or not tx.exists(f.type.target, value):
        raise HandleInvalid(f.type.target, value)
