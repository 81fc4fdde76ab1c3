"""xe's SR and PBD commands: list, create, probe, forget, database replication, plug and unplug."""

from __future__ import annotations

from farside.cli.xe.command import Command, Context, list_command
from farside.cli.xe.fields import parse_bool, parse_int
from farside.cli.xe.records import PBD, SR


def _host(ctx: Context) -> str:
    """``host-uuid=`` when given, else the pool master (Farside pools have one host)."""
    uuid = ctx.params.get("host-uuid")
    if uuid is not None:
        return str(ctx.call("host.get_by_uuid", uuid))
    [pool] = ctx.call("pool.get_all")
    return str(ctx.call("pool.get_master", pool))


def create(ctx: Context) -> None:
    p = ctx.params
    size = parse_int("physical-size")(p.get("physical-size") or "0")
    shared = parse_bool("shared")(p.get("shared") or "false")
    sr = ctx.call(
        "SR.create",
        _host(ctx),
        p.prefixed("device-config"),
        size,
        p["name-label"],
        p.get("name-description") or "",
        p["type"],
        p.get("content-type") or "",
        shared,
        p.prefixed("sm-config"),
    )
    ctx.printer.values([str(ctx.call("SR.get_uuid", sr))])


def probe(ctx: Context) -> None:
    p = ctx.params
    found = ctx.call("SR.probe", _host(ctx), p.prefixed("device-config"), p["type"], p.prefixed("sm-config"))
    ctx.printer.values([str(found)])


def _sr(ctx: Context) -> str:
    return str(ctx.call("SR.get_by_uuid", ctx.params["uuid"]))


def _pbd(ctx: Context) -> str:
    return str(ctx.call("PBD.get_by_uuid", ctx.params["uuid"]))


COMMANDS = [
    list_command(SR),
    Command(
        "sr-create",
        create,
        reqd=("name-label", "type"),
        optn=(
            "name-description",
            "host-uuid",
            "device-config:",
            "shared",
            "physical-size",
            "content-type",
            "sm-config:",
        ),
        help="Create an SR and its PBD (type=file device-config:path=/abs/lun/dir); prints its uuid.",
    ),
    Command(
        "sr-probe",
        probe,
        reqd=("type",),
        optn=("host-uuid", "device-config:", "sm-config:"),
        help="Probe storage for SRs (type=file device-config:path=DIR); prints what it finds.",
    ),
    Command("sr-forget", lambda ctx: ctx.call("SR.forget", _sr(ctx)), reqd=("uuid",), help="Forget about the SR."),
    Command(
        "sr-enable-database-replication",
        lambda ctx: ctx.call("SR.enable_database_replication", _sr(ctx)),
        reqd=("uuid",),
        help="Enable database replication to the SR.",
    ),
    Command(
        "sr-disable-database-replication",
        lambda ctx: ctx.call("SR.disable_database_replication", _sr(ctx)),
        reqd=("uuid",),
        help="Disable database replication to the SR.",
    ),
    list_command(PBD),
    Command(
        "pbd-plug",
        lambda ctx: ctx.call("PBD.plug", _pbd(ctx)),
        reqd=("uuid",),
        help="Plug the PBD: its SR becomes usable on the host.",
    ),
    Command(
        "pbd-unplug",
        lambda ctx: ctx.call("PBD.unplug", _pbd(ctx)),
        reqd=("uuid",),
        help="Unplug the PBD: its SR is no longer usable on the host.",
    ),
]
