"""xe's disaster recovery tasks: introduce and plug a site's replicated SRs, and let them go."""

from __future__ import annotations

from farside.cli.xe.command import Command, Context, list_command
from farside.cli.xe.failures import usage_error
from farside.cli.xe.records import DR_TASK


def create(ctx: Context) -> None:
    whitelist = [u for u in (ctx.params.get("sr-whitelist") or "").split(",") if u]
    if not whitelist:
        # xapi's DR_task.create introduces only the SRs named: without any, the task does nothing.
        raise usage_error(
            "drtask-create needs sr-whitelist=UUID,...: the SRs to introduce, as sr-probe lists them "
            "(farside xe sr-probe type=file device-config:path=LUN)"
        )
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
        optn=("device-config:", "sr-whitelist"),  # as xe's spec lists it; create() insists on it
        help="Create a disaster recovery task (type=file device-config:path=LUN sr-whitelist=UUID,...); "
        "prints its uuid.",
    ),
    Command("drtask-destroy", destroy, reqd=("uuid",), help="Destroy a disaster recovery task."),
]
