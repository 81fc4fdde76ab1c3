"""``ova.xml``, the first member of an XVA: a version and the exported objects, as export.ml writes it.

One line, no XML prolog, XML-RPC encoding: a struct ``{version: {...}, objects: [{class, id,
snapshot}]}`` where each snapshot is the object's full record as ``get_record`` sends it, with
every ref rewritten to the exporting side's ``Ref:N`` id, or to OpaqueRef:NULL when it points at
an object not exported.
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass
from typing import Any

from farside import __version__
from farside.api import xmlrpc
from farside.api.records import public
from farside.backup.errors import XvaIncompatibleVersion, XvaInvalid
from farside.errors import FarsideError
from farside.model import STORED
from farside.model.types import NULL_REF, EnumType, MapType, RefType, SetType, XType

NAME = "ova.xml"
# The xapi version this pool speaks in XVAs: an XVA from a newer xapi is refused, as xapi refuses it.
XAPI_MAJOR = 24
XAPI_MINOR = 39
# 2: chunks with inline checksums and no checksum table at the end (xapi since Rio).
EXPORT_VSN = 2
# ova.xml is read whole before any disk: a VM's is a few kB, a pool's metadata a few MB.
MAX_SIZE = 16 << 20
_MAX_NESTING = 16


@dataclass
class Obj:
    """One exported object: its class, its ``Ref:N`` id and its record (refs rewritten)."""

    cls: str
    id: str
    snapshot: dict[str, Any]


@dataclass
class Header:
    version: dict[str, Any]
    objects: list[Obj]

    def of_class(self, cls: str) -> list[Obj]:
        return [o for o in self.objects if o.cls == cls]

    def find(self, ref: str) -> Obj | None:
        return next((o for o in self.objects if o.id == ref), None)


def version(hostname: str) -> dict[str, Any]:
    return {
        "hostname": hostname,
        "date": dt.date.today().isoformat(),
        "product_version": __version__,
        "product_brand": "Farside",
        "build_number": __version__,
        "xapi_major": XAPI_MAJOR,
        "xapi_minor": XAPI_MINOR,
        "export_vsn": EXPORT_VSN,
    }


def rewrite(xtype: XType, value: Any, table: dict[str, str]) -> Any:
    """``value`` with every ref replaced through ``table`` (refs not in it: NULL; in sets: dropped)."""
    if isinstance(xtype, RefType):
        return table.get(value, NULL_REF)
    if isinstance(xtype, SetType) and isinstance(xtype.element, RefType):
        return [table[v] for v in value if v in table]
    if isinstance(xtype, MapType) and (isinstance(xtype.key, RefType) or isinstance(xtype.value, RefType)):
        return {rewrite(xtype.key, k, table): rewrite(xtype.value, v, table) for k, v in value.items()}
    return value


def snapshot(cls: str, record: dict[str, Any], table: dict[str, str]) -> dict[str, Any]:
    """The public record with its refs rewritten through ``table``."""
    fields = {f.name: f for f in STORED[cls].fields if not f.internal}
    return {k: rewrite(fields[k].type, v, table) for k, v in public(cls, record).items()}


def encode(version: dict[str, Any], objects: list[Obj]) -> bytes:
    head = "".join(f"<member><name>{k}</name>{xmlrpc.generic(v)}</member>" for k, v in version.items())
    items = "".join(
        "<value><struct>"
        f"<member><name>class</name>{xmlrpc.string(o.cls)}</member>"
        f"<member><name>id</name>{xmlrpc.string(o.id)}</member>"
        f"<member><name>snapshot</name>{xmlrpc.record_encoder(o.cls)(o.snapshot)}</member>"
        "</struct></value>"
        for o in objects
    )
    return (
        "<value><struct>"
        f"<member><name>version</name><value><struct>{head}</struct></value></member>"
        f"<member><name>objects</name><value><array><data>{items}</data></array></value></member>"
        "</struct></value>"
    ).encode()


def decode(document: bytes) -> Header:
    """The header of an XVA, its records checked against this pool's classes.

    Objects of classes this pool does not have (VGPU, VTPM, ...) are dropped; fields it does not
    know are ignored, missing ones take their defaults.

    Raises:
        XvaInvalid: not an ova.xml, or a field of the wrong type.
        XvaIncompatibleVersion: written by a newer xapi than XAPI_MAJOR.XAPI_MINOR.
    """
    try:
        value = xmlrpc.parse_value(document, _MAX_NESTING)
    except xmlrpc.MalformedRequest as exc:
        raise XvaInvalid(f"ova.xml is not readable: {exc}") from None
    if not isinstance(value, dict) or not isinstance(value.get("version"), dict):
        raise XvaInvalid("ova.xml has no version struct")
    found = value["version"]
    check_version(found)
    objects = value.get("objects")
    if not isinstance(objects, list):
        raise XvaInvalid("ova.xml has no objects array")
    decoded = []
    for item in objects:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("class", "id")):
            raise XvaInvalid("an ova.xml object lacks its class or id")
        if item["class"] not in STORED or not isinstance(item.get("snapshot"), dict):
            continue
        decoded.append(Obj(item["class"], item["id"], _checked(item["class"], item["id"], item["snapshot"])))
    return Header(found, decoded)


def check_version(found: dict[str, Any]) -> None:
    try:
        theirs = (int(found.get("xapi_major", 0)), int(found.get("xapi_minor", 0)))
    except (TypeError, ValueError):
        raise XvaInvalid("ova.xml's xapi_major and xapi_minor are not numbers") from None
    if theirs > (XAPI_MAJOR, XAPI_MINOR):
        raise XvaIncompatibleVersion()


def _checked(cls: str, ref: str, snapshot: dict[str, Any]) -> dict[str, Any]:
    record = {}
    for f in STORED[cls].fields:
        if f.internal or f.name not in snapshot:
            record[f.name] = copy.copy(f.default)
            continue
        try:
            record[f.name] = f.type.check(snapshot[f.name], f.name)
        except FarsideError as exc:
            if isinstance(f.type, EnumType):  # a newer xapi's enum member: the default here
                record[f.name] = f.default
                continue
            raise XvaInvalid(f"{cls} {ref} field {f.name}: {exc.describe()}") from None
    return record
