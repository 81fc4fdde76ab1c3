"""VM snapshots: snapshot, checkpoint, revert (api/snapshots.py does the work), and the VM's
snapshot schedule."""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import XenAPIFailure
from farside.model.types import NULL_REF


@handles("VM.snapshot")
def snapshot(ctx: Context, vm: str, new_name: str, ignore_vdis: list[str]) -> str:
    return ctx.services.snapshots.snapshot(vm, new_name, ignore_vdis, ctx.task)


@handles("VM.checkpoint")
def checkpoint(ctx: Context, vm: str, new_name: str) -> str:
    return ctx.services.snapshots.checkpoint(vm, new_name, ctx.task)


@handles("VM.revert")
def revert(ctx: Context, snapshot: str) -> str:
    ctx.services.snapshots.revert(snapshot, ctx.task)
    return ""


@handles("VM.set_snapshot_schedule")
def set_snapshot_schedule(ctx: Context, vm: str, value: str) -> str:
    """As xapi_vm.ml: a template or a snapshot cannot be scheduled (VM_IS_TEMPLATE,
    VM_IS_SNAPSHOT); NULL takes the VM off its schedule."""
    with ctx.db.write() as tx:
        record = tx.get_record("VM", tx.check("VM", vm))
        if value != NULL_REF:
            tx.check("VMSS", value)
            if record["is_a_template"]:
                raise XenAPIFailure("VM_IS_TEMPLATE", vm)
            if record["is_a_snapshot"]:
                raise XenAPIFailure("VM_IS_SNAPSHOT", vm)
        tx.set_fields("VM", vm, {"snapshot_schedule": value})
    return ""
