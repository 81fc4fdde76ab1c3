"""VDI: disk images on a plugged SR, made and copied with qemu-img, recorded on the LUN and in the pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from farside.api import implicit
from farside.api.context import Context
from farside.api.metadata import refuse_user_write
from farside.api.operations import claim
from farside.api.registry import handles
from farside.api.storage import lun_record, new_vdi, vdi_busy
from farside.db import Transaction
from farside.errors import HandleInvalid, InvalidValue, OperationNotAllowed, XenAPIFailure
from farside.model import CLASSES
from farside.model.types import NULL_REF, now
from farside.storage import image
from farside.storage.errors import VdiInUse
from farside.storage.lun import recorded_format


@handles("VDI.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    with ctx.db.read() as tx:
        fields = implicit.checked_fields(tx, CLASSES["VDI"], record)
        refuse_user_write(fields.get("type"), "VDI.create")
        sr = fields.get("SR", NULL_REF)
        tx.check("SR", sr)
        lun = ctx.services.storage.attached_lun(tx, sr)
    size = fields.get("virtual_size", 0)
    if size <= 0:
        raise InvalidValue("virtual_size", size)
    fields.pop("SR")
    return new_vdi(ctx.db, ctx.services.pool, sr, lun, fields, lambda path, fmt: image.create(path, fmt, size))


def _copy(ctx: Context, vdi: str, snapshot: bool, sr: str = NULL_REF, marks: dict[str, str] | None = None) -> str:
    """A new VDI with the image's content, on ``sr`` (by default the source's own SR), with
    ``marks`` added to its other_config."""
    with ctx.db.read() as tx:
        source = tx.get_record("VDI", tx.check("VDI", vdi))
        refuse_user_write(source["type"], "VDI.snapshot" if snapshot else "VDI.clone")
        writer = _running_writer(tx, vdi)
        target = source["SR"] if sr == NULL_REF else tx.check("SR", sr)
        src_lun = ctx.services.storage.attached_lun(tx, source["SR"])
        lun = src_lun if target == source["SR"] else ctx.services.storage.attached_lun(tx, target)
    fields: dict[str, Any] = {
        k: source[k]
        for k in ("name_label", "name_description", "type", "sharable", "read_only", "sm_config", "other_config")
    }
    fields["other_config"] = {**fields["other_config"], **(marks or {})}
    if snapshot:
        fields.update(is_a_snapshot=True, snapshot_of=vdi, snapshot_time=now())
    src_path = src_lun.image_path(source["location"])
    src_format = recorded_format(source["location"])

    def make(path: Path, fmt: str) -> object:
        if writer is not None:  # a running guest writes it: copied through its hypervisor
            ctx.services.snapshots.copy_running_disk(*writer, path, fmt, source["virtual_size"])
            return None
        # One copy path for every VDI copy: a reflink where the LUN has them, else sparse.
        if fmt == src_format:
            return image.copy(src_path, fmt, path)
        return image.convert(src_path, src_format, path, fmt)

    return new_vdi(ctx.db, ctx.services.pool, target, lun, fields, make)


def _running_writer(tx: Transaction, vdi: str) -> tuple[str, int] | None:
    """The running or paused VM that has ``vdi`` attached read-write, and its userdevice."""
    for vbd in tx.get_field("VDI", vdi, "VBDs"):
        record = tx.get_record("VBD", vbd)
        vm = record["VM"]
        if (
            record["mode"] == "RW"
            and tx.exists("VM", vm)
            and tx.get_field("VM", vm, "power_state") in ("Running", "Paused")
        ):
            return vm, int(record["userdevice"])
    return None


@handles("VDI.clone")
def clone(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    with claim(ctx.db, "VDI", vdi, "clone"):
        return _copy(ctx, vdi, snapshot=False)


@handles("VDI.snapshot")
def snapshot(ctx: Context, vdi: str, driver_params: dict[str, str]) -> str:
    with claim(ctx.db, "VDI", vdi, "snapshot"):
        return _copy(ctx, vdi, snapshot=True)


def copy_to(ctx: Context, vdi: str, sr: str, marks: dict[str, str] | None = None) -> str:
    """A full copy of the VDI on ``sr`` (NULL: its own SR), for VM.copy and VM.clone."""
    return _copy(ctx, vdi, snapshot=False, sr=sr, marks=marks)


@handles("VDI.copy")
def copy(ctx: Context, vdi: str, sr: str, base_vdi: str, into_vdi: str) -> str:
    """A fresh copy on ``sr``; copying into an existing VDI (``into_vdi``, ``base_vdi``) is not
    offered: file SRs have no changed-block copy."""
    if into_vdi != NULL_REF or base_vdi != NULL_REF:
        raise OperationNotAllowed("VDI.copy into an existing VDI (into_vdi, base_vdi) is not offered on file SRs")
    if sr == NULL_REF:
        raise HandleInvalid("SR", sr)
    return copy_to(ctx, vdi, sr)


@handles("VDI.destroy")
def destroy(ctx: Context, vdi: str) -> str:
    """Delete the image and the VDI's records; refused while a VM that is not halted uses it."""
    with claim(ctx.db, "VDI", vdi, "destroy"):
        return _destroy(ctx, vdi)


def _destroy(ctx: Context, vdi: str) -> str:
    with ctx.db.read() as tx:
        record = tx.get_record("VDI", tx.check("VDI", vdi))
        if vdi_busy(tx, vdi, ctx.services.metadata.replicator.active):
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
    with claim(ctx.db, "VDI", vdi, "resize"):
        return _resize(ctx, vdi, size)


def _resize(ctx: Context, vdi: str, size: int) -> str:
    with ctx.db.read() as tx:
        record = tx.get_record("VDI", tx.check("VDI", vdi))
        refuse_user_write(record["type"], "VDI.resize")
        lun = ctx.services.storage.attached_lun(tx, record["SR"])
        if vdi_busy(tx, vdi, ctx.services.metadata.replicator.active):
            raise VdiInUse(vdi)
    if size < record["virtual_size"]:
        raise XenAPIFailure("VDI_TOO_SMALL", vdi, record["virtual_size"])
    path = lun.image_path(record["location"])
    actual = image.resize(path, recorded_format(record["location"]), size).virtual_size
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


def _set_when_unused(ctx: Context, vdi: str, field: str, value: Any) -> str:
    with ctx.db.read() as tx:
        tx.check("VDI", vdi)
        if vdi_busy(tx, vdi, ctx.services.metadata.replicator.active):
            raise VdiInUse(vdi)
    return _set(ctx, vdi, field, value)


@handles("VDI.set_on_boot")
def set_on_boot(ctx: Context, vdi: str, value: str) -> str:
    """Only ``persist``: a file SR cannot reset a disk at boot (no VDI_RESET_ON_BOOT capability)."""
    if value == "reset":
        with ctx.db.read() as tx:
            raise XenAPIFailure("SR_OPERATION_NOT_SUPPORTED", tx.get_field("VDI", tx.check("VDI", vdi), "SR"))
    return _set_when_unused(ctx, vdi, "on_boot", value)


@handles("VDI.set_allow_caching")
def set_allow_caching(ctx: Context, vdi: str, value: bool) -> str:
    """Kept as xapi keeps it; no host has a local cache SR, so nothing is ever cached."""
    return _set_when_unused(ctx, vdi, "allow_caching", value)


@handles("VDI.update")
def update(ctx: Context, vdi: str) -> str:
    """The VDI refreshed from its LUN, by a scan of its SR (which refreshes its other VDIs too)."""
    with ctx.db.read() as tx:
        sr = tx.get_field("VDI", tx.check("VDI", vdi), "SR")
    ctx.services.storage.scan(sr)
    return ""


@handles("VDI.get_nbd_info")
def get_nbd_info(ctx: Context, vdi: str) -> list[dict[str, Any]]:
    """No network of a Farside pool serves NBD, so there is no way in: xapi's empty answer."""
    with ctx.db.read() as tx:
        tx.check("VDI", vdi)
    return []


@handles("VDI.open_database")
def open_database(ctx: Context, vdi: str) -> str:
    return ctx.services.metadata.open_database(ctx.caller, vdi)


@handles("VDI.read_database_pool_uuid")
def read_database_pool_uuid(ctx: Context, vdi: str) -> str:
    return ctx.services.metadata.pool_uuid_of(vdi)


@handles("VDI.forget")
def forget(ctx: Context, vdi: str) -> str:
    """Drop the VDI's record from the pool; its image and its record on the LUN stay (SR.scan
    brings it back)."""
    with ctx.db.write() as tx:
        if vdi_busy(tx, tx.check("VDI", vdi), ctx.services.metadata.replicator.active):
            raise VdiInUse(vdi)
        for vbd in tx.get_field("VDI", vdi, "VBDs"):
            tx.destroy("VBD", vbd)
        for vm in tx.find("VM", "suspend_VDI", vdi):
            tx.set_fields("VM", vm, {"suspend_VDI": NULL_REF})
        tx.destroy("VDI", vdi)
    return ""
