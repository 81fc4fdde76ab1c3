"""``LunReplication`` for ``farside mirror``: the DR engine's view of a LUN's mirror.

A LUN's mirror is found through the marker at the LUN (or at the directory of LUNs above it): the
target's marker and the source's both name the mirror and its state directory, so the adapter
answers for either end. A LUN with no marker is not managed here: ``UNKNOWN``, like
``NullReplication``. A marker whose mirror has since been deleted is treated the same way.
"""

from __future__ import annotations

import time
from pathlib import Path

from farside.errors import OperationNotAllowed
from farside.mirror.errors import MirrorUnknown
from farside.mirror.pair import Mirrors
from farside.mirror.state import State
from farside.storage import lease
from farside.storage.mirror_marker import SOURCE, find_marker
from farside.storage.replication import LunReplication, ReplicationState

_STATES = {
    State.REPLICATING: ReplicationState.REPLICATING,
    State.PAUSED: ReplicationState.PAUSED,
    State.SPLIT: ReplicationState.SPLIT,
    State.RESYNCING: ReplicationState.RESYNCING,
}


class MirrorReplication(LunReplication):
    """The replication of LUNs that ``farside mirror`` replicates."""

    def _find(self, lun: Path) -> tuple[Mirrors, str] | None:
        found = find_marker(lun)
        if found is None:
            return None
        _, marker = found
        mirrors = Mirrors(Path(marker.state_dir))
        if not mirrors.state_dir.exists(marker.mirror):
            return None
        return mirrors, marker.mirror

    def _require(self, lun: Path, what: str) -> tuple[Mirrors, str]:
        found = self._find(lun)
        if found is None:
            raise OperationNotAllowed(f"no farside mirror manages {lun}; {what} it on the storage array")
        return found

    def state(self, lun: Path) -> ReplicationState:
        found = self._find(lun)
        if found is None:
            return ReplicationState.UNKNOWN
        mirrors, name = found
        try:
            record = mirrors.load(name)
        except MirrorUnknown:
            return ReplicationState.UNKNOWN
        if record.failing and record.state_enum in (State.REPLICATING, State.RESYNCING):
            return ReplicationState.ERROR
        return _STATES[record.state_enum]

    def split(self, lun: Path) -> None:
        mirrors, name = self._require(lun, "split")
        mirrors.split(name)

    def reverse(self, lun: Path) -> None:
        mirrors, name = self._require(lun, "reverse")
        mirrors.reverse(name)

    def resync(self, lun: Path) -> None:
        mirrors, name = self._require(lun, "resync")
        mirrors.resync(name)

    def fenced(self, lun: Path) -> str:
        """The other side of the mirror cannot write when no pool holds a live lease on it: a pool
        writes a LUN only under its lease (docs/storage.md). An other side out of reach proves nothing."""
        found, managed = find_marker(lun), self._find(lun)
        if found is None or managed is None:
            return ""
        (root, marker), (mirrors, name) = found, managed
        try:
            record = mirrors.load(name)
        except MirrorUnknown:
            return ""
        other = Path(record.target if marker.role == SOURCE else record.source) / lun.relative_to(root)
        try:
            held = lease.read(other) if other.is_dir() else None
            if not other.is_dir() or (held is not None and held.live_on(other, time.time())):
                return ""
        except OSError:
            return ""
        return f"mirror {name}: no pool holds its other side {other} (no live lease on it)"
