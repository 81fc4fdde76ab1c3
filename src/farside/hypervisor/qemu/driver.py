"""``QemuDriver``: the ``Driver`` contract over QEMU processes; a thin façade.

The work is done elsewhere: ``argv`` builds command lines, ``process`` spawns and checks processes,
``qmp`` runs the one event loop and each VM's ``Monitor``, ``domain`` holds what one VM needs.
This module keeps the table of attached domains, the locks, and the translation from the
synchronous, thread-safe contract to coroutines on the loop.

Threads: callers' threads (the server's workers) block on ``LoopThread.run``; the loop thread
runs every QMP coroutine and event handler; one more thread runs ``on_halted`` callbacks, in
order, so that a callback may call the driver. A lock per VM uuid serialises the operations that
create or end a domain (start, reattach, hard_stop, suspend); the others run concurrently.

One driver per run directory: a second one would steal the QMP sockets, so the constructor takes
an exclusive lock on ``<run_root>/driver.lock``, held until ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid as uuidlib
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

from farside.config import DEFAULT_QEMU_USER
from farside.hypervisor.driver import (
    DEFAULT_SERIAL_READ_BYTES,
    DiskSpec,
    DomainState,
    DomainStats,
    Driver,
    HaltedCallback,
    VMSpec,
)
from farside.hypervisor.errors import DomainError, DomainNotFound, RunRootBusy, VdiMissing
from farside.hypervisor.migration import LocalTransport, MigrationReport, Transport
from farside.hypervisor.qemu import migration, process, stats
from farside.hypervisor.qemu.argv import QMP_SOCKETS, Fds, bridged, build_argv, device_id
from farside.hypervisor.qemu.backup import backup
from farside.hypervisor.qemu.domain import Domain
from farside.hypervisor.qemu.process import QemuUser, RunDir
from farside.hypervisor.qemu.qmp import LoopThread

log = logging.getLogger(__name__)

DEFAULT_QEMU = "qemu-system-x86_64"
# The serial log is rotated past this size; with the previous log, at most twice this is kept.
DEFAULT_SERIAL_LOG_LIMIT = 1024 * 1024
# A guest that prints a line every 100 ms writes about 80 B/s (FACTS.md); checking every few
# seconds keeps even a chatty guest near the limit.
DEFAULT_SERIAL_CHECK_S = 5.0
DEFAULT_COMMAND_TIMEOUT_S = 30.0
DEFAULT_START_TIMEOUT_S = 30.0
# QEMU tries to reach a new listener once a second; allow for a few misses.
DEFAULT_REATTACH_TIMEOUT_S = 5.0
DEFAULT_STOP_TIMEOUT_S = 5.0
DEFAULT_SUSPEND_TIMEOUT_S = 600.0
DEFAULT_MIGRATE_TIMEOUT_S = 600.0
LOCK_FILE = "driver.lock"

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class QemuDriver(Driver):
    """Runs each VM as a QEMU process (TCG unless KVM is asked for and real).

    Args:
        run_root: the directory that holds a run directory per VM (created if missing). It must be
            short enough for a Unix socket path below it (about 60 bytes).
        kvm: use KVM; honoured only when the CPU shows vmx or svm and /dev/kvm exists, else TCG
            with a warning.
        qemu_binary: the QEMU to run.
        qemu_user: the unprivileged system user QEMU runs as (``make setup`` creates it).
        serial_log_limit: rotate a VM's serial log past this many bytes.
        serial_check_interval: seconds between checks of the serial logs' sizes.

    Raises:
        ValueError: ``run_root`` is too long for socket paths.
        RunRootBusy: another driver holds ``run_root``.
    """

    def __init__(
        self,
        run_root: Path,
        kvm: bool = False,
        qemu_binary: str = DEFAULT_QEMU,
        *,
        qemu_user: str = DEFAULT_QEMU_USER,
        serial_log_limit: int = DEFAULT_SERIAL_LOG_LIMIT,
        serial_check_interval: float = DEFAULT_SERIAL_CHECK_S,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT_S,
        start_timeout: float = DEFAULT_START_TIMEOUT_S,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT_S,
        suspend_timeout: float = DEFAULT_SUSPEND_TIMEOUT_S,
        migrate_timeout: float = DEFAULT_MIGRATE_TIMEOUT_S,
    ) -> None:
        super().__init__()
        self.run_root = Path(os.path.abspath(run_root))
        longest = self.run_root / str(uuidlib.UUID(int=0)) / max(QMP_SOCKETS, key=len)
        if len(os.fsencode(longest)) > process.MAX_SOCKET_PATH:
            raise ValueError(f"run directory {self.run_root} is too long for Unix socket paths below it")
        # Serial logs can hold what guests print (passwords, keys): for the server's user only.
        self.run_root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock_fd = _lock(self.run_root / LOCK_FILE)
        self._kvm = kvm and process.kvm_usable()
        if kvm and not self._kvm:
            log.warning("KVM asked for, but the CPU shows no vmx/svm or /dev/kvm is missing: using TCG")
        self.capabilities: Mapping[str, bool] = {
            "kvm": self._kvm,
            "suspend": True,
            "live_migration": True,
            "acpi_power_button": True,
            "reattach": True,
            "live_snapshot": True,
        }
        self._qemu = qemu_binary
        self._qemu_user = qemu_user
        self._serial_limit = serial_log_limit
        self._serial_check = serial_check_interval
        self._command_timeout = command_timeout
        self._start_timeout = start_timeout
        self._stop_timeout = stop_timeout
        self._suspend_timeout = suspend_timeout
        self._migrate_timeout = migrate_timeout
        self._domains: dict[str, Domain] = {}
        self._lock = threading.Lock()
        self._uuid_locks: dict[str, threading.RLock] = {}
        self._closed = False
        self._callbacks = ThreadPoolExecutor(1, thread_name_prefix="farside-qemu-events")
        self._loop = LoopThread()
        self._rotation = self._loop.submit(self._rotate_serial_logs())

    # -- the contract ----------------------------------------------------------------------------

    def start(self, spec: VMSpec, paused: bool = False, restore_from: Path | None = None) -> int:
        uuid = _check_uuid(spec.uuid)
        with self._uuid_lock(uuid):
            self._check_open()
            run = self._run(uuid)
            if self._get(uuid) is not None or process.find_qemu(run, uuid) is not None:
                raise DomainError(uuid, "a domain of this VM is running already")
            for disk in spec.disks:
                if not disk.path.exists():
                    raise VdiMissing(disk.vdi_uuid, disk.path)
            if restore_from is not None and not restore_from.is_file():
                raise DomainError(uuid, f"no suspend image at {restore_from}")
            try:
                user = QemuUser.lookup(self._qemu_user)
            except LookupError as exc:
                raise DomainError(uuid, f"cannot start: {exc}") from None
            run.prepare(spec, self._serial_limit, user, new_boot=restore_from is None)
            domain = Domain(uuid, run, self._domain_gone)
            # Until start() returns, an exit is start()'s failure to report, not on_halted's.
            domain.expected_exit = True
            domain.monitor.listen()  # before QEMU starts, so that it connects at once
            with self._lock:
                self._domains[uuid] = domain
            try:
                self._loop.run(domain.watch())
                # Ours are closed once QEMU holds its copies (or did not start: its taps go with them).
                with contextlib.ExitStack() as opened:
                    argv, fds = open_command(
                        spec, run, opened, qemu=self._qemu, kvm=self._kvm, incoming=restore_from is not None
                    )
                    try:
                        domain.spawn(argv, user, fds)
                    except OSError as exc:
                        raise DomainError(uuid, f"cannot run {self._qemu} as {user.name}: {exc}") from exc
                self._loop.run(domain.boot(paused, restore_from, self._start_timeout))
            except BaseException:
                self._abandon(domain)
                raise
            self._loop.run(self._started(domain))
            assert domain.pid is not None
            log.info("domain %s started: pid %d%s", uuid, domain.pid, " (restored)" if restore_from else "")
            return domain.pid

    def state(self, uuid: str) -> DomainState:
        domain = self._attached(uuid)
        if domain is None:
            return DomainState.HALTED
        try:
            return self._loop.run(domain.query_state(self._command_timeout))
        except DomainError:
            if self._loop.run(domain.wait_gone(0.5)):
                return DomainState.HALTED
            raise

    def pause(self, uuid: str) -> None:
        self._execute(uuid, "stop")

    def unpause(self, uuid: str) -> None:
        self._execute(uuid, "cont")

    def press_power_button(self, uuid: str) -> None:
        self._execute(uuid, "system_powerdown")

    def reset(self, uuid: str) -> None:
        self._execute(uuid, "system_reset")

    def wait_halted(self, uuid: str, timeout: float) -> bool:
        domain = self._get(_check_uuid(uuid))
        if domain is not None:
            return self._loop.run(domain.wait_gone(timeout))
        pid = process.find_qemu(self._run(uuid), uuid)
        return pid is None or process.wait_gone(pid, timeout)

    def hard_stop(self, uuid: str) -> None:
        uuid = _check_uuid(uuid)
        with self._uuid_lock(uuid):
            domain = self._get(uuid)
            if domain is not None:
                self._end(domain)
                return
            run = self._run(uuid)
            self._end_migration(run, uuid)
            pid = process.find_qemu(run, uuid)
            if pid is not None:
                # Not attached (not reattached since a restart): SIGTERM makes QEMU quit as `quit` does.
                process.signal_pid(pid, signal.SIGTERM)
                if not process.wait_gone(pid, self._stop_timeout):
                    process.signal_pid(pid, signal.SIGKILL)
                    process.wait_gone(pid, self._stop_timeout)
                log.info("domain %s stopped (pid %d, unattached)", uuid, pid)
            run.clean()

    def suspend(self, uuid: str, state_path: Path) -> None:
        uuid = _check_uuid(uuid)
        with self._uuid_lock(uuid):
            domain = self._required(uuid)
            self._loop.run(domain.save(state_path, self._suspend_timeout))
            self._end(domain)
            log.info("domain %s suspended to %s", uuid, state_path)

    def migrate(self, uuid: str, transport: Transport | None = None) -> MigrationReport:
        uuid = _check_uuid(uuid)
        transport = transport or LocalTransport()
        with self._uuid_lock(uuid):
            source = self._required(uuid)
            run = self._run(uuid)
            began = time.monotonic()
            try:
                spec = VMSpec.from_json(json.loads(run.spec_file.read_text()))
                user = QemuUser.lookup(self._qemu_user)
            except (OSError, ValueError, KeyError, TypeError, LookupError) as exc:
                raise DomainError(uuid, f"cannot migrate: {exc}") from exc
            # The destination is no domain of the VM's until the guest has moved: its exit (a
            # failed migration) is reported by nothing but this method's error.
            target = Domain(uuid, run, self._domain_gone, slot=1 - source.slot)
            target.expected_exit = True
            target.monitor.listen()
            source.migrating = True
            try:
                self._loop.run(target.watch())
                with contextlib.ExitStack() as opened:
                    argv, fds = open_command(
                        spec, run, opened, qemu=self._qemu, kvm=self._kvm, incoming=True, slot=target.slot
                    )
                    try:
                        target.spawn(argv, user, fds, migration=True)
                    except OSError as exc:
                        raise DomainError(uuid, f"cannot run {self._qemu} as {user.name}: {exc}") from exc

                def switch(moved: bool) -> None:
                    # qemu.pid names the VM's QEMU, the migration's file the other one. The VM's
                    # first: a restart between the two writes finds both naming it, and leaves it.
                    new, old = (target, source) if moved else (source, target)
                    assert new.pid is not None and old.pid is not None
                    run.write_pid(new.pid)
                    run.write_pid(old.pid, migration=True)

                with transport.channel() as (send, receive):
                    downtime, sent = self._loop.run(
                        migration.migrate(source, target, send, receive, self._migrate_timeout, switch)
                    )
            except BaseException:
                self._abandon(target)
                raise
            finally:
                source.migrating = False
            assert target.pid is not None
            # From here the VM is the new process, whatever happens to the old one.
            with self._lock:
                self._domains[uuid] = target
            target.expected_exit = False
            self._loop.run(self._started(target))
            try:
                self._end(source)
            except DomainError as exc:  # paused in postmigrate with its images handed over: harmless
                log.error("domain %s: the migration's source (pid %s) did not exit: %s", uuid, source.pid, exc)
            self._loop.run(source.detach())
            run.qmp_socket_of(source.slot).unlink(missing_ok=True)
            run.migration_pid_file.unlink(missing_ok=True)
            total = time.monotonic() - began
            log.info("domain %s migrated: pid %s -> %d in %.3f s, downtime %.3f s", uuid, source.pid,
                     target.pid, total, downtime)  # fmt: skip
            return MigrationReport(target.pid, total, downtime, sent)

    def backup_disks(self, uuid: str, targets: Mapping[int, tuple[Path, str]]) -> float:
        uuid = _check_uuid(uuid)
        domain = self._required(uuid)
        with contextlib.ExitStack() as opened:
            fds = {device: (*_open_target(opened, path), fmt) for device, (path, fmt) in targets.items()}
            held = self._loop.run(backup(domain, fds, self._command_timeout, self._suspend_timeout))
        log.info("domain %s: %d disk(s) copied live; I/O held %.1f ms", uuid, len(targets), held * 1000)
        return held

    def change_medium(self, uuid: str, userdevice: int, disk: DiskSpec | None) -> None:
        uuid = _check_uuid(uuid)
        with self._uuid_lock(uuid):
            domain = self._required(uuid)
            with contextlib.ExitStack() as opened:
                fd = None if disk is None else opened.enter_context(_closing(_open_image(uuid, disk)))
                fmt = "raw" if disk is None else disk.format
                node = f"cd{userdevice}-{uuidlib.uuid4().hex[:8]}"  # a fresh name: the old node may linger
                self._loop.run(domain.change_medium(device_id(userdevice), fd, fmt, node, self._command_timeout))
        log.info("domain %s: CD drive %d now holds %s", uuid, userdevice, disk.vdi_uuid if disk else "nothing")

    def running(self) -> dict[str, int]:
        found = {}
        for entry in sorted(self.run_root.iterdir()):
            if not entry.is_dir() or not _is_uuid(entry.name):
                continue
            pid = process.find_qemu(RunDir(entry), entry.name)
            if pid is not None:
                found[entry.name] = pid
        return found

    def reattach(self, uuid: str) -> None:
        domain = self._required(_check_uuid(uuid))
        self._loop.run(domain.monitor.client(DEFAULT_REATTACH_TIMEOUT_S))

    def vnc_socket(self, uuid: str) -> socket.socket:
        domain = self._required(_check_uuid(uuid))
        ours, qemus = socket.socketpair()
        try:
            self._loop.run(domain.add_vnc_client(qemus.fileno(), self._command_timeout))
        except BaseException:
            ours.close()
            raise
        finally:
            qemus.close()  # QEMU holds its own copy now
        return ours

    def serial_log(self, uuid: str) -> Path:
        return self._run(_check_uuid(uuid)).serial_log

    def read_serial(self, uuid: str, max_bytes: int = DEFAULT_SERIAL_READ_BYTES) -> bytes:
        return self._run(_check_uuid(uuid)).read_serial(max_bytes)

    def stats(self, uuid: str) -> DomainStats:
        domain = self._required(uuid)
        try:
            spec = VMSpec.from_json(json.loads(domain.run.spec_file.read_text()))
        except (OSError, ValueError, KeyError) as exc:
            raise DomainError(uuid, f"no readable spec of the running domain: {exc}") from exc
        return self._loop.run(stats.sample(domain, spec, self._command_timeout))

    def forget(self, uuid: str) -> None:
        uuid = _check_uuid(uuid)
        with self._uuid_lock(uuid):
            run = self._run(uuid)
            if self._get(uuid) is not None or process.find_qemu(run, uuid) is not None:
                raise DomainError(uuid, "a domain of this VM is running")
            run.remove()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            domains = list(self._domains.values())
            self._domains.clear()
        self._rotation.cancel()
        if domains:
            self._loop.run(_gather([d.detach() for d in domains]))
        self._loop.stop()
        self._callbacks.shutdown(wait=False)
        os.close(self._lock_fd)  # releases the flock
        log.info("QEMU driver closed; %d domain(s) left running", len(domains))

    # -- helpers ---------------------------------------------------------------------------------

    def _run(self, uuid: str) -> RunDir:
        return RunDir.of(self.run_root, uuid)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("the QEMU driver is closed")

    def _uuid_lock(self, uuid: str) -> threading.RLock:
        with self._lock:
            return self._uuid_locks.setdefault(uuid, threading.RLock())

    def _get(self, uuid: str) -> Domain | None:
        with self._lock:
            return self._domains.get(uuid)

    def _attached(self, uuid: str) -> Domain | None:
        """The domain of ``uuid``, reattaching to a QEMU that runs unattached; None if none runs."""
        uuid = _check_uuid(uuid)
        domain = self._get(uuid)
        if domain is not None:
            return domain
        with self._uuid_lock(uuid):
            self._check_open()
            domain = self._get(uuid)
            if domain is not None:
                return domain
            run = self._run(uuid)
            self._end_migration(run, uuid)
            pid = process.find_qemu(run, uuid)
            if pid is None:
                return None
            domain = Domain(uuid, run, self._domain_gone, pid=pid, slot=process.slot_of(pid))
            domain.monitor.listen()
            with self._lock:
                self._domains[uuid] = domain
            self._loop.run(domain.watch())
            log.info("domain %s: reattaching to pid %d", uuid, pid)
            # QEMU retries its connection every second; wait for it here so the caller's command
            # does not have to. If it does not come, the monitor keeps listening.
            self._loop.run(domain.monitor.client(DEFAULT_REATTACH_TIMEOUT_S))
            return domain

    def _end_migration(self, run: RunDir, uuid: str) -> None:
        """Kill the other QEMU of a migration whose server stopped part-way: before the switch the
        destination (which may hold the images the source needs back), after it the old source
        (paused, its images handed over)."""
        other = process.find_qemu(run, uuid, migration=True)
        if other is not None and other != process.find_qemu(run, uuid):
            log.warning("domain %s: killing pid %d, left over from a migration that never finished", uuid, other)
            process.signal_pid(other, signal.SIGKILL)
            process.wait_gone(other, self._stop_timeout)
        run.migration_pid_file.unlink(missing_ok=True)

    def _required(self, uuid: str) -> Domain:
        domain = self._attached(uuid)
        if domain is None:
            raise DomainNotFound(uuid)
        return domain

    def _execute(self, uuid: str, command: str) -> None:
        domain = self._required(uuid)
        self._loop.run(domain.execute(command, timeout=self._command_timeout))

    def _end(self, domain: Domain) -> None:
        """End an attached domain: ``quit``, then SIGKILL if QEMU has not exited in time."""
        if self._loop.run(domain.quit(self._stop_timeout)):
            return
        log.warning("domain %s: QEMU did not quit within %g s; killing it", domain.uuid, self._stop_timeout)
        if domain.pid is not None and domain.alive():
            process.signal_pid(domain.pid, signal.SIGKILL)
        if not self._loop.run(domain.wait_gone(self._stop_timeout)):
            raise DomainError(domain.uuid, f"QEMU (pid {domain.pid}) did not exit after SIGKILL")

    def _abandon(self, domain: Domain) -> None:
        """Undo a start that failed part-way: no QEMU may be left behind."""
        domain.expected_exit = True
        if domain.popen is not None and domain.popen.poll() is None:
            domain.popen.kill()
            domain.popen.wait(self._stop_timeout)
        if domain.gone is not None and domain.pid is not None:  # it was spawned
            self._loop.run(domain.wait_gone(self._stop_timeout))
        self._loop.run(domain.detach())
        with self._lock:
            current = self._domains.get(domain.uuid) is domain
            if current:
                del self._domains[domain.uuid]
        if current:
            domain.run.clean()
        else:  # a migration's destination: the source's pid file and socket stay
            domain.run.qmp_socket_of(domain.slot).unlink(missing_ok=True)
            domain.run.migration_pid_file.unlink(missing_ok=True)

    async def _started(self, domain: Domain) -> None:
        """On the loop, so that it cannot interleave with ``_domain_gone``."""
        domain.expected_exit = False
        gone = domain.gone
        if gone is not None and gone.done() and gone.exception() is None:
            # The guest stopped between booting and now: tell on_halted as if it had been watching.
            self._report_halted(domain.uuid, gone.result())

    def _report_halted(self, uuid: str, reason: str) -> None:
        callback = self.on_halted
        if callback is not None:
            self._callbacks.submit(_notify, callback, uuid, reason)

    def _domain_gone(self, domain: Domain, reason: str) -> None:
        """On the loop, when a watched QEMU has exited."""
        with self._lock:
            if self._domains.get(domain.uuid) is not domain:
                # One half of a migration (a failed destination, a replaced source): the VM's
                # domain is the other one, whose pid file and socket must stay.
                log.info("domain %s: QEMU %s exited (%s) beside the VM's current one", domain.uuid, domain.pid, reason)
                return
        domain.run.clean()  # before a new start of the same VM can begin
        with self._lock:
            if self._domains.get(domain.uuid) is domain:
                del self._domains[domain.uuid]
        log.info("domain %s halted: %s", domain.uuid, reason)
        if not domain.expected_exit:
            self._report_halted(domain.uuid, reason)

    async def _rotate_serial_logs(self) -> None:
        while True:
            await asyncio.sleep(self._serial_check)
            with self._lock:
                domains = list(self._domains.values())
            for domain in domains:
                if domain.migrating:
                    continue
                try:
                    await domain.rotate_serial(self._serial_limit)
                except (DomainError, OSError) as exc:
                    log.warning("domain %s: serial log not rotated: %s", domain.uuid, exc)


def _notify(callback: HaltedCallback, uuid: str, reason: str) -> None:
    try:
        callback(uuid, reason)
    except Exception:
        log.exception("on_halted(%s, %s) failed", uuid, reason)


async def _gather(coros: list[Coroutine[Any, Any, None]]) -> None:
    await asyncio.gather(*coros)


def _lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip()
        os.close(fd)
        raise RunRootBusy(path.parent, int(holder) if holder.isdigit() else None) from None
    # Who holds it, for the next one to be told (the flock, not this, is the lock).
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def open_command(
    spec: VMSpec, run: RunDir, opened: contextlib.ExitStack, *, qemu: str, kvm: bool, incoming: bool, slot: int = 0
) -> tuple[list[str], list[int]]:
    """Open what the QEMU of ``spec`` inherits (each closed by ``opened``: the serial log, the disks,
    the taps, made and put on their bridges here) and build its argv; returns it and the descriptors.
    ``slot`` is the VM's process slot (argv.QMP_SOCKETS): 1 for a migration's destination beside a
    source in 0, and the other way round.

    Raises:
        VdiMissing: a disk's image is not there.
        DomainError: an image cannot be opened, a tap cannot be made, or the spec cannot be run.
    """
    uuid = spec.uuid
    # The name is only a label in QEMU; one the option syntax cannot carry must not stop a VM.
    label = _CONTROL.sub("?", spec.name) or uuid
    try:
        taps = bridged(spec, process.host_bridges(), slot)
    except ValueError as exc:
        raise DomainError(uuid, f"cannot start: {exc}") from exc
    serial = opened.enter_context(_closing(run.open_serial()))
    disks = {d.userdevice: opened.enter_context(_closing(_open_image(uuid, d))) for d in spec.disks}
    tap_fds = {}
    for device, tap, bridge in taps:
        try:
            tap_fds[device] = opened.enter_context(_closing(process.open_tap(tap, bridge)))
        except OSError as exc:
            raise DomainError(uuid, f"cannot put NIC {tap} on bridge {bridge}: {exc}") from exc
    fds = Fds(serial=serial, disks=disks, taps=tap_fds)
    try:
        argv = build_argv(replace(spec, name=label), fds=fds, qemu=qemu, kvm=kvm, incoming=incoming, slot=slot)
    except ValueError as exc:
        raise DomainError(uuid, f"cannot start: {exc}") from exc
    return argv, fds.all()


def _open_target(opened: contextlib.ExitStack, path: Path) -> tuple[int, bool]:
    """A live copy's target, and whether it is opened with O_DIRECT: the copy then bypasses the
    page cache, whose writeback throttling would otherwise hold up the guest's own writes for
    hundreds of milliseconds (measured with a 2 GiB disk: bench/snapshot.py). Filesystems without
    O_DIRECT (tmpfs) get a cached copy."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return opened.enter_context(_closing(os.open(path, flags | os.O_DIRECT))), True
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    return opened.enter_context(_closing(os.open(path, flags))), False


def _open_image(uuid: str, disk: DiskSpec) -> int:
    """A disk's image, opened as QEMU will use it: QEMU opens no image by name."""
    flags = os.O_RDONLY if disk.read_only or disk.cdrom else os.O_RDWR
    if disk.cdrom:  # an ISO is a file in a library directory: never a link leading elsewhere
        flags |= os.O_NOFOLLOW
    try:
        return os.open(disk.path, flags | os.O_CLOEXEC)
    except FileNotFoundError:
        raise VdiMissing(disk.vdi_uuid, disk.path) from None
    except OSError as exc:
        raise DomainError(uuid, f"cannot open the image of VDI {disk.vdi_uuid}: {exc}") from exc


@contextlib.contextmanager
def _closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)


def _is_uuid(text: str) -> bool:
    try:
        return str(uuidlib.UUID(text)) == text
    except ValueError:
        return False


def _check_uuid(uuid: str) -> str:
    """A uuid names a directory below the run root: anything else (``..``) is refused."""
    if not _is_uuid(uuid):
        raise DomainError(uuid, "not a VM uuid")
    return uuid
