"""Reading one source file into the journal: only its data, chunk by chunk, re-read if it moved.

A file the mirror has not copied before (or whose target copy is gone) is written whole and sparse
into the journal's ``new/`` and renamed into place at apply: one write per byte, as ``cp`` does. A
file the target already has is compared chunk by chunk with the manifest; only the chunks whose
hash changed, or that the target changed on its own, go into the journal. Holes are never read:
SEEK_DATA finds the data, and chunks of zeros are kept as holes too.

A file is read between two fstat calls; if its size or times moved in between, something wrote it
while it was read, and it is read again, up to ``MAX_READS`` times. A file still moving after that
is left for the next cycle (lagging); its target copy stays as it was.

The kernel sets a file's mtime when a write starts, not when it ends, so a long write already
under way at the first fstat is invisible to the two calls. A file whose mtime is within
``RACY_NS`` of the read is therefore recorded as not settled (git's "racily clean" entries): the
next cycle reads it again and sends whatever differs, so such a copy is corrected one cycle later.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any, Protocol

from farside.mirror.chunks import CHUNK, Reader, count
from farside.mirror.errors import CycleStopped
from farside.mirror.journal import JournalWriter, stat_key
from farside.mirror.sparse import data_chunks
from farside.mirror.state import FileEntry

MAX_READS = 3
RACY_NS = 2_000_000_000


class Stop(Protocol):
    """Asked while a file is read whether the cycle must give up (a ``threading.Event`` is one)."""

    def is_set(self) -> bool: ...


def check_stop(stop: Stop | None) -> None:
    """Raise ``CycleStopped`` if asked to; looked at every chunk (a flock test: microseconds), so a
    cycle slowed down by ``--bwlimit`` stops as soon as a chunk is sent."""
    if stop is not None and stop.is_set():
        raise CycleStopped()


@dataclass
class Copied:
    """What reading one file produced: the journal operation, and its manifest entry."""

    op: dict[str, Any]
    entry: FileEntry
    bytes_read: int
    changed: bool


def chunk_hashes(fd: int, size: int) -> list[str | None]:
    """The hash of every chunk of an open file (None for holes and zeros): to see what a target changed."""
    hashes: list[str | None] = [None] * count(size)
    for index, _data, hash_ in Reader().hashed(fd, size, data_chunks(fd, size, CHUNK)):
        hashes[index] = hash_
    return hashes


def copy_new(path: str, rel: str, journal: JournalWriter, now: float, stop: Stop | None = None) -> Copied | None:
    """Read a file whole into a new journal file; None if it kept changing while read (or is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None  # removed (or renamed over) since the walk: the next cycle sees what is there

    try:
        for _ in range(MAX_READS):
            read_ns = time.time_ns()
            st0 = os.fstat(fd)
            staged_name, out = journal.new_file()
            try:
                hashes: list[str | None] = [None] * count(st0.st_size)
                read = 0
                indexes = data_chunks(fd, st0.st_size, CHUNK)
                for index, data, hash_ in journal.reader.hashed(fd, st0.st_size, indexes):
                    check_stop(stop)
                    read += len(data)
                    if hash_ is None:
                        continue
                    hashes[index] = hash_
                    out.send(data, index * CHUNK)
                st1 = os.fstat(fd)
                if stat_key(st0) != stat_key(st1):
                    out.close()
                    out.path.unlink()
                    continue
                os.ftruncate(out.fd, st0.st_size)
                os.fchmod(out.fd, st0.st_mode & 0o7777)
                os.utime(out.fd, ns=(st0.st_mtime_ns, st0.st_mtime_ns))
            except BaseException:
                out.close()
                raise
            # fsync and the end-to-end check run in the background while the next file is copied.
            journal.seal(out, hashes, st0.st_size, rel)
            op = {"op": "place", "path": rel, "staged": staged_name}
            entry = FileEntry(st0.st_size, hashes, settled_key(st0, read_ns), [], st0.st_mode & 0o7777, now)
            return Copied(op, entry, read, True)
        return None
    finally:
        os.close(fd)


def copy_changes(
    path: str, rel: str, old: FileEntry, dirty: set[int], journal: JournalWriter, now: float, stop: Stop | None = None
) -> Copied | None:
    """Read a file and journal the chunks that differ from ``old`` or are ``dirty`` at the target.

    Returns None if the file kept changing while read, or is gone since the walk.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None

    try:
        for _ in range(MAX_READS):
            read_ns = time.time_ns()
            st0 = os.fstat(fd)
            mark = journal.mark()
            size = st0.st_size
            hashes: list[str | None] = [None] * count(size)
            writes: list[list[object]] = []
            read = 0
            for index, data, hash_ in journal.reader.hashed(fd, size, data_chunks(fd, size, CHUNK)):
                check_stop(stop)
                read += len(data)
                if hash_ is None:
                    continue
                hashes[index] = hash_
                if _old(old, index) != hash_ or index in dirty:
                    writes.append([index, journal.add_chunk(data, hash_), len(data), hash_])
            holes = [i for i, h in enumerate(hashes) if h is None and (_old(old, i) is not None or i in dirty)]
            st1 = os.fstat(fd)
            if stat_key(st0) != stat_key(st1):
                journal.rollback(mark)
                continue
            mode = st0.st_mode & 0o7777
            changed = bool(writes or holes) or size != old.size or mode != old.mode
            op: dict[str, Any] = {
                "op": "chunks",
                "path": rel,
                "size": size,
                "mode": mode,
                "mtime_ns": st0.st_mtime_ns,
                "writes": writes,
                "holes": holes,
            }
            entry = FileEntry(size, hashes, settled_key(st0, read_ns), [], mode, now)
            return Copied(op, entry, read, changed)
        return None
    finally:
        os.close(fd)


def reserve_target(path: str, op: dict[str, Any], journal: JournalWriter) -> None:
    """Allocate the target ranges a chunk operation will write, so applying it cannot hit ENOSPC."""
    writes = op["writes"]
    if not writes:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        for index, _offset, length, _hash in writes:
            journal.writer.reserve(fd, index * CHUNK, length)
    finally:
        os.close(fd)


def settled_key(st: os.stat_result, read_ns: int) -> list[int]:
    """The stat key to record for a source read at ``read_ns``; one that never matches if it was racy."""
    key = stat_key(st)
    if st.st_mtime_ns >= read_ns - RACY_NS:
        key[0] = -1
    return key


def _old(entry: FileEntry, index: int) -> str | None:
    return entry.chunks[index] if index < len(entry.chunks) else None
