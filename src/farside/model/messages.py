"""Every message Farside answers, with its parameters, result and the weakest role allowed it.

Hand-written messages are declared on their class; the implicit ones (getters, setters, map and
set modifiers, constructors, destructors, lookups) are derived here from the fields, as xapi's
code generator derives them. The role table is this module's output: nothing else decides who
may call what.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from farside.model import CLASSES, class_named
from farside.model.roles import Role
from farside.model.schema import RW, ClassDef, Field
from farside.model.types import XType, parse


@dataclass(frozen=True)
class Signature:
    """A callable message. ``kind`` names the implicit pattern, or is ``explicit``."""

    cls: ClassDef
    name: str
    kind: str
    role: Role | None
    params: tuple[tuple[str, XType], ...]
    result: XType
    field: Field | None = None
    asynchronous: bool = False

    @property
    def wire_name(self) -> str:
        return f"{self.cls.name}.{self.name}"


def _implicit(c: ClassDef) -> list[Signature]:
    ref = f"{c.name} ref"
    ro = c.reader
    this = ("self", parse(ref))
    sigs: list[Signature] = []

    def add(name: str, kind: str, role: Role | None, params: list[tuple[str, str]], result: str) -> None:
        typed = tuple((n, parse(t)) for n, t in params)
        # xapi generates Async variants of constructors and destructors, not of accessors.
        asynchronous = kind in ("create", "destroy")
        sigs.append(Signature(c, name, kind, role, typed, parse(result), None, asynchronous))

    add("get_all", "get_all", ro, [], f"{ref} set")
    add("get_all_records", "get_all_records", ro, [], f"({ref} -> {c.name} record) map")
    # Hidden from xapi's documentation but on its wire for every class with get_all_records.
    add("get_all_records_where", "get_all_records_where", ro, [("expr", "string")], f"({ref} -> {c.name} record) map")
    add("get_record", "get_record", ro, [("self", ref)], f"{c.name} record")
    if c.has_field("uuid"):
        add("get_by_uuid", "get_by_uuid", ro, [("uuid", "string")], ref)
    if c.by_name_label:
        add("get_by_name_label", "get_by_name_label", ro, [("label", "string")], f"{ref} set")
    if c.create is not None:
        add("create", "create", c.create, [("args", f"{c.name} record")], ref)
    if c.destroy is not None:
        add("destroy", "destroy", c.destroy, [("self", ref)], "void")
    for f in c.fields:
        if f.internal:
            continue
        sigs.append(Signature(c, "get_" + f.name, "get", ro, (this,), f.type, f))
        if f.qualifier is not RW or f.setter is None:
            continue
        sigs.append(Signature(c, "set_" + f.name, "set", f.setter, (this, ("value", f.type)), parse("void"), f))
        if f.is_map:
            key_t, value_t = f.type.key, f.type.value  # type: ignore[attr-defined]
            sigs.append(
                Signature(
                    c,
                    "add_to_" + f.name,
                    "add_to",
                    f.setter,
                    (this, ("key", key_t), ("value", value_t)),
                    parse("void"),
                    f,
                )
            )
            sigs.append(
                Signature(
                    c,
                    "remove_from_" + f.name,
                    "remove_from",
                    f.setter,
                    (this, ("key", key_t)),
                    parse("void"),
                    f,
                )
            )
        if f.is_set:
            element = f.type.element  # type: ignore[attr-defined]
            sigs.append(Signature(c, "add_" + f.name, "add", f.setter, (this, ("value", element)), parse("void"), f))
            sigs.append(
                Signature(c, "remove_" + f.name, "remove", f.setter, (this, ("value", element)), parse("void"), f)
            )
    return sigs


@functools.cache
def signatures(cls_name: str) -> dict[str, Signature]:
    """Every message of the class, by message name; hand-written ones replace implicit ones."""
    c = CLASSES[cls_name]
    table = {s.name: s for s in _implicit(c)} if c.implicit else {}
    for m in c.messages:
        table[m.name] = Signature(c, m.name, "explicit", m.role, m.params, m.result, None, m.asynchronous)
    return table


def lookup(wire_name: str) -> Signature | None:
    """The signature of ``Class.message`` (or of its alias ``Class_message``), or None when Farside
    has no such message."""
    wire_name = _aliases().get(wire_name, wire_name)
    cls_name, dot, message = wire_name.partition(".")
    c = class_named(cls_name) if dot else None
    if c is None or c.name != cls_name:
        return None
    return signatures(c.name).get(message)


@functools.cache
def _aliases() -> dict[str, str]:
    # xapi's server answers each message under a second name too, ``Class_message``
    # (datamodel_utils.ml, alternative_wire_name): clients use it where "from" is a keyword.
    return {f"{s.cls.name}_{s.name}": s.wire_name for name in CLASSES for s in signatures(name).values()}


def wire_names() -> list[str]:
    """Every message Farside answers, by its ``Class.message`` name, sorted."""
    return sorted(s.wire_name for name in CLASSES for s in signatures(name).values())


def role_table() -> dict[str, Role | None]:
    """``Class.message`` -> weakest role allowed, for every message Farside answers."""
    return {s.wire_name: s.role for name in CLASSES for s in signatures(name).values()}
