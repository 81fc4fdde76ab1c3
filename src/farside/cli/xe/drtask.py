"""xe's disaster recovery tasks: introduce and plug a site's replicated SRs, and let them go."""

from __future__ import annotations

from farside.cli.xe.command import Command, Context, list_command
from farside.cli.xe.records import DR_TASK


def create(ctx: Context) -> None:
    whitelist = [u for u in (ctx.params.get("sr-whitelist") or "").split(",") if u]
    task = ctx.call("DR_task.create", ctx.params["type"], ctx.params.prefixed("device-config"), whitelist)
    ctx.printer.values([str(ctx.call("DR_task.get_uuid", task))])


def destroy(ctx: Context) -> None:
    ctx.call("DR_task.destroy", ctx.call("DR_task.get_by_uuid", ctx.params["uuid"]))


COMMANDS = [
    list_command(DR_TASK),
    Command(
        "drtask-create",
        create,
        reqd=("type",),
        optn=("device-config:", "sr-whitelist"),
        help="Create a disaster recovery task (type=file device-config:path=LUN sr-whitelist=UUID,...); "
        "prints its uuid.",
    ),
    Command("drtask-destroy", destroy, reqd=("uuid",), help="Destroy a disaster recovery task."),
]
