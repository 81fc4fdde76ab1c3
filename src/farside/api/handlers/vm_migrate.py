"""VM live migration, as xapi answers it on a pool of one host (its localhost migration).

``VM.pool_migrate`` to this host, and ``VM.migrate_send`` with a ``dest`` from this host's
``host.migrate_receive``, move the running guest into a new QEMU process (``VMService.migrate``):
the VM keeps its uuid, disks, serial output and state; only its domid changes. The checks run
in xapi's order: the handles, the options, the VM's own state (template, control domain, power
state, another operation), the maps, then the destination's memory, which must hold a second
copy of the VM while both processes run. ``assert_can_migrate`` runs every check
without moving anything; ``assert_can_migrate_sender`` only those of the sending side.

What a single host cannot do is refused with a reason rather than pretended: mapping a VDI to
another SR (storage migration) or a VIF to another network, and ``copy=true``, which would leave
two VMs of one uuid.
"""

from __future__ import annotations

from typing import Any

from farside.api.context import Context
from farside.api.registry import handles
from farside.db import Transaction
from farside.errors import HandleInvalid, InvalidValue, OperationNotAllowed, XenAPIFailure
from farside.model.vm_rules import power_state_error

_BOOLEAN_OPTIONS = ("live", "force", "copy", "compress")
_MIGRATABLE = ("Running", "Paused")
# The keys of host.migrate_receive's answer, as xapi names them.
_DEST_KEYS = ("host", "session_id", "master", "xenops", "SM")


def _check_options(options: dict[str, str]) -> None:
    for key in _BOOLEAN_OPTIONS:
        if key in options and options[key].lower() not in ("true", "false"):
            raise InvalidValue(key, options[key])
    if options.get("copy", "").lower() == "true":
        raise OperationNotAllowed("copy=true would leave two VMs of one uuid on this host; use VM.copy of a halted VM.")


def _check_vm(tx: Transaction, vm: str, ctx: Context) -> dict[str, Any]:
    record = tx.get_record("VM", tx.check("VM", vm))
    if record["is_a_template"]:
        raise XenAPIFailure("VM_IS_TEMPLATE", vm)
    if record["is_control_domain"]:
        raise OperationNotAllowed("The control domain cannot be migrated.")
    if record["power_state"] not in _MIGRATABLE:
        raise power_state_error(vm, "Running", record["power_state"])
    if record["current_operations"]:
        raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm)
    if not ctx.services.vms.driver.capabilities.get("live_migration", False):
        raise XenAPIFailure("VM_MIGRATE_FAILED", vm, ctx.services.host, ctx.services.host, "no live migration here")
    return record


def _check_maps(tx: Transaction, vm: str, record: dict[str, Any], vdi_map: dict[str, str],
                vif_map: dict[str, str], vgpu_map: dict[str, str]) -> None:  # fmt: skip
    disks = {tx.get_field("VBD", vbd, "VDI") for vbd in record["VBDs"]}
    for vdi, sr in vdi_map.items():
        tx.check("VDI", vdi)
        tx.check("SR", sr)
        if vdi not in disks:
            raise InvalidValue("vdi_map", vdi)
        if tx.get_field("VDI", vdi, "SR") != sr:
            raise OperationNotAllowed(
                f"Storage migration is not supported: VDI {vdi} stays on its SR (the destination shares it)."
            )
    for vif, network in vif_map.items():
        tx.check("VIF", vif)
        tx.check("network", network)
        if vif not in record["VIFs"]:
            raise InvalidValue("vif_map", vif)
        if tx.get_field("VIF", vif, "network") != network:
            raise OperationNotAllowed(f"A VIF keeps its network in a migration on this host: VIF {vif}.")
    for vgpu in vgpu_map:
        raise HandleInvalid("VGPU", vgpu)  # Farside has no vGPUs


def _check_dest(ctx: Context, tx: Transaction, dest: dict[str, str]) -> None:
    for key in ("host", "session_id"):
        if key not in dest:
            raise InvalidValue("dest", f"no {key!r}: pass what host.migrate_receive returned")
    tx.check("host", dest["host"])
    ctx.services.sessions.validate(dest["session_id"])  # SESSION_INVALID, as the destination would say


def _check(ctx: Context, vm: str, dest: dict[str, str], vdi_map: dict[str, str], vif_map: dict[str, str],
           options: dict[str, str], vgpu_map: dict[str, str], sender_only: bool) -> None:  # fmt: skip
    with ctx.db.read() as tx:
        tx.check("VM", vm)
        _check_dest(ctx, tx, dest)
        _check_options(options)
        record = _check_vm(tx, vm, ctx)
        _check_maps(tx, vm, record, vdi_map, vif_map, vgpu_map)
        if not sender_only:  # the destination's own check: room for a second copy while both run
            ctx.services.vms.check_resources(tx, vm, record)


@handles("VM.pool_migrate")
def pool_migrate(ctx: Context, vm: str, host: str, options: dict[str, str]) -> str:
    with ctx.db.read() as tx:
        tx.check("VM", vm)
        tx.check("host", host)
        _check_options(options)
        _check_vm(tx, vm, ctx)  # the memory is checked and booked in the claim
    ctx.services.vms.migrate(vm, "pool_migrate", ctx.task)
    return ""


@handles("VM.assert_can_migrate")
def assert_can_migrate(ctx: Context, vm: str, dest: dict[str, str], live: bool, vdi_map: dict[str, str],
                       vif_map: dict[str, str], options: dict[str, str], vgpu_map: dict[str, str]) -> str:  # fmt: skip
    _check(ctx, vm, dest, vdi_map, vif_map, options, vgpu_map, sender_only=False)
    return ""


@handles("VM.assert_can_migrate_sender")
def assert_can_migrate_sender(ctx: Context, vm: str, dest: dict[str, str], live: bool, vdi_map: dict[str, str],
                              vif_map: dict[str, str], vgpu_map: dict[str, str],
                              options: dict[str, str]) -> str:  # fmt: skip
    """xapi's parameter order differs from assert_can_migrate's here: vgpu_map comes before options."""
    _check(ctx, vm, dest, vdi_map, vif_map, options, vgpu_map, sender_only=True)
    return ""


@handles("VM.migrate_send")
def migrate_send(ctx: Context, vm: str, dest: dict[str, str], live: bool, vdi_map: dict[str, str],
                 vif_map: dict[str, str], options: dict[str, str], vgpu_map: dict[str, str]) -> str:  # fmt: skip
    """Returns the VM's ref: on one pool the migrated VM is the same VM."""
    _check(ctx, vm, dest, vdi_map, vif_map, options, vgpu_map, sender_only=True)
    ctx.services.vms.migrate(vm, "migrate_send", ctx.task)
    return vm


@handles("host.migrate_receive")
def migrate_receive(ctx: Context, host: str, network: str, options: dict[str, str]) -> dict[str, str]:
    """What the sender needs to reach this host, in xapi's keys; the session is the caller's own."""
    with ctx.db.read() as tx:
        tx.check("host", host)
        tx.check("network", network)
        address = tx.get_field("host", host, "address")
    listen = ctx.services.config.listen
    scheme = "https" if ctx.services.config.tls else "http"
    url = f"{scheme}://{address or listen.host}:{listen.port}/"
    return dict(zip(_DEST_KEYS, (host, ctx.caller.session, url, url, url), strict=True))
