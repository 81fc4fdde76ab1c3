"""Reading the source while it changes under the cycle: files removed after the walk, files
truncated between SEEK_DATA and SEEK_HOLE, a pool's metadata written by rename. None of them is a
failure of replication: the cycle carries on, and the next one takes what is there."""

from __future__ import annotations

import multiprocessing as mp
import os
import random
from collections.abc import Callable
from multiprocessing.synchronize import Event
from pathlib import Path

from farside.mirror.errors import MirrorIoError
from farside.mirror.pair import Mirrors
from farside.mirror.writer import TargetWriter
from farside.storage.files import write_json
from mirror_trees import tree

# Cycles run against a writer process: enough to hit the windows many times (hundreds of hits
# were measured at 1,500 cycles); the soak runs five times more.
CYCLES = 1500 if os.environ.get("FARSIDE_SOAK") == "1" else 300


class RemovesLater(TargetWriter):
    """While the first file is copied, a later one is removed from the source (a VDI destroyed)."""

    def __init__(self, victim: Path) -> None:
        super().__init__()
        self.victim = victim

    def send(self, fd: int, data: bytes | memoryview, offset: int) -> None:
        super().send(fd, data, offset)
        self.victim.unlink(missing_ok=True)


def test_a_file_removed_during_the_cycle(mirrors: Mirrors, mirror: str, source: Path, target: Path) -> None:
    """A file gone between the walk and its read is neither an error nor lagging: it is not copied."""
    (source / "zz.img").write_bytes(b"z" * 10000)
    result = mirrors.sync(mirror, writer=RemovesLater(source / "zz.img"))
    assert not mirrors.status(mirror)["failing"] and result.lagging == {}
    assert tree(target) == tree(source)


def test_a_mirrored_file_removed_during_the_cycle_goes(
    mirrors: Mirrors, mirror: str, source: Path, target: Path
) -> None:
    (source / "zz.img").write_bytes(b"z" * 10000)
    mirrors.sync(mirror)
    (source / "full.img").write_bytes(b"changed")  # read first, while zz.img is removed
    mirrors.sync(mirror, writer=RemovesLater(source / "zz.img"))
    assert not (target / "zz.img").exists() and tree(target) == tree(source)


def _metadata_writer(lun: Path, stop: Event) -> None:
    i = 0
    while not stop.is_set():
        i += 1
        write_json(lun / ".farside-sr" / f"vdi{i % 3}.json", {"i": i})  # temporary file, then rename


def _truncator(path: Path, stop: Event) -> None:
    rng = random.Random(1)
    blob = rng.randbytes(3 << 20)
    while not stop.is_set():
        with open(path, "r+b") as f:
            f.truncate(0)
            f.seek(rng.randrange(4 << 20))
            f.write(blob[: rng.randrange(1, 3 << 20)])
            f.truncate(rng.randrange(0, 8 << 20))


def _errors_while(mirrors: Mirrors, mirror: str, worker: Callable[..., None], *args: object) -> list[str]:
    stop = mp.Event()
    proc = mp.Process(target=worker, args=(*args, stop))
    proc.start()
    errors: list[str] = []
    try:
        for _ in range(CYCLES):
            try:
                mirrors.sync(mirror)
            except MirrorIoError as exc:
                errors.append(exc.describe())
                break
    finally:
        stop.set()
        proc.join(60)
    return errors


def test_a_pools_metadata_writes_never_fail_a_cycle(mirrors: Mirrors, mirror: str, source: Path) -> None:
    """A pool rewrites its SR's records in the LUN (temporary file, rename) while cycles run."""
    assert _errors_while(mirrors, mirror, _metadata_writer, source) == []
    assert not mirrors.status(mirror)["failing"]


def test_a_file_truncated_while_read_never_fails_a_cycle(mirrors: Mirrors, mirror: str, source: Path) -> None:
    (source / "churn.img").write_bytes(b"")
    assert _errors_while(mirrors, mirror, _truncator, source / "churn.img") == []
