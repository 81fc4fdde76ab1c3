"""VM: where it can run and what it may do, on a pool whose only host is this one.

``start_on``/``resume_on`` name the host and then do what ``start``/``resume`` do; the checks are
VM.start's own (api/vms.py), so an answer here is the answer a start would get.
"""

from __future__ import annotations

from typing import Any

from farside.api import operations
from farside.api.context import Context
from farside.api.registry import handles
from farside.api.vms import VM_OVERHEAD_BYTES
from farside.errors import FarsideError, InternalError, OperationNotAllowed, XenAPIFailure


def _check_host(ctx: Context, host: str) -> None:
    with ctx.db.read() as tx:
        tx.check("host", host)  # a pool's only host: every live host ref is this one


@handles("VM.assert_can_boot_here")
def assert_can_boot_here(ctx: Context, vm: str, host: str) -> str:
    _check_host(ctx, host)
    ctx.services.vms.assert_can_boot(vm)
    return ""


@handles("VM.get_possible_hosts")
def get_possible_hosts(ctx: Context, vm: str) -> list[str]:
    """This host if the VM could boot on it now, else none (xapi's answer for an unbootable VM)."""
    with ctx.db.read() as tx:
        tx.check("VM", vm)
    try:
        ctx.services.vms.assert_can_boot(vm)
    except InternalError:
        raise
    except FarsideError:
        return []
    return [ctx.services.host]


@handles("VM.start_on")
def start_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> str:
    _check_host(ctx, host)
    ctx.services.vms.start(vm, start_paused, ctx.task)
    return ""


@handles("VM.resume_on")
def resume_on(ctx: Context, vm: str, host: str, start_paused: bool, force: bool) -> str:
    _check_host(ctx, host)
    ctx.services.vms.resume(vm, start_paused)
    return ""


@handles("VM.power_state_reset")
def power_state_reset(ctx: Context, vm: str) -> str:
    ctx.services.vms.power_state_reset(vm)
    return ""


@handles("VM.assert_operation_valid")
def assert_operation_valid(ctx: Context, vm: str, op: str) -> str:
    with ctx.db.read() as tx:
        record = tx.get_record("VM", tx.check("VM", vm))
        allowed = operations.allowed(tx, "VM", vm)
    if record["current_operations"]:
        raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm)
    if op not in allowed:
        raise OperationNotAllowed(f"{op} is not allowed on a VM that is {record['power_state']}")
    return ""


@handles("VM.update_allowed_operations")
def update_allowed_operations(ctx: Context, vm: str) -> str:
    """Recompute the VM's list now (the database's commit hook keeps it current anyway)."""
    with ctx.db.write() as tx:
        tx.set_fields("VM", tx.check("VM", vm), {"allowed_operations": operations.allowed(tx, "VM", vm)})
    return ""


@handles("VM.get_boot_record")
def get_boot_record(ctx: Context, vm: str) -> dict[str, Any]:
    """The record as it is: what a boot fixes (memory, vCPUs, disks) only changes while halted here."""
    with ctx.db.read() as tx:
        return ctx.records.record(tx, "VM", tx.check("VM", vm))


@handles("VM.get_cooperative")
def get_cooperative(ctx: Context, vm: str) -> bool:
    """Always true, as in xapi since dynamic memory control stopped judging guests."""
    with ctx.db.read() as tx:
        tx.check("VM", vm)
    return True


@handles("VM.compute_memory_overhead")
def compute_memory_overhead(ctx: Context, vm: str) -> int:
    """What Farside books for a VM beyond its memory: its QEMU process."""
    with ctx.db.read() as tx:
        tx.check("VM", vm)
    return VM_OVERHEAD_BYTES


@handles("VM.maximise_memory")
def maximise_memory(ctx: Context, vm: str, total: int, approximate: bool) -> int:
    """The most memory that fits in ``total`` with the VM's overhead, which is a constant here."""
    with ctx.db.read() as tx:
        tx.check("VM", vm)
    return max(total - VM_OVERHEAD_BYTES, 0)
