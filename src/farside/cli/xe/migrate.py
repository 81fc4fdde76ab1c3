"""xe's vm-migrate: a live migration into a new QEMU process on the pool's one host (VM.pool_migrate)."""

from __future__ import annotations

from farside.cli.xe.command import Command, Context, each, field_param, select
from farside.cli.xe.failures import command_error
from farside.cli.xe.records import VM

# The parameters that are options of the migration, not filters on the VMs.
_OPTIONS = ("host", "host-uuid", "live", "force")


def migrate(ctx: Context) -> None:
    """host= (name or uuid) or host-uuid=; without either, the pool's one host (xe's localhost
    migration). live= and force= go to VM.pool_migrate as its options."""
    hosts = ctx.call("host.get_all_records")
    wanted = ctx.params.get("host-uuid") or ctx.params.get("host")
    found = [ref for ref, r in hosts.items() if wanted is None or wanted in (r["uuid"], r["name_label"])]
    if len(found) != 1:
        raise command_error("No matching host found" if not found else "Multiple hosts match: give host-uuid=")
    options = {k: ctx.params[k] for k in ("live", "force") if k in ctx.params}
    each(select(ctx, VM, _OPTIONS), lambda row: row.call("pool_migrate", row.ref, found[0], options))


COMMANDS = [
    Command(
        "vm-migrate",
        migrate,
        optn=("vm", "multiple", *_OPTIONS),
        help="Live-migrate the selected VM(s) into a new process on host= (the pool's one host by default).",
        also=field_param(VM),
    ),
]
