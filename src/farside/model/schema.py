"""The building blocks of the datamodel declaration: classes, fields and messages.

Everything else derives from these declarations: the database schema, the generic getters and
setters, ``get_all_records``, the role table and event snapshots (DESIGN.md §3).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from farside.model.roles import Role
from farside.model.types import MapType, SetType, XType, parse


class Qualifier(enum.Enum):
    """Who may write a field, as xapi qualifies it."""

    RW = "RW"  # settable by clients through set_<field>
    RO = "RO/constructor"  # given at creation, then read-only to clients
    RT = "RO/runtime"  # written by the server alone


RW, RO, RT = Qualifier.RW, Qualifier.RO, Qualifier.RT


@dataclass(frozen=True)
class Field:
    """A field of a class. ``setter`` is the weakest role allowed to set an RW field."""

    name: str
    type: XType
    qualifier: Qualifier
    default: Any
    setter: Role | None = None
    persist: bool = True
    farside: bool = False  # a Farside addition, not in xapi's datamodel
    internal: bool = False  # stored, but never in a record or a getter (as xapi's internal_only)

    @property
    def is_map(self) -> bool:
        return isinstance(self.type, MapType)

    @property
    def is_set(self) -> bool:
        return isinstance(self.type, SetType)


def F(
    name: str,
    spelling: str,
    qualifier: Qualifier,
    default: Any = None,
    *,
    setter: Role | None = None,
    persist: bool = True,
    farside: bool = False,
    internal: bool = False,
) -> Field:
    """A field declared in the datamodel's own spelling; ``default`` falls back to the type's zero."""
    xtype = parse(spelling)
    value = xtype.zero() if default is None else xtype.check(default, name)
    return Field(name, xtype, qualifier, value, setter, persist, farside, internal)


@dataclass(frozen=True)
class Message:
    """A message (XenAPI call) with behaviour written by hand.

    ``role`` is the weakest role allowed to call it; None means xapi lists no role, so no session
    role is checked (``session.change_password`` checks the caller's own password instead).
    """

    name: str
    role: Role | None
    params: tuple[tuple[str, XType], ...]
    result: XType
    asynchronous: bool = True


def M(
    name: str, role: Role | None, params: list[tuple[str, str]], result: str, *, asynchronous: bool = True
) -> Message:
    """A message with its parameters (after the session) and result in the datamodel's spelling."""
    return Message(name, role, tuple((n, parse(t)) for n, t in params), parse(result), asynchronous)


@dataclass(frozen=True, repr=False)
class ClassDef:
    """A XenAPI class: its fields, its hand-written messages and its implicit ones.

    ``create``/``destroy`` are the roles for the implicit constructor and destructor when xapi
    generates them; ``persistent=False`` classes (sessions, tasks) never reach the metadata VDI
    and are emptied when the server starts.
    """

    name: str
    doc: str
    fields: list[Field]
    messages: list[Message] = field(default_factory=list)
    create: Role | None = None
    destroy: Role | None = None
    by_name_label: bool = False
    persistent: bool = True
    farside: bool = False
    implicit: bool = True  # has generated getters at all (event and message have not)
    reader: Role = Role.READ_ONLY  # the weakest role that may read records (secret: pool-admin)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_fields", {f.name: f for f in self.fields})
        object.__setattr__(self, "_messages", {m.name: m for m in self.messages})

    def __repr__(self) -> str:
        return f"<class {self.name}>"

    def field(self, name: str) -> Field:
        """The field called ``name``; KeyError when there is none."""
        return self._fields[name]  # type: ignore[attr-defined, no-any-return]

    def has_field(self, name: str) -> bool:
        return name in self._fields  # type: ignore[attr-defined]

    def message(self, name: str) -> Message | None:
        return self._messages.get(name)  # type: ignore[attr-defined, no-any-return]
