"""Whole records for clients, with their wire encodings cached per object and per generation.

``get_all_records`` is how XenAPI clients load a pool, so it must be cheap: each object's encoded
record is kept until the object changes (the database tells at which generation it last changed),
and a class's whole answer is kept until any object of the class changes.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import orjson

from farside.api import xmlrpc
from farside.db import Database, Transaction
from farside.model import STORED


@dataclass(frozen=True)
class Encoded:
    """A result already encoded for both wires; the dispatcher sends it as it is."""

    xml: str
    json: bytes


@dataclass(frozen=True)
class _Fragment:
    generation: int
    xml: str
    json: bytes


_HIDDEN = {name: [f.name for f in c.fields if f.internal] for name, c in STORED.items()}


def public(cls: str, record: dict[str, Any]) -> dict[str, Any]:
    """The record as clients see it: internal fields removed."""
    for name in _HIDDEN[cls]:
        record.pop(name, None)
    return record


class RecordCache:
    """Encoded records of every class, rebuilt only where objects changed."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._fragments: dict[str, dict[str, _Fragment]] = {}
        self._bodies: dict[str, tuple[int, Encoded]] = {}
        self._encoders = {name: xmlrpc.record_encoder(name) for name in STORED}

    def record(self, tx: Transaction, cls: str, ref: str) -> dict[str, Any]:
        return public(cls, tx.get_record(cls, ref))

    def all_records(self, cls: str) -> Encoded:
        """The ``(ref -> record) map`` of every object of ``cls``, encoded."""
        with self._db.read() as tx:
            generation = self._db.generation
            with self._lock:
                body = self._bodies.get(cls)
                if body is not None and body[0] >= self._db.class_modified(cls):
                    return body[1]
                known = self._fragments.get(cls, {})
            refs = tx.refs(cls)
            stale = [r for r in refs if r not in known or known[r].generation < self._db.last_modified(cls, r)]
            fetched = tx.get_records(cls, None if len(stale) == len(refs) else stale) if stale else {}
        encode = self._encoders[cls]
        fresh = dict(known)
        for ref, record in fetched.items():
            record = public(cls, record)
            fresh[ref] = _Fragment(
                generation,
                "<member><name>" + ref + "</name>" + encode(record) + "</member>",
                orjson.dumps(ref) + b":" + orjson.dumps(record),
            )
        ordered = [fresh[r] for r in refs if r in fresh]
        result = Encoded(
            "<value><struct>" + "".join(f.xml for f in ordered) + "</struct></value>",
            b"{" + b",".join(f.json for f in ordered) + b"}",
        )
        with self._lock:
            self._fragments[cls] = {r: fresh[r] for r in refs if r in fresh}
            self._bodies[cls] = (generation, result)
        return result
