"""xe's CD commands: cd-list (the ISOs of ISO SRs), vm-cd-add, vm-cd-insert, vm-cd-eject."""

from __future__ import annotations

from farside.cli.xe.command import Command, Context, field_param, matches, rows, select, selected_fields
from farside.cli.xe.failures import command_error
from farside.cli.xe.fields import Lookup, Row
from farside.cli.xe.records import CD, VM

_CD_PARAMS = ("cd-name", "device")


def _isos(lookup: Lookup) -> list[Row]:
    """The VDIs on SRs whose content-type is iso."""
    libraries = {ref for ref, r in lookup.records("SR").items() if r["content_type"] == "iso"}
    return [row for row in rows(lookup, CD) if row["SR"] in libraries]


def cd_list(ctx: Context) -> None:
    fields = selected_fields(CD, ctx.params, CD.list_params)
    found = _isos(Lookup(ctx.call))
    if not ctx.params.flag("all"):
        found = [r for r in found if all(matches(r, CD, k, v) for k, v in ctx.params.rest("params", "all"))]
    ctx.printer.records([[(f.label, f.get(row)) for f in fields] for row in found])


def _cd(ctx: Context) -> str:
    name = ctx.params["cd-name"]
    found = [row.ref for row in _isos(Lookup(ctx.call)) if row["name_label"] == name]
    if not found:
        raise command_error(f"CD {name} not found")
    return found[0]


def _drives(ctx: Context, row: Row, empty: bool) -> list[str]:
    """The VM's CD drives that are (``empty``) or are not empty."""
    drives = []
    for vbd in row["VBDs"]:
        record = ctx.call("VBD.get_record", vbd)
        if record["type"] == "CD" and record["empty"] == empty:
            drives.append(str(vbd))
    return drives


def cd_add(ctx: Context) -> None:
    [row] = select(ctx, VM, _CD_PARAMS, single=True)
    cd = _cd(ctx)
    ctx.call(
        "VBD.create",
        {"VM": row.ref, "VDI": cd, "userdevice": ctx.params["device"], "bootable": False, "mode": "RO", "type": "CD",
         "unpluggable": True, "empty": False, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}},
    )  # fmt: skip


def cd_insert(ctx: Context) -> None:
    [row] = select(ctx, VM, ("cd-name",), single=True)
    cd = _cd(ctx)
    drives = _drives(ctx, row, empty=True)
    if not drives:
        raise command_error("No empty CD devices found")
    ctx.call("VBD.insert", drives[0], cd)


def cd_eject(ctx: Context) -> None:
    [row] = select(ctx, VM, (), single=True)
    drives = _drives(ctx, row, empty=False)
    if not drives:
        raise command_error("No CDs found")
    for vbd in drives:
        ctx.call("VBD.eject", vbd)


_vm_filter = field_param(VM)

COMMANDS = [
    Command(
        "cd-list",
        cd_list,
        optn=("params", "all"),
        help="List the CDs (the ISOs of ISO SRs), filtered by field=value.",
        also=field_param(CD),
    ),
    Command(
        "vm-cd-add",
        cd_add,
        reqd=_CD_PARAMS,
        optn=("vm",),
        help="Add a CD drive holding cd-name= at device= (a userdevice) to a VM.",
        also=_vm_filter,
    ),
    Command(
        "vm-cd-insert",
        cd_insert,
        reqd=("cd-name",),
        optn=("vm",),
        help="Put the CD cd-name= in the VM's empty CD drive (also while it runs).",
        also=_vm_filter,
    ),
    Command("vm-cd-eject", cd_eject, optn=("vm",), help="Eject the VM's CD (also while it runs).", also=_vm_filter),
]
