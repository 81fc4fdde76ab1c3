"""xe's snapshot commands: vm-snapshot, vm-checkpoint, snapshot-revert/-list/-destroy/-uninstall,
and the snapshot schedules' vmss-create/-list/-destroy."""

from __future__ import annotations

from farside.cli.xe.command import Command, Context, list_command, param_get_command, param_set_command, select
from farside.cli.xe.failures import command_error
from farside.cli.xe.fields import NULL_REF
from farside.cli.xe.records import SNAPSHOT, VM, VMSS
from farside.cli.xe.vm import _SELECT, _vm_filter


def _take(ctx: Context, message: str) -> None:
    [row] = select(ctx, VM, ("new-name-label", "new-name-description"), single=True)
    snap = row.call(message, row.ref, ctx.params["new-name-label"], *([[]] if message == "snapshot" else []))
    description = ctx.params.get("new-name-description")
    if description is not None:
        ctx.call("VM.set_name_description", snap, description)
    ctx.printer.values([ctx.call("VM.get_uuid", snap)])


def revert(ctx: Context) -> None:
    """Revert the snapshot's VM to it; ``uuid=`` (the VM), when given, must be the snapshot's own VM."""
    snap = ctx.call("VM.get_by_uuid", ctx.params["snapshot-uuid"])
    vm = ctx.params.get("uuid")
    if vm is not None:
        ctx.call("VM.get_by_uuid", vm)  # UUID_INVALID for a VM that does not exist
        of = ctx.call("VM.get_snapshot_of", snap)
        if of == NULL_REF or ctx.call("VM.get_uuid", of) != vm:
            raise command_error(f"The snapshot {ctx.params['snapshot-uuid']} is not a snapshot of VM {vm}.")
    ctx.call("VM.revert", snap)


def destroy(ctx: Context) -> None:
    """The snapshot's record goes; its disks (VDIs) stay, as xe's snapshot-destroy leaves them."""
    ctx.call("VM.destroy", _snapshot(ctx))


def uninstall(ctx: Context) -> None:
    """The snapshot and its disks go."""
    snap = _snapshot(ctx)
    disks = [ctx.call("VBD.get_VDI", vbd) for vbd in ctx.call("VM.get_VBDs", snap)]
    ctx.call("VM.destroy", snap)
    for vdi in disks:
        if vdi != NULL_REF and ctx.call("VDI.get_is_a_snapshot", vdi):
            ctx.call("VDI.destroy", vdi)


def _snapshot(ctx: Context) -> str:
    snap = ctx.call("VM.get_by_uuid", ctx.params.get("snapshot-uuid") or ctx.params["uuid"])
    if not ctx.call("VM.get_is_a_snapshot", snap):
        raise command_error("This operation can only be performed on a snapshot.")
    return str(snap)


def vmss_create(ctx: Context) -> None:
    p = ctx.params
    record = {
        "name_label": p["name-label"],
        "name_description": p.get("name-description", ""),
        "type": p["type"],
        "frequency": p["frequency"],
        "schedule": p.prefixed("schedule"),
        "retained_snapshots": p.get("retained-snapshots", "7"),
        "enabled": (p.get("enabled") or "true").lower() == "true",
    }
    ctx.printer.values([ctx.call("VMSS.get_uuid", ctx.call("VMSS.create", record))])


def vmss_destroy(ctx: Context) -> None:
    ctx.call("VMSS.destroy", ctx.call("VMSS.get_by_uuid", ctx.params["uuid"]))


def snapshot_now(ctx: Context) -> None:
    ctx.printer.values([ctx.call("VMSS.snapshot_now", ctx.call("VMSS.get_by_uuid", ctx.params["uuid"]))])


COMMANDS = [
    Command(
        "vm-snapshot",
        lambda ctx: _take(ctx, "snapshot"),
        reqd=("new-name-label",),
        optn=(*_SELECT, "new-name-description"),
        help="Snapshot the selected VM (its disks, crash-consistent).",
        also=_vm_filter,
    ),
    Command(
        "vm-checkpoint",
        lambda ctx: _take(ctx, "checkpoint"),
        reqd=("new-name-label",),
        optn=(*_SELECT, "new-name-description"),
        help="Checkpoint the selected running VM (disks and memory).",
        also=_vm_filter,
    ),
    Command(
        "snapshot-revert",
        revert,
        reqd=("snapshot-uuid",),
        optn=("uuid",),
        help="Revert a VM to the snapshot: its disks, settings and power state become the snapshot's.",
    ),
    list_command(SNAPSHOT),
    param_get_command(SNAPSHOT),
    Command(
        "snapshot-destroy",
        destroy,
        optn=("snapshot-uuid", "uuid"),
        help="Destroy a snapshot; its disks (VDIs) stay (snapshot-uninstall removes them too).",
    ),
    Command(
        "snapshot-uninstall",
        uninstall,
        optn=("snapshot-uuid", "uuid", "force"),
        help="Destroy a snapshot and its disks.",
    ),
    Command(
        "vmss-create",
        vmss_create,
        reqd=("name-label", "type", "frequency"),
        optn=("name-description", "retained-snapshots", "enabled", "schedule:"),
        help="Create a snapshot schedule: type=snapshot|checkpoint frequency=hourly|daily|weekly schedule:min=...",
    ),
    list_command(VMSS),
    param_get_command(VMSS),
    param_set_command(VMSS),
    Command("vmss-destroy", vmss_destroy, reqd=("uuid",), help="Destroy a snapshot schedule that has no VMs."),
    Command("vmss-snapshot-now", snapshot_now, reqd=("uuid",), help="Run the snapshot schedule now."),
]

__all__ = ["COMMANDS"]
