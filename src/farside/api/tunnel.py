"""``CONNECT /console?...``: an HTTP connection turned into a console's byte stream.

xapi and XenCenter reach a VNC console this way: the client sends ``CONNECT <location path>
HTTP/1.x`` with ``session_id`` in the query, the server answers ``HTTP/1.1 200 OK`` and from then
on carries bytes both ways until either side closes. A refusal is an HTTP 4xx answer carrying the
XenAPI failure, as the other HTTP handlers give (api/http.py), and the connection closes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

from farside.api.http import status_of
from farside.errors import FarsideError

log = logging.getLogger(__name__)
# A CONNECT request's head larger than this is not a console client's.
MAX_HEAD = 16 << 10
CHUNK = 64 << 10
# Above this much unsent output the tunnel stops reading the console until the client catches up.
HIGH_WATER = 1 << 20
_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 400: "Bad Request", 409: "Conflict"}

Opener = Callable[[str], socket.socket]


def is_connect(data: bytes) -> bool:
    """Whether a connection's first bytes begin a CONNECT request."""
    return data[:8].upper() == b"CONNECT "


class Tunnel:
    """One CONNECT: opens the console for the target on a worker thread, then relays."""

    def __init__(self, transport: asyncio.Transport, open_console: Opener) -> None:
        self._transport = transport
        self._open = open_console
        self._head = b""
        self._early = bytearray()  # client bytes after the head, before the console is open
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None

    def received(self, data: bytes) -> None:
        if self._task is None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_HEAD:
                    self._answer(400, "request head too large")
                return
            head, self._early[:] = self._head[:end], self._head[end + 4 :]
            self._task = asyncio.get_running_loop().create_task(self._run(head))
        elif self._writer is not None:
            self._writer.write(data)
        else:
            self._early += data

    @property
    def opened(self) -> bool:
        """Whether the request's head has come (the console is being opened, or is open)."""
        return self._task is not None

    def lost(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._writer is not None:
            self._writer.close()

    async def _run(self, head: bytes) -> None:
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            self._answer(400, "malformed CONNECT request line")
            return
        try:
            console = await asyncio.to_thread(self._open, parts[1].decode("latin-1"))
        except FarsideError as exc:
            self._answer(status_of(exc), " ".join(exc.failure))
            return
        try:
            console.setblocking(False)
            reader, self._writer = await asyncio.open_connection(sock=console)
        except BaseException:
            console.close()
            raise
        self._transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        self._writer.write(bytes(self._early))
        self._early.clear()
        try:
            while data := await reader.read(CHUNK):
                self._transport.write(data)
                while self._transport.get_write_buffer_size() > HIGH_WATER and not self._transport.is_closing():
                    await asyncio.sleep(0.01)
        except (ConnectionError, OSError):
            pass  # the console went (the VM stopped): the client sees the connection close
        finally:
            self._writer.close()
            self._transport.close()

    def _answer(self, status: int, text: str) -> None:
        body = (text + "\n").encode()
        reason = _REASONS.get(status, "Error")
        self._transport.write(
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        self._transport.close()
