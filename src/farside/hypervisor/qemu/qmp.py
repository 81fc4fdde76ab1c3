"""QMP for the QEMU driver: one asyncio loop in a thread of its own, one ``Monitor`` per VM.

Every QMP connection of a driver lives on a single event loop, run by ``LoopThread`` in a daemon
thread. The driver's synchronous methods, called from any thread, hand coroutines to it with
``asyncio.run_coroutine_threadsafe`` and wait for the result; nothing QMP-related is touched from
another thread.

The driver is the socket *server* and QEMU the client (``reconnect=1``). ``Monitor`` binds the VM's
socket path before QEMU starts and keeps it bound for as long as it watches the VM; it accepts a
connection, wraps it in a fresh ``qemu.qmp.QMPClient`` (``connect(sock)``), and when the connection
ends it either sees that QEMU has exited (and returns) or accepts QEMU's next attempt. Events sent
while nobody listened are lost, so the owner's ``on_connect`` queries the state after every
(re)connection (FACTS.md).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, TypeVar

from qemu.qmp import EventListener, ExecInterruptedError, ExecuteError, Message, QMPClient, QMPError, Runstate

from farside.hypervisor.errors import DomainError

log = logging.getLogger(__name__)

T = TypeVar("T")

# How often a monitor without a connection checks that its QEMU still lives.
LIVENESS_POLL_S = 0.25
# After a hang-up, how long QEMU may take to exit before the hang-up counts as a dropped connection.
EXIT_GRACE_S = 2.0
# A connected QEMU sends its greeting at once; a client that does not is dropped.
GREETING_TIMEOUT_S = 5.0
DEFAULT_COMMAND_TIMEOUT_S = 30.0


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self, name: str = "farside-qmp") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; returns at once."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and wait for its result (its own timeouts bound the wait)."""
        if self.in_loop():
            coro.close()
            raise RuntimeError("a driver method was called from the driver's own QMP thread")
        if self.loop.is_closed() or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the driver is closed")
        return self.submit(coro).result()

    def stop(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop():
            self._thread.join(10)


class _Sink(EventListener):
    """Hands every event to a callback; keeps neither a queue nor a history.

    qemu.qmp's own listeners remember every event, which a monitor that lives for months cannot.
    """

    def __init__(self, handler: Callable[[str, Mapping[str, object]], None]) -> None:
        super().__init__()
        self._handler = handler

    async def put(self, event: Message) -> None:
        data = event.get("data")
        self._handler(str(event["event"]), data if isinstance(data, Mapping) else {})


class Monitor:
    """The QMP connection of one VM, kept across QEMU's reconnections.

    Args:
        uuid: the VM, for errors and logs.
        socket_path: where to listen; QEMU was (or will be) started with this path.
        alive: whether the VM's QEMU still runs; polled while there is no connection.
        on_event: called with each event's name and data, on the loop.
        on_connect: awaited after each (re)connection, before anyone else may use it.
    """

    def __init__(
        self,
        uuid: str,
        socket_path: Path,
        alive: Callable[[], bool],
        on_event: Callable[[str, Mapping[str, object]], None],
        on_connect: Callable[[QMPClient], Awaitable[None]],
    ) -> None:
        self.uuid = uuid
        self.socket_path = socket_path
        self._alive = alive
        self._on_event = on_event
        self._on_connect = on_connect
        self._listener: socket.socket | None = None
        self._client: QMPClient | None = None
        self._changed = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[bool] | None = None

    def listen(self) -> None:
        """Bind the socket path, replacing a stale socket left by an earlier server."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fsencode(self.socket_path))
            sock.listen(4)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        # QEMU runs as another user: it may connect if it may enter the directory (the group).
        os.chown(self.socket_path, -1, os.stat(self.socket_path.parent).st_gid)
        os.chmod(self.socket_path, 0o660)
        self._listener = sock

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.runstate is Runstate.RUNNING

    def start(self) -> asyncio.Task[bool]:
        """Start serving on the running loop; the task ends True when QEMU has exited."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"qmp-{self.uuid}")
        return self._task

    async def _run(self) -> bool:
        if self._listener is None:
            self.listen()
        try:
            while not self._closing:
                conn = await self._accept()
                if conn is None:
                    return not self._closing
                await self._serve(conn)
                if not self._closing and await self._exited():
                    return True
                if not self._closing:
                    log.info("QMP of %s hung up while QEMU runs; waiting for it to reconnect", self.uuid)
            return False
        finally:
            self._drop_listener()

    async def _accept(self) -> socket.socket | None:
        """The next connection, or None once QEMU has exited or the monitor is closing."""
        assert self._listener is not None
        # One accept for the whole wait: cancelling and retrying it could drop a connection
        # that arrives just then (QEMU would retry a second later).
        accept = asyncio.ensure_future(asyncio.get_running_loop().sock_accept(self._listener))
        try:
            while not self._closing:
                done, _ = await asyncio.wait({accept}, timeout=LIVENESS_POLL_S)
                if done:
                    conn, _ = accept.result()
                    return conn
                if not self._alive():
                    return None
            return None
        finally:
            accept.cancel()

    async def _serve(self, conn: socket.socket) -> None:
        """Run one QMP session on an accepted connection until it ends."""
        client = QMPClient(self.uuid)
        # qemu.qmp's default listener would keep every event forever; ours takes its place.
        default, client.events = client.events, _Sink(self._on_event)
        client.register_listener(client.events)
        client.remove_listener(default)
        try:
            try:
                await asyncio.wait_for(client.connect(conn), GREETING_TIMEOUT_S)
            except (QMPError, OSError, TimeoutError) as exc:
                log.warning("QMP of %s: no session on a new connection: %s", self.uuid, exc)
                return
            try:
                await self._on_connect(client)
            except (QMPError, OSError, TimeoutError, DomainError) as exc:
                log.warning("QMP of %s: query after connecting failed: %s", self.uuid, exc)
            self._client = client
            self._notify()
            while client.runstate is Runstate.RUNNING:
                await client.runstate_changed()
        finally:
            self._client = None
            self._notify()
            await self._disconnect(client)
            conn.close()

    async def _exited(self) -> bool:
        """After a hang-up: has QEMU exited (True), or did only the connection drop (False)?"""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + EXIT_GRACE_S
        while loop.time() < deadline:
            if not self._alive():
                return True
            await asyncio.sleep(0.01)
        return not self._alive()

    async def _disconnect(self, client: QMPClient) -> None:
        # EOF from an exiting QEMU is re-raised here; it is expected, not an error.
        with contextlib.suppress(Exception):
            await client.disconnect()

    def _notify(self) -> None:
        self._changed.set()
        self._changed.clear()

    def _drop_listener(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    async def client(self, timeout: float) -> QMPClient:
        """The live connection, waiting up to ``timeout`` seconds for QEMU to (re)connect.

        Raises:
            DomainError: no connection within ``timeout``.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            client = self._client
            if client is not None and client.runstate is Runstate.RUNNING:
                return client
            remaining = deadline - loop.time()
            if remaining <= 0 or self._closing:
                raise DomainError(self.uuid, f"QEMU did not connect to QMP within {timeout:g} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, LIVENESS_POLL_S))

    async def execute(
        self, command: str, arguments: Mapping[str, object] | None = None, timeout: float = DEFAULT_COMMAND_TIMEOUT_S
    ) -> object:
        """Run a QMP command and return its result.

        Raises:
            DomainError: QEMU refused the command, did not answer in time, or went away.
        """
        client = await self.client(timeout)
        try:
            return await asyncio.wait_for(client.execute(command, arguments), timeout)
        except ExecuteError as exc:
            raise DomainError(self.uuid, f"QMP {command}: {exc}") from exc
        except (ExecInterruptedError, QMPError, OSError, EOFError) as exc:
            raise DomainError(self.uuid, f"QMP {command}: connection lost ({exc})") from exc
        except TimeoutError as exc:
            raise DomainError(self.uuid, f"QMP {command}: no answer within {timeout:g} s") from exc

    async def send_fd(self, fd: int, name: str, timeout: float = DEFAULT_COMMAND_TIMEOUT_S) -> None:
        """Give QEMU a copy of ``fd`` under ``name`` (``getfd``), for ``fd:<name>`` URIs."""
        await self._pass_fd(fd, "getfd", {"fdname": name}, timeout)

    async def add_fd(self, fd: int, label: str, timeout: float = DEFAULT_COMMAND_TIMEOUT_S) -> int:
        """Put a copy of ``fd`` in a new fd set (``add-fd``), for ``/dev/fdset/<id>`` names; its id."""
        result = await self._pass_fd(fd, "add-fd", {"opaque": label}, timeout)
        if not isinstance(result, Mapping) or not isinstance(result.get("fdset-id"), int):
            raise DomainError(self.uuid, f"add-fd returned {result!r}")
        return int(result["fdset-id"])

    async def _pass_fd(self, fd: int, command: str, arguments: Mapping[str, object], timeout: float) -> object:
        client = await self.client(timeout)
        try:
            client.send_fd_scm(fd)
        except (QMPError, OSError) as exc:
            raise DomainError(self.uuid, f"could not pass a file descriptor to QEMU: {exc}") from exc
        return await self.execute(command, arguments, timeout)

    async def close(self) -> None:
        """Stop watching: drop the connection and the listening socket; QEMU keeps running."""
        self._closing = True
        self._notify()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task})
        self._drop_listener()
