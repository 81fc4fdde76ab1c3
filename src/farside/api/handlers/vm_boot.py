"""VM: how it boots next time (boot policy, domain type, NVRAM, crash action, vendor device).

Every Farside VM is an HVM guest of QEMU with SeaBIOS, so the values that would make it a PV guest
or give it Xen's vendor PCI device are refused with VALUE_NOT_SUPPORTED; the others are kept for
the VM's next start, as xapi keeps them.
"""

from __future__ import annotations

from typing import Any

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import InvalidValue, XenAPIFailure
from farside.model.vm_rules import power_state_error

HVM_ONLY = "Farside runs every VM as an HVM guest of QEMU"
# xapi's default for HVM guests (Constants.hvm_default_boot_policy).
HVM_DEFAULT_BOOT_POLICY = "BIOS order"


def _set(ctx: Context, vm: str, values: dict[str, Any], halted: bool = False) -> str:
    with ctx.db.write() as tx:
        state = tx.get_field("VM", tx.check("VM", vm), "power_state")
        if halted and state != "Halted":
            raise power_state_error(vm, "Halted", state)
        tx.set_fields("VM", vm, values)
    return ""


@handles("VM.set_HVM_boot_policy")
def set_hvm_boot_policy(ctx: Context, vm: str, value: str) -> str:
    """As xapi, the domain type follows: an empty policy would make a PV guest."""
    if not value:
        raise XenAPIFailure("VALUE_NOT_SUPPORTED", "HVM_boot_policy", value, HVM_ONLY)
    return _set(ctx, vm, {"HVM_boot_policy": value, "domain_type": "hvm"})


@handles("VM.set_domain_type")
def set_domain_type(ctx: Context, vm: str, value: str) -> str:
    """As xapi, the boot policy follows the domain type; only ``hvm`` is one QEMU runs here."""
    if value == "unspecified":
        raise InvalidValue("domain_type", value)
    if value != "hvm":
        raise XenAPIFailure("VALUE_NOT_SUPPORTED", "domain_type", value, HVM_ONLY)
    return _set(ctx, vm, {"domain_type": value, "HVM_boot_policy": HVM_DEFAULT_BOOT_POLICY})


@handles("VM.set_actions_after_crash")
def set_actions_after_crash(ctx: Context, vm: str, value: str) -> str:
    return _set(ctx, vm, {"actions_after_crash": value})


@handles("VM.set_HVM_shadow_multiplier")
def set_hvm_shadow_multiplier(ctx: Context, vm: str, value: float) -> str:
    """Halted only, at least 1.0 (xapi's checks); kept for the record, QEMU has no shadow pages."""
    if value < 1.0:
        raise InvalidValue("multiplier", str(value))
    return _set(ctx, vm, {"HVM_shadow_multiplier": value}, halted=True)


@handles("VM.set_has_vendor_device")
def set_has_vendor_device(ctx: Context, vm: str, value: bool) -> str:
    if value:
        raise XenAPIFailure("VALUE_NOT_SUPPORTED", "has_vendor_device", "true", "QEMU here has no Xen vendor device")
    return _set(ctx, vm, {"has_vendor_device": value}, halted=True)


@handles("VM.set_NVRAM")
def set_nvram(ctx: Context, vm: str, value: dict[str, str]) -> str:
    return _set(ctx, vm, {"NVRAM": value})


@handles("VM.add_to_NVRAM")
def add_to_nvram(ctx: Context, vm: str, key: str, value: str) -> str:
    with ctx.db.write() as tx:
        implicit.add_to_map(tx, "VM", tx.check("VM", vm), "NVRAM", key, value)
    return ""


@handles("VM.remove_from_NVRAM")
def remove_from_nvram(ctx: Context, vm: str, key: str) -> str:
    with ctx.db.write() as tx:
        implicit.remove_from_map(tx, "VM", tx.check("VM", vm), "NVRAM", key)
    return ""
