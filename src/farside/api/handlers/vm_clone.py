"""VM.clone, VM.copy and VM.provision: new VMs from VMs, templates and snapshots, as xapi makes
them (xapi_vm_clone.ml, xapi_templates_install.ml), and the free device slots a VM has.

Disks are copied first, with no transaction open (qemu-img, through VDI's one copier), then the
new VM, its VBDs and VIFs are written in one transaction. A failure on the way destroys the disks
made so far, so nothing of a failed clone is left: no VM, no VDI, no image file. Each new disk
carries ``other_config:farside_incomplete`` until that last transaction, so the disks of a clone
or provision whose server was killed half-way are found and removed at the next start
(``sweep_incomplete``). The source VM is held for the whole operation, so it cannot start while
its disks are read.
"""

from __future__ import annotations

import logging
import os
import uuid as uuidlib
from collections import defaultdict
from pathlib import Path
from typing import Any

from farside.api.context import Context
from farside.api.handlers import vbd as vbd_handlers
from farside.api.handlers import vdi as vdi_handlers
from farside.api.handlers.vif import MAX_DEVICES as MAX_VIFS
from farside.api.handlers.vif import random_mac
from farside.api.registry import handles
from farside.api.storage import StorageService
from farside.config import crash_point
from farside.db import Database, Transaction
from farside.errors import FarsideError, OperationNotAllowed, XenAPIFailure
from farside.model import CLASSES, stored_fields
from farside.model.provision import DISKS_KEY, ProvisionDisk, parse
from farside.model.templates import BASE_TEMPLATE_NAME_KEY, DEFAULT_TEMPLATE_KEY, is_default
from farside.model.types import EPOCH, NULL_REF

log = logging.getLogger(__name__)

MAC_SEED_KEY = "mac_seed"
# On a disk made by a clone, copy or provision that has not finished (the operation's token).
INCOMPLETE_KEY = "farside_incomplete"
# Never carried to a copy (xapi's Xapi_globs.xensource_internal).
XENSOURCE_INTERNAL_KEY = "xensource_internal"
OWNER_KEY = "owner"
PROVISIONED_DESCRIPTION = "Created by template provisioner"
# What a clone or copy starts afresh rather than taking from its source (copy_vm_record).
_RESET: dict[str, Any] = {
    "uuid": "",
    "power_state": "Halted",
    "allowed_operations": [],
    "current_operations": {},
    "blocked_operations": {},
    "is_default_template": False,
    "is_a_snapshot": False,
    "snapshot_of": NULL_REF,
    "snapshot_time": EPOCH,
    "snapshot_info": {},
    "snapshot_metadata": "",
    "transportable_snapshot_id": "",
    "parent": NULL_REF,
    "resident_on": NULL_REF,
    "scheduled_to_be_resident_on": NULL_REF,
    "suspend_VDI": NULL_REF,
    "domid": -1,
    "domarch": "",
    "blobs": {},
    "ha_always_run": False,
    "protection_policy": NULL_REF,
    "is_snapshot_from_vmpp": False,
    "snapshot_schedule": NULL_REF,
    "is_vmss_snapshot": False,
    "appliance": NULL_REF,
    "start_delay": 0,
    "shutdown_delay": 0,
    "order": 0,
    "suspend_SR": NULL_REF,
    "version": 0,
    "requires_reboot": False,
    "pending_guidances": [],
    "pending_guidances_recommended": [],
    "pending_guidances_full": [],
}


@handles("VM.clone")
def clone(ctx: Context, vm: str, new_name: str) -> str:
    """A new VM with copies of ``vm``'s disks on their own SRs."""
    return _copy_vm(ctx, vm, new_name, "clone", NULL_REF)


@handles("VM.copy")
def copy(ctx: Context, vm: str, new_name: str, sr: str) -> str:
    """A new VM with full copies of ``vm``'s disks on ``sr`` (NULL: each on its own SR)."""
    return _copy_vm(ctx, vm, new_name, "copy", sr)


def _copy_vm(ctx: Context, vm: str, new_name: str, op: str, sr: str) -> str:
    with ctx.db.read() as tx:
        record = tx.get_record("VM", tx.check("VM", vm))
        if sr != NULL_REF:
            tx.check("SR", sr)
        if record["is_control_domain"]:
            raise OperationNotAllowed("The control domain cannot be cloned or copied.")
    with ctx.services.vms.claimed(vm, op) as source:
        with ctx.db.read() as tx:
            disks = [(vbd, tx.get_record("VBD", vbd)) for vbd in source["VBDs"]]
            _check_space(ctx, tx, [v["VDI"] for _, v in disks if _copied(v)], sr)
        made: list[str] = []
        marks = {INCOMPLETE_KEY: str(uuidlib.uuid4())}
        try:
            new_vdis: dict[str, str] = {}
            for n, (vbd, v) in enumerate(disks):
                if ctx.task is not None:
                    ctx.services.tasks.check_cancelled(ctx.task)
                    ctx.services.tasks.set_progress(ctx.task, n / max(len(disks), 1))
                if _copied(v):
                    new_vdis[vbd] = vdi_handlers.copy_to(ctx, v["VDI"], sr, marks)
                    made.append(new_vdis[vbd])
            crash_point(f"vm-{op}:copied")
            with ctx.db.write() as tx:
                _complete(tx, made)
                return _write_copy(tx, source, new_name, disks, new_vdis)
        except BaseException:
            for vdi in made:
                vdi_handlers.destroy(ctx, vdi)
            raise


def _complete(tx: Transaction, vdis: list[str]) -> None:
    """The operation's disks are the VM's now: their incomplete mark goes, in its last transaction."""
    for vdi in vdis:
        config = dict(tx.get_field("VDI", vdi, "other_config"))
        config.pop(INCOMPLETE_KEY, None)
        tx.set_fields("VDI", vdi, {"other_config": config})


def sweep_incomplete(db: Database, storage: StorageService) -> list[str]:
    """At start-up, before any call: remove the disks (and their VBDs) that a clone, copy or
    provision made before its server was killed; the uuids removed. A disk on an SR that is not
    plugged now waits for a later start."""
    with db.read() as tx:
        marked = [v for v in tx.refs("VDI") if INCOMPLETE_KEY in tx.get_field("VDI", v, "other_config")]
    removed = []
    for vdi in marked:
        with db.read() as tx:
            record = tx.get_record("VDI", vdi)
            try:
                lun = storage.attached_lun(tx, record["SR"])
            except FarsideError as exc:
                log.warning("the half-made disk %s stays until its SR is plugged: %s", record["uuid"], exc.describe())
                continue
        lun.remove_vdi(record["uuid"])
        lun.image_path(record["location"]).unlink(missing_ok=True)
        with db.write() as tx:
            for vbd in tx.get_field("VDI", vdi, "VBDs"):
                tx.destroy("VBD", vbd)
            tx.destroy("VDI", vdi)
        log.warning("removed disk %s, made by a clone, copy or provision that did not finish", record["uuid"])
        removed.append(record["uuid"])
    return removed


def _copied(vbd: dict[str, Any]) -> bool:
    """A disk's VDI is copied; a CD's stays the same (an ISO is not the VM's), an empty drive has none."""
    return not vbd["empty"] and vbd["VDI"] != NULL_REF and vbd["type"] != "CD"


def _check_space(ctx: Context, tx: Transaction, vdis: list[str], sr: str) -> None:
    """SR_FULL [needed, free] before any copy when a target SR's filesystem lacks room for the
    copies (each needs what its image occupies now: copies are sparse); SR_HAS_NO_PBDS when a
    target SR is not plugged."""
    needed: dict[str, int] = defaultdict(int)
    for vdi in vdis:
        record = tx.get_record("VDI", vdi)
        path = ctx.services.storage.attached_lun(tx, record["SR"]).image_path(record["location"])
        needed[record["SR"] if sr == NULL_REF else sr] += _allocated(path)
    for target, size in needed.items():
        lun = ctx.services.storage.attached_lun(tx, target)
        stat = os.statvfs(lun.path)
        free = stat.f_bavail * stat.f_frsize
        if size > free:
            raise XenAPIFailure("SR_FULL", size, free)


def _allocated(path: Path) -> int:
    try:
        return path.stat().st_blocks * 512
    except FileNotFoundError:
        return 0  # the copy then fails on the missing image, naming it


def _write_copy(
    tx: Transaction, source: dict[str, Any], new_name: str, disks: list[tuple[str, dict[str, Any]]],
    new_vdis: dict[str, str],
) -> str:  # fmt: skip
    """The new VM's record, metrics, VBDs and VIFs, in the caller's transaction."""
    values = {f.name: source[f.name] for f in stored_fields(CLASSES["VM"]) if f.name in source}
    values.update(_RESET, name_label=new_name, other_config=_other_config(source))
    values["metrics"] = tx.create("VM_metrics", {"memory_actual": source["memory_static_max"]})
    values["guest_metrics"] = NULL_REF
    values["generation_id"] = "0:0" if source["generation_id"] in ("", "0:0") else _fresh_generation()
    new = tx.create("VM", values)
    for vbd, v in disks:
        fields = _device_fields("VBD", v, new)
        fields["VDI"] = new_vdis.get(vbd, v["VDI"])
        if fields["type"] == "Disk":  # the new VM owns its copies (CA-58405)
            fields["other_config"] = {OWNER_KEY: "", **fields["other_config"]}
        tx.create("VBD", fields)
    for vif in source["VIFs"]:
        fields = _device_fields("VIF", tx.get_record("VIF", vif), new)
        tx.create("VIF", {**fields, "MAC": random_mac(), "MAC_autogenerated": True})
    return new


def _device_fields(cls: str, record: dict[str, Any], vm: str) -> dict[str, Any]:
    """A VBD's or VIF's settings for a copy on ``vm``: its state (attached, status) starts afresh."""
    runtime = {"uuid", "allowed_operations", "current_operations", "currently_attached", "status_code",
               "status_detail", "runtime_properties", "metrics", "storage_lock"}  # fmt: skip
    fields = {f.name: record[f.name] for f in stored_fields(CLASSES[cls]) if f.name not in runtime}
    fields["VM"] = vm
    return fields


def _other_config(source: dict[str, Any]) -> dict[str, str]:
    """xapi's rules: a new mac_seed; no default_template or xensource_internal key; a template's
    clone remembers the template's name."""
    dropped = (DEFAULT_TEMPLATE_KEY, XENSOURCE_INTERNAL_KEY)
    config = {k: v for k, v in source["other_config"].items() if k not in dropped}
    config[MAC_SEED_KEY] = str(uuidlib.uuid4())
    if source["is_a_template"] and BASE_TEMPLATE_NAME_KEY not in config:
        config[BASE_TEMPLATE_NAME_KEY] = source["name_label"]
    return config


def _fresh_generation() -> str:
    """A new VM generation id, as xapi makes one for a copy of a VM that has one."""
    return f"{uuidlib.uuid4().int >> 64}:{uuidlib.uuid4().int >> 64}"


# -- provisioning ------------------------------------------------------------------------------


@handles("VM.provision")
def provision(ctx: Context, vm: str) -> str:
    """Make the disks ``other_config:disks`` lists, then drop the key and turn the template into a
    VM (xapi_vm.ml provision). A VM without the key only stops being a template."""
    with ctx.db.read() as tx:
        record = tx.get_record("VM", tx.check("VM", vm))
        if is_default(record):
            # xapi: a default template is installed from its clone, never provisioned itself
            raise OperationNotAllowed("A default template cannot be provisioned; clone it first.")
    with ctx.services.vms.claimed(vm, "provision") as source:
        spec = source["other_config"].get(DISKS_KEY)
        with ctx.db.read() as tx:
            disks = _placed(tx, ctx.services.pool, parse(spec)) if spec is not None else []
            used = {tx.get_field("VBD", v, "userdevice") for v in source["VBDs"]}
        for disk, _ in disks:
            if disk.device in used:
                raise XenAPIFailure("DEVICE_ALREADY_EXISTS", disk.device)
        made_vdis: list[str] = []
        made_vbds: list[str] = []
        token = str(uuidlib.uuid4())
        try:
            for n, (disk, sr) in enumerate(disks):
                if ctx.task is not None:
                    ctx.services.tasks.set_progress(ctx.task, n / len(disks))
                made_vdis.append(vdi_handlers.create(ctx, _vdi_record(disk, sr, token)))
                made_vbds.append(vbd_handlers.create(ctx, _vbd_record(vm, disk, made_vdis[-1])))
            crash_point("vm-provision:made")
            with ctx.db.write() as tx:
                _complete(tx, made_vdis)
                config = dict(tx.get_field("VM", vm, "other_config"))
                config.pop(DISKS_KEY, None)
                tx.set_fields("VM", vm, {"other_config": config, "is_a_template": False})
        except BaseException:
            with ctx.db.write() as tx:
                for vbd in made_vbds:
                    if tx.exists("VBD", vbd):
                        tx.destroy("VBD", vbd)
            for vdi in made_vdis:
                vdi_handlers.destroy(ctx, vdi)
            raise
    return ""


def _placed(tx: Transaction, pool: str, disks: list[ProvisionDisk]) -> list[tuple[ProvisionDisk, str]]:
    """Each disk with its SR: the one its uuid names, or the pool's default SR for an empty one;
    UUID_INVALID ["sr", uuid] as xapi's provisioner says when there is none."""
    default = tx.get_field("pool", pool, "default_SR")
    placed = []
    for disk in disks:
        if disk.sr:
            found = tx.find("SR", "uuid", disk.sr)
            sr = found[0] if found else NULL_REF
        else:
            sr = default if tx.exists("SR", default) else NULL_REF
        if sr == NULL_REF:
            raise XenAPIFailure("UUID_INVALID", "sr", disk.sr)
        placed.append((disk, sr))
    return placed


def _vdi_record(disk: ProvisionDisk, sr: str, token: str) -> dict[str, Any]:
    return {
        "SR": sr,
        "virtual_size": disk.size,
        "type": disk.type,
        "name_label": disk.device,  # xapi names a provisioned disk after its device
        "name_description": PROVISIONED_DESCRIPTION,
        "sharable": False,
        "read_only": False,
        "other_config": {INCOMPLETE_KEY: token},
        "sm_config": {},
    }


def _vbd_record(vm: str, disk: ProvisionDisk, vdi: str) -> dict[str, Any]:
    return {
        "VM": vm,
        "VDI": vdi,
        "userdevice": disk.device,
        "bootable": disk.bootable,
        "mode": "RW",
        "type": "Disk",
        "unpluggable": disk.type != "system",
        "empty": False,
        "other_config": {OWNER_KEY: ""},
        "qos_algorithm_type": "",
        "qos_algorithm_params": {},
    }


# -- free device slots ---------------------------------------------------------------------------


@handles("VM.get_allowed_VBD_devices")
def get_allowed_vbd_devices(ctx: Context, vm: str) -> list[str]:
    """The userdevices a new VBD may take: Farside's IDE slots not in use."""
    return _free(ctx, vm, "VBDs", "VBD", "userdevice", vbd_handlers.MAX_DEVICES)


@handles("VM.get_allowed_VIF_devices")
def get_allowed_vif_devices(ctx: Context, vm: str) -> list[str]:
    return _free(ctx, vm, "VIFs", "VIF", "device", MAX_VIFS)


def _free(ctx: Context, vm: str, field: str, cls: str, device_field: str, limit: int) -> list[str]:
    with ctx.db.read() as tx:
        used = {tx.get_field(cls, d, device_field) for d in tx.get_field("VM", tx.check("VM", vm), field)}
    return [str(n) for n in range(limit) if str(n) not in used]
