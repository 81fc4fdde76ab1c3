"""The watchdog's rule on real LUN directories and lease files, and the fencing settings' checks."""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

from farside.config import Fencing
from farside.storage import lease
from farside.storage.errors import BackendFailure, LunLeased
from farside.storage.mirror_marker import TARGET, Marker, write_marker
from farside.storage.watchdog import Watchdog, must_fence, sole

POOL = "pool-a"


@pytest.fixture
def lun(tmp_path: Path) -> Path:
    path = tmp_path / "lun"
    (path / ".farside-sr").mkdir(parents=True)
    return path


def test_a_live_lease_of_ours_needs_no_fence(lun: Path) -> None:
    lease.acquire(lun, POOL, "A", "host", lambda: False, duration=30)
    assert must_fence(lun, POOL, 5, time.time()) is None


def test_within_the_margin_the_lease_is_fenced(lun: Path) -> None:
    held = lease.acquire(lun, POOL, "A", "host", lambda: False, duration=30)
    assert must_fence(lun, POOL, 5, held.expiry - 6) is None
    why = must_fence(lun, POOL, 5, held.expiry - 5)
    assert why is not None and "ends at" in why


@pytest.mark.parametrize("holder", ["pool-b", None])
def test_a_lease_not_ours_is_fenced(lun: Path, holder: str | None) -> None:
    if holder is not None:
        lease.acquire(lun, holder, "B", "host", lambda: False)
    assert must_fence(lun, POOL, 5, time.time()) == "this pool holds no lease on it"


def test_a_lease_copied_from_another_directory_binds_nothing(tmp_path: Path, lun: Path) -> None:
    """A lease file taken on the original LUN, found in a copy of it, is no lease of ours there."""
    lease.acquire(lun, POOL, "A", "host", lambda: False)
    copy = tmp_path / "copy"
    (copy / ".farside-sr").mkdir(parents=True)
    (copy / ".farside-sr" / "lease.json").write_bytes((lun / ".farside-sr" / "lease.json").read_bytes())
    assert must_fence(copy, POOL, 5, time.time()) == "this pool holds no lease on it"


def test_a_mirror_target_is_fenced(lun: Path) -> None:
    lease.acquire(lun, POOL, "A", "host", lambda: False)
    write_marker(lun, Marker("m", "/state", TARGET, True))
    assert must_fence(lun, POOL, 5, time.time()) == "a storage mirror replicates into it"


def test_an_expired_lease_waits_out_the_takeover_wait(lun: Path) -> None:
    """Another pool takes an expired lease only once the takeover wait after its expiry has passed."""
    lease.acquire(lun, POOL, "A", "host", lambda: False, duration=-1)
    with pytest.raises(LunLeased) as info:
        lease.acquire(lun, "pool-b", "B", "host", lambda: False, takeover_wait=60)
    assert info.value.params[:3] == [str(lun), POOL, "A"]
    assert lease.acquire(lun, "pool-b", "B", "host", lambda: False, takeover_wait=0).pool_uuid == "pool-b"
    assert lease.renew(lun, POOL, "A", "host") is None  # A finds it taken over


def test_the_watchdog_kills_the_writers_of_a_lapsing_lun_only(tmp_path: Path, lun: Path) -> None:
    """One round kills the writers where the lease lapses, not elsewhere, and not outside LUNs."""
    healthy = tmp_path / "healthy"
    (healthy / ".farside-sr").mkdir(parents=True)
    lease.acquire(healthy, POOL, "A", "host", lambda: False, duration=60)
    lease.acquire(lun, POOL, "A", "host", lambda: False, duration=1)
    killed: list[str] = []

    def kill(writer: str, timeout: float) -> bool:
        killed.append(writer)
        return True

    writers = {lun: ["w1", "w2"], healthy: ["w3"], tmp_path / "not-a-lun": ["w4"]}
    dog = Watchdog(POOL, Fencing(), lambda: writers, kill, lambda: True)
    assert dog.check() is True  # w3 still writes, legitimately
    assert killed == ["w1", "w2"]


def test_one_watchdog_a_run_directory(tmp_path: Path) -> None:
    with sole(tmp_path) as first, sole(tmp_path) as second:
        assert first and not second


@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"renew_interval_s": 26}, "must be less than the lease TTL"),
        ({"fence_margin_s": 2}, "must cover the watchdog interval"),
        ({"lease_ttl_s": 0}, "positive"),
        ({"takeover_wait_s": -1}, "positive"),
    ],
)
def test_settings_that_break_the_timing_argument_are_refused(settings: dict[str, float], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Fencing(**settings)


def test_a_frozen_lock_holder_does_not_hang_a_plug(lun: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lease lock held on and on (its holder frozen) fails the acquire with a clear error instead of hanging."""
    monkeypatch.setattr(lease, "LOCK_WAIT_S", 0.2)
    fd = os.open(lun / ".farside-sr" / "lease.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description: it conflicts, as another process's would
        with pytest.raises(BackendFailure) as info:
            lease.acquire(lun, "pool-b", "B", "host", lambda: False)
        assert info.value.failure[0] == "SR_BACKEND_FAILURE_LEASE"
        assert "locked by another process" in info.value.failure[1]
    finally:
        os.close(fd)
    assert lease.acquire(lun, "pool-b", "B", "host", lambda: False).pool_uuid == "pool-b"
