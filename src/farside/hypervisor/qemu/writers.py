"""Which QEMUs on this host write into which directory, found without the driver or the server.

For the fencing watchdog (``farside watchdog``), which must work while the pool server is stopped
or frozen: each live QEMU's run directory records the spec it was started with (``spec.json``),
whose disks name their image files. A QEMU counts only while /proc shows it is the one its pid file
names (process.find_qemu), so a reused pid is never killed.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from farside.hypervisor.driver import VMSpec
from farside.hypervisor.qemu import process
from farside.hypervisor.qemu.driver import LOCK_FILE
from farside.hypervisor.qemu.process import RunDir


@dataclass(frozen=True)
class Writer:
    """A live QEMU that has image files in a directory open for writing."""

    uuid: str
    pid: int
    run: RunDir
    migration: bool = False  # the other QEMU of a live migration, which opened the same images

    def __str__(self) -> str:
        return f"the QEMU of VM {self.uuid} (pid {self.pid})"


def writers(run_root: Path) -> dict[Path, list[Writer]]:
    """Each directory holding a writable disk of a live QEMU in ``run_root``, with those QEMUs."""
    found: dict[Path, list[Writer]] = {}
    try:
        entries = sorted(run_root.iterdir())
    except FileNotFoundError:
        return found
    for entry in entries:
        run = RunDir(entry)
        # A live migration's other QEMU opened the same images: it is a writer too.
        found_pids = [(process.find_qemu(run, entry.name, other), other) for other in (False, True)]
        pids = [(pid, other) for pid, other in found_pids if pid is not None]
        if not pids:
            continue
        try:
            spec = VMSpec.from_json(json.loads(run.spec_file.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a QEMU this host's servers did not start the usual way: not ours to judge
        for directory in {d.path.parent for d in spec.disks if not d.read_only and not d.cdrom}:
            found.setdefault(directory, []).extend(Writer(entry.name, pid, run, other) for pid, other in pids)
    return found


def kill(writer: Writer, timeout: float) -> bool:
    """SIGKILL the QEMU (a fence: no flush, no further write); True once it is gone."""
    if process.find_qemu(writer.run, writer.uuid, writer.migration) != writer.pid:
        return True  # gone already, or its pid now belongs to another process
    process.signal_pid(writer.pid, signal.SIGKILL)
    return process.wait_gone(writer.pid, timeout)


def driver_running(run_root: Path) -> bool:
    """Whether the process that last held the run root's driver lock (the pool server) is alive;
    a stopped (SIGSTOP) process is alive."""
    try:
        text = (run_root / LOCK_FILE).read_text().strip()
    except FileNotFoundError:
        return False
    return text.isdigit() and int(text) != os.getpid() and process.is_alive(int(text))
