"""PBD: plugging an SR's LUN into this host under a lease, and unplugging it."""

from __future__ import annotations

from typing import Any

from farside.api import implicit, iso
from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import OperationNotAllowed
from farside.model import CLASSES


@handles("PBD.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    """A PBD whose device_config names a LUN (or ISO library) this pool may use (its roots); plugging
    checks again."""
    config = dict(record.get("device_config") or {})
    with ctx.db.read() as tx:
        sr = record.get("SR")
        library = isinstance(sr, str) and tx.exists("SR", sr) and iso.is_iso(tx, sr)
    if library:
        iso.library_path(ctx.services.storage, config)
    else:
        ctx.services.storage.lun_path(config)
    with ctx.db.write() as tx:
        return implicit.create(tx, CLASSES["PBD"], record)


def _of_iso_sr(ctx: Context, pbd: str) -> bool:
    with ctx.db.read() as tx:
        return iso.is_iso(tx, tx.get_field("PBD", tx.check("PBD", pbd), "SR"))


@handles("PBD.plug")
def plug(ctx: Context, pbd: str) -> str:
    if _of_iso_sr(ctx, pbd):
        iso.plug(ctx.services.storage, ctx.db, pbd)
    else:
        ctx.services.storage.plug(pbd)
    return ""


@handles("PBD.unplug")
def unplug(ctx: Context, pbd: str) -> str:
    if _of_iso_sr(ctx, pbd):
        iso.unplug(ctx.db, pbd)
    else:
        ctx.services.storage.unplug(pbd)
    return ""


@handles("PBD.destroy")
def destroy(ctx: Context, pbd: str) -> str:
    with ctx.db.write() as tx:
        if tx.get_field("PBD", tx.check("PBD", pbd), "currently_attached"):
            raise OperationNotAllowed("The PBD is plugged; unplug it first.")
        tx.destroy("PBD", pbd)
    return ""
