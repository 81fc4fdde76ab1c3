"""A plugged SR's lease on its LUN: one LUN, one pool.

The lease names the owning pool, its host, a heartbeat and an expiry, and the identity of the
physical directory it was taken on (filesystem device and inode). A copy of the LUN (a mirror,
``cp -a``) is another directory, so the lease inside it is not live there: the copy can be plugged
at the other site while the original runs. An expired lease is taken over only when no image on
the LUN is held open by a running QEMU, and only ``takeover_wait`` seconds after it expired: by then
the holder's watchdog has killed every QEMU of the holder's that used the LUN (docs/storage.md,
"Fencing"). Acquiring holds an flock on the LUN so two pools cannot race.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from farside.config import Fencing
from farside.storage.errors import BackendFailure, LunLeased
from farside.storage.files import read_json, write_json
from farside.storage.lun import META_DIR
from farside.storage.mirror_marker import mirror_target, refuse_mirror_target

# The defaults of config.Fencing, for callers that hold no server settings.
DEFAULT_LEASE_S = Fencing.lease_ttl_s
DEFAULT_TAKEOVER_WAIT_S = Fencing.takeover_wait_s
LEASE_FILE = "lease.json"
# Taking or renewing a lease holds its lock for milliseconds; waiting longer means a frozen holder.
LOCK_WAIT_S = 5.0


@dataclass(frozen=True)
class Lease:
    pool_uuid: str
    pool_name: str
    host: str
    heartbeat: float  # seconds since the epoch
    expiry: float
    device: int  # st_dev and st_ino of the LUN directory the lease was taken on
    inode: int

    def live_on(self, lun: Path, now: float) -> bool:
        """Whether this lease binds ``lun``: the same physical directory, and not expired."""
        return self.on(lun) and self.expiry > now

    def on(self, lun: Path) -> bool:
        """Whether this lease was taken on ``lun`` itself (not on the original of a copy)."""
        st = lun.stat()
        return (st.st_dev, st.st_ino) == (self.device, self.inode)

    def describe_expiry(self) -> str:
        return describe_time(self.expiry)


def describe_time(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read(lun: Path) -> Lease | None:
    path = lun / META_DIR / LEASE_FILE
    try:
        return Lease(**read_json(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        return None  # a torn or foreign lease file is no lease; the next write replaces it


@contextmanager
def _locked(lun: Path) -> Iterator[None]:
    """The LUN's lease lock, waited for a bounded time: a holder frozen (SIGSTOP) while it holds the
    lock must not hang another pool's plug, nor this pool's heartbeat."""
    fd = os.open(lun / META_DIR / "lease.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BackendFailure(
                        "LEASE", f"the lease of {lun} has been locked by another process for {LOCK_WAIT_S:g} s; retry"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def acquire(
    lun: Path,
    pool_uuid: str,
    pool_name: str,
    host: str,
    images_in_use: Callable[[], bool],
    duration: float = DEFAULT_LEASE_S,
    takeover_wait: float = DEFAULT_TAKEOVER_WAIT_S,
) -> Lease:
    """Take (or renew) the lease for this pool.

    Raises:
        LunIsMirrorTarget: a storage mirror is replicating into the LUN (split it first).
        BackendFailure: SR_BACKEND_FAILURE_LEASE, the lease stayed locked by another process.
        LunLeased: another pool's lease on this very directory is live, or expired less than
            ``takeover_wait`` seconds ago (its holder's watchdog may still be fencing), or a
            running QEMU still holds one of the LUN's images.
    """
    with _locked(lun):
        refuse_mirror_target(lun)
        now = time.time()
        current = read(lun)
        if current is not None and current.pool_uuid != pool_uuid and current.on(lun):
            free_from = current.expiry + takeover_wait
            if free_from > now or images_in_use():
                raise LunLeased(
                    str(lun), current.pool_uuid, current.pool_name, current.describe_expiry(), describe_time(free_from)
                )
        return _write(lun, pool_uuid, pool_name, host, now, duration)


def renew(lun: Path, pool_uuid: str, pool_name: str, host: str, duration: float = DEFAULT_LEASE_S) -> Lease | None:
    """Extend our lease; None (and nothing written) if another pool took this very directory
    over, or a mirror replicates into it. A lease copied in from another directory binds
    nothing and is replaced.

    Raises:
        OSError: the lease could not be written (a full filesystem, a LUN gone).
        BackendFailure: SR_BACKEND_FAILURE_LEASE, the lease stayed locked by another process.
    """
    with _locked(lun):
        if mirror_target(lun):
            return None
        current = read(lun)
        if current is not None and current.pool_uuid != pool_uuid and current.on(lun):
            return None
        return _write(lun, pool_uuid, pool_name, host, time.time(), duration)


def release(lun: Path, pool_uuid: str) -> None:
    """Give the lease up, if it is ours."""
    with _locked(lun):
        current = read(lun)
        if current is not None and current.pool_uuid == pool_uuid:
            (lun / META_DIR / LEASE_FILE).unlink(missing_ok=True)


def _write(lun: Path, pool_uuid: str, pool_name: str, host: str, now: float, duration: float) -> Lease:
    st = lun.stat()
    lease = Lease(pool_uuid, pool_name, host, now, now + duration, st.st_dev, st.st_ino)
    write_json(lun / META_DIR / LEASE_FILE, asdict(lease))
    return lease
