"""Metadata VDIs of other pools found on plugged SRs: what each holds, newest copy per pool."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from farside.replication import format as fmt


@dataclass(frozen=True)
class ForeignCopy:
    """What one foreign metadata VDI holds: its newest complete generation (generation -1: none),
    whether the claimed pool's DR key proves it, and what was found wrong on the way."""

    vdi: str
    path: Path
    pool_uuid: str
    pool_name: str
    generation: int
    written: str
    schema_version: int
    farside_version: str
    authenticated: bool | None
    problems: tuple[str, ...]

    @property
    def usable(self) -> bool:
        """Complete, and not failing authentication (an unpaired pool's copy is usable only once paired)."""
        return self.generation >= 0 and self.authenticated is not False


def read_copy(vdi: str, path: Path, keys: fmt.KeyLookup) -> ForeignCopy:
    """What ``path`` holds, checked with ``keys``. Raises OSError only."""
    with open(path, "rb") as fh:
        snapshot, _, halves = fmt.newest(fh, keys=keys)
    problems = tuple(p for half in halves for p in half.problems)
    if snapshot is None:
        return ForeignCopy(vdi, path, "", "", -1, "", 0, "", None, problems)
    return ForeignCopy(
        vdi,
        path,
        snapshot.pool_uuid,
        snapshot.pool_name,
        snapshot.generation,
        snapshot.written,
        snapshot.schema_version,
        snapshot.farside_version,
        snapshot.authenticated,
        problems,
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
        """The usable VDIs holding, per source pool, the highest generation (ties: all of them).

        A copy failing authentication never counts: however high the generation it claims, the
        pool's real copies stay the latest."""
        with self._lock:
            copies = [c for c in self._copies.values() if c.usable]
        best: dict[str, int] = {}
        for c in copies:
            best[c.pool_uuid] = max(best.get(c.pool_uuid, -1), c.generation)
        return {c.vdi for c in copies if c.generation == best[c.pool_uuid]}

    def all(self) -> list[ForeignCopy]:
        with self._lock:
            return list(self._copies.values())
