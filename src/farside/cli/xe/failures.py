"""XenAPI failures as xe prints them: the error's description, then one ``name: value`` line a parameter.

The descriptions and parameter names are XenAPI's published ones (the datamodel's error table),
for the errors a Farside pool server raises. A code not in the table prints as xe prints any
error it has no description for: ``Error code: CODE`` and ``Error parameters: a, b``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

# code -> (description, parameter names)
ERRORS: dict[str, tuple[str, tuple[str, ...]]] = {
    "CANNOT_DESTROY_DISASTER_RECOVERY_TASK": (
        "The disaster recovery task could not be cleanly destroyed.",
        ("reason",),
    ),
    "CANNOT_ENABLE_REDO_LOG": (
        "Could not enable redo log.",
        ("reason",),
    ),
    "COULD_NOT_IMPORT_DATABASE": (
        "An error occurred while attempting to import a database from a metadata VDI",
        ("reason",),
    ),
    "DEVICE_ALREADY_EXISTS": (
        "A device with the name given already exists on the selected VM",
        ("device",),
    ),
    "EVENTS_LOST": (
        "Some events have been lost from the queue and cannot be retrieved.",
        (),
    ),
    "EVENT_FROM_TOKEN_PARSE_FAILURE": (
        "The event.from token could not be parsed. Valid values include: '', and a value returned from a "
        "previous event.from call.",
        ("token",),
    ),
    "EVENT_SUBSCRIPTION_PARSE_FAILURE": (
        "The server failed to parse your event subscription. Valid values include: *, class-name, "
        "class-name/object-reference.",
        ("subscription",),
    ),
    "FIELD_TYPE_ERROR": (
        "The value specified is of the wrong type",
        ("field",),
    ),
    "HANDLE_INVALID": (
        "You gave an invalid object reference. The object may have recently been deleted. The class parameter"
        " gives the type of reference given, and the handle parameter echoes the bad value given.",
        ("class", "handle"),
    ),
    "HOST_NOT_ENOUGH_FREE_MEMORY": (
        "Not enough server memory is available to perform this operation.",
        ("needed", "available"),
    ),
    "INTERNAL_ERROR": (
        "The server failed to handle your request, due to an internal error. The given message may give "
        "details useful for debugging the problem.",
        ("message",),
    ),
    "INVALID_VALUE": (
        "The value given is invalid",
        ("field", "value"),
    ),
    "MAP_DUPLICATE_KEY": (
        "You tried to add a key-value pair to a map, but that key is already there.",
        ("type", "param_name", "uuid", "key"),
    ),
    "MEMORY_CONSTRAINT_VIOLATION": (
        "The dynamic memory range does not satisfy the following constraint.",
        ("constraint",),
    ),
    "MESSAGE_METHOD_UNKNOWN": (
        "You tried to call a method that does not exist. The method name that you used is echoed.",
        ("method",),
    ),
    "MESSAGE_PARAMETER_COUNT_MISMATCH": (
        "You tried to call a method with the incorrect number of parameters. The fully-qualified method name "
        "that you used, and the number of received and expected parameters are returned.",
        ("method", "expected", "received"),
    ),
    "NETWORK_CONTAINS_VIF": (
        "The network contains active VIFs and cannot be deleted.",
        ("vifs",),
    ),
    "NO_HOSTS_AVAILABLE": (
        "There were no servers available to complete the specified operation.",
        (),
    ),
    "NO_MORE_REDO_LOGS_ALLOWED": (
        "The upper limit of active redo log instances was reached.",
        (),
    ),
    "OBJECT_NOLONGER_EXISTS": (
        "The specified object no longer exists.",
        (),
    ),
    "OPERATION_NOT_ALLOWED": (
        "You attempted an operation that was not allowed.",
        ("reason",),
    ),
    "OPERATION_PARTIALLY_FAILED": (
        "Some VMs belonging to the appliance threw an exception while carrying out the specified operation",
        ("operation",),
    ),
    "OTHER_OPERATION_IN_PROGRESS": (
        "Another operation involving the object is currently in progress",
        ("class", "object", "operation_type", "operation_ref"),
    ),
    "PBD_EXISTS": (
        "A PBD already exists connecting the SR to the server.",
        ("sr", "host", "pbd"),
    ),
    "PIF_UNMANAGED": (
        "The operation you requested cannot be performed because the specified PIF is not managed by xapi.",
        ("PIF",),
    ),
    "RBAC_PERMISSION_DENIED": (
        "RBAC permission denied.",
        ("permission", "message"),
    ),
    "SESSION_AUTHENTICATION_FAILED": (
        "The credentials given by the user are incorrect, so access has been denied, and you have not been "
        "issued a session handle.",
        (),
    ),
    "SESSION_INVALID": (
        "You gave an invalid session reference. It may have been invalidated by a server restart, or timed "
        "out. You should get a new session handle, using one of the session.login_ calls. This error does not"
        " invalidate the current connection. The handle parameter echoes the bad value given.",
        ("handle",),
    ),
    "SESSION_NOT_REGISTERED": (
        "This session is not registered to receive events. You must call event.register before event.next. "
        "The session handle you are using is echoed.",
        ("handle",),
    ),
    "SR_ATTACH_FAILED": (
        "Attaching this SR failed.",
        ("sr",),
    ),
    "SR_BACKEND_FAILURE": (
        "There was an SR backend failure.",
        ("status", "stdout", "stderr"),
    ),
    "SR_HAS_PBD": (
        "The SR is still connected to a host via a PBD. It cannot be destroyed or forgotten.",
        ("sr",),
    ),
    "SR_NOT_EMPTY": (
        "The SR operation cannot be performed because the SR is not empty.",
        (),
    ),
    "SR_OPERATION_NOT_SUPPORTED": (
        "The SR backend does not support the operation (check the SR's allowed operations)",
        ("sr",),
    ),
    "SR_REQUIRES_UPGRADE": (
        "The operation cannot be performed until the SR has been upgraded",
        ("SR",),
    ),
    "SR_UNKNOWN_DRIVER": (
        "The SR could not be connected because the driver was not recognised.",
        ("driver",),
    ),
    "SR_UUID_EXISTS": (
        "An SR with that uuid already exists.",
        ("uuid",),
    ),
    "TASK_CANCELLED": (
        "The request was asynchronously canceled.",
        ("task",),
    ),
    "UUID_INVALID": (
        "The uuid you supplied was invalid.",
        ("type", "uuid"),
    ),
    "VDI_CONTAINS_METADATA_OF_THIS_POOL": (
        "The VDI could not be opened for metadata recovery as it contains the current pool's metadata.",
        ("vdi", "pool"),
    ),
    "VDI_INCOMPATIBLE_TYPE": (
        "This operation cannot be performed because the specified VDI is of an incompatible type (eg: an HA "
        "statefile cannot be attached to a guest)",
        ("vdi", "type"),
    ),
    "VDI_IN_USE": (
        "This operation cannot be performed because this VDI is in use by some other operation",
        ("vdi", "operation"),
    ),
    "VDI_LOCATION_MISSING": (
        "This operation cannot be performed because the specified VDI could not be found in the specified SR",
        ("sr", "location"),
    ),
    "VDI_MISSING": (
        "This operation cannot be performed because the specified VDI could not be found on the storage substrate",
        ("sr", "vdi"),
    ),
    "VDI_NOT_AVAILABLE": (
        "This operation cannot be performed because this VDI could not be properly attached to the VM.",
        ("vdi",),
    ),
    "VDI_READONLY": (
        "The operation required write access but this VDI is read-only",
        ("vdi",),
    ),
    "VDI_TOO_SMALL": (
        "The VDI is too small. Please resize it to at least the minimum size.",
        ("vdi", "minimum size"),
    ),
    "RESTORE_INCOMPATIBLE_VERSION": (
        "The restore could not be performed because this backup has been created by a different "
        "(incompatible) product version",
        (),
    ),
    "VM_BAD_POWER_STATE": (
        "You attempted an operation on a VM that was not in an appropriate power state at the time; for "
        "example, you attempted to start a VM that was already running. The parameters returned are the VM's "
        "handle, and the expected and actual VM state at the time of the call.",
        ("vm", "expected", "actual"),
    ),
    "VM_HAS_VGPU": (
        "This operation could not be performed, because the VM has one or more virtual GPUs.",
        ("vm",),
    ),
    "VM_HVM_REQUIRED": (
        "HVM is required for this operation",
        ("vm",),
    ),
    "VM_IS_PART_OF_AN_APPLIANCE": (
        "This operation is not allowed as the VM is part of an appliance.",
        ("vm", "appliance"),
    ),
    "VM_IS_TEMPLATE": (
        "The operation attempted is not valid for a template VM",
        ("vm",),
    ),
    "VM_MIGRATE_FAILED": ("An error occurred during the migration process.", ("vm", "source", "destination", "msg")),
    "VM_MISSING_PV_DRIVERS": (
        "You attempted an operation on a VM which requires PV drivers to be installed but the drivers were "
        "not detected.",
        ("vm",),
    ),
    "VM_NO_SUSPEND_SR": (
        "This VM does not have a suspend SR specified.",
        ("vm",),
    ),
    "VM_REQUIRES_SR": (
        "You attempted to run a VM on a host which doesn't have access to an SR needed by the VM. The VM has "
        "at least one VBD attached to a VDI in the SR.",
        ("vm", "sr"),
    ),
    "VM_SHUTDOWN_TIMEOUT": (
        "VM failed to shutdown before the timeout expired",
        ("vm", "timeout"),
    ),
    "VM_TO_IMPORT_IS_NOT_NEWER_VERSION": (
        "The VM cannot be imported unforced because it is either the same version or an older version of an "
        "existing VM.",
        ("vm", "existing_version", "version_to_import"),
    ),
    "XENAPI_MISSING_PLUGIN": (
        "The requested plugin could not be found.",
        ("name",),
    ),
}

# The class whose uuid names a ref in a parameter (xe shows uuids where the API sends refs).
REF_CLASSES = {
    "vm": "VM",
    "sr": "SR",
    "vdi": "VDI",
    "vbd": "VBD",
    "vif": "VIF",
    "pbd": "PBD",
    "host": "host",
    "pif": "PIF",
    "network": "network",
    "appliance": "VM_appliance",
    "vm_appliance": "VM_appliance",
    "task": "task",
}

RefToUuid = Callable[[str, str], str | None]


def describe(code: str, params: Sequence[str], uuid_of: RefToUuid | None = None) -> list[str]:
    """The lines xe prints for a failure; ``uuid_of(cls, ref)`` turns refs into uuids when it can."""

    def shown(name: str, value: str) -> str:
        cls = REF_CLASSES.get(name.lower())
        if uuid_of is not None and cls is not None and value.startswith("OpaqueRef:"):
            return uuid_of(cls, value) or value
        return value

    if code not in ERRORS:
        lines = [f"Error code: {code}", f"Error parameters: {', '.join(params)}"]
        hint = FARSIDE_HINTS.get(code)
        return lines + ([hint.format(*params, *["?"] * 4)] if hint else [])
    doc, names = ERRORS[code]
    lines = [doc]
    for i, name in enumerate(names):
        lines.append(f"{name}: {shown(name, params[i]) if i < len(params) else '<unknown>'}")
    lines += [f"<extra>: {value}" for value in params[len(names) :]]
    return lines


# Farside's own codes, which xe cannot know: what to do, after xe's two lines.
FARSIDE_HINTS = {
    "LUN_IS_MIRROR_TARGET": "The mirror {1} still replicates into {0}: split it first (farside mirror split {1}).",
    "LUN_LEASED_BY_OTHER_POOL": (
        "Pool {2} has {0} plugged (lease until {3}): unplug its SR there, or if it is down, retry after that."
    ),
}

USAGE_HINT = "For usage run: 'farside xe help'"


class XeError(Exception):
    """A failure the CLI explains itself; ``lines`` go to stderr, the exit code is 1 (as xe's)."""

    def __init__(self, *lines: str) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(lines))


def usage_error(message: str) -> XeError:
    """A command line xe would refuse, with the hint xe prints after it."""
    return XeError(message, USAGE_HINT)


def command_error(message: str) -> XeError:
    """A command that cannot go on, worded as xe's ``Error: ...``."""
    return XeError(f"Error: {message}")
