"""The daemon serving every mirror of a state directory, as mirrors come and go."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from farside.mirror.daemon import Daemon
from farside.mirror.errors import MirrorPreempted, MirrorUnknown
from farside.mirror.pair import Mirrors


def _until(done: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_mirror_deleted_and_created_again_is_served_under_its_new_lock(
    mirrors: Mirrors, mirror: str, source: Path, tmp_path: Path
) -> None:
    """The daemon lets go of a deleted mirror's lock, and holds the new one's: status names it,
    and a second daemon is kept out."""
    lines: list[str] = []
    daemon = Daemon(mirrors, [], report=lines.append, notice=lines.append)
    thread = threading.Thread(target=daemon.run)
    thread.start()
    try:
        _until(lambda: mirrors.load(mirror).last_cycle.number >= 1, "the first cycle")
        mirrors.delete(mirror)
        mirrors.create(mirror, source, tmp_path / "site-b" / "again", interval=0)
        _until(lambda: mirrors.load(mirror).last_cycle.number >= 1, "the daemon serves the new mirror")
        assert mirrors.status(mirror)["daemon_pid"] == os.getpid()
    finally:
        daemon.request_stop()
        thread.join(120)
    assert not thread.is_alive()


def test_a_command_waiting_for_a_deleted_mirror_leaves_nothing_behind(
    mirrors: Mirrors, mirror: str, source: Path, target: Path
) -> None:
    """A sync queued behind a delete finds the mirror gone (MIRROR_UNKNOWN) or is abandoned for
    it, and creates no lock file in its place: the delete finishes and the name is free again,
    whichever of the two gets the lock first."""

    def queued_sync(outcomes: list[str]) -> None:
        try:
            mirrors.sync(mirror)
        except MirrorUnknown:
            outcomes.append("unknown")
        except MirrorPreempted:
            outcomes.append("abandoned for the delete")
        else:
            outcomes.append("synced")

    def queued_delete(go: threading.Event) -> None:
        go.wait()
        mirrors.delete(mirror)

    for _ in range(10):
        outcomes: list[str] = []
        go = threading.Event()
        waiter = threading.Thread(target=queued_sync, args=(outcomes,))
        deleter = threading.Thread(target=queued_delete, args=(go,))
        with mirrors.locked(mirror):
            waiter.start()
            deleter.start()
            go.set()
            time.sleep(0.1)  # both now wait for the lock held here
        waiter.join(60)
        deleter.join(60)
        assert len(outcomes) == 1
        assert list(mirrors.state_dir.path.iterdir()) == []
        mirrors.create(mirror, source, target, interval=0)
