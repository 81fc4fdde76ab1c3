"""Storage errors, raised with XenAPI's codes where xapi has one and SR_BACKEND_FAILURE_* otherwise.

xapi passes a storage manager's failure on as ``SR_BACKEND_FAILURE_<n>`` with SM's own numbers.
Farside's backend is its own, so its failures are named, not numbered (``SR_BACKEND_FAILURE_PATH``)
and never borrow SM numbers that mean something else to a client.
"""

from __future__ import annotations

from farside.errors import FarsideError, StateError, XenAPIFailure


class BackendFailure(XenAPIFailure):
    """A failure of the file SR backend: ``["SR_BACKEND_FAILURE_<WHAT>", message]``."""

    exit_code = 4

    def __init__(self, what: str, message: str) -> None:
        super().__init__(f"SR_BACKEND_FAILURE_{what}", message)


def path_failure(message: str) -> BackendFailure:
    """The LUN path is missing, not a directory, or not writable."""
    return BackendFailure("PATH", message)


def format_failure(message: str) -> BackendFailure:
    """The LUN cannot be formatted (it already holds an SR, or the write failed)."""
    return BackendFailure("FORMAT", message)


def image_failure(message: str) -> BackendFailure:
    """qemu-img failed on a VDI's image."""
    return BackendFailure("IMAGE", message)


class ImageUnsafe(BackendFailure):
    """``["SR_BACKEND_FAILURE_IMAGE_UNSAFE", message]``: an image that is not self-contained in its
    recorded format (a backing file, an external data file, another format, not a regular file).
    Opening it would make qemu-img or QEMU read or write a file outside the VDI."""

    def __init__(self, message: str) -> None:
        super().__init__("IMAGE_UNSAFE", message)


def records_failure(message: str) -> BackendFailure:
    """The SR's own records on the LUN are missing or damaged."""
    return BackendFailure("RECORDS", message)


class LunLeased(StateError):
    """``[path, pool uuid, pool name, expiry, free from]``: another pool's lease on the LUN is live,
    or expired too recently to be taken over (the holder may still be fencing its VMs)."""

    code = "LUN_LEASED_BY_OTHER_POOL"


class LunIsMirrorTarget(StateError):
    """``[path, mirror name]``: a storage mirror is replicating into the LUN, so no pool may plug it."""

    code = "LUN_IS_MIRROR_TARGET"

    def describe(self) -> str:
        path, mirror = [*self.params, "?", "?"][:2]
        return (
            f"{self.code} {path} {mirror}: the LUN is the target of mirror {mirror!r}, which is still "
            f"replicating into it; split the mirror first (farside mirror split {mirror})"
        )


class VdiInUse(StateError):
    code = "VDI_IN_USE"


class SrNotEmpty(StateError):
    code = "SR_NOT_EMPTY"


__all__ = [
    "BackendFailure",
    "FarsideError",
    "ImageUnsafe",
    "LunIsMirrorTarget",
    "LunLeased",
    "SrNotEmpty",
    "VdiInUse",
    "format_failure",
    "image_failure",
    "path_failure",
    "records_failure",
]
