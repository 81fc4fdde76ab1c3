"""The target-side journal: a cycle's changes made durable first, then applied in place.

    TARGET/.farside-mirror/journal/
      data          the changed chunks, one after the other
      new/<n>       whole new files, written sparse, to be renamed into place
      index.json    the commit: the operations, the manifest changes and the record update

Nothing in the target's own files changes until ``index.json`` exists, and ``index.json`` is
written (atomically) only once ``data`` and every new file are fsynced and read back against their
chunk hashes. New files, the bulk of a first sync, bypass the page cache (``O_DIRECT``): their
writes go to the disk as they are made, the read-back reads the disk, not a cached copy, and the
mirror neither evicts the pool's cached data nor pays to fill memory with pages nobody reads again.

Applying is idempotent (writes of the same bytes, renames that are skipped once done, removals of
what is gone), so a crash while applying is finished by applying again: ``replay`` runs before
anything else touches the target. A journal without ``index.json`` was never committed and is
thrown away; the target still holds the previous cycle.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from farside.mirror import sparse
from farside.mirror.chunks import ALIGN, CHUNK, LEGACY_HASH, Reader, digest
from farside.mirror.writer import TargetWriter
from farside.storage.files import fsync_dir, read_json, write_json
from farside.storage.mirror_marker import MARKER_DIR

JOURNAL_DIR = "journal"
INDEX_FILE = "index.json"
# New files being checked and fsynced in the background at a time (each holds an open file).
SEALING = 32


def journal_dir(target: Path) -> Path:
    return target / MARKER_DIR / JOURNAL_DIR


def safe_path(root: Path, rel: str) -> Path:
    """``root/rel``, refusing anything that would leave ``root`` (a damaged or foreign journal)."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or parts[0] == MARKER_DIR:
        raise ValueError(f"journal path {rel!r} is not inside the mirrored directory")
    return root / rel


class CorruptJournal(Exception):
    """A journal chunk does not match its hash: the copy was damaged on its way."""


class JournalWriter:
    """Builds one cycle's journal at the target."""

    def __init__(self, target: Path, writer: TargetWriter) -> None:
        self.dir = journal_dir(target)
        self.writer = writer
        if self.dir.exists():
            # Only an uncommitted journal can be here: a committed one is replayed before a cycle.
            shutil.rmtree(self.dir)
        (self.dir / "new").mkdir(parents=True)
        self._data_fd = os.open(self.dir / "data", os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        self.data_size = 0
        self._chunks: list[tuple[int, int, str]] = []  # (offset in data, length, hash)
        self._staged = 0
        self.reader = Reader()  # the cycle's thread reads the source through it
        self._seal_reader = Reader()  # the sealing thread's, for the read-back
        # One thread checks and fsyncs finished new files while the cycle reads and writes the
        # next ones: the disk writes back one file while the next is copied, on the other core.
        self._sealer: ThreadPoolExecutor | None = None
        self._sealing: deque[tuple[Future[None], NewFile]] = deque()
        # Set by discard: a read-back under way stops at its next batch, queued ones never start.
        self._abandon = threading.Event()

    def close(self) -> None:
        if self._data_fd >= 0:
            os.close(self._data_fd)
            self._data_fd = -1

    def discard(self) -> None:
        self.close()
        self._abandon.set()
        for future, new in self._sealing:
            if future.cancel():
                new.close()
        self._settle(raise_errors=False)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- chunks --------------------------------------------------------------------------------

    def add_chunk(self, data: bytes | memoryview, hash_: str) -> int:
        """Append a changed chunk; its offset in ``data``."""
        offset = self.data_size
        self.writer.send(self._data_fd, data, offset)
        self.data_size += len(data)
        self._chunks.append((offset, len(data), hash_))
        return offset

    def mark(self) -> tuple[int, int]:
        return self.data_size, len(self._chunks)

    def rollback(self, mark: tuple[int, int]) -> None:
        """Forget the chunks added since ``mark`` (a file that changed while it was read)."""
        self.data_size, count = mark
        del self._chunks[count:]
        os.ftruncate(self._data_fd, self.data_size)

    # -- new files -----------------------------------------------------------------------------

    def new_file(self) -> tuple[str, NewFile]:
        """A whole new file to write, and its name in the journal."""
        self._staged += 1
        name = f"new/{self._staged}"
        return name, NewFile(self.dir / name, self.writer)

    def seal(self, new: NewFile, hashes: list[str | None], size: int, rel: str) -> None:
        """fsync a written new file and check it against its source hashes, in the background.

        Takes ``new`` over (it is closed once done). A failure (a mismatch, an I/O error) is raised
        by ``commit``.
        """
        if self._sealer is None:
            self._sealer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mirror-seal")
        try:
            while len(self._sealing) >= SEALING:
                self._sealing.popleft()[0].result()
        except BaseException:
            new.close()  # not handed over yet: the caller let go of it
            raise
        future = self._sealer.submit(_seal, new, hashes, size, rel, self._seal_reader, self._abandon)
        self._sealing.append((future, new))

    def _settle(self, raise_errors: bool) -> None:
        """Wait for every new file being sealed; raise the first failure if asked."""
        first: BaseException | None = None
        while self._sealing:
            future, _new = self._sealing.popleft()
            if future.cancelled():
                continue
            exc = future.exception()
            first = first or exc
        if self._sealer is not None:
            self._sealer.shutdown()
            self._sealer = None
        if first is not None and raise_errors:
            raise first

    # -- commit --------------------------------------------------------------------------------

    def commit(self, index: dict[str, Any]) -> None:
        """Make the journal durable, check every chunk against its hash, then write the index.

        Raises:
            CorruptJournal: a chunk read back does not match the hash taken at the source.
        """
        os.fsync(self._data_fd)
        for offset, length, hash_ in self._chunks:
            if digest(self.reader.read(self._data_fd, length, offset)) != hash_:
                raise CorruptJournal(f"journal chunk at {offset} does not match its source hash")
        self.close()
        self._settle(raise_errors=True)
        fsync_dir(self.dir / "new")
        fsync_dir(self.dir)
        fsync_dir(self.dir.parent)  # the journal directory's own entry, made in this cycle
        write_json(self.dir / INDEX_FILE, index)


class NewFile:
    """A whole new file being written into the journal.

    Whole blocks go straight to the disk (``O_DIRECT``); what ``O_DIRECT`` refuses (a file's last,
    partial block; a buffer that is not aligned; a filesystem without it, such as tmpfs) goes
    through the page cache, and ``fsync`` covers both.
    """

    def __init__(self, path: Path, writer: TargetWriter) -> None:
        self.path = path
        self.writer = writer
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self.direct = os.open(path, os.O_RDWR | os.O_DIRECT)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                os.close(self.fd)
                raise
            self.direct = -1

    def send(self, data: bytes | memoryview, offset: int) -> None:
        """Write source data at ``offset``."""
        if self.direct >= 0 and offset % ALIGN == 0 and len(data) % ALIGN == 0 and _aligned(data):
            try:
                self.writer.send(self.direct, data, offset)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                # The filesystem opened the file for O_DIRECT but refuses its writes: nothing
                # was written, and the rest of the file goes through the page cache.
                os.close(self.direct)
                self.direct = -1
        self.writer.send(self.fd, data, offset)

    def close(self) -> None:
        for fd in (self.fd, self.direct):
            if fd >= 0:
                os.close(fd)
        self.fd = self.direct = -1


def _aligned(data: bytes | memoryview) -> bool:
    """Whether a buffer's address suits O_DIRECT (a read-only one is taken as not: ctypes cannot see it)."""
    view = memoryview(data)
    if view.readonly or not view.c_contiguous:
        return False
    return ctypes.addressof(ctypes.c_char.from_buffer(view)) % ALIGN == 0


def _seal(
    new: NewFile, hashes: list[str | None], size: int, rel: str, reader: Reader, abandon: threading.Event
) -> None:
    """Make a new file durable, then read it back and check each chunk against the source hash."""
    try:
        os.fsync(new.fd)
        if os.fstat(new.fd).st_size != size:
            raise CorruptJournal(f"the copy of {rel} in the journal has the wrong size")
        # From the disk where O_DIRECT is available: the check then covers what was stored.
        fd = new.direct if new.direct >= 0 else new.fd
        want = [i for i, h in enumerate(hashes) if h is not None]
        got: dict[int, str | None] = {}
        for index, _data, hash_ in reader.hashed(fd, size, want):
            if abandon.is_set():
                return  # the journal is being thrown away: checking it is wasted disk reads
            got[index] = hash_
        for index in want:
            if got.get(index) != hashes[index]:
                raise CorruptJournal(f"the copy of {rel} in the journal does not match its source at chunk {index}")
    finally:
        new.close()


def pending(target: Path) -> dict[str, Any] | None:
    """The committed journal waiting at ``target``, or None; an uncommitted one is removed."""
    path = journal_dir(target)
    if not path.exists():
        return None
    try:
        index: dict[str, Any] = read_json(path / INDEX_FILE)
        return index
    except (OSError, ValueError):
        shutil.rmtree(path, ignore_errors=True)
        return None


def apply(target: Path, index: dict[str, Any], writer: TargetWriter) -> dict[str, list[int]]:
    """Apply a committed journal in place; the stat key of each file it wrote or placed.

    Raises:
        CorruptJournal: a chunk in the journal no longer matches its hash (nothing of that file
            is written).
    """
    jdir = journal_dir(target)
    touched: dict[str, Path] = {}
    dirs: set[Path] = set()
    # A journal committed before the mirror changed its hash is checked with the hash it names.
    algorithm = index.get("hash", LEGACY_HASH)
    reader = Reader()
    data_fd = os.open(jdir / "data", os.O_RDONLY) if (jdir / "data").exists() else -1
    try:
        for op in index["ops"]:
            kind = op["op"]
            path = safe_path(target, op["path"])
            if kind == "mkdir":
                # The source turned a file (or symlink) into a directory: the old entry goes first,
                # or the committed journal could never be applied and would block every command.
                if path.is_symlink() or (path.exists() and not path.is_dir()):
                    path.unlink()
                path.mkdir(parents=True, exist_ok=True)
                dirs.add(path.parent)
            elif kind == "place":
                staged = jdir / op["staged"]
                if staged.exists():  # gone once placed: the rename is the whole apply
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if path.is_dir() and not path.is_symlink():
                        # A directory became a file: its files are removed by this journal anyway.
                        shutil.rmtree(path)
                    os.replace(staged, path)
                dirs.add(path.parent)
                touched[op["path"]] = path
            elif kind == "chunks":
                _apply_chunks(path, op, data_fd, writer, reader, algorithm)
                touched[op["path"]] = path
            elif kind == "remove":
                if path.is_file() or path.is_symlink():
                    path.unlink()
                dirs.add(path.parent)
            elif kind == "rmdir":
                if path.is_dir():
                    # Something not ours may be left in it; then the directory stays.
                    with contextlib.suppress(OSError):
                        path.rmdir()
                dirs.add(path.parent)
            else:
                raise ValueError(f"unknown journal operation {kind!r}")
    finally:
        if data_fd >= 0:
            os.close(data_fd)
    for d in dirs:
        if d.is_dir():
            fsync_dir(d)
    return {rel: stat_key(os.stat(path)) for rel, path in touched.items()}


def _apply_chunks(
    path: Path, op: dict[str, Any], data_fd: int, writer: TargetWriter, reader: Reader, algorithm: str
) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        for index, offset, length, hash_ in op["writes"]:
            data = reader.read(data_fd, length, offset)
            if digest(data, algorithm) != hash_:
                raise CorruptJournal(f"journal chunk {index} of {op['path']} does not match its source hash")
            writer.write(fd, data, index * CHUNK)
        for index in op["holes"]:
            start = index * CHUNK
            sparse.punch_hole(fd, start, min(CHUNK, op["size"] - start))
        os.ftruncate(fd, op["size"])
        os.fchmod(fd, op["mode"])
        os.utime(fd, ns=(op["mtime_ns"], op["mtime_ns"]))
        os.fsync(fd)
    finally:
        os.close(fd)


def finish(target: Path) -> None:
    """Remove an applied journal: its index first, so that a crash while removing the rest leaves
    an uncommitted journal (thrown away), never an index whose data is half deleted."""
    jdir = journal_dir(target)
    with contextlib.suppress(FileNotFoundError):
        (jdir / INDEX_FILE).unlink()
        fsync_dir(jdir)
    shutil.rmtree(jdir, ignore_errors=True)
    parent = target / MARKER_DIR
    if parent.is_dir():
        fsync_dir(parent)


def stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


def pending_exists(target: Path) -> bool:
    """Whether a committed journal waits at ``target`` (read-only: nothing is removed)."""
    return (journal_dir(target) / INDEX_FILE).is_file()
