"""The pool database as xapi dumps it: ``GET /pool/xmldbdump``'s XML (ocaml/database/db_xml.ml).

The container is xapi's::

    <?xml version="1.0" encoding="UTF-8"?>
    <database>
      <manifest><pair key="schema_major_vsn" value="1"/> ... </manifest>
      <table name="VM"><row ref="OpaqueRef:…" uuid="…" name_label="…" … /></table>
      …
    </database>

a manifest of key/value pairs, then one ``table`` a class and one ``row`` an object, each field
an attribute holding its value as text: ints in decimal, bools ``true``/``false``, sets and maps
as xapi's S-expressions (``('a' 'b')``, ``(('key' 'value'))``, ``'`` and ``\\`` escaped with a
backslash). Column names are Farside's field names, which are xapi's API names (xapi's own
columns spell namespaces with ``__``, ``name__label``): a dump is Farside's schema in xapi's
format, and the manifest's schema version says which.

Reading is as strict as the database is: no DTD or entity (refused before anything is read), no
unknown tag, class or field, each value checked against its field's type (``FIELD_TYPE_ERROR``,
``INVALID_VALUE``), no ref twice. ``mac`` gives the digest of a dump's content, independent of
its layout (attribute order, spacing), for the caller to sign with a key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any
from xml.parsers import expat
from xml.sax.saxutils import quoteattr

import orjson

from farside.errors import FarsideError, InvalidValue
from farside.model import STORED
from farside.model.types import BoolType, FloatType, IntType, MapType, SetType, XType

REF = "ref"
# Generation counts xapi writes on each row; read and ignored (Farside keeps none per object).
_GENERATION_ATTRIBUTES = ("__mtime", "__ctime")

Objects = Mapping[str, Mapping[str, Mapping[str, Any]]]


class DumpInvalid(InvalidValue):
    """A dump that is not one: ``["INVALID_VALUE", "database dump", reason]``."""

    def __init__(self, reason: str) -> None:
        super().__init__("database dump", reason)


@dataclass
class Dump:
    """A parsed dump: its manifest, and each class's objects by ref (values typed and checked)."""

    manifest: dict[str, str] = field(default_factory=dict)
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


# -- values ----------------------------------------------------------------------------------


def _scalar(xtype: XType, value: Any) -> str:
    if isinstance(xtype, BoolType):
        return "true" if value else "false"
    if isinstance(xtype, FloatType):
        return repr(float(value))
    if isinstance(xtype, IntType):
        return str(int(value))
    return str(value)


def _quote(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def encode_value(xtype: XType, value: Any) -> str:
    """A field's value as the text of its attribute."""
    if isinstance(xtype, SetType):
        return "(" + " ".join(_quote(_scalar(xtype.element, v)) for v in value) + ")"
    if isinstance(xtype, MapType):
        pairs = (f"({_quote(_scalar(xtype.key, k))} {_quote(_scalar(xtype.value, v))})" for k, v in value.items())
        return "(" + " ".join(pairs) + ")"
    return _scalar(xtype, value)


def _sexpr(text: str) -> list[Any]:
    """xapi's S-expression of strings and lists of them; ValueError when it is not one."""
    items: list[list[Any]] = [[]]
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "(":
            items.append([])
        elif c == ")":
            if len(items) < 2:
                raise ValueError("unbalanced parentheses")
            done = items.pop()
            items[-1].append(done)
        elif c == "'":
            chars = []
            i += 1
            while i < n and text[i] != "'":
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= n:
                raise ValueError("unterminated string")
            items[-1].append("".join(chars))
        elif not c.isspace():
            raise ValueError(f"unexpected {c!r}")
        i += 1
    if len(items) != 1 or len(items[0]) != 1 or not isinstance(items[0][0], list):
        raise ValueError("not one parenthesised list")
    return items[0][0]


def decode_value(xtype: XType, text: str, name: str) -> Any:
    """The typed value of an attribute, checked as the API checks one (FIELD_TYPE_ERROR, ...)."""
    if isinstance(xtype, SetType | MapType):
        try:
            parsed = _sexpr(text)
        except ValueError as exc:
            raise DumpInvalid(f"{name}: {exc}") from None
        if isinstance(xtype, SetType):
            if not all(isinstance(v, str) for v in parsed):
                raise DumpInvalid(f"{name}: a set holds strings")
            return xtype.check(parsed, name)
        if not all(isinstance(p, list) and len(p) == 2 and all(isinstance(v, str) for v in p) for p in parsed):
            raise DumpInvalid(f"{name}: a map holds pairs of strings")
        return xtype.check(dict(parsed), name)
    return xtype.check(text, name)


# -- writing ---------------------------------------------------------------------------------


def to_xml(manifest: Mapping[str, str], objects: Objects) -> bytes:
    """The dump of ``objects`` (class -> ref -> record, the fields to dump only)."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>\n<database>\n<manifest>']
    out += [f"<pair key={quoteattr(k)} value={quoteattr(v)}/>" for k, v in manifest.items()]
    out.append("</manifest>\n")
    for cls, rows in objects.items():
        fields = {f.name: f.type for f in STORED[cls].fields}
        out.append(f"<table name={quoteattr(cls)}>\n")
        for ref, record in rows.items():
            attributes = " ".join(
                f"{name}={_attribute(encode_value(fields[name], value))}" for name, value in record.items()
            )
            out.append(f"<row {REF}={_attribute(ref)} {attributes}/>\n")
        out.append("</table>\n")
    out.append("</database>\n")
    return "".join(out).encode()


def _attribute(text: str) -> str:
    # Whitespace other than spaces is normalised away in attributes unless written as references.
    return quoteattr(text, {"\n": "&#10;", "\r": "&#13;", "\t": "&#9;"})


# -- reading ---------------------------------------------------------------------------------


class _Reader:
    """expat handlers building a Dump, refusing anything that is not one."""

    def __init__(self, allowed: Mapping[str, Collection[str]]) -> None:
        self.allowed = allowed
        self.dump = Dump()
        self.stack: list[str] = []
        self.table: str | None = None
        self.seen_tables: set[str] = set()

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        parent = self.stack[-1] if self.stack else None
        self.stack.append(tag)
        if (parent, tag) == (None, "database") or (parent, tag) == ("database", "manifest"):
            return
        if (parent, tag) == ("manifest", "pair"):
            if set(attributes) != {"key", "value"} or attributes["key"] in self.dump.manifest:
                raise DumpInvalid("a manifest pair has a key and a value, each key once")
            self.dump.manifest[attributes["key"]] = attributes["value"]
            return
        if (parent, tag) == ("database", "table"):
            name = attributes.get("name", "")
            if name not in self.allowed or name in self.seen_tables or set(attributes) != {"name"}:
                raise DumpInvalid(f"table {name!r} is not a class of this pool, or comes twice")
            self.seen_tables.add(name)
            self.table = name
            self.dump.objects[name] = {}
            return
        if (parent, tag) == ("table", "row") and self.table is not None:
            self._row(self.table, attributes)
            return
        raise DumpInvalid(f"unexpected <{tag}> in <{parent}>" if parent else f"the root is <{tag}>, not <database>")

    def _row(self, cls: str, attributes: dict[str, str]) -> None:
        ref = attributes.pop(REF, "")
        rows = self.dump.objects[cls]
        if not ref.startswith("OpaqueRef:") or ref in rows:
            raise DumpInvalid(f"a {cls} row needs a ref of its own, not {ref!r}")
        for name in _GENERATION_ATTRIBUTES:
            attributes.pop(name, None)
        c = STORED[cls]
        record = {}
        for name, text in attributes.items():
            if name not in self.allowed[cls]:
                raise DumpInvalid(f"{cls} has no field {name!r} that a dump holds")
            record[name] = decode_value(c.field(name).type, text, f"{cls}.{name}")
        rows[ref] = record

    def end(self, tag: str) -> None:
        self.stack.pop()
        if tag == "table":
            self.table = None


def _refuse(*_: object) -> None:
    raise DumpInvalid("a dump holds no DTD or entity declaration")


def from_xml(data: bytes, allowed: Mapping[str, Collection[str]]) -> Dump:
    """Parse a dump of the classes and fields in ``allowed``; DumpInvalid (or the field's own
    type error) when it is not a valid one."""
    reader = _Reader(allowed)
    parser = expat.ParserCreate()
    parser.StartDoctypeDeclHandler = _refuse
    parser.EntityDeclHandler = _refuse
    parser.StartElementHandler = reader.start
    parser.EndElementHandler = reader.end
    parser.CharacterDataHandler = _no_text
    try:
        parser.Parse(data, True)
    except FarsideError:
        raise
    except (expat.ExpatError, ValueError) as exc:
        raise DumpInvalid(f"not well-formed XML: {exc}") from None
    if not reader.dump.manifest:
        raise DumpInvalid("no manifest")
    return reader.dump


def _no_text(text: str) -> None:
    if text.strip():
        raise DumpInvalid("a dump holds no text outside its attributes")


# -- authenticity ------------------------------------------------------------------------------


def mac(key: bytes, manifest: Mapping[str, str], objects: Objects) -> str:
    """HMAC-SHA256 under ``key`` of the manifest and the typed objects (not of their layout)."""
    content = orjson.dumps(
        {"manifest": dict(manifest), "objects": objects}, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
    )
    return hmac.new(key, content, hashlib.sha256).hexdigest()


def same_mac(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.encode())
