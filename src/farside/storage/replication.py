"""How the DR logic learns and changes the state of a LUN's replication (DESIGN.md §1).

Real arrays, DRBD, ZFS or Ceph replicate LUNs; Farside's own mirror (``farside mirror``) stands
in for them here. The DR engine reads a LUN's replication state through this small interface and
acts on it (split, reverse, resync) only when the operator opts in; it never depends on one
implementation. ``NullReplication`` answers for LUNs nobody manages: their state is unknown, so the
operator must confirm that the array's mirroring is stopped before a failover.
"""

from __future__ import annotations

import enum
from pathlib import Path

from farside.errors import OperationNotAllowed


class ReplicationState(enum.Enum):
    REPLICATING = "replicating"  # the target is a read-only copy being kept current
    SPLIT = "split"  # replication stopped; the target is writable and may be used
    PAUSED = "paused"
    RESYNCING = "resyncing"
    ERROR = "error"
    UNKNOWN = "unknown"  # nobody manages this LUN's replication here


class LunReplication:
    """The replication of LUNs, as a storage array would expose it."""

    def state(self, lun: Path) -> ReplicationState:
        """The replication state of the LUN at ``lun`` (a target or a source)."""
        raise NotImplementedError

    def split(self, lun: Path) -> None:
        """Stop replicating into ``lun`` and make it writable (failover)."""
        raise NotImplementedError

    def reverse(self, lun: Path) -> None:
        """Replicate from ``lun`` back to its former source (failback)."""
        raise NotImplementedError

    def resync(self, lun: Path) -> None:
        """Bring the replica up to date again, copying only what changed."""
        raise NotImplementedError

    def fenced(self, lun: Path) -> str:
        """Whether the other side of ``lun``'s replication can no longer write its copy (an array
        write-disables it on failover; a mirror finds no pool holding it): a sentence saying how
        the storage knows, for the DR run's journal, or "" when it cannot tell."""
        return ""


class NullReplication(LunReplication):
    """For LUNs no replication engine here manages: state unknown, and no way to change it."""

    def state(self, lun: Path) -> ReplicationState:
        return ReplicationState.UNKNOWN

    def split(self, lun: Path) -> None:
        raise OperationNotAllowed(f"no replication engine manages {lun}; split it on the storage array")

    def reverse(self, lun: Path) -> None:
        raise OperationNotAllowed(f"no replication engine manages {lun}; reverse it on the storage array")

    def resync(self, lun: Path) -> None:
        raise OperationNotAllowed(f"no replication engine manages {lun}; resync it on the storage array")
