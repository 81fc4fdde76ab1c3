"""What only the LUN can tell the pool page: its lease and its mirror's state."""

from __future__ import annotations

from pathlib import Path

from farside.storage import lease
from farside.storage.replication import LunReplication, NullReplication, ReplicationState
from farside.web.inventory import lease_holder, mirror_state


class Splitting(LunReplication):
    """An adapter that knows one LUN, and fails on any other."""

    def __init__(self, lun: Path) -> None:
        self.lun = lun

    def state(self, lun: Path) -> ReplicationState:
        if lun != self.lun:
            raise OSError("the mirror's state directory is gone")
        return ReplicationState.SPLIT


def test_the_mirror_state_is_asked_of_the_adapter(tmp_path: Path) -> None:
    """The adapter's state is shown; unmanaged LUNs are unknown; an adapter's failure is shown, not raised."""
    assert mirror_state(str(tmp_path), Splitting(tmp_path)) == "split"
    assert mirror_state(str(tmp_path), NullReplication()) == "unknown"
    assert mirror_state(str(tmp_path / "other"), Splitting(tmp_path)).startswith("error: ")
    assert mirror_state("", Splitting(tmp_path)) == "unknown"


def test_the_lease_names_its_holder(tmp_path: Path) -> None:
    """A live lease names its pool and expiry; an expired one says so; a LUN with none says none."""
    lun = tmp_path / "lun"
    lun.mkdir()
    (lun / ".farside-sr").mkdir()
    assert lease_holder(str(lun)) == "none"
    lease.acquire(lun, "pool-uuid", "Site A", "host", lambda: False)
    assert lease_holder(str(lun)).startswith("Site A until ")
    lease.renew(lun, "pool-uuid", "Site A", "host", duration=-1)
    assert lease_holder(str(lun)).startswith("expired (Site A")
