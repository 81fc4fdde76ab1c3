"""What a metadata record's payload must look like, checked before a reader uses any of it.

A payload whose checksum is right may still be hostile or wrong (a forger computes checksums too).
Every full copy and delta is checked here against the datamodel: its shape, its generation
against the record's head, and each replicated field of each object against the field's XenAPI
type (values are normalised in place, as a client's input is). Classes and fields this reader
does not know (a newer writer's) are left for the loader to ignore.
"""

from __future__ import annotations

import re
from typing import Any

from farside.errors import FarsideError
from farside.model import STORED, stored_fields
from farside.model.types import INT64_MAX, XType

# Users (and their hashes) never leave the pool; DR runs are this site's own operational log.
NEVER_REPLICATED = frozenset({"user", "DR_run", "message"})
REPLICATED: dict[str, list[str]] = {
    name: [f.name for f in stored_fields(c) if f.persist and not f.internal]
    for name, c in STORED.items()
    if c.persistent and name not in NEVER_REPLICATED
}
_TYPES: dict[str, dict[str, XType]] = {
    name: {f.name: f.type for f in stored_fields(STORED[name]) if f.name in fields}
    for name, fields in REPLICATED.items()
}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_OPS = ("add", "mod", "del")


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
        for cls, rows in objects.items():
            if not isinstance(rows, dict):
                raise Malformed(f"full copy: the {cls} objects are not a JSON object")
            for ref, record in rows.items():
                check_object(cls, ref, record)
        return
    changes = _get(payload, "changes", list, what)
    for n, change in enumerate(changes):
        if not isinstance(change, dict) or change.get("op") not in _OPS:
            raise Malformed(f"delta: change {n} is not an add, mod or del")
        cls, ref = _get(change, "cls", str, f"delta change {n}"), change.get("ref")
        if change["op"] == "del":
            if not isinstance(ref, str):
                raise Malformed(f"delta: change {n} deletes no ref")
        else:
            check_object(cls, ref, change.get("record"))


def check_object(cls: str, ref: Any, record: Any) -> None:
    """One object's record: a dict under a string ref; each known field of the right type."""
    if not isinstance(ref, str) or not isinstance(record, dict):
        raise Malformed(f"a {cls} object is not a record under a ref")
    types = _TYPES.get(cls)
    if types is None:
        return
    for name, xtype in types.items():
        if name in record:
            try:
                record[name] = xtype.check(record[name], name)
            except FarsideError as exc:
                raise Malformed(f"{cls} {ref[:60]}: field {name}: {exc.describe()}") from None
