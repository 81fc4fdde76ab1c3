"""A lab for the QEMU driver's end-to-end tests: drivers, bootable guests, and polling helpers."""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farside.hypervisor.driver import DiskSpec, NicSpec, VMSpec
from farside.hypervisor.qemu import QemuDriver
from farside.hypervisor.qemu.process import is_alive
from farside.storage.bootable import write_bootable

QEMU = "qemu-system-x86_64"
TICK = re.compile(rb"TICK (\d+)\r\n")


def qemu_pids(root: str) -> list[int]:
    """Live QEMU processes working below ``root`` (a QEMU's cwd is its run directory; its command
    line names no host path)."""
    below = os.path.realpath(root) + "/"
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if b"qemu-system" in cmdline and cwd.startswith(below) and is_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def reap(pid: int) -> None:
    """Collect a child of this process that has exited (QEMUs started by a driver in this process)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``predicate`` every 10 ms until it returns something truthy, which is returned."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


def ticks(output: bytes) -> list[int]:
    return [int(n) for n in TICK.findall(output)]


class Lab:
    """Drivers, images and specs for one test, all below its run root."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.run_root = root / "run"
        self.drivers: list[QemuDriver] = []

    def driver(self, **options: Any) -> QemuDriver:
        driver = QemuDriver(self.run_root, **options)
        self.drivers.append(driver)
        return driver

    def image(self, tag: str, counter: bool = False) -> Path:
        path = self.root / f"{tag},disk.img"
        write_bootable(path, tag, counter=counter)
        return path

    def spec(self, tag: str, *, name: str | None = None, nics: list[NicSpec] | None = None) -> VMSpec:
        """A 16 MiB VM booting a fresh image that prints ``BOOT <tag>``."""
        disk = DiskSpec(str(uuidlib.uuid4()), self.image(tag), "raw", read_only=False, userdevice=0, bootable=True)
        return VMSpec(str(uuidlib.uuid4()), name or f"vm {tag}", 16 * 1024 * 1024, 1, [disk], nics or [])

    wait_until = staticmethod(wait_until)
    ticks = staticmethod(ticks)
    qemu_pids = staticmethod(qemu_pids)

    def wait_serial(self, driver: QemuDriver, uuid: str, needle: bytes, timeout: float = 10) -> float:
        """Wait until the VM's serial output holds ``needle``; returns when, on the monotonic clock."""
        self.wait_until(lambda: needle in driver.read_serial(uuid), timeout, f"{needle!r} on {uuid}'s serial")
        return time.monotonic()

    def close(self) -> None:
        for driver in self.drivers:
            driver.close()
        self.drivers.clear()
        if self.run_root.exists():
            with QemuDriver(self.run_root) as sweeper:
                for uuid in sweeper.running():
                    sweeper.hard_stop(uuid)
