"""How xe shows one field of a XenAPI object, and how it sets it.

A ``Field`` has xe's name (``name-label``), a getter giving the text xe prints, and where the field
can be changed, a setter. Its kind and whether it is writable give the marker xe prints after the
name: `` ( RO)``/`` ( RW)`` for plain fields, ``(MRO)``/``(MRW)`` for maps, ``(SRO)``/``(SRW)``
for sets. References print as the uuid of the object (``<not in database>`` when null or gone).
"""

from __future__ import annotations

import enum
import xmlrpc.client
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from farside.cli.xe.failures import command_error

NOT_IN_DATABASE = "<not in database>"
NULL_REF = "OpaqueRef:NULL"

Call = Callable[..., Any]


class Lookup:
    """The records of other objects a field shows (the uuid of a ref, a VM's metrics), fetched once
    a class, on first use."""

    def __init__(self, call: Call) -> None:
        self.call = call
        self._cache: dict[str, dict[str, dict[str, Any]]] = {}

    def records(self, cls: str) -> dict[str, dict[str, Any]]:
        if cls not in self._cache:
            self._cache[cls] = dict(self.call(f"{cls}.get_all_records"))
        return self._cache[cls]

    def record(self, cls: str, ref: str) -> dict[str, Any] | None:
        if not ref or ref == NULL_REF:
            return None
        return self.records(cls).get(ref)

    def uuid(self, cls: str, ref: str) -> str:
        found = self.record(cls, ref)
        return str(found["uuid"]) if found else NOT_IN_DATABASE

    def name(self, cls: str, ref: str) -> str:
        found = self.record(cls, ref)
        return str(found["name_label"]) if found else NOT_IN_DATABASE


@dataclass(frozen=True)
class Row:
    """One object as a command sees it: its class, ref, XenAPI record and the shared lookup."""

    cls: str
    ref: str
    record: Mapping[str, Any]
    lookup: Lookup

    def __getitem__(self, key: str) -> Any:
        return self.record[key]

    def call(self, message: str, *args: Any) -> Any:
        return self.lookup.call(f"{self.cls}.{message}", *args)


class Kind(enum.Enum):
    PLAIN = " ( R{})"
    MAP = " (MR{})"
    SET = " (SR{})"


Setter = Callable[[Row, str], None]
MapWriter = Callable[[Row, str, str], None]


@dataclass(frozen=True)
class Field:
    """One xe field.

    Args:
        name: xe's name for it.
        get: the text xe prints.
        kind: plain, map or set.
        set: changes a plain field from the text given (``vm-param-set name-label=...``).
        entries: a map field's entries, or a set field's members (filters, ``param-key=``).
        put: sets one key of a map field (``vm-param-set other-config:key=value``).
        addable: a set field that xe can add to (tags).
        deprecated: xe marks the name ``[DEPRECATED]``.
    """

    name: str
    get: Callable[[Row], str]
    kind: Kind = Kind.PLAIN
    set: Setter | None = None
    entries: Callable[[Row], Mapping[str, str] | list[str]] | None = None
    put: MapWriter | None = None
    addable: bool = False
    deprecated: bool = False

    @property
    def writable(self) -> bool:
        return {Kind.PLAIN: self.set, Kind.MAP: self.put, Kind.SET: self.addable}[self.kind] not in (None, False)

    @property
    def label(self) -> str:
        """The name as xe prints it in a record, with its marker."""
        marker = self.kind.value.format("W" if self.writable else "O")
        return self.name + marker + (" [DEPRECATED]" if self.deprecated else "")


# Text for the XenAPI values a record holds, as xe writes them.


def text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, xmlrpc.client.DateTime):
        return str(value.value)
    return str(value)


def map_text(value: Mapping[str, Any]) -> str:
    return "; ".join(f"{k}: {text(v)}" for k, v in value.items())


# Field constructors: one a shape of field, so a class's table reads like xe's list of names.


def plain(name: str, key: str, *, setter: str | None = None, convert: Callable[[str], Any] = str) -> Field:
    """A string, number or bool field; ``setter`` is the XenAPI message that sets it."""

    def put(row: Row, value: str) -> None:
        assert setter is not None
        row.call(setter, row.ref, convert(value))

    return Field(name, lambda row: text(row[key]), set=put if setter else None)


def flag(name: str, key: str, *, setter: str | None = None) -> Field:
    return plain(name, key, setter=setter, convert=parse_bool(name))


def integer(name: str, key: str, *, setter: str | None = None) -> Field:
    return plain(name, key, setter=setter, convert=parse_int(name))


def enum_field(
    name: str, key: str, shown: Mapping[str, str] | Callable[[str], str], *, setter: str | None = None
) -> Field:
    """An enum field printed through xe's table (``Halted`` -> ``halted``)."""
    show = shown if callable(shown) else (lambda v: shown.get(v, v))

    def put(row: Row, value: str) -> None:
        assert setter is not None
        reverse = {} if callable(shown) else {v.lower(): k for k, v in shown.items()}
        row.call(setter, row.ref, reverse.get(value.lower(), value))

    return Field(name, lambda row: show(str(row[key])), set=put if setter else None)


def ref(name: str, key: str, cls: str, *, setter: str | None = None) -> Field:
    """A reference printed as the uuid of its object; set by that object's uuid (empty for none)."""

    def put(row: Row, value: str) -> None:
        assert setter is not None
        target = NULL_REF if value == "" else row.lookup.call(f"{cls}.get_by_uuid", value)
        row.call(setter, row.ref, target)

    return Field(name, lambda row: row.lookup.uuid(cls, row[key]), set=put if setter else None)


def ref_name(name: str, key: str, cls: str) -> Field:
    return Field(name, lambda row: row.lookup.name(cls, row[key]))


def refs(name: str, key: str, cls: str, *, as_set: bool = False) -> Field:
    """A set of references printed as uuids separated by ``; ``."""

    def members(row: Row) -> list[str]:
        return [row.lookup.uuid(cls, r) for r in row[key]]

    if as_set:
        return Field(name, lambda row: "; ".join(members(row)), Kind.SET, entries=members)
    return Field(name, lambda row: "; ".join(members(row)))


def strings(name: str, key: str, *, sep: str = "; ", add: bool = False) -> Field:
    """A set of strings (operations, tags); ``add`` when xe can add to it (tags, with ``, ``)."""
    return Field(
        name,
        lambda row: sep.join(str(v) for v in row[key]),
        Kind.SET,
        entries=lambda row: [str(v) for v in row[key]],
        addable=add,
    )


def operations(name: str, key: str) -> Field:
    """current-operations: a map of task -> operation, shown as its operations."""
    return Field(
        name,
        lambda row: "; ".join(str(v) for v in row[key].values()),
        Kind.SET,
        entries=lambda row: [str(v) for v in row[key].values()],
    )


def mapping(name: str, key: str, *, writable: bool = False) -> Field:
    """A map field; writable maps are set key by key with the class's remove_from_/add_to_ messages."""

    def put(row: Row, k: str, v: str) -> None:
        if k in row[key]:
            row.call(f"remove_from_{key}", row.ref, k)
        row.call(f"add_to_{key}", row.ref, k, v)

    return Field(
        name,
        lambda row: map_text(row[key]),
        Kind.MAP,
        entries=lambda row: {str(k): text(v) for k, v in row[key].items()},
        put=put if writable else None,
    )


def related(name: str, get: Callable[[Row], str], kind: Kind = Kind.PLAIN, **kw: Any) -> Field:
    """A field computed from other objects (a VM's metrics, the host an SR is on)."""
    return Field(name, get, kind, **kw)


def parse_bool(name: str) -> Callable[[str], bool]:
    def convert(value: str) -> bool:
        if value.lower() in ("true", "on", "yes", "1"):
            return True
        if value.lower() in ("false", "off", "no", "0"):
            return False
        raise command_error(f"Failed to parse parameter '{name}': expecting a boolean (true or false)")

    return convert


def parse_int(name: str) -> Callable[[str], str]:
    # Ints cross XML-RPC as decimal strings, as xapi sends them.
    def convert(value: str) -> str:
        try:
            return str(int(value))
        except ValueError:
            raise command_error(f"Failed to parse parameter '{name}': expecting an integer") from None

    return convert


def parse_float(name: str) -> Callable[[str], float]:
    def convert(value: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise command_error(f"Failed to parse parameter '{name}': expecting a floating-point number") from None

    return convert
