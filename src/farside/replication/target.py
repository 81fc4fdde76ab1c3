"""One metadata VDI being written: its file, and the thread that writes to it.

Commits are queued in order; the writer thread takes everything queued, writes it as delta
records in one go and makes it durable with one fdatasync, then acknowledges every commit in the
batch (group commit: concurrent writers share fsyncs). A full copy is written to the other half
when the writer starts, when the current half is full, and after a failure. A failing target is
retried with back-off (2 s doubling to 120 s) and never holds anyone up for more than
``STALL_S`` seconds: the committer waits that long at most, then goes on, and the target is
reported stale (``metadata_latest = false``) until it catches up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farside.replication import format as fmt

log = logging.getLogger(__name__)

STALL_S = 2.0
BACKOFF_FIRST_S = 2.0
BACKOFF_MAX_S = 120.0
# Full copies are taken by this callable: (generation, payload) from a consistent read.
FullSource = Callable[[], tuple[int, dict[str, Any]]]
# Told when a target's health or progress changes: (vdi ref, healthy, generation, written).
StatusSink = Callable[[str, bool, int, str], None]


class MetadataFile:
    """The byte layout of one metadata VDI, written with pwrite and fdatasync, its records
    authenticated under the pool's DR ``key``."""

    def __init__(self, path: Path, half_size: int, key: bytes) -> None:
        self.path = path
        self.half_size = half_size
        self.key = key
        self.fd = os.open(path, os.O_RDWR)
        # The half holding the newest complete copy must survive until a new full copy is whole
        # in the other half: find it, so the first write after a restart goes to the other one.
        self.half = _current_half(path, half_size, key)
        self.offset = 0
        self.epoch = b""
        self.sequence = 0
        self.pool_uuid = ""

    def close(self) -> None:
        os.close(self.fd)

    def write_full(self, generation: int, payload: dict[str, Any]) -> None:
        """A new full copy in the half that is not current, then the header points at it."""
        half = 0 if self.half != 0 else 1
        epoch = fmt.new_epoch()
        pool_uuid = payload["pool_uuid"]
        record = fmt.encode_record(fmt.FULL, epoch, 0, generation, payload, key=self.key, pool_uuid=pool_uuid)
        if len(record) > self.half_size:
            raise OSError(f"the pool's metadata ({len(record)} bytes) does not fit a {self.half_size}-byte half")
        os.pwrite(self.fd, record, fmt.half_offset(half, self.half_size))
        os.fdatasync(self.fd)
        os.pwrite(self.fd, fmt.encode_header(self.half_size, half), 0)
        os.fdatasync(self.fd)
        self.half, self.offset, self.epoch, self.sequence = half, len(record), epoch, 0
        self.pool_uuid = pool_uuid

    def append(self, deltas: list[tuple[int, dict[str, Any]]]) -> bool:
        """Write deltas after the last record; False (nothing written) when the half is full."""
        records = []
        sequence = self.sequence
        for generation, payload in deltas:
            sequence += 1
            records.append(
                fmt.encode_record(
                    fmt.DELTA, self.epoch, sequence, generation, payload, key=self.key, pool_uuid=self.pool_uuid
                )
            )
        data = b"".join(records)
        if self.offset + len(data) > self.half_size:
            return False
        os.pwrite(self.fd, data, fmt.half_offset(self.half, self.half_size) + self.offset)
        os.fdatasync(self.fd)
        self.offset += len(data)
        self.sequence = sequence
        return True


def _current_half(path: Path, half_size: int, key: bytes) -> int:
    # Ranked with our key: a half someone planted, however new it claims to be, is overwritten first.
    with open(path, "rb") as fh:
        reports = [fmt.read_half(fh, index, half_size, lambda _: key) for index in (0, 1)]
    best = max(reports, key=lambda r: r.rank())
    return best.index if best.authenticated else fmt.NO_HALF


@dataclass
class _Pending:
    generation: int
    payload: dict[str, Any]


class Target:
    """A metadata VDI kept current by its own writer thread."""

    def __init__(
        self, vdi: str, path: Path, half_size: int, key: bytes, full_source: FullSource, status: StatusSink
    ) -> None:
        self.vdi = vdi
        self.path = path
        self.half_size = half_size
        self.key = key
        self._full_source = full_source
        self._status = status
        self._queue: list[_Pending] = []
        self._cond = threading.Condition()
        self._acked = -1
        self._written = ""
        self._healthy = False
        self._need_full = True
        self._stopping = False
        self._file: MetadataFile | None = None
        self._thread = threading.Thread(target=self._run, name=f"metadata-{vdi[-8:]}", daemon=True)
        self.bytes_written = 0

    # -- used by committers -------------------------------------------------------------------

    def start_and_write_full(self) -> None:
        """Open the file and write a full copy now; raises what went wrong (for enable)."""
        self._write_full()
        self._thread.start()

    def enqueue(self, generation: int, payload: dict[str, Any]) -> None:
        with self._cond:
            self._queue.append(_Pending(generation, payload))
            self._cond.notify_all()

    def wait_for(self, generation: int, deadline: float) -> bool:
        """Wait until ``generation`` is durable here, or ``deadline`` passes; False on a stall.

        A target already reported stale holds nobody up: it catches up with a full copy later.
        """
        with self._cond:
            if not self._healthy:
                return self._acked >= generation
            while self._acked < generation and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            done = self._acked >= generation
        if not done and self._healthy:
            self._healthy = False
            log.warning("metadata VDI %s stalled for %.0f s; it is no longer current", self.vdi, STALL_S)
            self._status(self.vdi, False, self._acked, self._written)
        return done

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._thread.is_alive():
            # Stuck in a write: closing its descriptor now could let the number be reused and the
            # late write land in another file. The thread closes it when it comes back.
            log.warning("metadata VDI %s: the writer is stuck; it will close its file when it returns", self.vdi)
            return
        if self._file is not None:
            self._file.close()
            self._file = None

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def generation(self) -> int:
        return self._acked

    # -- the writer thread ------------------------------------------------------------------

    def _write_full(self) -> None:
        if self._file is None:
            self._file = MetadataFile(self.path, self.half_size, self.key)
        generation, payload = self._full_source()
        self._file.write_full(generation, payload)
        self.bytes_written += self._file.offset
        with self._cond:
            self._queue = [p for p in self._queue if p.generation > generation]
            self._acked = max(self._acked, generation)
            self._written = payload["written"]
            self._need_full = False
            self._healthy = True
            self._cond.notify_all()
        self._status(self.vdi, True, generation, payload["written"])

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while True:
            with self._cond:
                while not self._queue and not self._need_full and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    if self._file is not None and threading.current_thread() is self._thread:
                        self._file.close()
                        self._file = None
                    return
                batch, self._queue = self._queue, []
            try:
                if self._need_full:
                    self._write_full()
                elif batch:
                    self._append(batch)
                backoff = BACKOFF_FIRST_S
            except OSError as exc:
                log.error("metadata VDI %s: %s; retrying in %.0f s", self.vdi, exc, backoff)
                with self._cond:
                    self._need_full = True
                    self._healthy = False
                self._status(self.vdi, False, self._acked, self._written)
                with self._cond:
                    self._cond.wait_for(lambda: self._stopping, backoff)
                backoff = min(backoff * 2, BACKOFF_MAX_S)

    def _append(self, batch: list[_Pending]) -> None:
        assert self._file is not None
        before = self._file.offset
        if not self._file.append([(p.generation, p.payload) for p in batch]):
            self._write_full()  # the half is full: a fresh full copy covers the batch too
            return
        self.bytes_written += self._file.offset - before
        with self._cond:
            self._acked = max(self._acked, batch[-1].generation)
            self._written = batch[-1].payload["written"]
            self._healthy = True
            self._cond.notify_all()
        self._status(self.vdi, True, self._acked, self._written)
