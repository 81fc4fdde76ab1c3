"""Hypervisor errors, with XenAPI's codes where xapi has one.

    FarsideError
    ├── InternalError (INTERNAL_ERROR)
    │   ├── DomainError           QEMU failed, or a domain is not in a state for the operation
    │   │   └── DomainNotFound    no QEMU runs for this VM
    │   └── RunRootBusy           another driver holds the run directory
    └── StateError
        └── VdiMissing (VDI_MISSING)   a disk's image file is not there; nothing was started

Whether a VM may be started, paused or resumed at all (``VM_BAD_POWER_STATE``) is decided by the
API from the database; these errors say what went wrong below that.
"""

from __future__ import annotations

from farside.errors import InternalError, StateError


class DomainError(InternalError):
    """A domain operation failed: ``["INTERNAL_ERROR", "<vm uuid>: <what happened>"]``."""

    def __init__(self, uuid: str, message: str) -> None:
        self.uuid = uuid
        self.message = message
        super().__init__(f"{uuid}: {message}")


class DomainNotFound(DomainError):
    """No QEMU of ours runs for this VM (it is halted, or was never started)."""

    def __init__(self, uuid: str) -> None:
        super().__init__(uuid, "no running domain")


class RunRootBusy(InternalError):
    """Another driver (another server process) manages VMs from this run directory."""

    def __init__(self, run_root: object, holder: int | None = None) -> None:
        self.holder = holder  # the pid of the process holding it, when it said
        by = f" (pid {holder})" if holder else ""
        super().__init__(f"another driver{by} uses the run directory {run_root}")


class VdiMissing(StateError):
    """A disk's image file does not exist: ``["VDI_MISSING", vdi uuid, path]``."""

    code = "VDI_MISSING"

    def __init__(self, vdi_uuid: str, path: object) -> None:
        self.vdi_uuid = vdi_uuid
        super().__init__(vdi_uuid, path)


__all__ = ["DomainError", "DomainNotFound", "RunRootBusy", "VdiMissing"]
