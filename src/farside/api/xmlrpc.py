"""XML-RPC as xapi speaks it: requests in, ``{Status, Value | ErrorDescription}`` structs out.

Encoding is hand-written and type-directed because it is the hot path: xapi's clients fetch whole
pools with ``get_all_records``, and the standard library's marshaller needs 1.75 s for 10,000
records (FACTS.md). 64-bit ints go out as decimal strings, as xapi sends them.
"""

from __future__ import annotations

import functools
import xmlrpc.client
from collections.abc import Callable
from typing import Any
from xml.parsers import expat

from farside.model import STORED
from farside.model.types import (
    XML_UNSAFE,
    BoolType,
    DateTimeType,
    FloatType,
    IntType,
    MapType,
    OptionType,
    RecordType,
    SetType,
    XType,
)

Encoder = Callable[[Any], str]

HEAD = '<?xml version="1.0"?>\n<methodResponse><params><param><value><struct>'
TAIL = "</struct></value></param></params></methodResponse>\n"
_SUCCESS = "<member><name>Status</name><value>Success</value></member><member><name>Value</name>"


class MalformedRequest(ValueError):
    """The body is not an XML-RPC method call."""


def parse_request(body: bytes) -> tuple[str, list[Any]]:
    """The method name and parameters of an XML-RPC call.

    Raises:
        MalformedRequest: not well-formed XML, not a methodCall, or a DTD (never needed, and the
            door to entity-expansion attacks).
    """
    _refuse_dtd(body)
    try:
        params, method = xmlrpc.client.loads(body, use_builtin_types=False)
    except Exception as exc:  # expat and the unmarshaller raise many types for bad input
        raise MalformedRequest(f"not an XML-RPC method call: {exc}") from None
    if not isinstance(method, str) or not method:
        raise MalformedRequest("the XML-RPC call has no methodName")
    if nesting(params) > MAX_NESTING:
        raise MalformedRequest(f"values nest deeper than {MAX_NESTING} levels")
    return method, [_plain(p) for p in params]


def parse_value(document: bytes, max_nesting: int) -> Any:
    """One bare ``<value>`` document (an XVA's ova.xml), decoded like a call's parameters.

    Raises:
        MalformedRequest: not well-formed, a DTD, not one value, or nested deeper than ``max_nesting``.
    """
    _refuse_dtd(document)
    body = document.strip()
    if body.startswith(b"<?xml"):
        body = body[body.index(b"?>") + 2 :]
    wrapped = b"<methodResponse><params><param>" + body + b"</param></params></methodResponse>"
    try:
        (value,), _ = xmlrpc.client.loads(wrapped, use_builtin_types=False)
    except Exception as exc:  # expat and the unmarshaller raise many types for bad input
        raise MalformedRequest(f"not one XML-RPC value: {exc}") from None
    if nesting(value) > max_nesting:
        raise MalformedRequest(f"values nest deeper than {max_nesting} levels")
    return _plain(value)


# XenAPI's deepest values (a map of sets) nest three levels; anything far deeper is an attack.
MAX_NESTING = 64


def nesting(value: Any) -> int:
    """How deeply lists and dicts nest in ``value``, counted without recursion."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | tuple):
            children: Any = item
        elif isinstance(item, dict):
            children = item.values()
        else:
            continue
        deepest = max(deepest, depth + 1)
        if deepest > MAX_NESTING:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _refuse_dtd(body: bytes) -> None:
    """Reject any DTD, in whatever encoding the document declares, before the real parse."""

    def refuse(*_: object) -> None:
        raise MalformedRequest("XML-RPC requests may not contain a DTD")

    scanner = expat.ParserCreate()
    scanner.StartDoctypeDeclHandler = refuse
    scanner.EntityDeclHandler = refuse
    try:
        scanner.Parse(body, True)
    except expat.ExpatError as exc:
        raise MalformedRequest(f"not well-formed XML: {exc}") from None


def _plain(value: Any) -> Any:
    """Unmarshalled values with DateTime kept as its text and Binary rejected later by type checks."""
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def success(value_xml: str) -> str:
    """A full success response around an encoded ``<value>``."""
    return "".join((HEAD, _SUCCESS, value_xml, "</member>", TAIL))


def bare(value_xml: str) -> str:
    """A plain XML-RPC response around an encoded ``<value>``, with no Status struct."""
    return '<?xml version="1.0"?>\n<methodResponse><params><param>' + value_xml + "</param></params></methodResponse>\n"


# A success response is SUCCESS_OPEN + the value + SUCCESS_CLOSE, for answers built as bytes.
SUCCESS_OPEN = (HEAD + _SUCCESS).encode()
SUCCESS_CLOSE = ("</member>" + TAIL).encode()


def failure(description: list[str]) -> str:
    """A full failure response; every element of the description is a string.

    Failures may echo what a client sent (a method name, a handle), so characters XML cannot
    carry are replaced here rather than refused.
    """
    items = "".join(string(XML_UNSAFE.sub("\ufffd", d)) for d in description)
    return (
        HEAD
        + "<member><name>Status</name><value>Failure</value></member>"
        + "<member><name>ErrorDescription</name><value><array><data>"
        + items
        + "</data></array></value></member>"
        + TAIL
    )


def escape(text: str) -> str:
    # Three substring tests cost less than a regex search on the short strings of a record.
    if "&" in text or "<" in text or ">" in text:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return text


def string(value: str) -> str:
    return "<value>" + escape(value) + "</value>"


def _int(value: int) -> str:
    return "<value>" + str(value) + "</value>"


def _float(value: float) -> str:
    return "<value><double>" + repr(float(value)) + "</double></value>"


def _bool(value: bool) -> str:
    return "<value><boolean>1</boolean></value>" if value else "<value><boolean>0</boolean></value>"


def _datetime(value: str) -> str:
    return "<value><dateTime.iso8601>" + value + "</dateTime.iso8601></value>"


def generic(value: Any) -> str:
    """Encode a value by its Python type, for results whose shape no declaration gives."""
    if isinstance(value, str):
        return string(value)
    if isinstance(value, bool):
        return _bool(value)
    if isinstance(value, int):
        return _int(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, list | tuple):
        return "<value><array><data>" + "".join(generic(v) for v in value) + "</data></array></value>"
    if isinstance(value, dict):
        members = "".join(
            "<member><name>" + escape(str(k)) + "</name>" + generic(v) + "</member>" for k, v in value.items()
        )
        return "<value><struct>" + members + "</struct></value>"
    if value is None:
        return "<value></value>"
    raise TypeError(f"cannot encode {type(value).__name__} in XML-RPC")


_ENCODERS: dict[str, Encoder] = {}


def encoder(xtype: XType) -> Encoder:
    """The encoder for values of ``xtype``, built once per type."""
    cached = _ENCODERS.get(xtype.spelling)
    if cached is None:
        cached = _build(xtype)
        _ENCODERS[xtype.spelling] = cached
    return cached


def _build(xtype: XType) -> Encoder:
    if isinstance(xtype, IntType):
        return _int
    if isinstance(xtype, FloatType):
        return _float
    if isinstance(xtype, BoolType):
        return _bool
    if isinstance(xtype, DateTimeType):
        return _datetime
    if isinstance(xtype, SetType):
        if is_text(xtype.element):
            return lambda v: (
                "<value><array><data>" + "".join([f"<value>{escape(x)}</value>" for x in v]) + "</data></array></value>"
            )
        element = encoder(xtype.element)
        return lambda v: "<value><array><data>" + "".join(map(element, v)) + "</data></array></value>"
    if isinstance(xtype, MapType):
        value_enc = encoder(xtype.value)
        if is_text(xtype.key) and is_text(xtype.value):
            return lambda v: (
                "<value><struct>"
                + "".join(
                    [f"<member><name>{escape(k)}</name><value>{escape(x)}</value></member>" for k, x in v.items()]
                )
                + "</struct></value>"
            )
        return lambda v: (
            "<value><struct>"
            + "".join(
                ["<member><name>" + escape(str(k)) + "</name>" + value_enc(x) + "</member>" for k, x in v.items()]
            )
            + "</struct></value>"
        )
    if isinstance(xtype, RecordType) and xtype.target in STORED:
        return record_encoder(xtype.target)
    if isinstance(xtype, RecordType | OptionType):
        return generic
    return string  # string, ref, enum, void


_BOOLS = ("<value><boolean>0</boolean></value>", "<value><boolean>1</boolean></value>")


@functools.cache
def record_encoder(cls: str) -> Encoder:
    """An encoder for whole records of ``cls``: a struct of every public field, in declared order.

    Generated as one function with one ``str.join`` per record: a loop over the fields, a call
    per field and a regex per string cost twice as much on ``get_all_records`` of 10,000 VMs.
    """
    names: dict[str, Any] = {"escape": escape, "_BOOLS": _BOOLS}
    parts = ['"<value><struct>"']
    for index, f in enumerate(x for x in STORED[cls].fields if not x.internal):
        key = repr(f.name)
        open_ = repr(f"<member><name>{f.name}</name>")
        if isinstance(f.type, IntType):
            parts.append(f'{open_}, "<value>", str(r[{key}]), "</value></member>"')
        elif isinstance(f.type, BoolType):
            parts.append(f'{open_}, _BOOLS[bool(r[{key}])], "</member>"')
        elif is_text(f.type):
            parts.append(f'{open_}, "<value>", escape(r[{key}]), "</value></member>"')
        else:
            names[f"e{index}"] = encoder(f.type)
            parts.append(f'{open_}, e{index}(r[{key}]), "</member>"')
    parts.append('"</struct></value>"')
    source = "def encode(r):\n    return ''.join((" + ", ".join(parts) + "))\n"
    exec(compile(source, f"<record encoder of {cls}>", "exec"), names)
    encode: Encoder = names["encode"]
    return encode


def is_text(xtype: XType) -> bool:
    """Types sent as a bare ``<value>text</value>``: strings, refs, enums."""
    return not isinstance(
        xtype, IntType | FloatType | BoolType | DateTimeType | SetType | MapType | RecordType | OptionType
    )
