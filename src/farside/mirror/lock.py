"""Coordination between commands and the daemon: flocks in the mirror's state directory.

``mirror.lock`` is held for every change to the mirror or its target: a cycle, split, reverse,
resync, snapshot, delete. A command waits for it, so a command issued while the daemon copies runs
right after that cycle. ``daemon.lock`` is held by a running ``farside mirror run`` for its whole
life, so that one daemon at a time serves a mirror and ``status`` can say whether one runs.
``preempt.lock`` is held by a command that must not wait for a cycle to end (pause, delete) while
it waits for ``mirror.lock``: the cycle in progress sees it (``Preemption``) and gives up before its
commit. ``split.lock`` is the same for split, except that the first cycle does not give up for it:
a split before any completed cycle would be refused anyway, so it waits for the first sync rather
than throw away the only progress there is. A failover's split thus never waits out a long cycle.
flocks die with their process, so a killed daemon leaves no stale lock behind, and a killed
command no stale request.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIRROR_LOCK = "mirror.lock"
DAEMON_LOCK = "daemon.lock"
PREEMPT_LOCK = "preempt.lock"
SPLIT_LOCK = "split.lock"


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing), waiting for it.

    Raises:
        FileNotFoundError: the directory of ``path`` is gone (the mirror was deleted meanwhile).
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            current = still_at(fd, path)
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        # The file was removed while we waited (a delete): a lock on it guards nothing.
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)


def still_at(fd: int, path: Path) -> bool:
    """Whether the open lock file ``fd`` is still the file at ``path`` (not removed or replaced):
    a lock on a file no longer there guards nothing."""
    ours = os.fstat(fd)
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    return (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino)


class Preemption:
    """Whether a cycle should give up: its own ``stop`` is set, or a command holds ``preempt.lock``
    (or ``split.lock``, unless the cycle is the mirror's first).

    Has ``is_set`` like the ``threading.Event`` it wraps, so a cycle checks one flag for all.
    """

    def __init__(self, mirror_dir: Path, first: bool, stop: threading.Event | None = None) -> None:
        self.stop = stop
        names = [PREEMPT_LOCK] if first else [PREEMPT_LOCK, SPLIT_LOCK]
        self._fds = [os.open(mirror_dir / name, os.O_RDWR | os.O_CREAT, 0o644) for name in names]

    def is_set(self) -> bool:
        if self.stop is not None and self.stop.is_set():
            return True
        for fd in self._fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
        return False

    def close(self) -> None:
        for fd in self._fds:
            os.close(fd)
        self._fds = []


def try_hold(path: Path) -> int | None:
    """Take an exclusive flock on ``path`` without waiting: its fd (keep it open), or None if held.

    Raises:
        FileNotFoundError: the directory of ``path`` is gone (the mirror was deleted).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def holder(path: Path) -> int | None:
    """The pid written by whoever holds ``path`` now, or None if nobody does."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = path.read_text().strip()
            return int(text) if text.isdigit() else 0
        return None
    finally:
        os.close(fd)
