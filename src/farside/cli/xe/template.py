"""xe's template commands: template-list and template-param-get/set, vm-install (clone and
provision, as xe installs from a template), vm-clone and vm-copy."""

from __future__ import annotations

from farside.cli.xe.command import (
    Command,
    Context,
    field_param,
    list_command,
    param_get_command,
    param_set_command,
    select,
)
from farside.cli.xe.failures import command_error
from farside.cli.xe.fields import NULL_REF
from farside.cli.xe.records import TEMPLATE, VM
from farside.errors import XenAPIFailure
from farside.model.provision import DISKS_KEY, with_sr

_NEW = ("new-name-label", "new-name-description")


def _template(ctx: Context) -> str:
    """The template ``template-uuid=`` or ``template=`` (a uuid or a name) names."""
    wanted = ctx.params.get("template-uuid") or ctx.params.get("template")
    if wanted is None:
        raise command_error("A template must be given: template=NAME-OR-UUID or template-uuid=UUID")
    found = [
        ref
        for ref, r in ctx.call("VM.get_all_records").items()
        if r["is_a_template"] and not r["is_a_snapshot"] and wanted in (r["uuid"], r["name_label"])
    ]
    if not found:
        raise command_error(f"Template {wanted} not found")
    if len(found) > 1:
        raise command_error(f"More than one template is called {wanted}; give its uuid (template-uuid=)")
    return str(found[0])


def _sr(ctx: Context) -> str:
    """The SR ``sr-uuid=`` or ``sr-name-label=`` names; NULL when neither is given."""
    if "sr-uuid" in ctx.params:
        return str(ctx.call("SR.get_by_uuid", ctx.params["sr-uuid"]))
    name = ctx.params.get("sr-name-label")
    if name is None:
        return NULL_REF
    found = ctx.call("SR.get_by_name_label", name)
    if len(found) != 1:
        raise command_error(f"{'No' if not found else 'More than one'} SR called {name}")
    return str(found[0])


def _named(ctx: Context, vm: str) -> None:
    """Print the new VM's uuid (after giving it ``new-name-description=``), as xe does."""
    if "new-name-description" in ctx.params:
        ctx.call("VM.set_name_description", vm, ctx.params["new-name-description"])
    ctx.printer.values([str(ctx.call("VM.get_uuid", vm))])


def install(ctx: Context) -> None:
    """Clone the template (copy it onto the SR given, when it has disks), put its provision spec's
    disks on that SR (or the pool's default), provision: the new VM is halted and no template. A
    failed install leaves no VM behind."""
    template = _template(ctx)
    sr = _sr(ctx)
    name = ctx.params["new-name-label"]
    # As xe: a template with disks of its own is copied onto the SR named, else cloned.
    disks = [v for v in ctx.call("VM.get_VBDs", template) if ctx.call("VBD.get_type", v) == "Disk"]
    vm = str(
        ctx.call("VM.copy", template, name, sr) if disks and sr != NULL_REF else ctx.call("VM.clone", template, name)
    )
    try:
        spec = ctx.call("VM.get_other_config", vm).get(DISKS_KEY)
        if spec is not None and sr != NULL_REF:
            ctx.call("VM.remove_from_other_config", vm, DISKS_KEY)
            ctx.call("VM.add_to_other_config", vm, DISKS_KEY, with_sr(spec, ctx.call("SR.get_uuid", sr)))
        ctx.call("VM.provision", vm)
    except BaseException:
        _remove(ctx, vm)
        raise
    _named(ctx, vm)


def _remove(ctx: Context, vm: str) -> None:
    """The half-installed clone and the disks it owns (copies of the template's)."""
    try:
        disks = [
            ctx.call("VBD.get_VDI", v) for v in ctx.call("VM.get_VBDs", vm) if ctx.call("VBD.get_type", v) == "Disk"
        ]
        ctx.call("VM.destroy", vm)
        for vdi in disks:
            ctx.call("VDI.destroy", vdi)
    except XenAPIFailure:
        pass  # the install's own error is the one to report


def clone(ctx: Context) -> None:
    [row] = select(ctx, VM, _NEW, single=True, templates=True)
    _named(ctx, str(row.call("clone", row.ref, ctx.params["new-name-label"])))


def copy(ctx: Context) -> None:
    [row] = select(ctx, VM, (*_NEW, "sr-uuid"), single=True, templates=True)
    sr = str(ctx.call("SR.get_by_uuid", ctx.params["sr-uuid"])) if "sr-uuid" in ctx.params else NULL_REF
    _named(ctx, str(row.call("copy", row.ref, ctx.params["new-name-label"], sr)))


_vm_filter = field_param(VM)

COMMANDS = [
    list_command(TEMPLATE),
    param_get_command(TEMPLATE),
    param_set_command(TEMPLATE),
    Command(
        "vm-install",
        install,
        reqd=("new-name-label",),
        optn=("template", "template-uuid", "sr-uuid", "sr-name-label", "new-name-description"),
        help="Install a VM from a template (clone it, then make the disks its provision spec lists); prints its uuid.",
    ),
    Command(
        "vm-clone",
        clone,
        reqd=("new-name-label",),
        optn=("vm", "new-name-description"),
        help="Clone a halted VM or a template (vm=NAME-OR-UUID or uuid=...), its disks copied; prints the new uuid.",
        also=_vm_filter,
    ),
    Command(
        "vm-copy",
        copy,
        reqd=("new-name-label",),
        optn=("vm", "new-name-description", "sr-uuid"),
        help="Copy a halted VM or a template, its disks fully copied onto sr-uuid= (default: their own SRs).",
        also=_vm_filter,
    ),
]
