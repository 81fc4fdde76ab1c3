"""Rules a VM record must satisfy, as xapi checks them (xapi_vm_helpers.ml); pure functions."""

from __future__ import annotations

from typing import Any

from farside.errors import InvalidValue, XenAPIFailure

# The longest start_delay or shutdown_delay a VM may have. A delay is slept inside the operation
# that holds the VM (and inside a vApp's or DR run's start), so an unbounded one would hold them
# for ever; an hour is longer than any guest takes to boot or shut down.
MAX_DELAY_S = 3600
DELAY_FIELDS = ("start_delay", "shutdown_delay")


def power_state_error(vm: str, expected: str, actual: str) -> XenAPIFailure:
    """VM_BAD_POWER_STATE [vm, expected, actual], states in lower case as xapi sends them."""
    return XenAPIFailure("VM_BAD_POWER_STATE", vm, expected.lower(), actual.lower())


def check_memory(record: dict[str, Any]) -> None:
    """static_min <= dynamic_min <= dynamic_max <= static_max, else MEMORY_CONSTRAINT_VIOLATION."""
    keys = ("memory_static_min", "memory_dynamic_min", "memory_dynamic_max", "memory_static_max")
    values = [record[k] for k in keys]
    if any(v < 0 for v in values):
        raise InvalidValue("memory", min(values))
    if values != sorted(values):
        raise XenAPIFailure(
            "MEMORY_CONSTRAINT_VIOLATION",
            "Memory limits must satisfy: static_min <= dynamic_min <= dynamic_max <= static_max",
        )


def check_vcpus(record: dict[str, Any]) -> None:
    """0 < VCPUs_at_startup <= VCPUs_max, else INVALID_VALUE."""
    if record["VCPUs_max"] < 1:
        raise InvalidValue("VCPUs_max", record["VCPUs_max"])
    if not 1 <= record["VCPUs_at_startup"] <= record["VCPUs_max"]:
        raise InvalidValue("VCPUs_at_startup", record["VCPUs_at_startup"])


def check_delay(field: str, value: int) -> None:
    """0 <= start_delay/shutdown_delay <= MAX_DELAY_S, else INVALID_VALUE."""
    if not 0 <= value <= MAX_DELAY_S:
        raise InvalidValue(field, value)
