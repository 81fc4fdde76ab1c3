"""The importer's pieces that need no server: what a full disk becomes, and the task's result."""

from __future__ import annotations

import os

import pytest

from farside.api.xva import importer
from farside.errors import XenAPIFailure


def test_a_full_disk_is_sr_full() -> None:
    """ENOSPC while a disk streams in is SR_FULL, xapi's error, not an I/O traceback."""
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(XenAPIFailure) as caught:
            importer._FileSink(fd, "OpaqueRef:sr").write(0, b"x" * 4096)
    finally:
        os.close(fd)
    assert caught.value.failure[0] == "SR_FULL"


def test_result_is_a_set_of_vm_refs() -> None:
    """The task's result is the XML-RPC array of new VM refs, as xapi's import task holds it."""
    assert importer.result(["OpaqueRef:a", "OpaqueRef:b"]) == (
        "<value><array><data><value>OpaqueRef:a</value><value>OpaqueRef:b</value></data></array></value>"
    )
