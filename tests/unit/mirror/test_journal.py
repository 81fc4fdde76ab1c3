"""The journal: a crash before the commit changes nothing, one during the apply is finished by replay,
and a full target fails clearly with the previous cycle intact."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
from pathlib import Path

import pytest

from farside.mirror import journal
from farside.mirror.chunks import HASH
from farside.mirror.errors import MirrorIoError, MirrorTargetFull
from farside.mirror.pair import Mirrors
from farside.mirror.writer import TargetWriter
from mirror_trees import MIB, fill, tree


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs, no cleanup is special-cased."""


class CrashingWriter(TargetWriter):
    """Dies at the ``n``-th in-place write at the target, i.e. in the middle of an apply."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self._sending = False

    def send(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        self._sending = True
        try:
            super().send(fd, data, offset)
        finally:
            self._sending = False

    def write(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        if not self._sending:
            self.n -= 1
            if self.n == 0:
                raise Crash()
        super().write(fd, data, offset)


class FullTarget(TargetWriter):
    """A target with ``room`` bytes left: every write or reservation past it fails with ENOSPC."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def _use(self, n: int) -> None:
        if n > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= n

    def write(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        self._use(len(data))
        super().write(fd, data, offset)

    def reserve(self, fd: int, offset: int, length: int) -> None:
        self._use(length)
        super().reserve(fd, offset, length)


def change_three_chunks(source: Path) -> None:
    with open(source / "full.img", "r+b") as f:
        for chunk in range(3):
            f.seek(chunk * MIB)
            f.write(b"cycle two")


class TestCrash:
    def test_crash_mid_apply_is_replayed(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """A crash after two of three chunks were applied is finished by the next command, before it acts."""
        mirrors.sync(mirror)
        change_three_chunks(source)
        with pytest.raises(Crash):
            mirrors.sync(mirror, writer=CrashingWriter(3))
        assert journal.pending_exists(target)
        assert tree(target) != tree(source)  # half applied: two chunks new, one old
        assert mirrors.status(mirror)["apply_pending"]
        mirrors.split(mirror)  # replays first, then splits
        assert not journal.pending_exists(target)
        assert tree(target) == tree(source)
        assert mirrors.load(mirror).last_cycle.number == 2

    def test_replay_twice_is_harmless(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """Applying the same journal again (a crash during replay) gives the same target."""
        mirrors.sync(mirror)
        change_three_chunks(source)
        fill(source / "brand-new.img", MIB, seed=5)
        with pytest.raises(Crash):
            mirrors.sync(mirror, writer=CrashingWriter(2))
        index = journal.pending(target)
        assert index is not None
        journal.apply(target, index, TargetWriter())
        mirrors.sync(mirror)  # replays the same journal, then runs cycle 3
        assert tree(target) == tree(source)
        assert mirrors.load(mirror).last_cycle.number == 3

    def test_uncommitted_journal_is_dropped(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """A journal without its index was never committed: it is thrown away, the target untouched."""
        mirrors.sync(mirror)
        before = tree(target)
        jdir = journal.journal_dir(target)
        (jdir / "new").mkdir(parents=True)
        (jdir / "data").write_bytes(b"half a cycle")
        assert journal.pending(target) is None
        assert not jdir.exists()
        assert tree(target) == before

    def test_corrupt_chunk_is_never_applied(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """A journal chunk that no longer matches its hash stops the apply before that file is written."""
        mirrors.sync(mirror)
        change_three_chunks(source)
        with pytest.raises(Crash):
            mirrors.sync(mirror, writer=CrashingWriter(1))
        jdir = journal.journal_dir(target)
        index = json.loads((jdir / "index.json").read_text())
        before = (target / "full.img").read_bytes()
        with open(jdir / "data", "r+b") as f:
            f.write(b"bit rot")
        with pytest.raises(journal.CorruptJournal):
            journal.apply(target, index, TargetWriter())
        assert (target / "full.img").read_bytes() == before


class TestFullTarget:
    @pytest.mark.parametrize("room", [0, MIB // 2, 2 * MIB + 10])
    def test_enospc_keeps_the_previous_cycle(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path, room: int
    ) -> None:
        """ENOSPC at any point of a cycle: a clear error, the previous cycle intact, and replication
        resumes once there is room."""
        mirrors.sync(mirror)
        before = tree(target)
        change_three_chunks(source)
        fill(source / "brand-new.img", 2 * MIB, seed=6)
        with pytest.raises(MirrorTargetFull) as failure:
            mirrors.sync(mirror, writer=FullTarget(room))
        assert "no space left at the target" in failure.value.describe()
        assert "still holds cycle 1" in failure.value.describe()
        assert tree(target) == before
        assert not journal.journal_dir(target).exists()
        status = mirrors.status(mirror)
        assert status["failing"] and "MIRROR_TARGET_FULL" in status["errors"][-1]["message"]
        assert status["cycle"] == 1
        mirrors.sync(mirror)
        assert tree(target) == tree(source)
        assert not mirrors.status(mirror)["failing"]

    def test_enospc_while_applying_says_what_to_do(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """ENOSPC after the commit (in the cycle's apply, then in a later command's replay of it)
        leaves the cycle committed and half applied: the error says so and what to do, and once
        there is room the next command finishes the apply before it acts."""
        mirrors.sync(mirror)
        change_three_chunks(source)

        def says_what_to_do(failure: pytest.ExceptionInfo[MirrorTargetFull]) -> None:
            message = failure.value.describe()
            assert "cycle 2 is committed but could not be applied" in message and "Free space there" in message
            assert mirrors.status(mirror)["apply_pending"]

        with pytest.raises(MirrorTargetFull) as failure:
            mirrors.sync(mirror, writer=FullAtApply())
        says_what_to_do(failure)

        def full(*_: object) -> None:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(TargetWriter, "write", full)  # still full when split replays the apply
        with pytest.raises(MirrorTargetFull) as failure:
            mirrors.split(mirror)
        says_what_to_do(failure)
        monkeypatch.undo()
        mirrors.split(mirror)
        assert tree(target) == tree(source)
        assert mirrors.status(mirror)["state"] == "split" and mirrors.status(mirror)["cycle"] == 2


class FullAtApply(CrashingWriter):
    """Room for the journal, none for the apply: ENOSPC at the first in-place write."""

    def __init__(self) -> None:
        super().__init__(1)

    def write(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        if not self._sending:
            raise OSError(errno.ENOSPC, "No space left on device")
        super().write(fd, data, offset)


class CorruptingWriter(TargetWriter):
    """Damages the first chunk sent into a new file: a copy gone wrong between source and target."""

    def __init__(self) -> None:
        super().__init__()
        self.done = False

    def send(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        if not self.done:
            self.done = True
            # In place, in the reader's buffer after the source hash was taken: the write itself
            # is unchanged (O_DIRECT where the target has it), only the bytes went wrong.
            memoryview(data)[:7] = b"damaged"
        super().send(fd, data, offset)


class TestNewFiles:
    def test_crash_between_staging_and_rename(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A crash after the commit, before a staged new file is renamed into place: the target still
        holds the previous cycle, and replaying renames the staged file, whole."""
        mirrors.sync(mirror)
        before = tree(target)
        fill(source / "brand-new.img", 3 * MIB + 5, seed=7)

        def crash(*_: object) -> None:
            raise Crash()

        monkeypatch.setattr(journal, "apply", crash)
        with pytest.raises(Crash):
            mirrors.sync(mirror)
        monkeypatch.undo()
        index = journal.pending(target)
        assert index is not None
        staged = [op["staged"] for op in index["ops"] if op["op"] == "place"]
        assert staged and (journal.journal_dir(target) / staged[0]).is_file()
        assert tree(target) == before
        mirrors.split(mirror)  # replays: the rename
        assert tree(target) == tree(source)
        assert not journal.journal_dir(target).exists()
        assert mirrors.load(mirror).last_cycle.number == 2

    def test_damaged_copy_of_a_new_file_is_never_placed(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path
    ) -> None:
        """A new file whose copy does not match the source's hashes fails the cycle before its commit;
        the target keeps the previous cycle and the next cycle copies the file."""
        mirrors.sync(mirror)
        before = tree(target)
        fill(source / "brand-new.img", 2 * MIB, seed=8)
        with pytest.raises(MirrorIoError, match="does not match its source"):
            mirrors.sync(mirror, writer=CorruptingWriter())
        assert tree(target) == before
        assert not journal.journal_dir(target).exists()
        mirrors.sync(mirror)
        assert tree(target) == tree(source)


class RecordingWriter(TargetWriter):
    """Notes, for each write into the journal, whether it bypassed the page cache."""

    def __init__(self) -> None:
        super().__init__()
        self.sends: list[tuple[bool, int, int]] = []  # (O_DIRECT, offset, length)

    def send(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        self.sends.append((bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT), offset, len(data)))
        super().send(fd, data, offset)


class NoDirectWrites(TargetWriter):
    """A filesystem that opens files with O_DIRECT but refuses O_DIRECT writes (EINVAL)."""

    def write(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        super().write(fd, data, offset)


def _direct_supported(path: Path) -> bool:
    try:
        os.close(os.open(path / "probe", os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600))
        return True
    except OSError:
        return False
    finally:
        (path / "probe").unlink(missing_ok=True)


class TestDirectWrites:
    def test_whole_blocks_bypass_the_page_cache(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path, tmp_path: Path
    ) -> None:
        """A new file's whole chunks are written with O_DIRECT; its last partial block through the
        page cache; the copy is whole."""
        if not _direct_supported(tmp_path):
            pytest.skip("this filesystem has no O_DIRECT")
        writer = RecordingWriter()
        mirrors.sync(mirror, writer=writer)
        assert tree(target) == tree(source)
        # full.img is 3 MiB + 100 bytes: three direct chunks, then 100 bytes buffered.
        full = [(direct, offset, length) for direct, offset, length in writer.sends if length in (MIB, 100)]
        assert (True, 0, MIB) in full and (True, 2 * MIB, MIB) in full
        assert (False, 3 * MIB, 100) in full

    def test_a_filesystem_refusing_direct_writes_gets_buffered_ones(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path
    ) -> None:
        mirrors.sync(mirror, writer=NoDirectWrites())
        assert tree(target) == tree(source)

    def test_a_filesystem_without_direct_io(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        real_open = os.open

        def no_direct(path: object, flags: int, *args: int) -> int:
            if flags & os.O_DIRECT:
                raise OSError(errno.EINVAL, "Invalid argument")
            return real_open(path, flags, *args)  # type: ignore[arg-type]

        monkeypatch.setattr(journal.os, "open", no_direct)
        writer = RecordingWriter()
        mirrors.sync(mirror, writer=writer)
        monkeypatch.undo()
        assert tree(target) == tree(source)
        assert writer.sends and not any(direct for direct, _o, _l in writer.sends)


def _blake2b(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class TestOlderHash:
    """Manifests and journals written while chunks were hashed with BLAKE2b still work."""

    def test_manifest_with_blake2b_hashes(self, mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
        """A BLAKE2b manifest: the next cycle sends each changed file's data again, with no warning,
        and the manifest then carries XXH3 hashes."""
        mirrors.sync(mirror)
        path = mirrors.path / mirror / "manifest.json"
        manifest = json.loads(path.read_text())
        del manifest["hash"]
        for rel, entry in manifest["files"].items():
            data = (target / rel).read_bytes()
            entry["chunks"] = [
                None if h is None else _blake2b(data[i * MIB : (i + 1) * MIB]) for i, h in enumerate(entry["chunks"])
            ]
        path.write_text(json.dumps(manifest))
        change_three_chunks(source)
        result = mirrors.sync(mirror)
        assert result.stats.bytes_sent == 3 * MIB + 100  # all of full.img, once
        assert result.warnings == []
        assert tree(target) == tree(source)
        assert json.loads(path.read_text())["hash"] == HASH
        assert mirrors.sync(mirror).stats.bytes_sent == 0

    def test_pending_blake2b_journal_is_replayed(
        self, mirrors: Mirrors, mirror: str, source: Path, target: Path
    ) -> None:
        """A journal committed with BLAKE2b hashes is checked with BLAKE2b and replayed."""
        mirrors.sync(mirror)
        change_three_chunks(source)
        with pytest.raises(Crash):
            mirrors.sync(mirror, writer=CrashingWriter(2))
        jdir = journal.journal_dir(target)
        index = json.loads((jdir / "index.json").read_text())
        del index["hash"]
        data = (jdir / "data").read_bytes()
        for op in index["ops"]:
            for write in op.get("writes", []):
                _index, offset, length, _hash = write
                write[3] = _blake2b(data[offset : offset + length])
        (jdir / "index.json").write_text(json.dumps(index))
        mirrors.split(mirror)
        assert tree(target) == tree(source)
        mirrors.resync(mirror)
        assert tree(target) == tree(source)


def test_a_crash_while_removing_an_applied_journal(
    mirrors: Mirrors, mirror: str, source: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The index goes first: a crash while the rest of an applied journal is removed leaves nothing
    to replay, and the next cycle carries on."""
    mirrors.sync(mirror)
    change_three_chunks(source)

    def crash(*_: object, **__: object) -> None:
        raise Crash()

    monkeypatch.setattr(journal.shutil, "rmtree", crash)
    with pytest.raises(Crash):
        mirrors.sync(mirror)
    monkeypatch.undo()
    jdir = journal.journal_dir(target)
    assert (jdir / "data").exists() and not (jdir / "index.json").exists()
    assert journal.pending(target) is None
    assert tree(target) == tree(source)
    assert mirrors.sync(mirror).stats.number == 3


def _open_under(root: Path) -> list[str]:
    """This process's open files under ``root``, deleted ones included."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:
            continue
        if link.startswith(str(root)):
            found.append(link)
    return found


def test_a_failed_read_back_leaks_no_file(mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
    """A cycle of more new files than are sealed at once, whose first copy fails its check: every
    journal file is closed, so the discarded journal's space is given back."""
    for i in range(journal.SEALING + 8):
        fill(source / f"f{i:02d}.img", 64 * 1024 + 7, seed=100 + i)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(2):
        with pytest.raises(MirrorIoError, match="does not match its source"):
            mirrors.sync(mirror, writer=CorruptingWriter())
    assert _open_under(target) == []
    assert len(os.listdir("/proc/self/fd")) == before
