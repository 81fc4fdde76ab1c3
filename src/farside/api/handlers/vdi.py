"""VDI: disk images on a plugged SR, made and copied with qemu-img, recorded on the LUN and in the pool."""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.api.storage import vdi_busy, vdi_values
from farside.db import Transaction
from farside.errors import InvalidValue, XenAPIFailure
from farside.model import CLASSES
from farside.model.types import NULL_REF, now
from farside.storage import image
from farside.storage.errors import VdiInUse
from farside.storage.lun import Lun, image_format, new_location


def lun_record(tx: Transaction, vdi: str, **override: Any) -> dict[str, Any]:
    """What the LUN keeps of a VDI (its pool ref of metadata_of_pool stored as the pool's uuid)."""
    record = {**tx.get_record("VDI", vdi), **override}
    owner = record.get("metadata_of_pool", NULL_REF)
    record["metadata_of_pool"] = tx.get_field("pool", owner, "uuid") if tx.exists("pool", owner) else ""
    snap = record.get("snapshot_of", NULL_REF)
    record["snapshot_of"] = tx.get_field("VDI", snap, "uuid") if tx.exists("VDI", snap) else ""
    return record


def _new_vdi(ctx: Context, sr: str, lun: Lun, fields: dict[str, Any], make_image: Any) -> str:
    """Make the image, record it on the LUN, then in the pool; undo the LUN work if the last step fails."""
    vdi_uuid = str(uuidlib.uuid4())
    fmt = image_format(fields.get("sm_config", {}))
    location = new_location(vdi_uuid, fmt)
    path = lun.image_path(location)
    make_image(path, fmt)
    try:
        size = image.info(path).virtual_size
        with ctx.db.write() as tx:
            ref = tx.create(
                "VDI",
                {**fields, "uuid": vdi_uuid, "SR": sr, "location": location, "virtual_size": size, "managed": True},
            )
            pool_uuid = tx.get_field("pool", ctx.services.pool, "uuid")
            lun.write_vdi(lun_record(tx, ref))
            tx.set_fields("VDI", ref, vdi_values(lun_record(tx, ref), lun, pool_uuid, ctx.services.pool))
        return ref
    except BaseException:
        lun.remove_vdi(vdi_uuid)
        path.unlink(missing_ok=True)
        raise


@handles("VDI.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    with ctx.db.read() as tx:
        fields = implicit.checked_fields(tx, CLASSES["VDI"], record)
        sr = fields.get("SR", NULL_REF)
        tx.check("SR", sr)
        lun = ctx.services.storage.attached_lun(tx, sr)
    size = fields.get("virtual_size", 0)
    if size <= 0:
        raise InvalidValue("virtual_size", size)
    fields.pop("SR")
    return _new_vdi(ctx, sr, lun, fields, lambda path, fmt: image.create(path, fmt, size))


def _copy(ctx: Context, vdi: str, snapshot: bool) -> str:
    with ctx.db.read() as tx:
        source = tx.get_record("VDI", tx.check("VDI", vdi))
        lun = ctx.services.storage.attached_lun(tx, source["SR"])
    fields: dict[str, Any] = {
        k: source[k]
        for k in ("name_label", "name_description", "type", "sharable", "read_only", "sm_config", "other_config")
    }
    if snapshot:
        fields.update(is_a_snapshot=True, snapshot_of=vdi, snapshot_time=now())
    src_path = lun.image_path(source["location"])
    return _new_vdi(ctx, source["SR"], lun, fields, lambda path, fmt: image.copy(src_path, path, fmt))


@handles("VDI.clone")
def clone(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    return _copy(ctx, vdi, snapshot=False)


@handles("VDI.snapshot")
def snapshot(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    return _copy(ctx, vdi, snapshot=True)


@handles("VDI.destroy")
def destroy(ctx: Context, vdi: str) -> str:
    """Delete the image and the VDI's records; refused while a VM that is not halted uses it."""
    with ctx.db.read() as tx:
        record = tx.get_record("VDI", tx.check("VDI", vdi))
        if vdi_busy(tx, vdi):
            raise VdiInUse(vdi)
        lun = ctx.services.storage.attached_lun(tx, record["SR"])
    lun.remove_vdi(record["uuid"])
    lun.image_path(record["location"]).unlink(missing_ok=True)
    with ctx.db.write() as tx:
        for vbd in tx.get_field("VDI", vdi, "VBDs"):
            tx.destroy("VBD", vbd)
        for snap in tx.get_field("VDI", vdi, "snapshots"):
            tx.set_fields("VDI", snap, {"snapshot_of": NULL_REF})
        tx.destroy("VDI", vdi)
    return ""


@handles("VDI.resize")
def resize(ctx: Context, vdi: str, size: int) -> str:
    with ctx.db.read() as tx:
        record = tx.get_record("VDI", tx.check("VDI", vdi))
        lun = ctx.services.storage.attached_lun(tx, record["SR"])
        if vdi_busy(tx, vdi):
            raise VdiInUse(vdi)
    if size < record["virtual_size"]:
        raise XenAPIFailure("VDI_TOO_SMALL", vdi, record["virtual_size"])
    path = lun.image_path(record["location"])
    image.resize(path, size)
    actual = image.info(path).virtual_size
    with ctx.db.write() as tx:
        tx.set_fields("VDI", vdi, {"virtual_size": actual})
        lun.write_vdi(lun_record(tx, vdi))
    return ""


def _set(ctx: Context, vdi: str, field: str, value: Any) -> str:
    with ctx.db.read() as tx:
        sr = tx.get_field("VDI", tx.check("VDI", vdi), "SR")
        lun = ctx.services.storage.attached_lun(tx, sr)
    with ctx.db.write() as tx:
        tx.set_fields("VDI", vdi, {field: value})
        lun.write_vdi(lun_record(tx, vdi))
    return ""


@handles("VDI.set_name_label")
def set_name_label(ctx: Context, vdi: str, value: str) -> str:
    return _set(ctx, vdi, "name_label", value)


@handles("VDI.set_name_description")
def set_name_description(ctx: Context, vdi: str, value: str) -> str:
    return _set(ctx, vdi, "name_description", value)


@handles("VDI.set_read_only")
def set_read_only(ctx: Context, vdi: str, value: bool) -> str:
    return _set(ctx, vdi, "read_only", value)


@handles("VDI.set_sharable")
def set_sharable(ctx: Context, vdi: str, value: bool) -> str:
    return _set(ctx, vdi, "sharable", value)
