"""Fixtures for the QEMU driver under real QEMU.

Every test gets a short run root under /tmp whose name holds a comma (the driver's paths must cope)
and whose mode is mkdtemp's 0700, which the QEMU user cannot pass (QEMU must need no right on the
run root); a Unix socket path below it stays under 108 bytes. A test stops the VMs it starts;
at teardown the ``lab`` stops whatever its drivers still know, and the autouse ``no_qemu_left``
guard then finds any QEMU working below the run root, SIGKILLs it, and fails the test.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import uuid as uuidlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from e2e.hypervisor.qemu_lab import Lab, qemu_pids, reap, wait_until
from farside.hypervisor.qemu import QemuDriver
from farside.hypervisor.qemu.process import is_alive


@pytest.fixture
def run_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="fs,q-", dir="/tmp"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def no_qemu_left(run_root: Path) -> Iterator[None]:
    """No test leaves a QEMU behind: leftovers are SIGKILLed and fail the test."""
    yield
    left = qemu_pids(str(run_root))
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for pid in left:
        wait_until(lambda pid=pid: not is_alive(pid) or reap(pid) or not is_alive(pid), 5, f"pid {pid} to die")
        reap(pid)
    assert not left, f"QEMU processes left running: {left}"


@pytest.fixture
def lab(run_root: Path) -> Iterator[Lab]:
    lab = Lab(run_root)
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture
def driver(lab: Lab) -> QemuDriver:
    return lab.driver()


@pytest.fixture
def bridge() -> Iterator[str]:
    """A host bridge for one test, with no address: nothing leaves the machine (needs
    CAP_NET_ADMIN; skipped without it)."""
    name = f"fsbr{uuidlib.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "link", "add", name, "type", "bridge"], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a bridge here: {made.stderr.decode().strip()}")
    try:
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], check=False)
