"""Live migration of a QEMU domain into a new process (xapi's localhost migration), real QEMU.

The guest counts ``TICK <n>`` in its memory and writes the count to its disk at every tick, so a
migrated guest shows that it ran on (one ``BOOT``, ticks without a gap or a restart) and that the
new process writes the same image. Timings go to stdout (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from e2e.hypervisor.qemu_lab import Lab
from farside.hypervisor.driver import DomainState, VMSpec
from farside.hypervisor.errors import DomainError, DomainNotFound
from farside.hypervisor.migration import Transport
from farside.hypervisor.qemu import QemuDriver
from farside.hypervisor.qemu.process import RunDir, is_alive
from farside.hypervisor.qemu.writers import kill, writers
from farside.storage.bootable import read_counter

QEMU = "qemu-system-x86_64"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed"),
]


def counting_spec(lab: Lab, tag: str) -> VMSpec:
    spec = lab.spec(tag)
    return replace(spec, disks=[replace(spec.disks[0], path=lab.image(f"{tag}-counting", counter=True))])


def continued(lab: Lab, driver: QemuDriver, uuid: str, after: int) -> list[int]:
    lab.wait_until(lambda: lab.ticks(driver.read_serial(uuid))[-1] >= after + 3, 10, "ticks after the migration")
    output = driver.read_serial(uuid)
    assert output.count(b"BOOT ") == 1, "the guest booted again"
    ticks = lab.ticks(output)
    assert ticks == list(range(1, len(ticks) + 1)), "the count jumped or restarted"
    return ticks


def test_migration_moves_the_running_guest(lab: Lab, driver: QemuDriver) -> None:
    """The guest counts on in a new QEMU, which writes its disk; the old QEMU is gone; a restarted
    driver finds the new one; a second migration moves it back to the first slot."""
    halted: list[tuple[str, str]] = []
    driver.on_halted = lambda uuid, reason: halted.append((uuid, reason))
    spec = counting_spec(lab, "mover")
    old = driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"TICK 3\r\n")
    report = driver.migrate(spec.uuid)
    print(f"\nmigration {report.total_s:.3f} s, downtime {report.downtime_s * 1000:.1f} ms, "
          f"{report.transferred_bytes} bytes")  # fmt: skip
    assert report.domid != old and is_alive(report.domid)
    assert not is_alive(old)
    status = dict(line.split(":\t", 1) for line in Path(f"/proc/{report.domid}/status").read_text().splitlines())
    assert status["Seccomp"].strip() == "2" and status["Uid"].split()[0] != "0"  # sandboxed as every QEMU
    assert driver.running() == {spec.uuid: report.domid}
    assert driver.state(spec.uuid) is DomainState.RUNNING
    last = lab.ticks(driver.read_serial(spec.uuid))[-1]
    on_disk = read_counter(spec.disks[0].path) or 0
    continued(lab, driver, spec.uuid, last)
    lab.wait_until(lambda: (read_counter(spec.disks[0].path) or 0) > on_disk + 2, 10, "disk writes after migration")

    driver.close()  # the server restarts: the new QEMU (in the other slot) is found again
    second = lab.driver()
    second.on_halted = driver.on_halted
    assert second.running() == {spec.uuid: report.domid}
    second.reattach(spec.uuid)
    second.pause(spec.uuid)
    back = second.migrate(spec.uuid)  # paused in, paused out
    assert second.state(spec.uuid) is DomainState.PAUSED
    assert not is_alive(report.domid)
    second.unpause(spec.uuid)
    continued(lab, second, spec.uuid, lab.ticks(second.read_serial(spec.uuid))[-1])
    assert second.running() == {spec.uuid: back.domid}
    second.hard_stop(spec.uuid)
    assert lab.qemu_pids(str(lab.root)) == []
    assert halted == []  # neither the replaced QEMUs nor the stop is the guest's doing


class RelayTransport(Transport):
    """A channel whose stream passes through this process (``_relay``), for a test to hold or cut."""

    @contextlib.contextmanager
    def channel(self) -> Iterator[tuple[int, int]]:
        send, relay_in = socket.socketpair()
        relay_out, receive = socket.socketpair()
        thread = threading.Thread(target=self._relay, args=(relay_in, relay_out), daemon=True)
        thread.start()
        with send, receive:
            yield send.fileno(), receive.fileno()
        thread.join(30)

    def _relay(self, relay_in: socket.socket, relay_out: socket.socket) -> None:
        raise NotImplementedError


class HeldTransport(RelayTransport):
    """Relays the stream once ``go`` is set: a migration held before its first byte."""

    def __init__(self) -> None:
        self.go = threading.Event()

    def _relay(self, relay_in: socket.socket, relay_out: socket.socket) -> None:
        self.go.wait(30)
        with relay_in, relay_out:
            while data := relay_in.recv(65536):
                relay_out.sendall(data)
            relay_out.shutdown(socket.SHUT_WR)


def test_watchdog_sees_both_qemus_while_a_migration_runs(lab: Lab, driver: QemuDriver) -> None:
    """While the guest moves, the fencing watchdog's view of the LUN lists the destination too (it
    opened the same images), and kills it as it would the source."""
    spec = counting_spec(lab, "watched")
    pid = driver.start(spec)
    transport = HeldTransport()
    moved: list[object] = []
    failed: list[DomainError] = []

    def migrate() -> None:
        try:
            moved.append(driver.migrate(spec.uuid, transport))
        except DomainError as exc:
            failed.append(exc)

    thread = threading.Thread(target=migrate, daemon=True)
    thread.start()
    lun = spec.disks[0].path.parent
    lab.wait_until(lambda: len(writers(lab.run_root).get(lun, [])) == 2, 10, "the destination among the writers")
    found = writers(lab.run_root)[lun]
    destination = next(w for w in found if w.pid != pid)
    assert destination.migration and not next(w for w in found if w.pid == pid).migration
    assert kill(destination, 5)  # a fence during the migration
    transport.go.set()
    thread.join(30)
    assert moved == [] and len(failed) == 1  # the migration failed
    assert driver.running() == {spec.uuid: pid}
    assert writers(lab.run_root)[lun] == [next(w for w in found if w.pid == pid)]
    driver.hard_stop(spec.uuid)


def test_serial_log_is_not_rotated_under_a_migration(lab: Lab) -> None:
    """Both QEMUs append to the serial log while the guest moves: it is rotated only once the
    migration is over, into the new QEMU's log, and no line is lost."""
    driver = lab.driver(serial_log_limit=100, serial_check_interval=0.05)
    spec = lab.spec("chatty")
    driver.start(spec)
    run = RunDir.of(lab.run_root, spec.uuid)
    lab.wait_until(lambda: run.serial_log_old.exists(), 20, "a first rotation")
    transport = HeldTransport()
    thread = threading.Thread(target=lambda: driver.migrate(spec.uuid, transport), daemon=True)
    thread.start()
    lab.wait_until(lambda: len(lab.qemu_pids(str(lab.root))) == 2, 10, "the destination QEMU")
    rotated = run.serial_log_old.stat().st_ino
    time.sleep(3)  # the guest (about 80 B/s) prints past the limit meanwhile
    assert run.serial_log_old.stat().st_ino == rotated
    transport.go.set()
    thread.join(30)
    lab.wait_until(lambda: run.serial_log_old.stat().st_ino != rotated, 20, "a rotation after the migration")
    last = lab.ticks(driver.read_serial(spec.uuid))[-1]
    lab.wait_until(lambda: lab.ticks(driver.read_serial(spec.uuid))[-1] >= last + 3, 10, "ticks after it")
    ticks = lab.ticks(driver.read_serial(spec.uuid, 1 << 20))
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks)))  # across both files, no gap
    driver.hard_stop(spec.uuid)


class KillingTransport(RelayTransport):
    """Relays the stream, and SIGKILLs the destination QEMU after ``after`` bytes: a migration
    killed half-way."""

    def __init__(self, lab: Lab, source: int, after: int) -> None:
        self.lab, self.source, self.after = lab, source, after
        self.killed: int | None = None

    def _relay(self, relay_in: socket.socket, relay_out: socket.socket) -> None:
        with relay_in, relay_out:
            passed = 0
            while passed < self.after:
                data = relay_in.recv(65536)
                if not data:
                    return
                relay_out.sendall(data)
                passed += len(data)
            target = [p for p in self.lab.qemu_pids(str(self.lab.root)) if p != self.source]
            assert len(target) == 1, target
            self.killed = target[0]
            os.kill(self.killed, signal.SIGKILL)


def test_destination_killed_half_way_leaves_the_guest_running(lab: Lab, driver: QemuDriver) -> None:
    """A destination QEMU killed mid-stream fails the migration; the guest runs on in its old
    process, which still writes its disk, and no second QEMU is left."""
    halted: list[tuple[str, str]] = []
    driver.on_halted = lambda uuid, reason: halted.append((uuid, reason))
    spec = counting_spec(lab, "stayer")
    pid = driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"TICK 2\r\n")
    transport = KillingTransport(lab, pid, 256 * 1024)
    with pytest.raises(DomainError):
        driver.migrate(spec.uuid, transport)
    assert transport.killed is not None
    lab.wait_until(lambda: not is_alive(transport.killed or 0), 5, "the killed destination to go")
    assert driver.running() == {spec.uuid: pid}
    assert driver.state(spec.uuid) is DomainState.RUNNING
    on_disk = read_counter(spec.disks[0].path) or 0
    continued(lab, driver, spec.uuid, lab.ticks(driver.read_serial(spec.uuid))[-1])
    lab.wait_until(lambda: (read_counter(spec.disks[0].path) or 0) > on_disk + 2, 10, "disk writes after the failure")
    assert lab.qemu_pids(str(lab.root)) == [pid]
    driver.hard_stop(spec.uuid)
    time.sleep(0.2)
    assert halted == []


def test_restarted_driver_ends_the_other_qemu_of_an_unfinished_migration(lab: Lab) -> None:
    """A server that stopped mid-migration left the VM's other QEMU (qemu.migration.pid): the next
    driver kills it before it takes the VM's own QEMU back, which it leaves running."""
    first = lab.driver()
    spec = lab.spec("interrupted")
    pid = first.start(spec)
    run = RunDir.of(lab.run_root, spec.uuid)
    # Stands in for the other QEMU: what the driver checks is a live process of this VM's uuid
    # working in its run directory.
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-uuid", spec.uuid], cwd=run.path)
    try:
        run.write_pid(other.pid, migration=True)
        first.close()
        second = lab.driver()
        second.reattach(spec.uuid)
        assert other.wait(10) == -signal.SIGKILL
        assert not run.migration_pid_file.exists()
        assert second.running() == {spec.uuid: pid}
        assert second.state(spec.uuid) is DomainState.RUNNING
        second.hard_stop(spec.uuid)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()


def test_migrating_a_halted_vm_is_refused(lab: Lab, driver: QemuDriver) -> None:
    """No domain, no migration."""
    with pytest.raises(DomainNotFound):
        driver.migrate(lab.spec("nothing").uuid)
