"""xe's VM commands: list, param-get/param-set, start, shutdown, destroy, and Farside's vm-serial."""

from __future__ import annotations

from farside.cli.xe.command import (
    Command,
    Context,
    database,
    each,
    field_param,
    list_command,
    param_get_command,
    param_set_command,
    select,
)
from farside.cli.xe.records import VM

# Parameters of the power commands that are options, not filters on the VMs.
_SELECT = ("vm", "multiple")


def start(ctx: Context) -> None:
    paused, force = ctx.params.flag("paused"), ctx.params.flag("force")
    each(select(ctx, VM, ("paused", "force")), lambda row: row.call("start", row.ref, paused, force))


def shutdown(ctx: Context) -> None:
    message = "hard_shutdown" if ctx.params.flag("force") else "clean_shutdown"
    each(select(ctx, VM, ("force",)), lambda row: row.call(message, row.ref))


def destroy(ctx: Context) -> None:
    """VM.destroy: the VM's record goes, its disks (VDIs) stay; a VM that is not halted is refused."""
    ctx.call("VM.destroy", ctx.call("VM.get_by_uuid", ctx.params["uuid"]))


def serial(ctx: Context) -> None:
    """The VM's recent serial console output, as the server keeps it (Farside's own command)."""
    [row] = select(ctx, VM, (), single=True)
    ctx.printer.raw(ctx.session.serial(str(row["uuid"])))


_vm_filter = field_param(VM)


COMMANDS = [
    list_command(VM),
    param_get_command(VM),
    param_set_command(VM),
    Command(
        "vm-start",
        start,
        optn=(*_SELECT, "force", "paused"),
        help="Start the selected VM(s) (vm=NAME-OR-UUID or field filters; --multiple for several).",
        also=_vm_filter,
    ),
    Command(
        "vm-shutdown",
        shutdown,
        optn=(*_SELECT, "force"),
        help="Shut down the selected VM(s); --force powers them off at once.",
        also=_vm_filter,
    ),
    Command(
        "vm-destroy",
        destroy,
        reqd=("uuid",),
        help="Destroy a halted VM: its record, VBDs and VIFs go; its disks (VDIs) stay.",
    ),
    Command(
        "vm-serial",
        serial,
        optn=("vm",),
        help="Print the recent serial console output of one VM (Farside's own command).",
        also=_vm_filter,
    ),
]


def recover(ctx: Context) -> None:
    force = ctx.params.flag("force")
    with database(ctx, required=True) as call:
        vm = call("VM.get_by_uuid", ctx.params["uuid"])
        call("VM.recover", vm, ctx.session.handle, force)


def assert_can_be_recovered(ctx: Context) -> None:
    with database(ctx, required=True) as call:
        vm = call("VM.get_by_uuid", ctx.params["uuid"])
        call("VM.assert_can_be_recovered", vm, ctx.session.handle)


COMMANDS += [
    Command(
        "vm-recover",
        recover,
        reqd=("uuid",),
        optn=("database:", "force"),
        help="Recover a VM from the database in database:vdi-uuid=UUID.",
    ),
    Command(
        "vm-assert-can-be-recovered",
        assert_can_be_recovered,
        reqd=("uuid",),
        optn=("database:",),
        help="Test whether storage is available to recover this VM.",
    ),
]
