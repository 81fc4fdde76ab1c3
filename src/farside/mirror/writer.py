"""Every write the mirror makes at the target goes through a ``TargetWriter``.

One place for target writes gives the bandwidth limit a home, counts the bytes written, and lets a
test put a hook in the writer (an ``ENOSPC`` after so many bytes) without a special filesystem.
"""

from __future__ import annotations

import os
import time

from farside.mirror import sparse

MIB = 1 << 20


class TargetWriter:
    """Writes at the target, counted; ``bwlimit`` (MiB/s) paces the bytes sent.

    Args:
        bwlimit: at most this many MiB per second into the journal, or None for no limit.
    """

    def __init__(self, bwlimit: float | None = None) -> None:
        self.bwlimit = bwlimit
        self.written = 0
        self.sent = 0
        self._paced_since = time.monotonic()

    def write(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        """Write all of ``data`` at ``offset``."""
        view = memoryview(data)
        while view:
            n = os.pwrite(fd, view, offset)
            view = view[n:]
            offset += n
            self.written += n

    def send(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        """Write data that crosses from the source into the journal: counted as sent, and paced."""
        self.write(fd, data, offset)
        self.sent += len(data)
        if self.bwlimit:
            due = self._paced_since + self.sent / (self.bwlimit * MIB)
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)

    def reserve(self, fd: int, offset: int, length: int) -> None:
        """Allocate space for a range of a target file that the apply will write."""
        sparse.reserve(fd, offset, length)
