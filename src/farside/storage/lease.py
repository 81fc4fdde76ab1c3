"""A plugged SR's lease on its LUN: one LUN, one pool.

The lease names the owning pool, its host, a heartbeat and an expiry, and the identity of the
physical directory it was taken on (filesystem device and inode). A copy of the LUN (a mirror,
``cp -a``) is another directory, so the lease inside it is not live there: the copy can be plugged
at the other site while the original runs. An expired lease is taken over only when no image on
the LUN is held open by a running QEMU, so a pool whose server died while its VMs run cannot lose
its disks to another pool. Acquiring holds an flock on the LUN so two pools cannot race.
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

from farside.storage.errors import LunLeased
from farside.storage.files import read_json, write_json
from farside.storage.lun import META_DIR
from farside.storage.mirror_marker import mirror_target, refuse_mirror_target

# A lease lives this long without a heartbeat; the holder renews it every third of that.
DEFAULT_LEASE_S = 30.0
RENEW_INTERVAL_S = DEFAULT_LEASE_S / 3
LEASE_FILE = "lease.json"


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
        st = lun.stat()
        return (st.st_dev, st.st_ino) == (self.device, self.inode) and self.expiry > now

    def describe_expiry(self) -> str:
        return dt.datetime.fromtimestamp(self.expiry, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    fd = os.open(lun / META_DIR / "lease.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
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
) -> Lease:
    """Take (or renew) the lease for this pool.

    Raises:
        LunIsMirrorTarget: a storage mirror is replicating into the LUN (split it first).
        LunLeased: another pool's lease on this very directory is live, or it has expired but a
            running QEMU still holds one of the LUN's images.
    """
    with _locked(lun):
        refuse_mirror_target(lun)
        now = time.time()
        current = read(lun)
        if current is not None and current.pool_uuid != pool_uuid:
            st = lun.stat()
            same_lun = (st.st_dev, st.st_ino) == (current.device, current.inode)
            if same_lun and (current.expiry > now or images_in_use()):
                raise LunLeased(str(lun), current.pool_uuid, current.pool_name, current.describe_expiry())
        return _write(lun, pool_uuid, pool_name, host, now, duration)


def renew(lun: Path, pool_uuid: str, pool_name: str, host: str, duration: float = DEFAULT_LEASE_S) -> bool:
    """Extend our lease; False (and nothing written) if another pool holds the LUN now, or a
    mirror replicates into it."""
    with _locked(lun):
        if mirror_target(lun):
            return False
        current = read(lun)
        if current is not None and current.pool_uuid != pool_uuid and current.live_on(lun, time.time()):
            return False
        _write(lun, pool_uuid, pool_name, host, time.time(), duration)
        return True


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
