"""xe's vApp (VM appliance) commands, recovery from a metadata VDI included."""

from __future__ import annotations

from farside.cli.xe.command import Command, Context, database, list_command
from farside.cli.xe.records import APPLIANCE


def _appliance(ctx: Context) -> str:
    return str(ctx.call("VM_appliance.get_by_uuid", ctx.params["uuid"]))


def create(ctx: Context) -> None:
    ref = ctx.call("VM_appliance.create", {"name_label": ctx.params["name-label"],
                                           "name_description": ctx.params.get("name-description") or ""})  # fmt: skip
    ctx.printer.values([str(ctx.call("VM_appliance.get_uuid", ref))])


def start(ctx: Context) -> None:
    ctx.call("VM_appliance.start", _appliance(ctx), ctx.params.flag("paused"))


def shutdown(ctx: Context) -> None:
    message = "hard_shutdown" if ctx.params.flag("force") else "clean_shutdown"
    ctx.call(f"VM_appliance.{message}", _appliance(ctx))


def recover(ctx: Context) -> None:
    force = ctx.params.flag("force")
    with database(ctx, required=True) as call:
        app = call("VM_appliance.get_by_uuid", ctx.params["uuid"])
        call("VM_appliance.recover", app, ctx.session.handle, force)


def assert_can_be_recovered(ctx: Context) -> None:
    with database(ctx, required=True) as call:
        app = call("VM_appliance.get_by_uuid", ctx.params["uuid"])
        call("VM_appliance.assert_can_be_recovered", app, ctx.session.handle)


COMMANDS = [
    list_command(APPLIANCE),
    Command(
        "appliance-create",
        create,
        reqd=("name-label",),
        optn=("name-description",),
        help="Create a VM appliance; prints its uuid.",
    ),
    Command(
        "appliance-destroy",
        lambda ctx: ctx.call("VM_appliance.destroy", _appliance(ctx)),
        reqd=("uuid",),
        help="Destroy a VM appliance.",
    ),
    Command("appliance-start", start, reqd=("uuid",), optn=("paused",), help="Start a VM appliance."),
    Command(
        "appliance-shutdown",
        shutdown,
        reqd=("uuid",),
        optn=("force",),
        help="Shut down all VMs in a VM appliance.",
    ),
    Command(
        "appliance-recover",
        recover,
        reqd=("uuid",),
        optn=("database:", "force"),
        help="Recover a VM appliance from the database in database:vdi-uuid=UUID.",
    ),
    Command(
        "appliance-assert-can-be-recovered",
        assert_can_be_recovered,
        reqd=("uuid",),
        optn=("database:",),
        help="Test whether storage is available to recover this VM appliance.",
    ),
]
