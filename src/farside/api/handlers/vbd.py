"""VBD: a VM's disk or CD drive, checked as xapi checks it (free device slot, read-only disks)."""

from __future__ import annotations

from typing import Any

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import InvalidValue, OperationNotAllowed, XenAPIFailure
from farside.model import CLASSES
from farside.model.types import NULL_REF
from farside.model.vm_rules import power_state_error

AUTODETECT = "autodetect"
# IDE on QEMU's pc machine: four devices (two buses, master and slave).
MAX_DEVICES = 4


@handles("VBD.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    with ctx.db.write() as tx:
        fields = implicit.checked_fields(tx, CLASSES["VBD"], record)
        vm = tx.check("VM", fields.get("VM", NULL_REF))
        vdi = fields.get("VDI", NULL_REF)
        kind = fields.get("type", "Disk")
        if vdi == NULL_REF:
            if kind != "CD":
                raise XenAPIFailure("VDI_MISSING", "a disk VBD needs a VDI; only a CD drive may be empty")
            fields["empty"] = True
        else:
            fields["empty"] = False
            vdi_type = tx.get_field("VDI", vdi, "type")
            if vdi_type == "metadata":
                # A guest given the disk could write metadata a DR site would read as the pool's.
                raise XenAPIFailure("VDI_INCOMPATIBLE_TYPE", vdi, vdi_type)
            if tx.get_field("VDI", vdi, "read_only") and fields.get("mode", "RW") == "RW":
                raise XenAPIFailure("VDI_READONLY", vdi)
        used = {tx.get_field("VBD", v, "userdevice") for v in tx.get_field("VM", vm, "VBDs")}
        device = str(fields.get("userdevice", AUTODETECT))
        if device == AUTODETECT:
            free = [str(n) for n in range(MAX_DEVICES) if str(n) not in used]
            if not free:
                raise XenAPIFailure("DEVICE_ALREADY_EXISTS", f"all {MAX_DEVICES} disk slots are in use")
            device = free[0]
        elif not device.isdigit() or int(device) >= MAX_DEVICES:
            raise InvalidValue("userdevice", device)
        elif device in used:
            raise XenAPIFailure("DEVICE_ALREADY_EXISTS", device)
        fields["userdevice"] = device
        fields["device"] = "hd" + "abcd"[int(device)]
        return tx.create("VBD", fields)


def destroy_device(ctx: Context, cls: str, ref: str) -> str:
    """VBD.destroy and VIF.destroy: refused while the VM runs (or is being started), as Farside
    has no hot-unplug; its disks then stay in use as long as it runs."""
    with ctx.db.write() as tx:
        vm = tx.get_field(cls, tx.check(cls, ref), "VM")
        if tx.exists("VM", vm) and (
            tx.get_field("VM", vm, "power_state") != "Halted" or tx.get_field("VM", vm, "current_operations")
        ):
            uuid = tx.get_field(cls, ref, "uuid")
            raise OperationNotAllowed(f"{cls} {uuid} belongs to a VM that is not halted; shut the VM down first")
        tx.destroy(cls, ref)
    return ""


@handles("VBD.destroy")
def destroy(ctx: Context, ref: str) -> str:
    return destroy_device(ctx, "VBD", ref)


@handles("VBD.set_mode")
def set_mode(ctx: Context, vbd: str, value: str) -> str:
    """Only while the VM is halted (QEMU opens the disk read-only or not at start), never RW on a read-only VDI."""
    with ctx.db.write() as tx:
        record = tx.get_record("VBD", tx.check("VBD", vbd))
        state = tx.get_field("VM", record["VM"], "power_state") if tx.exists("VM", record["VM"]) else "Halted"
        if state != "Halted":
            raise power_state_error(record["VM"], "Halted", state)
        vdi = record["VDI"]
        if value == "RW" and tx.exists("VDI", vdi) and tx.get_field("VDI", vdi, "read_only"):
            raise XenAPIFailure("VDI_READONLY", vdi)
        tx.set_fields("VBD", vbd, {"mode": value})
    return ""
