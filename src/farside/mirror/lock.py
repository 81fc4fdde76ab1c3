"""Coordination between commands and the daemon: flocks in the mirror's state directory.

``mirror.lock`` is held for every change to the mirror or its target: a cycle, split, reverse,
resync, snapshot, delete. A command waits for it, so a command issued while the daemon copies runs
right after that cycle. ``daemon.lock`` is held by a running ``farside mirror run`` for its whole
life, so that one daemon at a time serves a mirror and ``status`` can say whether one runs.
flocks die with their process, so a killed daemon leaves no stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MIRROR_LOCK = "mirror.lock"
DAEMON_LOCK = "daemon.lock"


@contextmanager
def held(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on ``path`` (created if missing), waiting for it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def try_hold(path: Path) -> int | None:
    """Take an exclusive flock on ``path`` without waiting: its fd (keep it open), or None if held."""
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
