"""A mirror: a source directory replicated into a target directory, and what an operator does with it.

Every operation that changes the mirror or its target takes the mirror lock and first replays any
journal a crash left at the target, so no command ever sees (or makes a pool see) a half-applied
cycle. State changes are written to the record atomically; markers on both directories say which
mirror they belong to and whether the target is being written (docs/mirror.md).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

from farside.errors import FarsideError
from farside.mirror import cycle, journal, lock, snapshot
from farside.mirror.cycle import CycleResult
from farside.mirror.errors import CycleStopped, MirrorExists, MirrorInvalid, MirrorPreempted, MirrorState
from farside.mirror.state import Record, State, StateDir, check_name
from farside.mirror.writer import TargetWriter
from farside.storage import lease
from farside.storage.mirror_marker import MARKER_DIR, SOURCE, TARGET, Marker, clear_marker, read_marker, write_marker

DEFAULT_INTERVAL_S = 30.0


class Mirrors:
    """The mirrors kept in one state directory."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = StateDir(state_dir)

    @property
    def path(self) -> Path:
        return self.state_dir.path

    def names(self) -> list[str]:
        return self.state_dir.names()

    def load(self, name: str) -> Record:
        return self.state_dir.load(name)

    @contextmanager
    def locked(self, name: str, preempt: str = "") -> Iterator[Record]:
        """Hold the mirror lock, finish any interrupted apply, and give the current record.

        With ``preempt`` (``lock.PREEMPT_LOCK`` or ``lock.SPLIT_LOCK``), a cycle in progress is
        asked to give up (before its commit) instead of being waited for: what pause, delete and
        split want, now (see ``lock.Preemption``).
        """
        self.state_dir.load(name)  # MIRROR_UNKNOWN before creating a lock file
        mdir = self.state_dir.mirror_dir(name)
        with ExitStack() as stack:
            try:
                if preempt:
                    stack.enter_context(lock.held(mdir / preempt))
                stack.enter_context(lock.held(mdir / lock.MIRROR_LOCK))
            except FileNotFoundError:
                self.state_dir.load(name)  # deleted while we waited: MIRROR_UNKNOWN
                raise
            record = self.state_dir.load(name)
            cycle.replay(self.state_dir, record)
            yield record

    # -- create and delete ---------------------------------------------------------------------

    def create(
        self,
        name: str,
        source: Path,
        target: Path,
        interval: float = DEFAULT_INTERVAL_S,
        bwlimit: float | None = None,
    ) -> Record:
        """A new mirror from ``source`` to ``target``; the first cycle copies everything."""
        check_name(name)
        if interval < 0:
            raise MirrorInvalid(f"--interval must be 0 or more seconds, not {interval}")
        if bwlimit is not None and bwlimit <= 0:
            raise MirrorInvalid(f"--bwlimit must be a positive number of MiB/s, not {bwlimit}")
        source, target = _absolute(source), _absolute(target)
        if not source.is_dir():
            raise MirrorInvalid(f"the source {source} is not a directory")
        if source == target or source in target.parents or target in source.parents:
            raise MirrorInvalid(f"the source {source} and target {target} must not contain one another")
        if not target.exists():
            if not target.parent.is_dir():
                raise MirrorInvalid(
                    f"the target's parent {target.parent} does not exist: create it first (mkdir -p {target.parent})"
                )
            target.mkdir()
        elif not target.is_dir():
            raise MirrorInvalid(f"the target {target} is not a directory")
        for role, path in (("source", source), ("target", target)):
            marker = read_marker(path)
            if marker is not None and (marker.mirror, marker.state_dir) != (name, str(self.path)):
                owner = f"mirror {marker.mirror!r} ({marker.state_dir})"
                raise MirrorInvalid(f"the {role} {path} already belongs to {owner}; delete that mirror first")
        _refuse_plugged(name, target)
        if self.state_dir.exists(name):
            raise MirrorExists(name, str(self.path))
        mdir = self.state_dir.mirror_dir(name)
        mdir.mkdir(parents=True, exist_ok=True)
        record = Record(name, str(source), str(target), interval, bwlimit)
        # Markers before the record: a record always has its markers, and a create that died
        # halfway can simply be run again.
        write_marker(source, Marker(name, str(self.path), SOURCE, False))
        write_marker(target, Marker(name, str(self.path), TARGET, True))
        self.state_dir.save(record)
        return record

    def delete(self, name: str) -> None:
        """Forget the mirror; both directories stay as they are, the target a complete cycle and pluggable."""
        with self.locked(name, preempt=lock.PREEMPT_LOCK) as record:
            if record.state_enum is not State.SPLIT:
                # Stop replication durably before the target loses its marker: a delete that dies
                # halfway must never leave a replicating mirror writing into a pluggable LUN.
                # Running delete again finishes it.
                record.state = State.PAUSED.value
                self.state_dir.save(record)
            for path in (Path(record.source), Path(record.target)):
                if read_marker(path) is not None:
                    clear_marker(path)
                _remove_empty(path / MARKER_DIR)
            mdir = self.state_dir.mirror_dir(name)
            for f in (mdir / "mirror.json", mdir / "manifest.json"):
                f.unlink(missing_ok=True)
            # Moved aside while the locks are held: a daemon or command waiting for a lock then
            # finds its directory gone (MIRROR_UNKNOWN) instead of creating a fresh lock file in it.
            # No mirror name starts with '.', so the tombstone never meets a mirror.
            tomb = mdir.with_name(f".deleted-{name}-{os.getpid()}-{time.monotonic_ns()}")
            mdir.rename(tomb)
        for f in tomb.iterdir():
            f.unlink()
        tomb.rmdir()

    # -- replication ---------------------------------------------------------------------------

    def sync(self, name: str, writer: TargetWriter | None = None, stop: threading.Event | None = None) -> CycleResult:
        """Run one cycle now and wait for it.

        Raises:
            MirrorState: the mirror is paused or split.
            MirrorTargetFull, MirrorIoError: the cycle failed; the target holds the previous cycle.
            MirrorPreempted: a split, pause or delete took the mirror over while the source was read.
        """
        with self.locked(name) as record:
            if record.state_enum in (State.PAUSED, State.SPLIT):
                hint = "unpause it first" if record.state_enum is State.PAUSED else "resync it to replicate again"
                raise MirrorState(name, record.state, hint)
            return self._cycle(record, writer, stop)

    def _cycle(self, record: Record, writer: TargetWriter | None, stop: threading.Event | None) -> CycleResult:
        first = record.last_cycle.number == 0
        preemption = lock.Preemption(self.state_dir.mirror_dir(record.name), first, stop)
        resyncing = record.state_enum is State.RESYNCING
        try:
            return cycle.run_cycle(self.state_dir, record, writer or TargetWriter(record.bwlimit), preemption)
        except CycleStopped:
            # Not a failure of replication: the daemon stopping (its own ``stop``), or a command
            # that took the mirror over.
            if stop is not None and stop.is_set():
                raise
            if resyncing:
                held = "what it held before the resync"
            else:
                held = f"cycle {record.last_cycle.number}" if record.last_cycle.number else "no cycle yet"
            raise MirrorPreempted(record.name, held) from None
        except MirrorState:
            raise  # a refusal, not a failure
        except Exception as exc:
            fresh = self.state_dir.load(record.name)
            fresh.last_attempt = record.last_attempt
            fresh.add_error(exc.describe() if isinstance(exc, FarsideError) else str(exc))
            self.state_dir.save(fresh)
            raise
        finally:
            preemption.close()

    def pause(self, name: str) -> None:
        with self.locked(name, preempt=lock.PREEMPT_LOCK) as record:
            if record.state_enum not in (State.REPLICATING, State.RESYNCING, State.PAUSED):
                raise MirrorState(name, record.state, "only a replicating mirror can be paused")
            if record.state_enum is not State.PAUSED:
                record.paused_from = record.state
            record.state = State.PAUSED.value
            self.state_dir.save(record)

    def unpause(self, name: str) -> None:
        with self.locked(name) as record:
            if record.state_enum not in (State.PAUSED, State.REPLICATING):
                raise MirrorState(name, record.state, "only a paused mirror can be unpaused")
            if record.state_enum is State.PAUSED:
                record.state = record.paused_from or State.REPLICATING.value
                record.paused_from = ""
            self.state_dir.save(record)

    # -- split, reverse, resync ----------------------------------------------------------------

    def split(self, name: str) -> Record:
        """Stop replicating; the target, a complete cycle, becomes writable and pluggable.

        A cycle in progress is abandoned before its commit rather than waited for: a failover
        must not wait out a long cycle (the target keeps the last complete cycle). Except the
        first: the split would be refused anyway, so the first sync, the only progress there is,
        is waited for.
        """
        with self.locked(name, preempt=lock.SPLIT_LOCK) as record:
            if record.state_enum is State.SPLIT:
                # Idempotent, and so the way to finish a split that died after saving the record:
                # the marker may still be active, and pools would refuse the LUN for ever.
                write_marker(Path(record.target), Marker(name, str(self.path), TARGET, False))
                return record
            if record.last_cycle.number == 0:
                # The target holds nothing the source had: made pluggable (or reversed and resynced
                # over the source) it would pass for a copy and lose the data.
                raise MirrorState(
                    name, record.state, f"no cycle has completed yet: run 'farside mirror sync {name}' first"
                )
            record.state = State.SPLIT.value
            self.state_dir.save(record)
            write_marker(Path(record.target), Marker(name, str(self.path), TARGET, False))
            return record

    def reverse(self, name: str) -> Record:
        """Swap source and target (for failback); only while split. The mirror stays split."""
        with self.locked(name) as record:
            if record.state_enum is not State.SPLIT:
                raise MirrorState(name, record.state, "split the mirror before reversing it")
            source_marker, target_marker = read_marker(Path(record.source)), read_marker(Path(record.target))
            if (source_marker is not None and source_marker.role != SOURCE) or (
                target_marker is not None and target_marker.role != TARGET
            ):
                # A reverse died after saving the record: finish it. Swapping again would undo it,
                # and a resync would then copy the old source over what the split target wrote.
                write_marker(Path(record.source), Marker(name, str(self.path), SOURCE, False))
                write_marker(Path(record.target), Marker(name, str(self.path), TARGET, False))
                return record
            manifest = self.state_dir.load_manifest(name)
            for entry in manifest.values():
                entry.src, entry.dst = entry.dst, entry.src
            # The manifest first: a crash before the record is saved leaves it swapped while the
            # record is not, which only makes the next cycle re-read the swapped files.
            self.state_dir.save_manifest(name, manifest)
            record.source, record.target = record.target, record.source
            self.state_dir.save(record)
            write_marker(Path(record.source), Marker(name, str(self.path), SOURCE, False))
            write_marker(Path(record.target), Marker(name, str(self.path), TARGET, False))
            return record

    def resync(self, name: str, writer: TargetWriter | None = None) -> CycleResult:
        """From split back to replicating, copying only changed chunks.

        What the target changed on its own is listed in the result's warnings, then overwritten.

        Raises:
            MirrorState: the mirror is not split.
            LunLeased-like MirrorState: a pool still has the target plugged.
        """
        with self.locked(name) as record:
            if record.state_enum not in (State.SPLIT, State.RESYNCING):
                raise MirrorState(name, record.state, "only a split mirror can be resynchronised")
            _refuse_plugged(name, Path(record.target))
            write_marker(Path(record.target), Marker(name, str(self.path), TARGET, True))
            record.state = State.RESYNCING.value
            self.state_dir.save(record)
            return self._cycle(record, writer, None)

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self, name: str, dest: Path) -> int:
        """Copy the target's last complete cycle to the new directory ``dest``; bytes copied."""
        dest = _absolute(dest)
        if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
            raise MirrorInvalid(f"{dest} exists and is not an empty directory; give a new path")
        if not dest.parent.is_dir():
            raise MirrorInvalid(
                f"the snapshot's parent {dest.parent} does not exist: create it first (mkdir -p {dest.parent})"
            )
        with self.locked(name) as record:
            target = Path(record.target)
            if dest == target or target in dest.parents:
                raise MirrorInvalid(f"the snapshot {dest} must be outside the target {target}")
            if record.last_cycle.number == 0:
                raise MirrorState(name, record.state, f"no cycle has completed yet: run 'farside mirror sync {name}'")
            if record.state_enum is State.SPLIT:
                # A split target is writable: what a pool wrote there since is not the last cycle.
                changed = cycle.changed_since_cycle(target, self.state_dir.load_manifest(name))
                if changed:
                    shown = ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")
                    raise MirrorState(
                        name,
                        record.state,
                        f"the target was written since the split ({shown}), so it no longer holds the last "
                        f"cycle; to keep it as it is now, copy {target} itself",
                    )
            return snapshot.copy_tree(target, dest)

    # -- status --------------------------------------------------------------------------------

    def status(self, name: str, now: float | None = None) -> dict[str, Any]:
        """What ``farside mirror status`` shows; read without the lock, so it never waits."""
        record = self.state_dir.load(name)
        now = time.time() if now is None else now
        last = record.last_cycle
        mdir = self.state_dir.mirror_dir(name)
        daemon = lock.holder(mdir / lock.DAEMON_LOCK)
        return {
            "name": record.name,
            "state": record.state,
            "source": record.source,
            "target": record.target,
            "interval": record.interval,
            "bwlimit": record.bwlimit,
            "daemon_pid": daemon,
            "cycle": last.number,
            "last_cycle_started": last.started or None,
            "last_cycle_finished": last.finished or None,
            "rpo_seconds": round(now - last.started, 3) if last.number else None,
            "bytes_read": last.bytes_read,
            "bytes_sent": last.bytes_sent,
            "bytes_written": last.bytes_written,
            "bytes_sent_total": record.bytes_sent_total,
            "files_changed": last.files_changed,
            "apply_pending": journal.pending_exists(Path(record.target)),
            "failing": record.failing,
            "errors": record.errors,
            "warnings": record.warnings,
            "lagging": {
                rel: {"since": since, "rpo_seconds": None if since is None else round(now - since, 3)}
                for rel, since in record.lagging.items()
            },
        }


def _absolute(path: Path) -> Path:
    return path if path.is_absolute() else Path(os.path.abspath(path))


def _refuse_plugged(name: str, target: Path) -> None:
    """A target a pool has plugged (a live lease on that very directory) is never written."""
    if not target.is_dir():
        return
    candidates = [target, *(p for p in target.iterdir() if p.is_dir())]
    for lun in candidates:
        current = lease.read(lun)
        if current is not None and current.live_on(lun, time.time()):
            raise MirrorState(
                name,
                "plugged",
                f"{lun} is plugged in pool {current.pool_name!r} ({current.pool_uuid}), its lease valid until "
                f"{current.describe_expiry()}: unplug its SR there, or if that pool is down, retry once the lease "
                "has expired",
            )


def _remove_empty(path: Path) -> None:
    with suppress(OSError):
        path.rmdir()
