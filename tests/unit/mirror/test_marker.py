"""The LUN marker: pools cannot plug a mirror's target until it is split; the adapter finds mirrors by it."""

from __future__ import annotations

from pathlib import Path

import pytest

from farside.errors import OperationNotAllowed
from farside.mirror.adapter import MirrorReplication
from farside.mirror.pair import Mirrors
from farside.storage import lease
from farside.storage.errors import LunIsMirrorTarget
from farside.storage.probe import probe_xml
from farside.storage.replication import ReplicationState


def plug(lun: Path) -> lease.Lease:
    return lease.acquire(lun, "pool-uuid", "Site B", "host-b", lambda: False)


class TestPlugRefusal:
    def test_active_target_is_refused(self, mirrors: Mirrors, mirror: str, target: Path) -> None:
        """Plugging a LUN a mirror replicates into fails with LUN_IS_MIRROR_TARGET [path, mirror]."""
        mirrors.sync(mirror)
        with pytest.raises(LunIsMirrorTarget) as refused:
            plug(target)
        assert refused.value.failure == ["LUN_IS_MIRROR_TARGET", str(target), mirror]
        assert "split the mirror first" in refused.value.describe()

    def test_probe_still_lists_it(self, mirrors: Mirrors, mirror: str, target: Path) -> None:
        """DR discovery can still see the SR on a mirror target."""
        mirrors.sync(mirror)
        assert "<UUID>sr-1</UUID>" in probe_xml(target)

    def test_split_target_plugs(self, mirrors: Mirrors, mirror: str, target: Path) -> None:
        """After split the target plugs normally; the source always does."""
        mirrors.sync(mirror)
        mirrors.split(mirror)
        assert plug(target).pool_uuid == "pool-uuid"

    def test_source_plugs(self, mirrors: Mirrors, mirror: str, source: Path) -> None:
        """The source LUN carries a marker too, and plugs."""
        assert plug(source).pool_name == "Site B"

    def test_a_lun_below_a_mirrored_directory(self, mirrors: Mirrors, source: Path, tmp_path: Path) -> None:
        """A mirror of a directory of LUNs guards every LUN in it."""
        mirrors.create("all", source.parent, tmp_path / "site-b-all")
        mirrors.sync("all")
        with pytest.raises(LunIsMirrorTarget):
            plug(tmp_path / "site-b-all" / "lun1")

    def test_resync_refuses_a_plugged_target(self, mirrors: Mirrors, mirror: str, target: Path) -> None:
        """resync never writes into a LUN a pool has plugged."""
        mirrors.sync(mirror)
        mirrors.split(mirror)
        plug(target)
        with pytest.raises(Exception, match="unplug its SR there"):
            mirrors.resync(mirror)


class TestAdapter:
    def test_states_at_both_ends(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """The adapter reads the mirror's state from the target's marker and from the source's."""
        replication = MirrorReplication()
        assert replication.state(target) == ReplicationState.REPLICATING
        assert replication.state(source) == ReplicationState.REPLICATING
        mirrors.pause(mirror)
        assert replication.state(target) == ReplicationState.PAUSED

    def test_unmanaged_lun_is_unknown(self, tmp_path: Path) -> None:
        """A LUN no mirror manages is UNKNOWN, and split says to use the storage array."""
        replication = MirrorReplication()
        assert replication.state(tmp_path) == ReplicationState.UNKNOWN
        with pytest.raises(OperationNotAllowed, match="storage array"):
            replication.split(tmp_path)

    def test_split_reverse_resync(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """The DR engine's split, reverse and resync act on the mirror."""
        replication = MirrorReplication()
        mirrors.sync(mirror)
        replication.split(target)
        assert replication.state(target) == ReplicationState.SPLIT
        replication.reverse(target)
        assert mirrors.load(mirror).source == str(target)
        replication.resync(target)
        assert replication.state(source) == ReplicationState.REPLICATING
        with pytest.raises(LunIsMirrorTarget):
            plug(source)

    def test_failing_mirror_is_error(self, mirrors: Mirrors, mirror: str, source: Path) -> None:
        """A mirror whose last cycle failed reports ERROR."""
        mirrors.sync(mirror)
        source.rename(source.with_name("gone"))
        with pytest.raises(Exception, match="missing"):
            mirrors.sync(mirror)
        assert MirrorReplication().state(source.with_name("gone")) == ReplicationState.ERROR

    def test_fenced_while_no_pool_holds_the_other_side(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path
    ) -> None:
        """The DR fence's storage proof: the other side of the mirror is held by no pool (no live
        lease on it); a live lease there, or an other side out of reach, proves nothing."""
        replication = MirrorReplication()
        mirrors.sync(mirror)
        assert replication.fenced(target) == f"mirror m: no pool holds its other side {source} (no live lease on it)"
        plug(source)  # site A's pool holds its LUN
        assert replication.fenced(target) == ""
        lease.release(source, "pool-uuid")
        assert replication.fenced(target) != ""
        source.rename(source.with_name("gone"))  # the other side cannot be read: nothing is known of it
        assert replication.fenced(target) == ""
        assert replication.fenced(target.parent / "unmanaged") == ""
