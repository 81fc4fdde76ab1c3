"""Messages (XenAPI alerts): raised by the server's own features and by clients, kept in the pool
database, at most ``limit`` of them (the oldest go first, as xapi's message store drops them).
"""

from __future__ import annotations

import logging
import uuid as uuidlib

from farside.db import Database, Transaction
from farside.errors import InvalidValue, UuidInvalid
from farside.model.types import XML_UNSAFE, now

log = logging.getLogger(__name__)

# The class named by a message's ``cls``, for the classes Farside serves (the others cannot exist).
CLASS_OF = {"VM": "VM", "Host": "host", "SR": "SR", "Pool": "pool", "VDI": "VDI", "VMSS": "VMSS"}

# Priorities as XenCenter shows them (xapi: 1 is the most urgent, 5 informational).
PRIORITY_CRITICAL = 1
PRIORITY_MAJOR = 2
PRIORITY_WARNING = 3
PRIORITY_MINOR = 4
PRIORITY_INFO = 5


class MessageService:
    def __init__(self, db: Database, limit: int) -> None:
        self._db = db
        self._limit = limit

    def raise_(self, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
        """Record a message about the object ``obj_uuid`` of class ``cls``; its ref.

        Raises:
            UuidInvalid: no object of ``cls`` has that uuid.
            InvalidValue: an empty name, or a body XML cannot carry.
        """
        if not name:
            raise InvalidValue("name", name)
        if XML_UNSAFE.search(body):
            raise InvalidValue("body", body)
        with self._db.write() as tx:
            target = CLASS_OF.get(cls)
            if target is None or not tx.find(target, "uuid", obj_uuid):
                raise UuidInvalid(cls, obj_uuid)
            seqs = tx.select("message", ("seq",))
            ref = tx.create(
                "message",
                {
                    "uuid": str(uuidlib.uuid4()),
                    "name": name,
                    "priority": priority,
                    "cls": cls,
                    "obj_uuid": obj_uuid,
                    "timestamp": now(),
                    "body": body,
                    "seq": max((r["seq"] for r in seqs.values()), default=0) + 1,
                },
            )
            self._trim(tx, seqs)
        log.warning("message %s (priority %d) on %s %s: %s", name, priority, cls, obj_uuid, body)
        return ref

    def _trim(self, tx: Transaction, seqs: dict[str, dict[str, int]]) -> None:
        """Drop the oldest messages beyond the limit (``seqs``: those before the new one)."""
        excess = len(seqs) + 1 - self._limit
        if excess > 0:
            for ref in sorted(seqs, key=lambda r: seqs[r]["seq"])[:excess]:
                tx.destroy("message", ref)
