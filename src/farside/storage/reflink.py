"""Copy-on-write file clones (reflinks), where the LUN's filesystem has them (XFS, btrfs).

A reflink shares the source's extents with the new file: it takes the same few milliseconds for
any size, and the copies part only where one of them is written later. Each file stays a whole,
self-contained image of its own (no backing chain): the sharing is the filesystem's business.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

# linux/fs.h: _IOW(0x94, 9, int)
FICLONE = 0x40049409
# What a filesystem (or a pair of them) without reflinks answers: fall back to a copy.
_UNSUPPORTED = frozenset({errno.EOPNOTSUPP, errno.ENOTTY, errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EBADF})


def clone(source: Path, target: Path) -> bool:
    """Make ``target`` (which must not exist) a reflink of ``source``; False, leaving no
    ``target`` behind, where the filesystem cannot. Neither path may be a symlink."""
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        try:
            fcntl.ioctl(dst, FICLONE, src)
            os.fsync(dst)
        except OSError as exc:
            os.close(dst)
            target.unlink(missing_ok=True)
            if exc.errno in _UNSUPPORTED:
                return False
            raise
        except BaseException:
            os.close(dst)
            target.unlink(missing_ok=True)
            raise
        os.close(dst)
        return True
    finally:
        os.close(src)


def supported(directory: Path) -> bool:
    """Whether files in ``directory`` can be reflinked (tried on two scratch files)."""
    probe = directory / f".reflink-probe.{os.getpid()}"
    copy = directory / f".reflink-probe.{os.getpid()}.copy"
    try:
        probe.write_bytes(b"\0" * 4096)
        return clone(probe, copy)
    finally:
        probe.unlink(missing_ok=True)
        copy.unlink(missing_ok=True)
