"""One QEMU domain: its process, its QMP monitor, and what can be done to it.

A ``Domain`` lives on the driver's event loop: its coroutines run there, and so do its event
handlers. It knows whether its QEMU is alive (through the ``Popen`` when this process started it,
through /proc otherwise), watches it through its ``Monitor``, and resolves ``gone`` with the reason
once QEMU has exited. The façade (``QemuDriver``) decides what to do about that.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from farside.hypervisor.driver import DomainState
from farside.hypervisor.errors import DomainError
from farside.hypervisor.qemu import process
from farside.hypervisor.qemu.argv import SERIAL_ID, fdset_path
from farside.hypervisor.qemu.process import QemuUser, RunDir
from farside.hypervisor.qemu.qmp import EXIT_GRACE_S, Monitor

log = logging.getLogger(__name__)

# QEMU's default migration bandwidth is 32 MiB/s: a 4 GiB guest would take two minutes to suspend.
# The target is a local file, so let it go as fast as the disk takes it.
SUSPEND_BANDWIDTH = 1 << 40
POLL_S = 0.01
# The name under which a suspend or restore file descriptor is handed to QEMU (getfd).
SUSPEND_FD = "farside-suspend"
# QEMU takes the descriptor out of its table when add_client uses it, so one name serves every client.
VNC_FD = "farside-vnc"
RESTORE_FD = "farside-restore"
# QEMU run states (query-status) in which the vCPUs run; every other live state counts as paused.
_RUNNING = {"running"}
_HALTED = {"shutdown"}


class Domain:
    """One QEMU process and its QMP monitor.

    Args:
        uuid: the VM.
        run: its run directory.
        on_gone: called on the loop as ``on_gone(domain, reason)`` once QEMU has exited.
        pid: the pid of a QEMU that runs already (reattaching); None for one about to be spawned.
        slot: the process slot (``argv.QMP_SOCKETS``) of this QEMU: a migration's destination runs
            in the other slot beside its source.
    """

    def __init__(
        self,
        uuid: str,
        run: RunDir,
        on_gone: Callable[[Domain, str], None],
        pid: int | None = None,
        slot: int = 0,
    ) -> None:
        self.uuid = uuid
        self.run = run
        self.pid = pid
        self.slot = slot
        self.popen: subprocess.Popen[bytes] | None = None
        # The last run state QEMU reported (query-status, or STOP/RESUME events).
        self.status = "unknown"
        self.shutdown_reason: str | None = None
        # Set before the driver itself ends the domain (hard_stop, suspend, a failed start), so that
        # its exit is not reported as the guest's doing.
        self.expected_exit = False
        # Set while the domain is the source of a live migration: its destination opened the same
        # serial log, so the log is not rotated under it.
        self.migrating = False
        self.gone: asyncio.Future[str] | None = None
        self.monitor = Monitor(uuid, run.qmp_socket_of(slot), self.alive, self._on_event, self._on_connect)
        self._on_gone = on_gone
        self._log_offset = 0
        # True from spawn() until QEMU's first QMP connection: the state is known without asking.
        self._fresh = False

    # -- process ---------------------------------------------------------------------------------

    def spawn(self, argv: list[str], user: QemuUser, fds: Sequence[int], migration: bool = False) -> None:
        """Start QEMU as ``user`` with ``fds`` (the monitor must be listening already, so QEMU
        connects at once), and record its pid (a migration's destination as the VM's other QEMU,
        ``migration``, until the VM has moved to it)."""
        self._log_offset = _size(self.run.qemu_log)
        self._fresh = True  # before QEMU runs, so that its first connection finds it set
        self.popen = process.spawn(argv, self.run, user, fds)
        self.pid = self.popen.pid
        self.run.write_pid(self.pid, migration)

    def alive(self) -> bool:
        if self.popen is not None:
            return self.popen.poll() is None
        if self.pid is None:  # about to be spawned
            return True
        return process.is_our_qemu(self.pid, self.uuid, self.run.path)

    def qemu_error(self) -> str:
        """What QEMU said on stderr since it was spawned, and how it exited."""
        try:
            with open(self.run.qemu_log, "rb") as f:
                f.seek(self._log_offset)
                text = f.read(4096).decode(errors="replace").strip()
        except FileNotFoundError:
            text = ""
        code = self.popen.poll() if self.popen is not None else None
        status = f"QEMU exited with status {code}" if code is not None else "QEMU exited"
        return f"{status}: {text}" if text else status

    def exit_reason(self) -> str:
        """Why QEMU exited: the SHUTDOWN event's reason, else ``killed`` (a signal) or ``crashed``."""
        if self.shutdown_reason is not None:
            return self.shutdown_reason
        code = self.popen.poll() if self.popen is not None else None
        return "killed" if code is not None and code < 0 else "crashed"

    # -- watching --------------------------------------------------------------------------------

    async def watch(self) -> None:
        """Start the monitor (call ``monitor.listen()`` first when QEMU is about to be spawned)."""
        self.gone = asyncio.get_running_loop().create_future()
        self.monitor.start().add_done_callback(self._watch_done)

    def _watch_done(self, task: asyncio.Task[bool]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:  # a bug: fail whoever waits rather than leave them hanging
            log.error("QMP watch of %s failed", self.uuid, exc_info=error)
            if self.gone is not None and not self.gone.done():
                self.gone.set_exception(DomainError(self.uuid, f"QMP watch failed: {error!r}"))
            return
        if not task.result():  # detached: QEMU runs on
            return
        process.reap(self.popen)
        reason = self.exit_reason()
        if self.gone is not None and not self.gone.done():
            self.gone.set_result(reason)
        self._on_gone(self, reason)

    def _on_event(self, name: str, data: Mapping[str, object]) -> None:
        log.debug("domain %s: event %s %s", self.uuid, name, dict(data))
        if name == "STOP":
            self.status = "paused"
        elif name == "RESUME":
            self.status = "running"
        elif name == "SHUTDOWN":
            self.status = "shutdown"
            self.shutdown_reason = str(data.get("reason", "shutdown"))
        elif name == "GUEST_PANICKED":
            self.shutdown_reason = "guest-panic"

    async def _on_connect(self, client: QMPClient) -> None:
        if self._fresh:
            # The first connection of a QEMU we just spawned with -S, listened for since before it
            # ran: nothing has happened that a query could tell, so cont need not wait for one.
            # (With -incoming defer it is "inmigrate"; _restore asks for itself.)
            self._fresh = False
            self.status = "prelaunch"
            return
        # Whatever happened while nobody listened, query-status tells.
        result = await asyncio.wait_for(client.execute("query-status"), 10)
        if isinstance(result, Mapping):
            self.status = str(result.get("status", "unknown"))
        log.info("domain %s: QMP connected, status %s", self.uuid, self.status)

    async def wait_gone(self, timeout: float) -> bool:
        """True once QEMU has exited, waiting up to ``timeout`` seconds."""
        if self.gone is None:
            return not self.alive()
        try:
            await asyncio.wait_for(asyncio.shield(self.gone), timeout)
        except TimeoutError:
            return False
        return True

    async def detach(self) -> None:
        """Stop watching; QEMU runs on."""
        await self.monitor.close()
        if self.popen is not None:
            process.disown(self.popen)
            self.popen = None

    # -- operations ------------------------------------------------------------------------------

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None, timeout: float = 30) -> object:
        return await self.monitor.execute(command, arguments, timeout)

    async def change_medium(self, device: str, fd: int | None, fmt: str, node: str, timeout: float) -> None:
        """Swap the medium of CD drive ``device`` for the image open at ``fd`` (None: leave it
        empty), as a user opening the tray would: open it, take the old disc out (its block node
        goes), put the new one in (a new read-only node on the descriptor), close it."""
        old = await self._medium(device, timeout)
        await self.execute("blockdev-open-tray", {"id": device, "force": True}, timeout)
        if old is not None:
            await self.execute("blockdev-remove-medium", {"id": device}, timeout)
            await self.execute("blockdev-del", {"node-name": old}, timeout)
        if fd is not None:
            fdset = await self.monitor.add_fd(fd, node, timeout)
            try:
                blockdev = {"driver": fmt, "node-name": node, "read-only": True,
                            "file": {"driver": "file", "filename": fdset_path(fdset)}}  # fmt: skip
                await self.execute("blockdev-add", blockdev, timeout)
            finally:
                # The node holds a copy of its own; the set's is closed now rather than with QEMU.
                await self.execute("remove-fd", {"fdset-id": fdset}, timeout)
            await self.execute("blockdev-insert-medium", {"id": device, "node-name": node}, timeout)
        await self.execute("blockdev-close-tray", {"id": device}, timeout)

    async def _medium(self, device: str, timeout: float) -> str | None:
        """The block node in drive ``device``, None when it is empty; DomainError when there is no such drive."""
        blocks = await self.execute("query-block", timeout=timeout)
        for block in blocks if isinstance(blocks, list) else []:
            qdev = str(block.get("qdev", ""))
            if qdev == device or qdev.endswith(f"/{device}"):
                if not block.get("removable"):
                    raise DomainError(self.uuid, f"drive {device} is not a CD drive")
                inserted = block.get("inserted")
                return str(inserted["node-name"]) if isinstance(inserted, Mapping) else None
        raise DomainError(self.uuid, f"the domain has no drive {device}")

    async def query_state(self, timeout: float) -> DomainState:
        result = await self.execute("query-status", timeout=timeout)
        if isinstance(result, Mapping):
            self.status = str(result.get("status", "unknown"))
        if self.status in _RUNNING:
            return DomainState.RUNNING
        return DomainState.HALTED if self.status in _HALTED else DomainState.PAUSED

    async def boot(self, paused: bool, restore_from: Path | None, timeout: float) -> None:
        """Bring a just-spawned QEMU (started with ``-S``) to running or paused.

        Args:
            paused: leave the vCPUs stopped.
            restore_from: load this saved state first.
            timeout: for each step.

        Raises:
            DomainError: QEMU exited or did not connect, or the restore failed.
        """
        await self.connected_or_exited(timeout)
        if restore_from is not None:
            await self._restore(restore_from, timeout)
        if not paused:
            await self.execute("cont", timeout=timeout)
        self.status = "paused" if paused else "running"

    async def connected_or_exited(self, timeout: float) -> None:
        """Wait for a just-spawned QEMU's first QMP connection; DomainError if it exits first."""
        assert self.gone is not None
        connect = asyncio.ensure_future(self.monitor.client(timeout))
        waiting: set[asyncio.Future[Any]] = {connect, self.gone}
        await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if connect.done():
            connect.result()
            return
        connect.cancel()
        self.gone.result()  # raises if the watch failed
        raise DomainError(self.uuid, f"QEMU failed to start: {self.qemu_error()}")

    async def _restore(self, path: Path, timeout: float) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            await self.incoming(fd, RESTORE_FD, timeout)
        finally:
            os.close(fd)  # QEMU holds its own copy now
        await self.wait_incoming(f"restoring from {path}", timeout)

    async def incoming(self, fd: int, name: str, timeout: float) -> None:
        """Have a QEMU started with ``-incoming defer`` load its state from ``fd`` (passed as ``name``)."""
        await self.monitor.send_fd(fd, name, timeout)
        await self.execute("migrate-incoming", {"uri": f"fd:{name}"}, timeout)

    async def wait_incoming(self, what: str, timeout: float) -> None:
        """Wait until the incoming state is loaded.

        The incoming side reports no completion event without capabilities; its run state leaves
        "inmigrate" when the state is loaded, and QEMU exits if loading fails.

        Raises:
            DomainError: loading failed (QEMU exited) or took longer than ``timeout``; ``what`` names it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            try:
                await self.query_state(timeout)
            except DomainError as exc:
                if not await self.wait_gone(EXIT_GRACE_S):
                    raise
                raise DomainError(self.uuid, f"{what} failed: {self.qemu_error()}") from exc
            if self.status != "inmigrate":
                return
            if loop.time() > deadline:
                raise DomainError(self.uuid, f"{what} took longer than {timeout:g} s")
            await asyncio.sleep(POLL_S)

    async def add_vnc_client(self, fd: int, timeout: float) -> None:
        """Hand QEMU's VNC server a connected socket (``getfd``, then ``add_client``)."""
        await self.monitor.send_fd(fd, VNC_FD, timeout)
        await self.execute("add_client", {"protocol": "vnc", "fdname": VNC_FD, "skipauth": True}, timeout)

    async def save(self, path: Path, timeout: float) -> None:
        """Stop the vCPUs and write the whole state to ``path`` (``migrate`` to a passed fd).

        Afterwards QEMU idles in ``postmigrate``; the caller ends it.

        Raises:
            DomainError: saving failed; the domain is running again if it was running before.
        """
        was_running = await self.query_state(timeout) is DomainState.RUNNING
        await self.execute("stop", timeout=timeout)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            await self.execute("migrate-set-parameters", {"max-bandwidth": SUSPEND_BANDWIDTH}, timeout)
            await self.monitor.send_fd(fd, SUSPEND_FD, timeout)
            await self.execute("migrate", {"uri": f"fd:{SUSPEND_FD}"}, timeout)
            await self.wait_migration(f"saving to {path}", timeout)
            await asyncio.to_thread(os.fsync, fd)
        except DomainError:
            if was_running and self.alive():
                with contextlib.suppress(DomainError):
                    await self.execute("cont", timeout=timeout)
            raise
        finally:
            os.close(fd)

    async def wait_migration(self, what: str, timeout: float) -> Mapping[str, Any]:
        """Wait for the outgoing migration to complete; its last ``query-migrate`` answer.

        Raises:
            DomainError: it failed or was cancelled, or took longer than ``timeout`` (then it is
                cancelled); ``what`` names it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            info = await self.execute("query-migrate", timeout=timeout)
            status = info.get("status") if isinstance(info, Mapping) else None
            if status == "completed" and isinstance(info, Mapping):
                return info
            if status in ("failed", "cancelled"):
                detail = info.get("error-desc", status) if isinstance(info, Mapping) else status
                raise DomainError(self.uuid, f"{what} failed: {detail}")
            if loop.time() > deadline:
                with contextlib.suppress(DomainError):
                    await self.execute("migrate_cancel", timeout=timeout)
                raise DomainError(self.uuid, f"{what} took longer than {timeout:g} s")
            await asyncio.sleep(POLL_S)

    async def quit(self, timeout: float) -> bool:
        """Ask QEMU to exit (``quit``, or SIGTERM while QMP is not connected, which QEMU treats
        alike); True once it has, within ``timeout`` seconds."""
        self.expected_exit = True
        if self.monitor.connected:
            # QEMU may exit before its answer is out; that is success too.
            with contextlib.suppress(DomainError):
                await self.execute("quit", timeout=timeout)
        elif self.pid is not None and self.alive():
            process.signal_pid(self.pid, signal.SIGTERM)
        return await self.wait_gone(timeout)

    async def rotate_serial(self, limit: int) -> None:
        """Start a new serial log once the current one exceeds ``limit`` bytes, losing nothing.

        The full log is renamed to ``serial.log.1``, where QEMU keeps writing until ``chardev-change``
        points the serial port at a new ``serial.log``; so every byte lands in one of the two, in
        order. The old log is then cut to its last ``limit`` bytes. QEMU may not create files, so
        the new log reaches it as a descriptor in a fd set of its own (``add-fd``), dropped from the
        set once the serial port holds its copy.
        """
        if _size(self.run.serial_log) <= limit or not self.monitor.connected:
            return
        os.replace(self.run.serial_log, self.run.serial_log_old)
        try:
            fd = self.run.open_serial()
            try:
                fdset = await self.monitor.add_fd(fd, "serial")
            finally:
                os.close(fd)
            backend = {"type": "file", "data": {"out": fdset_path(fdset), "append": True}}
            try:
                await self.execute("chardev-change", {"id": SERIAL_ID, "backend": backend})
            finally:
                # The set holds only a spare copy (QEMU closes it at exit): failing to drop it
                # must not undo a change that took.
                with contextlib.suppress(DomainError):
                    await self.execute("remove-fd", {"fdset-id": fdset})
        except (DomainError, OSError):
            os.replace(self.run.serial_log_old, self.run.serial_log)  # QEMU still writes to it
            raise
        await asyncio.to_thread(process.keep_tail, self.run.serial_log_old, limit)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
