"""VBD.insert and VBD.eject: the disc in a VM's CD drive, with xapi's checks (xapi_vbd.ml), while
the VM is halted or running (QEMU's tray and medium commands; api/vms.py ``change_medium``)."""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import XenAPIFailure
from farside.model.types import NULL_REF

# A drive may change its disc while its VM is in one of these states (xapi: not while suspended).
_STATES = ("Halted", "Running", "Paused")


def _check(ctx: Context, vbd: str) -> dict[str, object]:
    with ctx.db.read() as tx:
        record = tx.get_record("VBD", tx.check("VBD", vbd))
        if record["type"] != "CD":
            raise XenAPIFailure("VBD_NOT_REMOVABLE_MEDIA", vbd)
        state = tx.get_field("VM", record["VM"], "power_state")
        if state not in _STATES:
            raise XenAPIFailure("VM_BAD_POWER_STATE", record["VM"], "running", state.lower())
        if tx.get_field("VM", record["VM"], "current_operations"):
            raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM", record["VM"])
    return record


@handles("VBD.insert")
def insert(ctx: Context, vbd: str, vdi: str) -> str:
    """Put ``vdi`` (an ISO, or any VDI, read-only) in the empty CD drive ``vbd``."""
    record = _check(ctx, vbd)
    if not record["empty"]:
        raise XenAPIFailure("VBD_NOT_EMPTY", vbd)
    with ctx.db.read() as tx:
        if tx.get_field("VDI", tx.check("VDI", vdi), "type") == "metadata":
            # the pool's own records are read through the API, never mounted into a guest
            raise XenAPIFailure("VDI_INCOMPATIBLE_TYPE", vdi, "metadata")
    ctx.services.vms.change_medium(vbd, vdi)
    return ""


@handles("VBD.eject")
def eject(ctx: Context, vbd: str) -> str:
    record = _check(ctx, vbd)
    if record["empty"]:
        raise XenAPIFailure("VBD_IS_EMPTY", vbd)
    ctx.services.vms.change_medium(vbd, NULL_REF)
    return ""
