"""One replication cycle: compare, journal, commit, apply, record.

The order is what makes the target safe: the journal is complete and durable before the target's
own files change, and the mirror's state (manifest and record) changes only after the apply, from
what the journal carries. ``replay`` finishes a journal a crash interrupted; every caller holding the
mirror lock runs it before touching the target.
"""

from __future__ import annotations

import errno
import os
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from farside.mirror import journal
from farside.mirror.chunks import HASH, LEGACY_HASH, known
from farside.mirror.copy import Copied, Stop, check_stop, chunk_hashes, copy_changes, copy_new, reserve_target
from farside.mirror.errors import MirrorIoError, MirrorTargetFull
from farside.mirror.journal import CorruptJournal, JournalWriter, stat_key
from farside.mirror.state import CycleStats, FileEntry, Record, State, StateDir
from farside.mirror.writer import TargetWriter
from farside.storage.mirror_marker import MARKER_DIR


@dataclass
class Tree:
    """The regular files and directories under a root, as paths relative to it."""

    files: dict[str, os.stat_result] = field(default_factory=dict)
    dirs: set[str] = field(default_factory=set)
    others: list[str] = field(default_factory=list)  # symlinks, sockets, ...: not mirrored


def walk(root: Path) -> Tree:
    tree = Tree()
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != MARKER_DIR]
        for d in list(dirnames):
            rel = os.path.normpath(os.path.join(rel_dir, d))
            if os.path.islink(os.path.join(dirpath, d)):
                tree.others.append(rel)
                dirnames.remove(d)
            else:
                tree.dirs.add(rel)
        for f in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, f))
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except FileNotFoundError:
                continue  # removed while walked (a pool's metadata written by rename)
            if stat.S_ISREG(st.st_mode):
                tree.files[rel] = st
            else:
                tree.others.append(rel)
    return tree


@dataclass
class CycleResult:
    stats: CycleStats
    warnings: list[str]
    lagging: dict[str, float | None]


def replay(state_dir: StateDir, record: Record, writer: TargetWriter | None = None) -> bool:
    """Finish a committed journal left at the target by a crash; True if there was one."""
    target = Path(record.target)
    index = journal.pending(target)
    if index is None:
        return False
    try:
        _apply_and_record(state_dir, record, index, writer or TargetWriter())
    except (OSError, CorruptJournal) as exc:
        raise _apply_failed(record, index, exc) from exc
    return True


def run_cycle(
    state_dir: StateDir,
    record: Record,
    writer: TargetWriter | None = None,
    stop: Stop | None = None,
) -> CycleResult:
    """Copy what changed since the last cycle; the caller holds the mirror lock and has replayed.

    Raises:
        MirrorTargetFull: the target ran out of space; the target still holds the previous cycle.
        MirrorIoError: the source or target could not be read or written.
        CycleStopped: ``stop`` was set while the source was read; nothing changed.
    """
    writer = writer or TargetWriter(record.bwlimit)
    source, target = Path(record.source), Path(record.target)
    for role, path in (("source", source), ("target", target)):
        if not path.is_dir():
            raise MirrorIoError(record.name, f"the {role} directory {path} is missing")
    record.last_attempt = time.time()
    jw: JournalWriter | None = None
    try:
        jw = JournalWriter(target, writer)
        index = _build(state_dir, record, jw, stop)
        jw.commit(index)
    except BaseException as exc:
        if jw is not None:
            jw.discard()
        translated = _translate(record, exc)
        if translated is exc:
            raise
        raise translated from exc
    try:
        _apply_and_record(state_dir, record, index, writer)
    except (OSError, CorruptJournal) as exc:
        raise _apply_failed(record, index, exc) from exc
    return CycleResult(record.last_cycle, list(record.warnings), dict(record.lagging))


def _apply_failed(record: Record, index: dict[str, Any], exc: OSError | CorruptJournal) -> MirrorIoError:
    """The error for a committed cycle that could not be applied. The target is half applied, and
    every command finishes the apply before it acts, so each one stops here: the operator must
    learn what to do."""
    number = index["cycle"]["number"]
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return MirrorTargetFull(
            record.name,
            f"cycle {number} is committed but could not be applied: no space left at the target {record.target}. "
            "Free space there; the next mirror command (any: status shows the apply pending) finishes it first",
        )
    why = _reason(exc) if isinstance(exc, OSError) else str(exc)
    return MirrorIoError(
        record.name,
        f"cycle {number} is committed but could not be applied: {why}. Fix that; the next mirror "
        "command finishes the apply first",
    )


def _reason(exc: OSError) -> str:
    """What the system said, and of which file."""
    return f"{exc.strerror or exc}" + (f" ({exc.filename})" if exc.filename else "")


def _translate(record: Record, exc: BaseException) -> BaseException:
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return MirrorTargetFull(
            record.name,
            f"no space left at the target {record.target}; it still holds cycle {record.last_cycle.number}. "
            "Free space there and replication resumes with the next cycle",
        )
    if isinstance(exc, OSError):
        return MirrorIoError(record.name, f"{_reason(exc)}; the target still holds its last cycle")
    if isinstance(exc, CorruptJournal):
        return MirrorIoError(record.name, f"{exc}; the cycle was abandoned and will be retried")
    return exc


def _build(state_dir: StateDir, record: Record, jw: JournalWriter, stop: Stop | None) -> dict[str, Any]:
    """Read the source, journal what changed; the journal's index."""
    source, target = Path(record.source), Path(record.target)
    manifest = state_dir.load_manifest(record.name)
    stats = CycleStats(number=record.last_cycle.number + 1, started=time.time())
    src, dst = walk(source), walk(target)
    ops: list[dict[str, Any]] = []
    changes: dict[str, dict[str, Any] | None] = {}
    warnings = [f"{rel}: not a regular file or directory, not mirrored" for rel in src.others]
    lagging: dict[str, float | None] = {}
    first = not manifest

    for rel in sorted(src.dirs - dst.dirs, key=len):
        ops.append({"op": "mkdir", "path": rel})
    reserves: list[tuple[str, dict[str, Any]]] = []
    for rel, st in sorted(src.files.items()):
        check_stop(stop)
        old = manifest.get(rel)
        tst = dst.files.get(rel)
        dirty: set[int] = set()
        if old is not None and tst is not None and stat_key(tst) != old.dst:
            dirty = _target_changes(target / rel, old)
            if dirty:
                warnings.append(f"{rel}: {len(dirty)} chunk(s) changed at the target since the last cycle, overwritten")
        elif tst is not None and old is None and not first:
            warnings.append(f"{rel}: a file the target made on its own, overwritten")
        if old is not None and tst is not None and stat_key(st) == old.src and not dirty:
            continue
        copied: Copied | None
        if old is None or tst is None:
            copied = copy_new(str(source / rel), rel, jw, stats.started, stop)
        else:
            copied = copy_changes(str(source / rel), rel, old, dirty, jw, stats.started, stop)
        if copied is None:
            if not os.path.lexists(source / rel):
                # Gone since the walk (a pool's metadata is written by rename): removed now, as
                # if the walk had not seen it; it is not lagging.
                src.files.pop(rel)
                continue
            lagging[rel] = old.taken if old is not None else None
            continue
        stats.bytes_read += copied.bytes_read
        # Even unchanged content is journaled: its new stat goes into the manifest, so the file
        # is not read again next cycle, and the target gets the source's times.
        ops.append(copied.op)
        changes[rel] = asdict(copied.entry)
        stats.files_changed += copied.changed
        if copied.op["op"] == "chunks":
            reserves.append((str(target / rel), copied.op))
    for rel in sorted(set(manifest) - set(src.files)):
        ops.append({"op": "remove", "path": rel})
        changes[rel] = None
    for rel in sorted(set(dst.files) - set(src.files) - set(manifest)):
        warnings.append(f"{rel}: a file the target made on its own, removed")
        ops.append({"op": "remove", "path": rel})
    for rel in sorted(dst.dirs - src.dirs, key=len, reverse=True):
        ops.append({"op": "rmdir", "path": rel})
    # Space for in-place writes is taken now, while failing still leaves the target untouched.
    for path, op in reserves:
        reserve_target(path, op, jw)
    stats.bytes_sent = jw.writer.sent
    return {
        "format": 1,
        "hash": HASH,
        "ops": ops,
        "manifest": changes,
        "cycle": asdict(stats),
        "bytes_sent_total": record.bytes_sent_total + stats.bytes_sent,
        "warnings": warnings,
        "lagging": lagging,
    }


def changed_since_cycle(target: Path, manifest: dict[str, FileEntry]) -> list[str]:
    """The files of ``target`` that differ from the last cycle (by stat), or that it added or lost."""
    files = walk(target).files
    changed = [rel for rel, entry in manifest.items() if rel not in files or stat_key(files[rel]) != entry.dst]
    return sorted(changed + [rel for rel in files if rel not in manifest])


def _target_changes(path: Path, old: FileEntry) -> set[int]:
    """The chunks of a target file that no longer match the manifest."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        now = chunk_hashes(fd, size)
    finally:
        os.close(fd)
    count = max(len(now), len(old.chunks))
    return {
        i
        for i in range(count)
        if (now[i] if i < len(now) else None) != (old.chunks[i] if i < len(old.chunks) else None)
        or (i == count - 1 and size != old.size)
    }


def _apply_and_record(state_dir: StateDir, record: Record, index: dict[str, Any], writer: TargetWriter) -> None:
    target = Path(record.target)
    before = writer.written
    placed = journal.apply(target, index, writer)
    manifest = state_dir.load_manifest(record.name)
    for rel, entry in index["manifest"].items():
        if entry is None:
            manifest.pop(rel, None)
        else:
            entry = dict(entry)
            entry["dst"] = placed.get(rel, entry["dst"])
            entry["chunks"] = known(entry["chunks"], index.get("hash", LEGACY_HASH))
            manifest[rel] = FileEntry(**entry)
    state_dir.save_manifest(record.name, manifest)
    stats = CycleStats(**index["cycle"])
    stats.finished = time.time()
    stats.bytes_written = stats.bytes_sent + (writer.written - before)
    record.last_cycle = stats
    record.bytes_sent_total = index["bytes_sent_total"]
    record.warnings = list(index["warnings"])
    record.lagging = dict(index["lagging"])
    record.failing = False
    if record.state == State.RESYNCING.value:
        record.state = State.REPLICATING.value
    state_dir.save(record)
    journal.finish(target)
