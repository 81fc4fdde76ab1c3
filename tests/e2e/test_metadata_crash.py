"""Metadata VDIs under SIGKILL, torn byte copies and corruption, through the real Replicator and Target.

A child process (``CHILD``, written to the test's directory) opens a pool database made by
``make_pool``, replicates it with ``Replicator`` to a metadata image with small halves (32 KiB: at
the ~100 commits a second an fsync-bound writer makes, a full copy rolls over to the other half
every ~40 commits, so rollovers happen inside every run) and changes VMs at random in
``db.write()`` transactions. After each ``write()`` returns (its barrier has run) the child prints
``ack <generation>``: an acknowledged change.

How content is checked: the child subscribes a journal to the database *before* the replicator.
Subscribers run in order, inside the commit, so every generation is appended to the journal (with
the SHA-256 of the canonical JSON of the whole replicated state at that generation, and an fsync)
before its delta is even queued for the metadata writer; a full copy is taken under the database
lock, so its generation is journaled too. Whatever generation a metadata image opens at is
therefore in the journal, and the image's objects must hash to exactly the journaled value. The
journal itself is checked against the database on disk: that is at most one commit ahead of the
journal (a kill between SQLite's commit and the journal's write), and when they are level the
database's own replicated state must hash to the journal's last entry.

A SIGKILL leaves the page cache alone, so a kill rarely tears a write; what a torn write (or a
power cut) leaves behind is what a byte copy taken during the write holds, which the copy test
checks, including a slow copy spanning a writer's restart. tests/unit/replication/test_format.py
tears every write at chosen bytes.

``FARSIDE_SOAK=1`` (``make soak``) runs 200 kills and 200 copies instead of 20.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from farside.cli.main import main as farside_main
from farside.db import Commit, Database
from farside.replication import format as fmt
from farside.replication.foreign import ForeignCache, read_copy
from farside.replication.replicator import Replicator
from farside.replication.state import REPLICATED, full_payload

from pools import PoolServer, make_pool
from vms import make_sr

pytestmark = pytest.mark.e2e

SOAK = os.environ.get("FARSIDE_SOAK") == "1"
RUNS = 200 if SOAK else 20
HALF = 32 << 10
VDI = "OpaqueRef:crash-test-metadata"  # no such VDI row: Replicator._status has nothing to write
_JOURNAL_LINE = re.compile(r"(\d+) ([0-9a-f]{64})")

CHILD = r"""
import hashlib, os, random, sys
from pathlib import Path

import orjson

from farside.db import Database
from farside.replication.replicator import Replicator
from farside.replication.state import full_payload

db_path, metadata, journal, half, seed, vdi = sys.argv[1:7]
MAX_VMS = 30


def digest(objects):
    canonical = orjson.loads(orjson.dumps(objects))
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


db = Database.open(Path(db_path))
with db.read() as tx:
    pool = tx.refs("pool")[0]
journal_fd = os.open(journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def log_state(generation):
    with db.read() as tx:
        objects = full_payload(tx, "", "", generation, "")["objects"]
    os.write(journal_fd, f"{generation} {digest(objects)}\n".encode())
    os.fsync(journal_fd)


log_state(db.generation)
# Before the replicator: a generation is journaled before its delta is queued.
db.subscribe(lambda commit: log_state(commit.generation))
replicator = Replicator(db, pool, int(half), bytes(32))
print("opening", db.generation, flush=True)
replicator.start(vdi, Path(metadata))
target = replicator.targets[vdi]
print("ready", target.generation, flush=True)
rng = random.Random(int(seed))


def change(tx):
    vms = [r for r in tx.refs("VM") if not tx.get_field("VM", r, "is_control_domain")]
    roll = rng.random()
    if not vms or (roll < 0.25 and len(vms) < MAX_VMS):
        tx.create("VM", {"name_label": f"vm-{rng.randrange(10**6)}", "other_config": {"made": "crash-test"}})
    elif roll < 0.4:
        tx.destroy("VM", rng.choice(vms))
    elif roll < 0.6:
        tx.set_fields("VM", rng.choice(vms), {"name_label": f"renamed-{rng.randrange(10**6)}"})
    elif roll < 0.8:
        tx.set_fields("VM", rng.choice(vms), {"order": rng.randrange(100)})
    else:
        config = {f"key{i}": str(rng.random()) for i in range(rng.randrange(4))}
        tx.set_fields("VM", rng.choice(vms), {"other_config": config})


while True:
    with db.write() as tx:
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            change(tx)
    generation = db.generation
    # The barrier waits STALL_S at most: only a change the target holds is acknowledged.
    print("ack" if target.generation >= generation else "stall", generation, flush=True)
"""


def digest(objects: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of replicated objects (the child's ``digest``)."""
    canonical = orjson.loads(orjson.dumps(objects))
    return hashlib.sha256(orjson.dumps(canonical, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass
class Files:
    """One pool's database, its metadata image, the child's journal and the child's script."""

    root: Path
    db: Path = field(init=False)
    metadata: Path = field(init=False)
    journal: Path = field(init=False)
    script: Path = field(init=False)

    def __post_init__(self) -> None:
        make_pool(self.root / "pool")
        self.db = self.root / "pool" / "pool.db"
        self.metadata = new_image(self.root / "metadata.img")
        self.journal = self.root / "journal"
        self.script = self.root / "child.py"
        self.script.write_text(CHILD)


def new_image(path: Path, half: int = HALF) -> Path:
    """A zero-filled metadata image, as enable_database_replication creates it."""
    with open(path, "wb") as fh:
        fh.truncate(fmt.HEADER_SIZE + 2 * half)
    return path


class Writer:
    """A child process changing VMs and replicating them; its stdout is read as it comes."""

    def __init__(self, files: Files, seed: int, log: Path) -> None:
        args = [str(files.db), str(files.metadata), str(files.journal), str(HALF), str(seed), VDI]
        with open(log, "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, str(files.script), *args], stdout=subprocess.PIPE, stderr=err, text=True
            )
        self.log = log
        self.lines: list[str] = []
        self.said: dict[str, float] = {}  # first word of a line → when it was first read
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.strip())
            self.said.setdefault(line.split(" ", 1)[0], time.monotonic())

    def wait_for(self, word: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(line.startswith(word) for line in self.lines):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self._reader.join(5)
                raise AssertionError(f"the child never said {word!r}: {self.log.read_text()[-2000:]}")
            time.sleep(0.002)

    def kill(self) -> None:
        """SIGKILL (if still running) and reap; then every line it wrote has been read."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def acknowledged(self) -> list[int]:
        return [int(line.split()[1]) for line in list(self.lines) if line.startswith(("ready ", "ack "))]

    def stalls(self) -> int:
        return sum(line.startswith("stall ") for line in list(self.lines))


def read_journal(path: Path) -> dict[int, str]:
    """Generation → state digest; a generation journaled twice (a restart) must agree with itself."""
    journal: dict[int, str] = {}
    for line in path.read_text().splitlines():
        match = _JOURNAL_LINE.fullmatch(line)
        assert match, f"unreadable journal line {line!r}"
        generation, state = int(match[1]), match[2]
        assert journal.setdefault(generation, state) == state, f"generation {generation} journaled twice, differently"
    return journal


def open_image(path: Path) -> tuple[fmt.Snapshot | None, list[fmt.HalfReport]]:
    """The newest complete generation, read as VDI.open_database does (no half size given)."""
    with open(path, "rb") as fh:
        snapshot, _, reports = fmt.newest(fh)
    return snapshot, reports


def database_state(path: Path) -> tuple[int, str, str]:
    """The database on disk: its generation, the digest of its replicated state, the pool's uuid."""
    db = Database.open(path)
    try:
        with db.read() as tx:
            pool = tx.get_record("pool", tx.refs("pool")[0])
            return db.generation, digest(full_payload(tx, "", "", db.generation, "")["objects"]), pool["uuid"]
    finally:
        db.close()


@pytest.mark.timeout(120 + 4 * RUNS)
def test_sigkill_at_random_points_keeps_every_acknowledged_change(tmp_path: Path) -> None:
    """SIGKILLed at random points: the image opens at or after the last ack, holding exactly that generation."""
    files = Files(tmp_path)
    seed = int(os.environ.get("FARSIDE_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    acked, stalls, ahead = -1, 0, 0
    halves: set[int] = set()
    startup = [0.01]  # how long the child's first full copy takes (opening → ready), as observed
    for run in range(RUNS):
        where = f"seed {seed}, run {run}"
        writer = Writer(files, rng.randrange(1 << 32), tmp_path / f"child-{run}.log")
        try:
            writer.wait_for("opening")
            # Mostly 0.05-0.5 s into the run; one kill in four aims at the start-up full copy.
            aim = sorted(startup)[len(startup) // 2]
            time.sleep(rng.uniform(0, 1.5 * aim) if rng.random() < 0.25 else rng.uniform(0.05, 0.5))
        finally:
            writer.kill()
        if "ready" in writer.said:
            startup.append(writer.said["ready"] - writer.said["opening"])
        acked = max([acked, *writer.acknowledged()])
        stalls += writer.stalls()

        journal = read_journal(files.journal)
        snapshot, reports = open_image(files.metadata)
        if snapshot is None:
            assert acked < 0, f"{where}: the image opens to nothing after generation {acked} was acked: {reports}"
            continue
        assert snapshot.generation >= acked, f"{where}: opens at {snapshot.generation}, older than acked {acked}"
        assert snapshot.generation in journal, f"{where}: generation {snapshot.generation} was never committed"
        assert digest(snapshot.objects) == journal[snapshot.generation], (
            f"{where}: the image's objects at generation {snapshot.generation} are not the database's"
        )
        on_disk, state, pool_uuid = database_state(files.db)
        last = max(journal)
        assert snapshot.generation <= last <= on_disk <= last + 1, f"{where}: {snapshot.generation} {last} {on_disk}"
        if on_disk == last:
            assert state == journal[last], f"{where}: the journal does not match the database at {last}"
        assert snapshot.pool_uuid == pool_uuid
        halves.add(snapshot.half)
        ahead += snapshot.generation > acked
    assert halves == {0, 1}, f"seed {seed}: the image never rolled over to half 1"
    assert acked >= 0, f"seed {seed}: nothing was ever acknowledged"
    print(f"{RUNS} kills: acked up to {acked}, {ahead} ahead of the last ack, {stalls} stalls, start-up {aim:.4f} s")


def take_copy(kind: str, source: Path, dest: Path) -> None:
    """A byte copy of an image that is being written."""
    if kind == "copyfile":
        shutil.copyfile(source, dest)
    elif kind == "sparse":
        subprocess.run(["cp", "--sparse=always", str(source), str(dest)], check=True)
    elif kind == "shortened":  # a sparse copy that dropped the zeros at the end
        dest.write_bytes(source.read_bytes().rstrip(b"\0"))
    else:  # slow: 1 KiB reads with pauses, so the copy spans several writes
        with open(source, "rb") as src, open(dest, "wb") as out:
            while chunk := src.read(1024):
                out.write(chunk)
                time.sleep(0.0005)


KINDS = ("copyfile", "sparse", "slow", "shortened", "restart")


@pytest.mark.timeout(120 + 2 * RUNS)
def test_byte_copies_taken_during_writes_open_at_a_complete_generation(tmp_path: Path) -> None:
    """Copies taken while a child writes (or restarts) open at a journaled generation, never below an earlier ack."""
    files = Files(tmp_path)
    seed = int(os.environ.get("FARSIDE_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    copies: list[tuple[Path, str, int, fmt.Snapshot | None]] = []
    writers = [Writer(files, rng.randrange(1 << 32), tmp_path / "child-0.log")]
    acked, restarted_over_half_0 = -1, False
    try:
        writers[-1].wait_for("ready")
        deadline = time.monotonic() + 60
        n = 0
        while n < RUNS or not restarted_over_half_0 or {c[3].half for c in copies if c[3] is not None} != {0, 1}:
            assert time.monotonic() < deadline, f"seed {seed}: not every case came up in 60 s"
            time.sleep(rng.uniform(0, 0.1))
            kind, dest = KINDS[n % len(KINDS)], tmp_path / f"copy-{n}.img"
            acked = max([acked, *writers[-1].acknowledged()])
            floor = acked  # acknowledged before the copy starts: the copy holds at least this
            if kind == "restart":
                # A slow copy spanning a restart: the start of half 0 read before the new writer's
                # first full copy, the rest after it.
                writers[-1].kill()
                acked = floor = max([acked, *writers[-1].acknowledged()])
                before, _ = open_image(files.metadata)
                restarted_over_half_0 |= before is not None and before.half == 0
                with open(files.metadata, "rb") as src:
                    head = src.read(fmt.HEADER_SIZE + 1024)
                writers.append(Writer(files, rng.randrange(1 << 32), tmp_path / f"child-{len(writers)}.log"))
                writers[-1].wait_for("ready")
                with open(files.metadata, "rb") as src:
                    src.seek(len(head))
                    dest.write_bytes(head + src.read())
            else:
                take_copy(kind, files.metadata, dest)
            copies.append((dest, kind, floor, open_image(dest)[0]))
            n += 1
    finally:
        for writer in writers:
            writer.kill()
    journal = read_journal(files.journal)
    for dest, kind, floor, snapshot in copies:
        where = f"seed {seed}, {kind} copy {dest.name}"
        assert snapshot is not None, f"{where} opens to nothing: {open_image(dest)[1]}"
        assert snapshot.generation >= floor, f"{where}: generation {snapshot.generation}, acked {floor} before"
        assert digest(snapshot.objects) == journal[snapshot.generation], f"{where}: not the state at its generation"


def test_corruption_is_reported_and_the_other_half_or_vdi_is_used(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two metadata VDIs; one's current full copy damaged: it reads its other half, and the other VDI is newest."""
    make_pool(tmp_path / "pool")
    db = Database.open(tmp_path / "pool" / "pool.db")
    journal: dict[int, str] = {}

    def log_state(commit: Commit) -> None:
        with db.read() as tx:
            journal[commit.generation] = digest(full_payload(tx, "", "", commit.generation, "")["objects"])

    db.subscribe(log_state)
    with db.read() as tx:
        pool = tx.refs("pool")[0]
        journal[db.generation] = digest(full_payload(tx, "", "", db.generation, "")["objects"])
    replicator = Replicator(db, pool, HALF, bytes(32))
    images = {"OpaqueRef:a": new_image(tmp_path / "a.img"), "OpaqueRef:b": new_image(tmp_path / "b.img")}
    try:
        for vdi, path in images.items():
            replicator.start(vdi, path)
        rng = random.Random(1)
        vms: list[str] = []
        while True:
            with db.write() as tx:
                if len(vms) < 20:
                    vms.append(tx.create("VM", {"name_label": f"vm-{len(vms)}"}))
                else:
                    tx.set_fields("VM", rng.choice(vms), {"other_config": {"n": str(rng.random())}})
            snapshot, reports = open_image(images["OpaqueRef:a"])
            assert snapshot is not None and snapshot.generation == db.generation
            if reports[1 - snapshot.half].full is not None and len(reports[snapshot.half].deltas) >= 3:
                break
    finally:
        replicator.close()
    newest, current = db.generation, snapshot.half
    full = reports[current].full
    assert full is not None
    other = reports[1 - current].generation
    db.close()

    damaged = bytearray(images["OpaqueRef:a"].read_bytes())
    damaged[fmt.half_offset(current, HALF) + full.offset + full.size // 2] ^= 0x10
    images["OpaqueRef:a"].write_bytes(damaged)

    snapshot, reports = open_image(images["OpaqueRef:a"])
    assert snapshot is not None and snapshot.half == 1 - current and snapshot.generation == other < newest
    assert digest(snapshot.objects) == journal[other]
    assert reports[current].checksum_errors == 1 and reports[current].stopped == "checksum mismatch"
    capsys.readouterr()
    assert farside_main(["metadata", "inspect", str(images["OpaqueRef:a"])]) == 0
    assert "1 damaged record(s) found and skipped" in capsys.readouterr().out

    snapshot, reports = open_image(images["OpaqueRef:b"])
    assert snapshot is not None and snapshot.generation == newest
    assert digest(snapshot.objects) == journal[newest]
    assert sum(r.checksum_errors for r in reports) == 0

    cache = ForeignCache()
    for vdi, path in images.items():
        cache.put(read_copy(vdi, path, lambda _: bytes(32)))
    assert cache.latest() == {"OpaqueRef:b"}


def test_a_killed_server_keeps_every_acknowledged_api_call(server: PoolServer, tmp_path: Path) -> None:
    """A real server SIGKILLed while a client creates VMs: every VM.create that returned is in the metadata VDI."""
    s = server.session()
    sr = make_sr(s, tmp_path / "lun")
    s.xenapi.SR.enable_database_replication(sr)
    size = str(16 << 20)
    fields = {"memory_static_max": size, "memory_dynamic_max": size, "memory_dynamic_min": size,
              "memory_static_min": size, "VCPUs_max": "1", "VCPUs_at_startup": "1"}  # fmt: skip
    acked: dict[str, str] = {}  # VM ref → name, for every VM.create that returned
    c = server.session()

    def client() -> None:
        for i in itertools.count():
            try:
                ref = c.xenapi.VM.create({**fields, "name_label": f"durable-{i}"})
            except Exception:  # the server is gone
                return
            acked[ref] = f"durable-{i}"

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not acked and time.monotonic() < deadline:  # a loaded machine may be slow to the first one
        time.sleep(0.01)
    time.sleep(random.uniform(0.1, 0.8))
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    thread.join(30)
    assert acked, "no VM.create returned before the kill"

    db = Database.open(server.data_dir / "pool.db")
    try:
        with db.read() as tx:
            (vdi,) = tx.find("VDI", "type", "metadata")
            image = tmp_path / "lun" / tx.get_field("VDI", vdi, "location")
            on_disk = {ref: tx.get_record("VM", ref) for ref in acked}
            generation = db.generation
    finally:
        db.close()
    snapshot, _ = open_image(image)
    assert snapshot is not None and snapshot.generation <= generation
    for ref, name in acked.items():
        assert ref in snapshot.objects["VM"], f"{name} was acknowledged but is not in the metadata VDI"
        assert snapshot.objects["VM"][ref] == {k: on_disk[ref][k] for k in REPLICATED["VM"]}
