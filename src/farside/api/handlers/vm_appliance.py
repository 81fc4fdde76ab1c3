"""VM_appliance: destroy releases the member VMs (they stay, outside any appliance)."""

from __future__ import annotations

from farside.api.context import Context
from farside.api.registry import handles
from farside.model.types import NULL_REF


@handles("VM_appliance.destroy")
def destroy(ctx: Context, appliance: str) -> str:
    with ctx.db.write() as tx:
        for vm in tx.get_field("VM_appliance", tx.check("VM_appliance", appliance), "VMs"):
            tx.set_fields("VM", vm, {"appliance": NULL_REF})
        tx.destroy("VM_appliance", appliance)
    return ""
