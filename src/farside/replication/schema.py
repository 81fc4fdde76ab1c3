"""What a metadata record's payload must look like, checked before a reader uses any of it.

A payload whose checksum is right may still be hostile or wrong (a forger computes checksums too).
Every full copy and delta is checked here against the datamodel: its shape, its generation
against the record's head, and each replicated field of each object against the field's XenAPI
type, in the canonical form the writer takes from the database (so nothing needs normalising,
and the check stays cheap: a full copy of 10,000 VMs is checked every time it is opened).
Classes and fields this reader does not know (a newer writer's) are left for the loader to ignore.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import Any

from farside.model import STORED, stored_fields
from farside.model.types import (
    INT64_MAX,
    INT64_MIN,
    XML_UNSAFE,
    BoolType,
    DateTimeType,
    EnumType,
    FloatType,
    IntType,
    MapType,
    RecordType,
    RefType,
    SetType,
    StringType,
    XType,
)

# Users (and their hashes) and secrets never leave the pool (a LUN's reader would read them); DR
# runs and messages are this site's own operational log.
NEVER_REPLICATED = frozenset({"user", "DR_run", "message", "secret"})
REPLICATED: dict[str, list[str]] = {
    name: [f.name for f in stored_fields(c) if f.persist and not f.internal]
    for name, c in STORED.items()
    if c.persistent and name not in NEVER_REPLICATED
}
Check = Callable[[Any], bool]
# How the database keeps a datetime (model.types.format_datetime).
_DATETIME = re.compile(r"[0-9]{8}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OPS = ("add", "mod", "del")


def _string(v: Any) -> bool:
    return type(v) is str and XML_UNSAFE.search(v) is None


def _strings(values: Any) -> bool:
    """Strings all, XML-safe: one join and one search instead of a call per string."""
    try:
        return XML_UNSAFE.search("".join(values)) is None
    except TypeError:  # not all strings
        return False


def _check_of(xtype: XType) -> Check:
    """A predicate for the canonical values of ``xtype``; type() rather than isinstance: no bool for an int."""
    if isinstance(xtype, StringType):
        return _string
    if isinstance(xtype, RefType):
        return lambda v: type(v) is str
    if isinstance(xtype, IntType):
        return lambda v: type(v) is int and INT64_MIN <= v <= INT64_MAX
    if isinstance(xtype, FloatType):
        return lambda v: type(v) is float or type(v) is int
    if isinstance(xtype, BoolType):
        return lambda v: type(v) is bool
    if isinstance(xtype, DateTimeType):
        return lambda v: type(v) is str and _DATETIME.fullmatch(v) is not None
    if isinstance(xtype, EnumType):
        members = frozenset(xtype.members)
        return lambda v: type(v) is str and v in members
    if isinstance(xtype, SetType) and isinstance(xtype.element, StringType):
        return lambda v: type(v) is list and _strings(v)
    if isinstance(xtype, MapType) and isinstance(xtype.key, StringType) and isinstance(xtype.value, StringType):
        return lambda v: type(v) is dict and _strings(v) and _strings(v.values())
    if isinstance(xtype, SetType):
        element = _check_of(xtype.element)
        return lambda v: type(v) is list and all(map(element, v))
    if isinstance(xtype, MapType):
        key, value = _check_of(xtype.key), _check_of(xtype.value)
        return lambda v: type(v) is dict and all(map(key, v)) and all(map(value, v.values()))
    if isinstance(xtype, RecordType):
        return lambda v: type(v) is dict
    raise TypeError(f"no check for {xtype!r}")


_TYPES: dict[str, dict[str, XType]] = {
    name: {f.name: f.type for f in stored_fields(STORED[name]) if f.name in fields}
    for name, fields in REPLICATED.items()
}
# The Python types a canonical value of each XenAPI type has.
_PYTHON: dict[type[XType], tuple[type, ...]] = {
    StringType: (str,), RefType: (str,), DateTimeType: (str,), EnumType: (str,), IntType: (int,),
    FloatType: (float, int), BoolType: (bool,), SetType: (list,), MapType: (dict,), RecordType: (dict,),
}  # fmt: skip
# Values whose Python type is their whole check; strings and ints are checked together (_Plan).
_TYPE_ONLY = (BoolType, FloatType, RecordType)


def _getter(names: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    if len(names) == 1:
        name = names[0]
        return lambda record: (record[name],)
    return operator.itemgetter(*names)


class _Plan:
    """How to check the records of a class that have these keys with values of these Python types
    (a writer's records of one class all do): the types once, then only what a type does not prove."""

    def __init__(self, cls: str, keys: tuple[str, ...], kinds: tuple[type, ...]) -> None:
        types = _TYPES[cls]
        self.error = ""
        strings, ints, scalars, containers = [], [], [], []
        for name, kind in zip(keys, kinds, strict=True):
            xtype = types.get(name)
            if xtype is None:
                continue  # a newer writer's field: the loader ignores it
            if kind not in _PYTHON[type(xtype)]:
                self.error = f"field {name} is not a {xtype.spelling}"
                return
            if isinstance(xtype, StringType | RefType):
                strings.append(name)
            elif isinstance(xtype, IntType):
                ints.append(name)
            elif isinstance(xtype, SetType | MapType):
                containers.append(name)
            elif not isinstance(xtype, _TYPE_ONLY):
                scalars.append(name)  # enums and datetimes
        self.strings = _getter(strings) if strings else None
        self.ints = _getter(ints) if ints else None
        self.scalars = [(name, _check_of(types[name]), types[name].spelling) for name in scalars]
        # Most sets and maps are empty, and an empty one is right: only the others are walked.
        self.containers = _getter(containers) if containers else None
        self.container_checks = [(name, _check_of(types[name]), types[name].spelling) for name in containers]

    def check(self, record: dict[str, Any]) -> str:
        """What is wrong with ``record``, or ""."""
        if self.error:
            return self.error
        if self.strings is not None and XML_UNSAFE.search("".join(self.strings(record))):
            return "a string holds a character XML cannot carry"
        if self.ints is not None:
            values = self.ints(record)
            if min(values) < INT64_MIN or max(values) > INT64_MAX:
                return "an int is beyond 64 bits"
        for name, check, spelling in self.scalars:
            if not check(record[name]):
                return f"field {name} is not a {spelling}"
        if self.containers is not None:
            for value, (name, check, spelling) in zip(self.containers(record), self.container_checks, strict=True):
                if value and not check(value):
                    return f"field {name} is not a {spelling}"
        return ""


class Malformed(Exception):
    """The payload is not what a Farside writer makes; the message says where."""


def _get(payload: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = payload.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise Malformed(f"{where}: '{key}' is missing or not {getattr(kind, '__name__', kind)}")
    return value


def check_record(full: bool, generation: int, payload: Any) -> None:
    """Raise Malformed unless ``payload`` is a well-formed full copy (or delta) at ``generation``."""
    what = "full copy" if full else "delta"
    if not isinstance(payload, dict):
        raise Malformed(f"the {what}'s payload is not a JSON object")
    if generation > INT64_MAX:
        raise Malformed(f"generation {generation} is beyond a pool's generation count")
    if _get(payload, "generation", int, what) != generation:
        raise Malformed(f"the {what}'s payload says generation {payload['generation']}, its record {generation}")
    _get(payload, "written", str, what)
    if full:
        for key, kind in (("format", int), ("schema_version", int), ("farside_version", str), ("pool_name", str)):
            _get(payload, key, kind, what)
        if not _UUID.fullmatch(_get(payload, "pool_uuid", str, what)):
            raise Malformed(f"full copy: pool_uuid {payload['pool_uuid'][:40]!r} is not a uuid")
        objects = _get(payload, "objects", dict, what)
        plans: dict[tuple[str, tuple[str, ...], tuple[type, ...]], _Plan] = {}
        for cls, rows in objects.items():
            if not isinstance(rows, dict):
                raise Malformed(f"full copy: the {cls} objects are not a JSON object")
            for ref, record in rows.items():
                check_object(cls, ref, record, plans)
        return
    changes = _get(payload, "changes", list, what)
    plans = {}
    for n, change in enumerate(changes):
        if not isinstance(change, dict) or change.get("op") not in _OPS:
            raise Malformed(f"delta: change {n} is not an add, mod or del")
        cls, ref = _get(change, "cls", str, f"delta change {n}"), change.get("ref")
        if change["op"] == "del":
            if not isinstance(ref, str):
                raise Malformed(f"delta: change {n} deletes no ref")
        else:
            check_object(cls, ref, change.get("record"), plans)


def check_object(
    cls: str, ref: Any, record: Any, plans: dict[tuple[str, tuple[str, ...], tuple[type, ...]], _Plan]
) -> None:
    """One object's record: a dict under a string ref; each known field of the right type.

    ``plans`` holds the checks made for each shape of record met so far in this payload (bounded
    by the payload itself: at most one per record)."""
    if type(ref) is not str or type(record) is not dict:
        raise Malformed(f"a {cls} object is not a record under a ref")
    if cls not in _TYPES:
        return
    shape = (cls, tuple(record), tuple(map(type, record.values())))
    plan = plans.get(shape)
    if plan is None:
        plan = plans[shape] = _Plan(*shape)
    wrong = plan.check(record)
    if wrong:
        raise Malformed(f"{cls} {ref[:60]}: {wrong}")
