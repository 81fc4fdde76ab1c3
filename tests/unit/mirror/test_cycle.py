"""Cycles: the first copies everything sparse, later ones only changed chunks, each checked end to end."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from farside.mirror import journal, lock
from farside.mirror.chunks import Reader
from farside.mirror.copy import MAX_READS
from farside.mirror.errors import MirrorPreempted, MirrorState, MirrorUnknown
from farside.mirror.pair import Mirrors
from farside.mirror.writer import TargetWriter
from mirror_trees import MIB, fill, tree


class TestFirstCycle:
    def test_copies_the_tree(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """After the first cycle the target holds exactly what the source holds."""
        result = mirrors.sync(mirror)
        assert tree(target) == tree(source)
        assert result.stats.number == 1

    def test_keeps_holes(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """A sparse image stays sparse: only its data is read, sent and allocated."""
        result = mirrors.sync(mirror)
        assert (target / "sparse.img").stat().st_blocks * 512 <= 3 * MIB
        assert result.stats.bytes_read < 6 * MIB
        assert (target / "sparse.img").stat().st_size == 64 * MIB

    def test_no_change_sends_nothing(self, mirrors: Mirrors, mirror: str) -> None:
        """A cycle with nothing changed reads and sends nothing."""
        mirrors.sync(mirror)
        again = mirrors.sync(mirror)
        assert (again.stats.bytes_read, again.stats.bytes_sent, again.stats.files_changed) == (0, 0, 0)

    def test_a_recent_file_is_read_again(self, mirrors: Mirrors, mirror: str, source: Path) -> None:
        """A file written just before it was read may have had a write under way: the next cycle
        reads it again, sending only what differs, so a torn copy would be corrected."""
        mirrors.sync(mirror)
        with open(source / "full.img", "r+b") as f:
            f.write(b"just now")
        mirrors.sync(mirror)
        again = mirrors.sync(mirror)
        assert again.stats.bytes_read == (source / "full.img").stat().st_size
        assert again.stats.bytes_sent == 0


class TestLaterCycles:
    def test_only_changed_chunks(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """Changing a few bytes sends the one chunk holding them, and the target matches again."""
        mirrors.sync(mirror)
        with open(source / "full.img", "r+b") as f:
            f.seek(2 * MIB + 5)
            f.write(b"changed")
        result = mirrors.sync(mirror)
        assert result.stats.bytes_sent == MIB
        assert tree(target) == tree(source)

    def test_growth_shrink_holes_and_removal(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """Files that grow, shrink, gain holes, appear, vanish, and new directories all arrive."""
        mirrors.sync(mirror)
        fill(source / "sparse.img", 10 * MIB + 7, seed=3, data_at=(9,))
        with open(source / "full.img", "r+b") as f:
            f.truncate(MIB + 3)
        (source / "sub" / "deeper").mkdir(parents=True)
        fill(source / "sub" / "deeper" / "new.img", MIB, seed=4)
        (source / ".farside-sr" / "sr.json").unlink()
        mirrors.sync(mirror)
        assert tree(target) == tree(source)
        assert (target / "sparse.img").stat().st_blocks * 512 <= 2 * MIB
        (source / "sub" / "deeper" / "new.img").unlink()
        (source / "sub" / "deeper").rmdir()
        mirrors.sync(mirror)
        assert not (target / "sub" / "deeper").exists()
        assert tree(target) == tree(source)

    def test_a_punched_hole_arrives(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """Data that becomes zeros at the source becomes a hole at the target."""
        mirrors.sync(mirror)
        with open(source / "full.img", "r+b") as f:
            f.seek(MIB)
            f.write(bytes(MIB))
        mirrors.sync(mirror)
        assert tree(target) == tree(source)
        assert (target / "full.img").stat().st_blocks * 512 <= 2 * MIB + 8192


class ChangingSource(TargetWriter):
    """A writer hook that changes the source file at every chunk sent: a VM writing as it is read."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def send(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        super().send(fd, data, offset)
        with open(self.path, "ab") as f:
            f.write(b"x")


class TestUnstableFiles:
    def test_a_file_changing_while_read_lags(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """A file still changing after MAX_READS reads is left for the next cycle and named as lagging."""
        mirrors.sync(mirror)
        before = (target / "full.img").read_bytes()
        with open(source / "full.img", "r+b") as f:
            f.write(b"new!")
        result = mirrors.sync(mirror, writer=ChangingSource(source / "full.img"))
        assert list(result.lagging) == ["full.img"]
        assert (target / "full.img").read_bytes() == before
        status = mirrors.status(mirror)
        assert status["lagging"]["full.img"]["rpo_seconds"] is not None
        assert MAX_READS > 1
        mirrors.sync(mirror)
        assert tree(target) == tree(source)
        assert mirrors.status(mirror)["lagging"] == {}


class TestStates:
    def test_paused_and_split_do_not_sync(self, mirrors: Mirrors, mirror: str) -> None:
        """sync refuses a paused or split mirror, saying what to do."""
        mirrors.pause(mirror)
        with pytest.raises(MirrorState, match="unpause"):
            mirrors.sync(mirror)
        mirrors.unpause(mirror)
        with pytest.raises(MirrorState, match="sync"):
            mirrors.split(mirror)  # no complete cycle yet: the target holds nothing to use
        mirrors.sync(mirror)
        mirrors.split(mirror)
        with pytest.raises(MirrorState, match="resync"):
            mirrors.sync(mirror)

    def test_reverse_only_when_split(self, mirrors: Mirrors, mirror: str) -> None:
        """reverse refuses a replicating mirror."""
        with pytest.raises(MirrorState, match="split"):
            mirrors.reverse(mirror)

    def test_resync_lists_target_changes(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """After split, what the target changed is listed, then overwritten; only changed chunks move."""
        mirrors.sync(mirror)
        mirrors.split(mirror)
        with open(target / "full.img", "r+b") as f:
            f.seek(5)
            f.write(b"target wrote this")
        (target / "own.img").write_bytes(b"made at the DR site")
        with open(source / "sparse.img", "r+b") as f:
            f.seek(40 * MIB)
            f.write(b"source wrote this")
        result = mirrors.resync(mirror)
        assert any(w.startswith("full.img: 1 chunk") for w in result.warnings)
        assert any(w.startswith("own.img:") for w in result.warnings)
        assert result.stats.bytes_sent == 2 * MIB
        assert tree(target) == tree(source)
        assert mirrors.load(mirror).state == "replicating"

    def test_reverse_and_resync_back(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """Failback: split, the DR copy changes, reverse, resync: the old source gets only the changes."""
        mirrors.sync(mirror)
        mirrors.split(mirror)
        with open(target / "full.img", "r+b") as f:
            f.write(b"written at the DR site")
        mirrors.reverse(mirror)
        record = mirrors.load(mirror)
        assert (record.source, record.target) == (str(target), str(source))
        result = mirrors.resync(mirror)
        assert result.stats.bytes_sent == MIB
        assert result.warnings == []
        assert tree(source) == tree(target)

    def test_delete_leaves_both_sides(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """delete forgets the mirror and its markers; the data on both sides stays."""
        mirrors.sync(mirror)
        mirrors.delete(mirror)
        assert mirrors.names() == []
        assert tree(target) == tree(source)
        assert not (target / ".farside-mirror").exists()
        assert not (source / ".farside-mirror").exists()


class TestSnapshot:
    def test_snapshot_is_the_last_cycle(self, mirrors: Mirrors, mirror: str, source: Path, tmp_path: Path) -> None:
        """A snapshot holds the last complete cycle, sparse, without the mirror's own files."""
        mirrors.sync(mirror)
        expected = tree(source)
        fill(source / "full.img", MIB, seed=9)
        mirrors.snapshot(mirror, tmp_path / "snap")
        assert tree(tmp_path / "snap") == expected
        assert not (tmp_path / "snap" / ".farside-mirror").exists()
        assert (tmp_path / "snap" / "sparse.img").stat().st_blocks * 512 <= 3 * MIB
        assert os.listdir(tmp_path / "site-b") == ["lun1"]

    def test_a_split_target_written_since_is_not_the_last_cycle(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path, tmp_path: Path
    ) -> None:
        """A split mirror's snapshot is the last cycle only while nobody wrote the target; after a
        write it is refused, naming what changed and what to do."""
        with pytest.raises(MirrorState, match="no cycle has completed yet"):
            mirrors.snapshot(mirror, tmp_path / "early")
        mirrors.sync(mirror)
        expected = tree(source)
        mirrors.split(mirror)
        mirrors.snapshot(mirror, tmp_path / "untouched")
        assert tree(tmp_path / "untouched") == expected
        with open(target / "full.img", "r+b") as f:
            f.write(b"written by the pool after the split")
        with pytest.raises(MirrorState, match=r"written since the split \(full.img\).*copy .* itself"):
            mirrors.snapshot(mirror, tmp_path / "late")
        assert not (tmp_path / "late").exists()


class GatedWriter(TargetWriter):
    """Holds the cycle at its first chunk until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.go = threading.Event()

    def send(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        super().send(fd, data, offset)
        self.started.set()
        assert self.go.wait(30)


def _in_thread(call: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    """Run ``call`` in a thread; the list gets its result or the exception it raised."""
    out: list[object] = []

    def body() -> None:
        try:
            out.append(call())
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=body)
    thread.start()
    return thread, out


class TestPreemption:
    def _wait_for_request(self, mirrors: Mirrors, mirror: str) -> None:
        flag = lock.Preemption(mirrors.state_dir.mirror_dir(mirror), first=False)
        try:
            for _ in range(3000):
                if flag.is_set():
                    return
                time.sleep(0.01)
            raise AssertionError("the split never asked for the mirror")
        finally:
            flag.close()

    def _interrupted(
        self, mirrors: Mirrors, mirror: str, cycle: Callable[[TargetWriter], object], command: str
    ) -> MirrorPreempted:
        """Run ``cycle`` until its first chunk, then ``command`` (split or pause); what the cycle raised."""
        writer = GatedWriter()
        cycling, cycled = _in_thread(lambda: cycle(writer))
        assert writer.started.wait(30)
        taking, took = _in_thread(lambda: getattr(mirrors, command)(mirror))
        self._wait_for_request(mirrors, mirror)
        writer.go.set()
        cycling.join(30)
        taking.join(30)
        assert isinstance(cycled[0], MirrorPreempted) and not isinstance(took[0], Exception), (cycled, took)
        return cycled[0]

    @pytest.mark.parametrize("command", ["split", "pause"])
    def test_split_or_pause_abandons_the_cycle_in_progress(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path, command: str
    ) -> None:
        """A split (or pause) issued during a cycle takes the mirror at the cycle's next chunk: the
        cycle is abandoned before its commit, the target keeps the last cycle, no error is recorded."""
        mirrors.sync(mirror)
        before = tree(target)
        fill(source / "new.img", 4 * MIB, seed=9)
        preempted = self._interrupted(mirrors, mirror, lambda w: mirrors.sync(mirror, writer=w), command)
        assert "still holds cycle 1" in preempted.describe()
        status = mirrors.status(mirror)
        assert status["state"] == command.replace("pause", "paused")
        assert status["cycle"] == 1 and not status["failing"] and status["errors"] == []
        assert tree(target) == before

    def test_split_during_the_first_sync_waits_for_it(self, mirrors: Mirrors, mirror: str, target: Path) -> None:
        """Before any cycle completed a split would be refused, so the first sync does not give up
        for it: the split waits, then splits the first cycle."""
        writer = GatedWriter()
        syncing, synced = _in_thread(lambda: mirrors.sync(mirror, writer=writer))
        assert writer.started.wait(30)
        taking, took = _in_thread(lambda: mirrors.split(mirror))
        self._wait_for_request(mirrors, mirror)  # the split asks...
        first = lock.Preemption(mirrors.state_dir.mirror_dir(mirror), first=True)
        assert not first.is_set()  # ...and the first cycle does not hear it
        first.close()
        writer.go.set()
        syncing.join(30)
        taking.join(30)
        assert not isinstance(synced[0], Exception) and not isinstance(took[0], Exception), (synced, took)
        assert mirrors.status(mirror)["state"] == "split"
        assert mirrors.status(mirror)["cycle"] == 1

    def test_a_split_waiting_through_the_first_cycle_still_preempts_the_second(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path
    ) -> None:
        """A split asked for during the first sync does not decide once: if a daemon takes the lock
        back for cycle 2 before the split gets it, cycle 2 gives up for the split."""
        writer = GatedWriter()
        syncing, synced = _in_thread(lambda: mirrors.sync(mirror, writer=writer))
        assert writer.started.wait(30)
        with lock.held(mirrors.state_dir.mirror_dir(mirror) / lock.SPLIT_LOCK):  # a split waiting
            writer.go.set()
            syncing.join(30)
            assert not isinstance(synced[0], Exception) and mirrors.load(mirror).last_cycle.number == 1
            fill(source / "second.img", 4 * MIB, seed=10)
            with pytest.raises(MirrorPreempted, match="still holds cycle 1"):
                mirrors.sync(mirror)  # cycle 2, under the waiting split
        mirrors.split(mirror)
        assert not (target / "second.img").exists()

    def _interrupted_resync(self, mirrors: Mirrors, mirror: str, source: Path, command: str) -> MirrorPreempted:
        """A resync under way when ``command`` (split or pause) asks for the mirror; what it raised."""
        mirrors.sync(mirror)
        mirrors.split(mirror)
        fill(source / "new.img", 4 * MIB, seed=11)
        return self._interrupted(mirrors, mirror, lambda w: mirrors.resync(mirror, writer=w), command)

    def test_a_resync_preempted_says_what_the_target_holds(self, mirrors: Mirrors, mirror: str, source: Path) -> None:
        preempted = self._interrupted_resync(mirrors, mirror, source, "split")
        assert "still holds what it held before the resync" in preempted.describe()
        assert mirrors.status(mirror)["state"] == "split"

    def test_a_preempted_cycle_stops_checking_what_it_throws_away(
        self, mirrors: Mirrors, mirror: str, source: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The background read-back of a new file (64 MiB here, a whole image in life) stops at its
        next batch once the cycle is abandoned: a split does not wait for the disk to re-read a
        journal that is about to be deleted."""
        mirrors.sync(mirror)
        fill(source / "a.img", 64 * MIB, seed=1)  # checked in the background while b.img is copied
        fill(source / "b.img", 4 * MIB, seed=2)
        reading, asked = threading.Event(), threading.Event()
        after_ask: list[int] = []
        real_seal = journal._seal

        class Observed:
            """The sealing thread's reader: holds the read-back at its first batch until the cycle
            was abandoned, then counts what it is still asked to read."""

            def __init__(self, real: Reader, abandon: threading.Event) -> None:
                self.real, self.abandon = real, abandon

            def hashed(self, fd: int, size: int, indexes: list[int]) -> Iterator[tuple[int, memoryview, str | None]]:
                for n, item in enumerate(self.real.hashed(fd, size, indexes)):
                    if self.abandon.is_set():
                        after_ask.append(item[0])
                    yield item
                    if n == 0:
                        reading.set()
                        assert asked.wait(60) and self.abandon.wait(60)

        def seal(
            new: journal.NewFile, hashes: list[str | None], size: int, rel: str, reader: Reader, abandon: Any
        ) -> None:
            real_seal(new, hashes, size, rel, Observed(reader, abandon), abandon)  # type: ignore[arg-type]

        monkeypatch.setattr(journal, "_seal", seal)
        pausing: list[threading.Thread] = []

        class PauseArrives(TargetWriter):
            """At b.img's first chunk (a.img being read back), a pause asks for the mirror."""

            def send(self, fd: int, data: bytes | memoryview, offset: int) -> None:
                super().send(fd, data, offset)
                if not pausing and os.readlink(f"/proc/self/fd/{fd}").endswith("new/2"):
                    assert reading.wait(60)
                    pausing.append(_in_thread(lambda: mirrors.pause(mirror))[0])
                    self._wait_for_pause()
                    asked.set()

            def _wait_for_pause(self) -> None:
                flag = lock.Preemption(mirrors.state_dir.mirror_dir(mirror), first=False)
                while not flag.is_set():
                    time.sleep(0.01)
                flag.close()

        try:
            with pytest.raises(MirrorPreempted):
                mirrors.sync(mirror, writer=PauseArrives())
        finally:
            asked.set()
            for thread in pausing:
                thread.join(30)
        assert pausing and mirrors.status(mirror)["state"] == "paused"
        assert len(after_ask) <= 1, f"{len(after_ask)} chunks of 64 read back after the cycle was abandoned"

    def test_a_resync_paused_halfway_is_still_a_resync_once_unpaused(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path
    ) -> None:
        """Its target still holds what the split left until a cycle completes, and says so."""
        self._interrupted_resync(mirrors, mirror, source, "pause")
        mirrors.unpause(mirror)
        assert mirrors.status(mirror)["state"] == "resyncing"
        mirrors.sync(mirror)
        assert mirrors.status(mirror)["state"] == "replicating" and tree(target) == tree(source)

    def test_a_command_waiting_on_a_deleted_mirror(self, mirrors: Mirrors, mirror: str) -> None:
        """A command that waited for the lock of a mirror deleted meanwhile says the mirror is gone,
        instead of acting under a lock on a file that no longer guards anything."""
        mirrors.sync(mirror)
        mdir = mirrors.state_dir.mirror_dir(mirror)
        with lock.held(mdir / lock.MIRROR_LOCK):
            waiting, waited = _in_thread(lambda: mirrors.unpause(mirror))
            time.sleep(0.3)  # let it block on the lock (if not, it finds no mirror: the same outcome)
            # What delete leaves once it lets go of the lock: the directory and its files gone.
            for f in mdir.iterdir():
                f.unlink()
            mdir.rmdir()
        waiting.join(30)
        assert isinstance(waited[0], MirrorUnknown), waited


def test_a_lock_file_replaced_while_waiting_is_taken_anew(tmp_path: Path) -> None:
    path = tmp_path / "mirror.lock"
    got: list[int] = []
    with lock.held(path):
        thread, _ = _in_thread(lambda: _hold_and_note(path, got))
        time.sleep(0.3)
        path.unlink()
    thread.join(30)
    assert got == [path.stat().st_ino]


def _hold_and_note(path: Path, got: list[int]) -> None:
    with lock.held(path):
        got.append(path.stat().st_ino)
