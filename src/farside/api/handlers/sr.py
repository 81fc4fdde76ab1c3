"""SR: file SRs made on, introduced from, forgotten from and destroyed on LUN directories."""

from __future__ import annotations

import uuid as uuidlib

from farside.api.context import Context
from farside.api.registry import handles
from farside.api.storage import forget_sr, refuse_if_plugged, sr_record, vdi_busy
from farside.errors import XenAPIFailure
from farside.storage.errors import VdiInUse
from farside.storage.lun import Lun
from farside.storage.probe import probe_xml

SR_TYPES = ("file",)


def _check_type(sr_type: str) -> None:
    if sr_type not in SR_TYPES:
        raise XenAPIFailure("SR_UNKNOWN_DRIVER", sr_type)


@handles("SR.get_supported_types")
def get_supported_types(ctx: Context) -> list[str]:
    return list(SR_TYPES)


@handles("SR.probe")
def probe(ctx: Context, host: str, device_config: dict[str, str], sr_type: str, sm_config: dict[str, str]) -> str:
    _check_type(sr_type)
    with ctx.db.read() as tx:
        tx.check("host", host)
    return probe_xml(ctx.services.storage.lun_path(device_config))


@handles("SR.create")
def create(
    ctx: Context,
    host: str,
    device_config: dict[str, str],
    physical_size: int,
    name_label: str,
    name_description: str,
    sr_type: str,
    content_type: str,
    shared: bool,
    sm_config: dict[str, str],
) -> str:
    """Format the LUN, record the SR with a PBD for the host, and plug it: all of it or none."""
    _check_type(sr_type)
    with ctx.db.read() as tx:
        tx.check("host", host)
    path = ctx.services.storage.lun_path(device_config)
    sr_uuid = str(uuidlib.uuid4())
    lun = Lun(path)
    lun.format(sr_uuid, name_label, name_description)
    try:
        with ctx.db.write() as tx:
            sr = tx.create("SR", sr_record(sr_uuid, name_label, name_description, sr_type, content_type, sm_config))
            pbd = tx.create("PBD", {"host": host, "SR": sr, "device_config": {"path": str(path)}})
        ctx.services.storage.plug(pbd)
    except BaseException:
        with ctx.db.write() as tx:
            for ref in tx.find("SR", "uuid", sr_uuid):
                forget_sr(tx, ref)
        lun.wipe()
        raise
    return sr


@handles("SR.introduce")
def introduce(
    ctx: Context,
    sr_uuid: str,
    name_label: str,
    name_description: str,
    sr_type: str,
    content_type: str,
    shared: bool,
    sm_config: dict[str, str],
) -> str:
    """Record an SR that exists on storage; a PBD and a plug make it usable."""
    _check_type(sr_type)
    with ctx.db.write() as tx:
        if tx.find("SR", "uuid", sr_uuid):
            raise XenAPIFailure("SR_UUID_EXISTS", sr_uuid)
        return tx.create("SR", sr_record(sr_uuid, name_label, name_description, sr_type, content_type, sm_config))


@handles("SR.forget")
def forget(ctx: Context, sr: str) -> str:
    """Drop the SR's records from the pool; the LUN, its images and its records are untouched."""
    with ctx.db.write() as tx:
        tx.check("SR", sr)
        refuse_if_plugged(tx, sr)
        forget_sr(tx, sr)
    return ""


@handles("SR.destroy")
def destroy(ctx: Context, sr: str) -> str:
    """Delete the SR's images and records from its LUN, then forget it. The SR must be plugged."""
    storage = ctx.services.storage
    with ctx.db.read() as tx:
        lun = storage.attached_lun(tx, sr)
        held = ctx.services.metadata.replicator.active
        busy = [v for v in tx.get_field("SR", sr, "VDIs") if vdi_busy(tx, v, held)]
        pbds = tx.get_field("SR", sr, "PBDs")
    if busy:
        raise VdiInUse(*busy)
    for pbd in pbds:
        storage.unplug(pbd)
    lun.wipe()
    return forget(ctx, sr)


@handles("SR.scan")
def scan(ctx: Context, sr: str) -> str:
    ctx.services.storage.scan(sr)
    return ""


@handles("SR.update")
def update(ctx: Context, sr: str) -> str:
    ctx.services.storage.scan(sr)
    return ""


def _rename(ctx: Context, sr: str, field: str, value: str) -> str:
    with ctx.db.read() as tx:
        tx.check("SR", sr)
        lun = ctx.services.storage.attached_lun(tx, sr)
    lun.set_identity(**{field: value})
    with ctx.db.write() as tx:
        tx.set_fields("SR", sr, {field: value})
    return ""


@handles("SR.set_name_label")
def set_name_label(ctx: Context, sr: str, value: str) -> str:
    return _rename(ctx, sr, "name_label", value)


@handles("SR.set_name_description")
def set_name_description(ctx: Context, sr: str, value: str) -> str:
    return _rename(ctx, sr, "name_description", value)


@handles("SR.assert_supports_database_replication")
def assert_supports_database_replication(ctx: Context, sr: str) -> str:
    ctx.services.metadata.assert_supports(sr)
    return ""


@handles("SR.enable_database_replication")
def enable_database_replication(ctx: Context, sr: str) -> str:
    ctx.services.metadata.enable(sr)
    return ""


@handles("SR.disable_database_replication")
def disable_database_replication(ctx: Context, sr: str) -> str:
    ctx.services.metadata.disable(sr)
    return ""
