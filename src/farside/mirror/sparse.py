"""Sparse files: where a file's data lies (SEEK_DATA/SEEK_HOLE), and fallocate for holes and space.

Python's ``os`` has ``posix_fallocate`` but not Linux's ``fallocate`` with flags, which punching a
hole and reserving space without changing the size both need; it is called through libc.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
from collections.abc import Iterator

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_fallocate = _libc.fallocate
_fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_fallocate.restype = ctypes.c_int


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    """Linux fallocate(2); raises OSError (ENOSPC when there is no room)."""
    if length <= 0:
        return
    if _fallocate(fd, mode, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Make ``[offset, offset+length)`` a hole, keeping the file's size; it then reads as zeros."""
    fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)


def reserve(fd: int, offset: int, length: int) -> None:
    """Allocate blocks for a range without changing what the file reads or its size.

    Done before a journal commits, so that applying it in place cannot run out of space halfway.
    """
    fallocate(fd, FALLOC_FL_KEEP_SIZE, offset, length)


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """The ``(start, end)`` ranges of ``fd`` that hold data, in order; holes are skipped."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data after pos: the rest is a hole
                return
            raise
        try:
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # truncated since SEEK_DATA: the caller's fstat sees it
                return
            raise
        if start >= size:
            return
        yield start, end
        pos = end


def data_chunks(fd: int, size: int, chunk: int) -> list[int]:
    """The indexes of the ``chunk``-sized chunks of ``fd`` that hold any data."""
    found: list[int] = []
    for start, end in data_extents(fd, size):
        first = start // chunk
        last = (end - 1) // chunk
        if found and found[-1] >= first:
            first = found[-1] + 1
        found.extend(range(first, last + 1))
    return found
