"""SR: file SRs made on, introduced from, forgotten from and destroyed on LUN directories."""

from __future__ import annotations

import threading
import uuid as uuidlib

from farside.api import iso
from farside.api.context import Context
from farside.api.operations import claim
from farside.api.registry import handles
from farside.api.storage import ISO_SR_TYPE, forget_sr, refuse_if_plugged, sr_record, vdi_busy
from farside.config import crash_point
from farside.errors import XenAPIFailure
from farside.storage.errors import VdiInUse
from farside.storage.lun import Lun
from farside.storage.probe import probe_xml

SR_TYPES = ("file", ISO_SR_TYPE)
# One SR.create at a time in this server: a rerun must never take over a create still running.
_CREATING = threading.Lock()


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
    """Format the LUN, record the SR with a PBD for the host, and plug it: all of it or none.

    A server killed part way leaves the LUN marked as being formatted for this pool (lun.py,
    ``pending_for``), and the same SR.create run again finishes that SR: it records what is not
    recorded yet and plugs it, so the SR ends up once on the LUN and once in the pool."""
    _check_type(sr_type)
    if sr_type == ISO_SR_TYPE:
        with ctx.db.read() as tx:
            tx.check("host", host)
        return iso.create(ctx.services.storage, ctx.db, host, device_config, name_label, name_description, sm_config)
    with ctx.db.read() as tx:
        tx.check("host", host)
        pool_uuid = tx.get_field("pool", ctx.services.pool, "uuid")
    path = ctx.services.storage.lun_path(device_config)
    lun = Lun(path)
    with _CREATING:
        resumed = lun.pending_for == pool_uuid
        if resumed:
            sr_uuid = lun.identity()["uuid"]
            lun.set_identity(name_label=name_label, name_description=name_description)
        else:
            sr_uuid = str(uuidlib.uuid4())
            lun.format(sr_uuid, name_label, name_description, pending_for=pool_uuid)
        crash_point("sr-create:formatted")
        try:
            with ctx.db.write() as tx:
                # What an interrupted create recorded already is kept (SR and PBD are one write).
                record = sr_record(sr_uuid, name_label, name_description, sr_type, content_type, sm_config)
                known = tx.find("SR", "uuid", sr_uuid)
                sr = known[0] if known else tx.create("SR", record)
                tx.set_fields("SR", sr, {"name_label": name_label, "name_description": name_description})
                ours = [p for p in tx.get_field("SR", sr, "PBDs") if tx.get_field("PBD", p, "host") == host]
                config = {"path": str(path)}
                pbd = ours[0] if ours else tx.create("PBD", {"host": host, "SR": sr, "device_config": config})
            crash_point("sr-create:recorded")
            ctx.services.storage.plug(pbd)
            crash_point("sr-create:plugged")
            lun.settle()
        except BaseException:
            # A resumed create leaves the SR as it found it, for the next rerun: the interrupted
            # one may have been completed by hand (plugged, given VDIs) before this failed.
            if not resumed:
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
    with claim(ctx.db, "SR", sr, "destroy"):
        return _destroy(ctx, sr)


def _destroy(ctx: Context, sr: str) -> str:
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


def _scan(ctx: Context, sr: str, op: str) -> str:
    with ctx.db.read() as tx:
        library = iso.is_iso(tx, tx.check("SR", sr))
    with claim(ctx.db, "SR", sr, op):
        if library:
            iso.scan(ctx.services.storage, ctx.db, sr)
        else:
            ctx.services.storage.scan(sr)
    return ""


@handles("SR.scan")
def scan(ctx: Context, sr: str) -> str:
    return _scan(ctx, sr, "scan")


@handles("SR.update")
def update(ctx: Context, sr: str) -> str:
    return _scan(ctx, sr, "update")


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
