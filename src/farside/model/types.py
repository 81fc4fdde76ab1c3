"""XenAPI's type language, as the datamodel writes it: ``int``, ``VM ref``, ``(string -> string) map``.

A type parses once from its datamodel spelling and then knows its default value, how to check a
value that arrived over the wire (``check``), and how to store it (``to_db``/``from_db``). Wire
encodings live in the api layer; this module does no I/O.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from farside.errors import FieldTypeError, InvalidValue
from farside.model.enums import ENUMS

NULL_REF = "OpaqueRef:NULL"
REF_PREFIX = "OpaqueRef:"
EPOCH = "19700101T00:00:00Z"
# XenAPI ints are 64-bit; XML-RPC carries them as decimal strings (FACTS.md).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Characters XML 1.0 cannot carry even escaped; a string holding one could not be sent to an
# XML-RPC client, so it is refused on the way in (JSON-RPC could otherwise store it).
XML_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_DATETIME_FORMS = ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S")


def format_datetime(moment: dt.datetime) -> str:
    """A datetime in xapi's wire form, ``20240131T12:00:00Z`` (UTC)."""
    return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H:%M:%SZ")


def parse_datetime(text: str) -> dt.datetime:
    """A datetime in xapi's wire form (``20240131T12:00:00Z``) as an aware UTC datetime; ValueError otherwise."""
    return dt.datetime.strptime(text, "%Y%m%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)


def now() -> str:
    """The current time in xapi's wire form."""
    return format_datetime(dt.datetime.now(dt.UTC))


class XType:
    """A XenAPI type. Values are plain Python: str, int, float, bool, list, dict."""

    spelling: str

    def zero(self) -> Any:
        """The value a field of this type has when the datamodel gives no default."""
        raise NotImplementedError

    def check(self, value: Any, name: str) -> Any:
        """``value`` as received from a client, checked and normalised.

        Raises:
            FieldTypeError: the value is not of this type.
            InvalidValue: the value is of the right type but not allowed (an unknown enum member).
        """
        raise NotImplementedError

    def to_db(self, value: Any) -> Any:
        """The value as stored in an SQLite column."""
        return value

    def from_db(self, value: Any) -> Any:
        """The value read back from an SQLite column."""
        return value

    def __repr__(self) -> str:
        return f"<{self.spelling}>"


@dataclass(frozen=True, repr=False)
class StringType(XType):
    spelling: str = "string"

    def zero(self) -> str:
        return ""

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise FieldTypeError(name)
        if XML_UNSAFE.search(value):
            raise InvalidValue(name, value.encode("unicode_escape").decode("ascii"))
        return value


@dataclass(frozen=True, repr=False)
class IntType(XType):
    spelling: str = "int"

    def zero(self) -> int:
        return 0

    def check(self, value: Any, name: str) -> int:
        # The SDK sends Python ints as <int>, xapi itself sends decimal strings: take both.
        if isinstance(value, bool):
            raise FieldTypeError(name)
        if isinstance(value, str):
            if not re.fullmatch(r"-?[0-9]{1,20}", value.strip()):
                raise FieldTypeError(name)
            value = int(value)
        if not isinstance(value, int):
            raise FieldTypeError(name)
        if not INT64_MIN <= value <= INT64_MAX:
            raise InvalidValue(name, str(value))
        return value


@dataclass(frozen=True, repr=False)
class FloatType(XType):
    spelling: str = "float"

    def zero(self) -> float:
        return 0.0

    def check(self, value: Any, name: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise FieldTypeError(name)
        try:
            result = float(value)
        except ValueError:
            raise FieldTypeError(name) from None
        if result != result or result in (float("inf"), float("-inf")):
            raise InvalidValue(name, str(value))
        return result


@dataclass(frozen=True, repr=False)
class BoolType(XType):
    spelling: str = "bool"

    def zero(self) -> bool:
        return False

    def check(self, value: Any, name: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise FieldTypeError(name)

    def from_db(self, value: Any) -> bool:
        return bool(value)


@dataclass(frozen=True, repr=False)
class DateTimeType(XType):
    spelling: str = "datetime"

    def zero(self) -> str:
        return EPOCH

    def check(self, value: Any, name: str) -> str:
        # xmlrpc.client.DateTime and JSON strings both reach here as their text form.
        text = getattr(value, "value", value)
        if not isinstance(text, str):
            raise FieldTypeError(name)
        for form in _DATETIME_FORMS:
            try:
                moment = dt.datetime.strptime(text, form).replace(tzinfo=dt.UTC)
            except ValueError:
                continue
            return format_datetime(moment)
        raise InvalidValue(name, text)


@dataclass(frozen=True, repr=False)
class RefType(XType):
    """A reference to an object of ``target``; existence is checked by whoever dereferences it."""

    target: str
    spelling: str = ""

    def zero(self) -> str:
        return NULL_REF

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise FieldTypeError(name)
        return value


@dataclass(frozen=True, repr=False)
class EnumType(XType):
    name: str
    members: tuple[str, ...]
    spelling: str = ""

    def zero(self) -> str:
        return self.members[0]

    def check(self, value: Any, name: str) -> str:
        if not isinstance(value, str):
            raise FieldTypeError(name)
        # xapi matches enum members case-insensitively on input.
        for member in self.members:
            if member.lower() == value.lower():
                return member
        raise InvalidValue(name, value)


@dataclass(frozen=True, repr=False)
class SetType(XType):
    element: XType
    spelling: str = ""

    def zero(self) -> list[Any]:
        return []

    def check(self, value: Any, name: str) -> list[Any]:
        if not isinstance(value, list | tuple):
            raise FieldTypeError(name)
        result: list[Any] = []
        for item in value:
            checked = self.element.check(item, name)
            if checked not in result:
                result.append(checked)
        return result

    def to_db(self, value: Any) -> str:
        return orjson.dumps(value).decode()

    def from_db(self, value: Any) -> list[Any]:
        return orjson.loads(value)  # type: ignore[no-any-return]


@dataclass(frozen=True, repr=False)
class MapType(XType):
    key: XType
    value: XType
    spelling: str = ""

    def zero(self) -> dict[Any, Any]:
        return {}

    def check(self, value: Any, name: str) -> dict[Any, Any]:
        if not isinstance(value, dict):
            raise FieldTypeError(name)
        # Wire maps always have string keys (XML-RPC structs): int keys arrive as text.
        return {self.key.check(k, name): self.value.check(v, name) for k, v in value.items()}

    def to_db(self, value: Any) -> str:
        return orjson.dumps(list(value.items())).decode()

    def from_db(self, value: Any) -> dict[Any, Any]:
        return dict(orjson.loads(value))


@dataclass(frozen=True, repr=False)
class RecordType(XType):
    """A whole record (``VM record``, or ``<class> record`` in an event); only ever a result."""

    target: str
    spelling: str = ""

    def zero(self) -> dict[str, Any]:
        return {}

    def check(self, value: Any, name: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise FieldTypeError(name)
        return value


@dataclass(frozen=True, repr=False)
class OptionType(XType):
    inner: XType
    spelling: str = ""

    def zero(self) -> Any:
        return None

    def check(self, value: Any, name: str) -> Any:
        return None if value is None else self.inner.check(value, name)


@dataclass(frozen=True, repr=False)
class VoidType(XType):
    spelling: str = "void"

    def zero(self) -> str:
        return ""

    def check(self, value: Any, name: str) -> str:
        return ""


_SIMPLE: dict[str, Callable[[], XType]] = {
    "string": StringType,
    "int": IntType,
    "float": FloatType,
    "bool": BoolType,
    "datetime": DateTimeType,
    "void": VoidType,
}


@functools.cache
def parse(spelling: str) -> XType:
    """The type that the datamodel spells ``spelling``.

    Raises:
        ValueError: the spelling is not XenAPI's type language (a bug in a declaration).
    """
    text = spelling.strip()
    made: XType
    if text in _SIMPLE:
        return _SIMPLE[text]()
    if text.startswith("(") and text.endswith(" map"):
        inner = text[1 : text.rindex(")")]
        key, _, value = inner.partition(" -> ")
        made = MapType(parse(key), parse(value))
    elif text.endswith(" set"):
        made = SetType(parse(text[: -len(" set")]))
    elif text.endswith(" option"):
        made = OptionType(parse(text[: -len(" option")]))
    elif text.endswith(" ref"):
        made = RefType(text[: -len(" ref")])
    elif text == "an event batch":  # event.from's result, a struct of its own shape
        made = RecordType("event batch")
    elif text.endswith(" record"):
        made = RecordType(text[: -len(" record")])
    elif text.startswith("enum "):
        name = text[len("enum ") :]
        if name not in ENUMS:
            raise ValueError(f"unknown enum {name!r}")
        made = EnumType(name, ENUMS[name])
    else:
        raise ValueError(f"not a XenAPI type: {spelling!r}")
    object.__setattr__(made, "spelling", text)
    return made
