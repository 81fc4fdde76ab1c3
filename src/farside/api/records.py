"""Whole records for clients, with their wire encodings cached per object and per generation.

``get_all_records`` is how XenAPI clients load a pool, so it must be cheap: each object's encoded
record is kept until the object changes (the database tells at which generation it last changed),
and a class's whole answer is kept until any object of the class changes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from farside.api import xmlrpc
from farside.db import Database, Transaction
from farside.db.schema import TABLES
from farside.model import RELATIONS, STORED
from farside.model.types import BoolType, IntType, MapType, SetType


@dataclass(frozen=True)
class Encoded:
    """A result already encoded for both wires; the dispatcher sends it as it is."""

    xml: str
    json: bytes


class AllRecords:
    """``get_all_records`` of one class, encoded when the server knows which wire asked for it.

    Only that wire's encoding is made (JSON-RPC clients never pay for XML), and the encoding runs
    on a worker thread, never on the event loop.
    """

    def __init__(self, cache: RecordCache, cls: str) -> None:
        self._cache = cache
        self.cls = cls

    def xml_response(self) -> bytes:
        """The whole XML-RPC success response, ready to send."""
        return self._cache.body(self.cls, "xml")

    def json_result(self) -> bytes:
        """The JSON ``(ref -> record)`` object, to put in a JSON-RPC envelope."""
        return self._cache.body(self.cls, "json")


_HIDDEN = {name: [f.name for f in c.fields if f.internal] for name, c in STORED.items()}


def public(cls: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as clients see it: internal fields removed."""
    for name in _HIDDEN[cls]:
        record.pop(name, None)
    return record


# (generation at which it was encoded, the object's encoded ``ref: record`` member)
_Fragment = tuple[int, bytes]


class RecordCache:
    """Encoded records of every class and wire, rebuilt only where objects changed."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._building: dict[tuple[str, str], threading.Lock] = {}
        self._fragments: dict[tuple[str, str], dict[str, _Fragment]] = {}
        self._bodies: dict[tuple[str, str], tuple[int, bytes]] = {}

    def record(self, tx: Transaction, cls: str, ref: str) -> dict[str, Any]:
        return public(cls, tx.get_record(cls, ref))

    def all_records(self, cls: str) -> AllRecords:
        return AllRecords(self, cls)

    def body(self, cls: str, wire: str) -> bytes:
        """The ``(ref -> record) map`` of every object of ``cls`` for ``wire`` ("xml": a whole
        methodResponse; "json": the result value)."""
        key = (cls, wire)
        with self._lock:
            building = self._building.setdefault(key, threading.Lock())
        # One build at a time per class and wire: clients that reconnect together after a
        # failover wait for the first build and share it instead of each redoing it.
        with building:
            with self._db.read() as tx:
                generation = self._db.generation
                cached = self._bodies.get(key)
                if cached is not None and cached[0] >= self._db.class_modified(cls):
                    return cached[1]
                known = self._fragments.get(key, {})
                refs = tx.refs(cls)
                last = self._db.last_modified
                stale = [r for r in refs if r not in known or known[r][0] < last(cls, r)]
                rows, inverse = tx.get_rows(cls, None if len(stale) == len(refs) else stale) if stale else ([], {})
            fresh = dict(known)
            encode = _row_encoder(cls, wire)()  # fresh memos: one per build, dropped with it
            for row in rows:
                fresh[row[0]] = (generation, encode(row, inverse))
            current = {r: fresh[r] for r in refs if r in fresh}
            if wire == "xml":
                parts = [xmlrpc.SUCCESS_OPEN, b"<value><struct>"]
                parts += [f[1] for f in current.values()]
                parts += [b"</struct></value>", xmlrpc.SUCCESS_CLOSE]
            else:
                parts = [b"{"]
                for f in current.values():
                    parts += (f[1], b",")
                parts[-1:] = [b"}"] if current else [b"{", b"}"]
            body = b"".join(parts)
            self._fragments[key] = current
            self._bodies[key] = (generation, body)
            return body


RowEncoder = Callable[[tuple[Any, ...], dict[str, dict[str, list[str]]]], bytes]


def _memo(decode: Callable[[Any], Any], encode: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``encode(decode(text))``, computed once per distinct column text.

    Sets and maps repeat across objects (platform flags, BIOS strings, tags, empty collections),
    so most of them are decoded and encoded once per build instead of once per object.
    """
    seen: dict[Any, Any] = {}

    def get(text: Any) -> Any:
        out = seen.get(text)
        if out is None:
            out = seen[text] = encode(decode(text))
        return out

    return get


@functools.cache
def _row_encoder(cls: str, wire: str) -> Callable[[], RowEncoder]:
    """A maker of encoders from a row of ``Transaction.get_rows`` to the object's ``ref: record``
    member for ``wire``, generated once per class and wire. The output is byte for byte what
    encoding the decoded record gives (``xmlrpc.record_encoder``, or ``orjson.dumps`` of
    ``Transaction.get_records``), without building the record: a dict per object, and decoding
    every set and map of every object, were half of a cold ``get_all_records``."""
    table = TABLES[cls]
    columns = {name: (index, decode) for index, name, decode in table.decoders}
    hidden = set(_HIDDEN[cls])
    names: dict[str, Any] = {
        "escape": xmlrpc.escape,
        "BOOLS": ("<value><boolean>0</boolean></value>", "<value><boolean>1</boolean></value>"),
        "dumps": orjson.dumps,
        "memo": _memo,
        "same": lambda v: v,
    }
    fields = {f.name: (k, f) for k, f in enumerate(STORED[cls].fields)}
    if wire == "json":  # the key order of get_records: stored fields as declared, then inverse sets
        order = [name for _, name, _ in table.decoders] + [r.set_field for r in RELATIONS if r.one == cls]
    else:
        order = list(fields)
    memos: list[str] = []  # statements run once per build: one memo per set or map column
    parts: list[str] = []
    for name in order:
        k, f = fields[name]
        if f.internal or name in hidden:
            continue
        index, decode = columns.get(f.name, (None, None))
        value = f"row[{index}]" if index is not None else f"inverse[{f.name!r}].get(row[0], [])"
        collection = index is not None and isinstance(f.type, SetType | MapType)
        if wire == "json":
            if collection:
                names[f"d{k}"] = decode
                memos.append(f"m{k} = memo(d{k}, same)")  # shared values, only ever dumped
                value = f"m{k}({value})"
            elif decode is not None:
                names[f"d{k}"] = decode
                value = f"d{k}({value})"
            parts.append(f"{f.name!r}: {value}")
            continue
        head = repr(f"<member><name>{f.name}</name>")
        if isinstance(f.type, IntType):
            parts.append(f'{head}, "<value>", str({value}), "</value></member>"')
        elif isinstance(f.type, BoolType):
            parts.append(f'{head}, BOOLS[bool({value})], "</member>"')
        elif xmlrpc.is_text(f.type):
            parts.append(f'{head}, "<value>", escape({value}), "</value></member>"')
        elif collection:
            names[f"d{k}"], names[f"e{k}"] = decode, xmlrpc.encoder(f.type)
            memos.append(f"m{k} = memo(d{k}, e{k})")
            parts.append(f'{head}, m{k}({value}), "</member>"')
        else:  # floats, datetimes, inverse sets
            names[f"d{k}"], names[f"e{k}"] = decode or names["same"], xmlrpc.encoder(f.type)
            parts.append(f'{head}, e{k}(d{k}({value})), "</member>"')
    if wire == "json":
        body = "return dumps(row[0]) + b':' + dumps({" + ", ".join(parts) + "})"
    else:
        body = (
            "return ''.join(('<member><name>', row[0], '</name><value><struct>', "
            + ", ".join(parts)
            + ", '</struct></value></member>')).encode()"
        )
    source = "def make():\n" + "".join(f"    {m}\n" for m in memos)
    source += f"    def encode(row, inverse):\n        {body}\n    return encode\n"
    exec(compile(source, f"<row encoder of {cls} for {wire}>", "exec"), names)
    make: Callable[[], RowEncoder] = names["make"]
    return make
