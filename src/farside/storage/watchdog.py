"""The fencing watchdog's rule: a pool's VMs may write into a LUN only while its lease there lives.

It runs outside the pool server (``farside watchdog``), so it fences when the server cannot: a
server that is stopped, frozen or dead renews no lease, and its QEMUs are processes of their own
that would go on writing. Once a LUN's lease has no more than the fence margin left (or is another
pool's, or a mirror replicates into the LUN) every QEMU writing into it is killed, before another
pool may take the LUN over (docs/storage.md, "Fencing"). Which QEMUs write where is the
hypervisor's to tell; this module only decides and calls back.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

from farside.config import Fencing
from farside.storage import lease
from farside.storage.lun import META_DIR
from farside.storage.mirror_marker import mirror_target

log = logging.getLogger(__name__)

W = TypeVar("W")
LOCK_FILE = "watchdog.lock"


def must_fence(lun: Path, pool_uuid: str, margin: float, now: float) -> str | None:
    """Why the QEMUs of pool ``pool_uuid`` must stop writing into ``lun`` now, or None."""
    try:
        if mirror_target(lun):
            return "a storage mirror replicates into it"
        current = lease.read(lun)
        on_lun = current is not None and current.on(lun)
    except OSError as exc:
        return f"its lease cannot be read ({exc.strerror or exc})"
    if current is None or not on_lun or current.pool_uuid != pool_uuid:
        return "this pool holds no lease on it"
    if current.expiry - margin <= now:
        return f"its lease was last renewed at {lease.describe_time(current.heartbeat)} and ends at " + (
            current.describe_expiry()
        )
    return None


class Watchdog(Generic[W]):
    """Kills the writers of every LUN whose lease lapses; runs while the server or a writer does.

    Args:
        pool_uuid: the pool whose VMs run on this host.
        fencing: the margin, interval and kill timeout.
        writers: the live QEMUs by directory they write into.
        kill: ends one QEMU; True once it is gone.
        server_alive: whether the pool server still exists (stopped counts as alive).
    """

    def __init__(
        self,
        pool_uuid: str,
        fencing: Fencing,
        writers: Callable[[], Mapping[Path, Sequence[W]]],
        kill: Callable[[W, float], bool],
        server_alive: Callable[[], bool],
    ) -> None:
        self._pool_uuid = pool_uuid
        self._fencing = fencing
        self._writers = writers
        self._kill = kill
        self._server_alive = server_alive

    def check(self) -> bool:
        """One round: fence where needed; whether any QEMU is left writing into a LUN."""
        left = False
        for directory, writers in self._writers().items():
            if not (directory / META_DIR).is_dir():
                continue  # not a LUN: no lease governs it
            why = must_fence(directory, self._pool_uuid, self._fencing.fence_margin_s, time.time())
            if why is None:
                left = True
                continue
            for writer in writers:
                gone = self._kill(writer, self._fencing.kill_timeout_s)
                log.error(
                    "fenced %s writing into %s (%s): %s", writer, directory, "killed" if gone else "NOT gone", why
                )
                left = left or not gone
        return left

    def run(self) -> None:
        """Until the server is gone and no QEMU of this pool writes into a LUN."""
        f = self._fencing
        log.info("watching the VMs of pool %s: fencing %g s before a lease ends, checking every %g s",
                 self._pool_uuid, f.fence_margin_s, f.watchdog_interval_s)  # fmt: skip
        while True:
            writing = self.check()
            if not writing and not self._server_alive():
                log.warning("the pool server is gone and no VM writes into a LUN: the watchdog stops")
                return
            time.sleep(self._fencing.watchdog_interval_s)


@contextmanager
def sole(run_root: Path) -> Iterator[bool]:
    """Whether this is the one watchdog of ``run_root`` (held for the block); a second one is not.
    The holder's pid is in the lock file, for whoever stops a site (``farside lab down``)."""
    fd = os.open(run_root / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield True
    finally:
        os.close(fd)


def running(run_root: Path) -> bool:
    """Whether a watchdog holds ``run_root`` now."""
    fd = os.open(run_root / LOCK_FILE, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # (releases the shared lock, if it was taken)
    return False
