"""Which of the pool's state goes onto a metadata VDI, and how a foreign copy is loaded back.

Persistent classes and fields only, as xapi's redo log holds only persistent state; never the
users and their password hashes (``user`` and the credential table), sessions or tasks. The
computed inverse sets (``VM.VBDs``) are left out: a reader's database computes them again.
Nor the control domain: it is this host's own system, never a VM another site could recover
(xapi's metadata export leaves it out too).
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from farside import __version__
from farside.db import Commit, Database, Transaction
from farside.replication.schema import REPLICATED

# Bumped whenever the meaning of replicated records changes; a reader refuses newer ones.
SCHEMA_VERSION = 1
_REPLICATED_FIELDS = {name: tuple(fields) for name, fields in REPLICATED.items()}
_gc_lock = threading.Lock()
_gc_holders = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a whole pool's records are built or loaded.

    Such builds make millions of dicts and lists that all survive; the collector would walk them
    again and again (a third to a half of the time, 10,000 VMs) and find nothing to free.
    """
    global _gc_holders
    with _gc_lock:
        _gc_holders += 1
        if _gc_holders == 1:
            gc.disable()
    try:
        yield
    finally:
        with _gc_lock:
            _gc_holders -= 1
            if _gc_holders == 0:
                gc.enable()


def _strip(cls: str, record: dict[str, Any]) -> dict[str, Any]:
    return {name: record[name] for name in REPLICATED[cls]}


def full_payload(tx: Transaction, pool_uuid: str, pool_name: str, generation: int, written: str) -> dict[str, Any]:
    """The whole persistent state at ``generation``."""
    with gc_paused():
        objects = {cls: tx.select(cls, fields) for cls, fields in _REPLICATED_FIELDS.items()}
        objects["VM"] = {ref: r for ref, r in objects["VM"].items() if not r["is_control_domain"]}
    return {
        "format": 1,
        "farside_version": __version__,
        "schema_version": SCHEMA_VERSION,
        "pool_uuid": pool_uuid,
        "pool_name": pool_name,
        "generation": generation,
        "written": written,
        "objects": objects,
    }


def delta_payload(tx: Transaction, commit: Commit, written: str) -> dict[str, Any] | None:
    """What one commit changed in replicated state, or None when it changed none of it."""
    changes: list[dict[str, Any]] = []
    for change in commit.changes:
        if not change.persistent or change.cls not in REPLICATED:
            continue
        if change.op == "del":
            changes.append({"op": "del", "cls": change.cls, "ref": change.ref})
        elif tx.exists(change.cls, change.ref):
            record = _strip(change.cls, tx.get_record(change.cls, change.ref))
            if change.cls == "VM" and record["is_control_domain"]:
                continue
            changes.append({"op": change.op, "cls": change.cls, "ref": change.ref, "record": record})
    if not changes:
        return None
    return {"generation": commit.generation, "written": written, "changes": changes}


def load(objects: dict[str, dict[str, dict[str, Any]]], label: str) -> Database:
    """A read-only-by-convention in-memory database holding a foreign pool's objects, refs kept.

    Fields a newer writer added are ignored; fields it lacks take their defaults.
    """
    db = Database.in_memory(label)
    with gc_paused(), db.write() as tx:
        for cls, rows in objects.items():
            if cls not in REPLICATED:
                continue
            tx.load(cls, rows, set(REPLICATED[cls]))
    return db
