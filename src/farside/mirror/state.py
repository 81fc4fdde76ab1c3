"""A mirror's durable state in its state directory: the record and the manifest.

    STATE_DIR/NAME/mirror.json     the record (settings, state, last cycle, errors, lagging files)
    STATE_DIR/NAME/manifest.json   what the target holds: for each file, its chunks' XXH3-128 hashes
                                   and the stat of both copies when they were last in step
    STATE_DIR/NAME/mirror.lock     see lock.py
    STATE_DIR/NAME/daemon.lock

Both JSON files are replaced atomically (temporary file, fsync, rename, fsync of the directory), so
a crash leaves the old or the new version. A cycle's journal carries the manifest and record changes
it makes, so replaying the journal rewrites them too.
"""

from __future__ import annotations

import enum
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from farside.mirror.chunks import HASH, LEGACY_HASH, known
from farside.mirror.errors import MirrorInvalid, MirrorUnknown
from farside.storage.files import read_json, write_json

RECORD_FILE = "mirror.json"
MANIFEST_FILE = "manifest.json"
FORMAT = 1
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# Errors kept in the record, newest last.
MAX_ERRORS = 10


class State(enum.Enum):
    REPLICATING = "replicating"
    PAUSED = "paused"
    SPLIT = "split"
    RESYNCING = "resyncing"  # like replicating, until one cycle has completed


# A file's stat as the mirror compares it: size, mtime_ns, ctime_ns, inode.
StatKey = list[int]


@dataclass
class FileEntry:
    """One file as the target holds it after the last cycle that took it."""

    size: int
    chunks: list[str | None]  # XXH3-128 hex digest of each chunk; None for a hole (or all zeros)
    src: StatKey  # the source's stat when it was read
    dst: StatKey  # the target's stat right after it was written
    mode: int
    taken: float  # when the source was read: the age of this copy is the file's own RPO


@dataclass
class CycleStats:
    number: int = 0
    started: float = 0.0
    finished: float = 0.0
    files_changed: int = 0
    bytes_read: int = 0  # at the source
    bytes_sent: int = 0  # into the journal (chunk data and new files)
    bytes_written: int = 0  # at the target: journal plus in-place apply


@dataclass
class Record:
    """A mirror's settings and state (``mirror.json``)."""

    name: str
    source: str
    target: str
    interval: float
    bwlimit: float | None  # MiB/s, None for no limit
    state: str = State.REPLICATING.value
    created: float = field(default_factory=time.time)
    last_cycle: CycleStats = field(default_factory=CycleStats)
    bytes_sent_total: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"time", "message"}, newest last
    failing: bool = False  # the last cycle attempt failed
    lagging: dict[str, float | None] = field(default_factory=dict)  # path -> when last taken
    warnings: list[str] = field(default_factory=list)  # from the last cycle
    last_attempt: float = 0.0
    # What a pause interrupted (replicating or resyncing): unpause goes back to it, so a resync
    # paused halfway is still shown as one until a cycle completes.
    paused_from: str = ""

    @property
    def state_enum(self) -> State:
        return State(self.state)

    def add_error(self, message: str) -> None:
        self.errors = [*self.errors, {"time": time.time(), "message": message}][-MAX_ERRORS:]
        self.failing = True


def check_name(name: str) -> str:
    if not NAME_PATTERN.match(name):
        raise MirrorInvalid(
            f"mirror name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return name


class StateDir:
    """The directory holding mirrors' state, one subdirectory per mirror."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mirror_dir(self, name: str) -> Path:
        return self.path / check_name(name)

    def names(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if (p / RECORD_FILE).is_file())

    def exists(self, name: str) -> bool:
        return (self.mirror_dir(name) / RECORD_FILE).is_file()

    def load(self, name: str) -> Record:
        path = self.mirror_dir(name) / RECORD_FILE
        try:
            data = read_json(path)
        except FileNotFoundError:
            raise MirrorUnknown(name, str(self.path)) from None
        except (OSError, ValueError) as exc:
            raise MirrorInvalid(f"the record of mirror {name!r} at {path} is unreadable: {exc}") from exc
        data.pop("format", None)
        data["last_cycle"] = CycleStats(**data.get("last_cycle", {}))
        return Record(**data)

    def save(self, record: Record) -> None:
        write_json(self.mirror_dir(record.name) / RECORD_FILE, {"format": FORMAT, **asdict(record)})

    def load_manifest(self, name: str) -> dict[str, FileEntry]:
        path = self.mirror_dir(name) / MANIFEST_FILE
        try:
            data = read_json(path)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise MirrorInvalid(f"the manifest of mirror {name!r} at {path} is unreadable: {exc}") from exc
        # A manifest from before the mirror used XXH3: its hashes are unknown, so each file's data
        # is sent once more (an in-place rewrite), then the manifest carries the current hash.
        algorithm = data.get("hash", LEGACY_HASH)
        manifest = {rel: FileEntry(**entry) for rel, entry in data["files"].items()}
        for entry in manifest.values():
            entry.chunks = known(entry.chunks, algorithm)
        return manifest

    def save_manifest(self, name: str, manifest: dict[str, FileEntry]) -> None:
        files = {rel: asdict(entry) for rel, entry in sorted(manifest.items())}
        write_json(self.mirror_dir(name) / MANIFEST_FILE, {"format": FORMAT, "hash": HASH, "files": files})
