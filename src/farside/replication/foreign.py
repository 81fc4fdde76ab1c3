"""Metadata VDIs of other pools found on plugged SRs: what each holds, newest copy per pool."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from farside.replication import format as fmt


@dataclass(frozen=True)
class ForeignCopy:
    """The newest complete generation one foreign metadata VDI holds."""

    vdi: str
    path: Path
    pool_uuid: str
    pool_name: str
    generation: int
    written: str
    schema_version: int
    farside_version: str


def read_copy(vdi: str, path: Path) -> ForeignCopy | None:
    """What ``path`` holds, or None when it holds no complete copy."""
    with open(path, "rb") as fh:
        snapshot, _, _ = fmt.newest(fh)
    if snapshot is None:
        return None
    return ForeignCopy(
        vdi,
        path,
        snapshot.pool_uuid,
        snapshot.pool_name,
        snapshot.generation,
        snapshot.written,
        snapshot.schema_version,
        snapshot.farside_version,
    )


class ForeignCache:
    """xapi's DR cache: foreign metadata VDIs by VDI ref."""

    def __init__(self) -> None:
        self._copies: dict[str, ForeignCopy] = {}
        self._lock = threading.Lock()

    def put(self, copy: ForeignCopy) -> None:
        with self._lock:
            self._copies[copy.vdi] = copy

    def drop(self, vdi: str) -> None:
        with self._lock:
            self._copies.pop(vdi, None)

    def get(self, vdi: str) -> ForeignCopy | None:
        with self._lock:
            return self._copies.get(vdi)

    def latest(self) -> set[str]:
        """The VDIs holding, per source pool, the highest generation (ties: all of them)."""
        with self._lock:
            copies = list(self._copies.values())
        best: dict[str, int] = {}
        for c in copies:
            best[c.pool_uuid] = max(best.get(c.pool_uuid, -1), c.generation)
        return {c.vdi for c in copies if c.generation == best[c.pool_uuid]}

    def all(self) -> list[ForeignCopy]:
        with self._lock:
            return list(self._copies.values())
