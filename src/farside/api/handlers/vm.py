"""VM: create and destroy with xapi's checks, and the DR-relevant setters (order, delays, appliance)."""

from __future__ import annotations

from typing import Any

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.api.vms import control_domain_refusal
from farside.errors import InvalidValue, OperationNotAllowed, XenAPIFailure
from farside.model import VM
from farside.model.templates import is_default
from farside.model.types import NULL_REF
from farside.model.vm_rules import DELAY_FIELDS, check_delay, check_memory, check_vcpus, power_state_error

_RESTART_PRIORITIES = ("restart", "best-effort", "")


@handles("VM.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    with ctx.db.write() as tx:
        ref = implicit.create(tx, VM, record)
        values = tx.get_record("VM", ref)
        check_memory(values)
        check_vcpus(values)
        for field in DELAY_FIELDS:
            check_delay(field, values[field])
        metrics = tx.create("VM_metrics", {"memory_actual": values["memory_static_max"]})
        # A new VM is always halted and has never been recovered, whatever the record says.
        tx.set_fields("VM", ref, {"power_state": "Halted", "metrics": metrics})
        return ref


@handles("VM.destroy")
def destroy(ctx: Context, vm: str) -> str:
    """Remove the VM with its VBDs, VIFs and metrics; its disks (VDIs) are kept, as in xapi.
    A checkpoint's memory image goes with it."""
    with ctx.db.read() as tx:
        if tx.get_field("VM", tx.check("VM", vm), "is_a_snapshot"):
            ctx.services.snapshots.uninstall(vm, disks=False)
            return ""
    with ctx.db.write() as tx:
        record = tx.get_record("VM", tx.check("VM", vm))
        if record["is_control_domain"]:
            raise control_domain_refusal()
        if record["current_operations"]:
            raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm)
        if record["power_state"] not in ("Halted", "Suspended"):
            raise power_state_error(vm, "halted", record["power_state"])
        if record["power_state"] == "Suspended":
            # The suspend image is the guest's memory: it goes with the VM (hard_shutdown's way).
            raise OperationNotAllowed("The VM is suspended; hard_shutdown it first, which discards its memory image.")
        if is_default(record):
            raise XenAPIFailure("VM_CANNOT_DELETE_DEFAULT_TEMPLATE", vm)
        for vbd in record["VBDs"]:
            tx.destroy("VBD", vbd)
        for vif in record["VIFs"]:
            tx.destroy("VIF", vif)
        for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
            if record[field] != NULL_REF and tx.exists(cls, record[field]):
                tx.destroy(cls, record[field])
        for child in record["snapshots"] + record["children"]:
            field = "snapshot_of" if child in record["snapshots"] else "parent"
            tx.set_fields("VM", child, {field: NULL_REF})
        tx.destroy("VM", vm)
    ctx.services.vms.forget(record["uuid"])
    return ""


def _set_field(ctx: Context, vm: str, field: str, value: int) -> str:
    with ctx.db.write() as tx:
        tx.set_fields("VM", tx.check("VM", vm), {field: value})
    return ""


def _set_halted(ctx: Context, vm: str, changes: dict[str, int], check: Any) -> str:
    """Memory and vCPUs change while the VM is halted (QEMU fixes them at start), within the rules."""
    with ctx.db.write() as tx:
        record = tx.get_record("VM", tx.check("VM", vm))
        if record["power_state"] != "Halted":
            raise power_state_error(vm, "Halted", record["power_state"])
        check({**record, **changes})
        tx.set_fields("VM", vm, dict(changes))
    return ""


def _memory(ctx: Context, vm: str, **changes: int) -> str:
    return _set_halted(ctx, vm, {f"memory_{k}": v for k, v in changes.items()}, check_memory)


@handles("VM.set_memory_static_max")
def set_memory_static_max(ctx: Context, vm: str, value: int) -> str:
    return _memory(ctx, vm, static_max=value)


@handles("VM.set_memory_static_min")
def set_memory_static_min(ctx: Context, vm: str, value: int) -> str:
    return _memory(ctx, vm, static_min=value)


@handles("VM.set_memory_dynamic_max")
def set_memory_dynamic_max(ctx: Context, vm: str, value: int) -> str:
    return _memory(ctx, vm, dynamic_max=value)


@handles("VM.set_memory_dynamic_min")
def set_memory_dynamic_min(ctx: Context, vm: str, value: int) -> str:
    return _memory(ctx, vm, dynamic_min=value)


@handles("VM.set_memory")
def set_memory(ctx: Context, vm: str, value: int) -> str:
    """As xapi: static_max, dynamic_min and dynamic_max all to ``value``."""
    return _memory(ctx, vm, static_max=value, dynamic_min=value, dynamic_max=value)


@handles("VM.set_memory_limits")
def set_memory_limits(
    ctx: Context, vm: str, static_min: int, static_max: int, dynamic_min: int, dynamic_max: int
) -> str:
    return _memory(ctx, vm, static_min=static_min, static_max=static_max, dynamic_min=dynamic_min,
                   dynamic_max=dynamic_max)  # fmt: skip


@handles("VM.set_memory_static_range")
def set_memory_static_range(ctx: Context, vm: str, low: int, high: int) -> str:
    return _memory(ctx, vm, static_min=low, static_max=high)


@handles("VM.set_memory_dynamic_range")
def set_memory_dynamic_range(ctx: Context, vm: str, low: int, high: int) -> str:
    """Halted only: QEMU has no balloon to move a running VM within the range (xapi's would)."""
    return _memory(ctx, vm, dynamic_min=low, dynamic_max=high, target=low)


@handles("VM.set_VCPUs_max")
def set_vcpus_max(ctx: Context, vm: str, value: int) -> str:
    return _set_halted(ctx, vm, {"VCPUs_max": value}, check_vcpus)


@handles("VM.set_VCPUs_at_startup")
def set_vcpus_at_startup(ctx: Context, vm: str, value: int) -> str:
    return _set_halted(ctx, vm, {"VCPUs_at_startup": value}, check_vcpus)


@handles("VM.set_order")
def set_order(ctx: Context, vm: str, value: int) -> str:
    if value < 0:
        raise InvalidValue("order", value)
    return _set_field(ctx, vm, "order", value)


@handles("VM.set_start_delay")
def set_start_delay(ctx: Context, vm: str, value: int) -> str:
    check_delay("start_delay", value)
    return _set_field(ctx, vm, "start_delay", value)


@handles("VM.set_shutdown_delay")
def set_shutdown_delay(ctx: Context, vm: str, value: int) -> str:
    check_delay("shutdown_delay", value)
    return _set_field(ctx, vm, "shutdown_delay", value)


@handles("VM.set_appliance")
def set_appliance(ctx: Context, vm: str, value: str) -> str:
    with ctx.db.write() as tx:
        record = tx.get_record("VM", tx.check("VM", vm))
        if record["is_control_domain"] or record["is_a_template"] or record["is_a_snapshot"]:
            # xapi's own words (xapi_vm_helpers.ml)
            raise OperationNotAllowed("Control domains, templates and snapshots cannot be assigned to appliances.")
        if value != NULL_REF:
            tx.check("VM_appliance", value)
        tx.set_fields("VM", vm, {"appliance": value})
    return ""


@handles("VM.set_ha_restart_priority")
def set_ha_restart_priority(ctx: Context, vm: str, value: str) -> str:
    if value not in _RESTART_PRIORITIES:
        raise InvalidValue("ha_restart_priority", value)
    with ctx.db.write() as tx:
        record = tx.get_record("VM", tx.check("VM", vm))
        if value and (record["is_a_template"] or record["is_control_domain"]):
            raise (
                XenAPIFailure("VM_IS_TEMPLATE", vm)
                if record["is_a_template"]
                else OperationNotAllowed("The control domain cannot be protected.")
            )
        tx.set_fields("VM", vm, {"ha_restart_priority": value})
    return ""


# -- power operations: the VM service does the work, these only name it -----------------------


@handles("VM.start")
def start(ctx: Context, vm: str, start_paused: bool, force: bool) -> str:
    ctx.services.vms.start(vm, start_paused, ctx.task)
    return ""


@handles("VM.resume")
def resume(ctx: Context, vm: str, start_paused: bool, force: bool) -> str:
    ctx.services.vms.resume(vm, start_paused)
    return ""


@handles("VM.clean_shutdown")
def clean_shutdown(ctx: Context, vm: str) -> str:
    ctx.services.vms.clean_shutdown(vm, task=ctx.task)
    return ""


@handles("VM.hard_shutdown")
def hard_shutdown(ctx: Context, vm: str) -> str:
    ctx.services.vms.hard_shutdown(vm, task=ctx.task)
    return ""


@handles("VM.shutdown")
def shutdown(ctx: Context, vm: str) -> str:
    ctx.services.vms.shutdown(vm, task=ctx.task)
    return ""


@handles("VM.clean_reboot")
def clean_reboot(ctx: Context, vm: str) -> str:
    ctx.services.vms.clean_reboot(vm)
    return ""


@handles("VM.hard_reboot")
def hard_reboot(ctx: Context, vm: str) -> str:
    ctx.services.vms.hard_reboot(vm)
    return ""


@handles("VM.pause")
def pause(ctx: Context, vm: str) -> str:
    ctx.services.vms.pause(vm)
    return ""


@handles("VM.unpause")
def unpause(ctx: Context, vm: str) -> str:
    ctx.services.vms.unpause(vm)
    return ""


@handles("VM.suspend")
def suspend(ctx: Context, vm: str) -> str:
    ctx.services.vms.suspend(vm)
    return ""
