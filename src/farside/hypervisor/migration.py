"""Live migration's contract: how the migration stream travels, and what a migration reports.

A live migration moves a running domain into a new hypervisor process while the guest runs on:
memory is copied while the guest writes it, then the guest stops for the last pages and its
device state (the *downtime*) and continues in the new process. The stream goes from the source
QEMU to the destination's over a ``Transport``, a parameter of ``Driver.migrate``, so that the
move to another host later is a new transport, not a new migration: on one host it is a pair of
connected Unix sockets (``LocalTransport``, xapi's localhost migration); between hosts it would be
a connection to the other host's agent, whose receiving end the agent hands to its own QEMU.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass


class Transport:
    """Carries one migration stream. Subclasses implement ``channel``."""

    @contextlib.contextmanager
    def channel(self) -> Iterator[tuple[int, int]]:
        """Two connected stream descriptors ``(send, receive)``: the source QEMU writes to ``send``,
        the destination reads ``receive``. Both are closed when the block ends (each QEMU holds its
        own copy by then)."""
        raise NotImplementedError
        yield  # pragma: no cover


class LocalTransport(Transport):
    """Source and destination on this host: a socketpair, so that neither QEMU opens a socket path
    (they may create no file) and nothing but the two processes can reach the stream."""

    @contextlib.contextmanager
    def channel(self) -> Iterator[tuple[int, int]]:
        send, receive = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with send, receive:
            yield send.fileno(), receive.fileno()


@dataclass(frozen=True)
class MigrationReport:
    """What a migration measured.

    Args:
        domid: the domain's id in its new process.
        total_s: from the start of the migration to the guest running in the new process.
        downtime_s: how long the guest's vCPUs were stopped (QEMU's downtime plus the switch).
        transferred_bytes: the size of the stream.
    """

    domid: int
    total_s: float
    downtime_s: float
    transferred_bytes: int
