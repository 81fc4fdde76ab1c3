"""The metadata VDI format: full copies, deltas, torn writes, damage and copies, as a reader sees them.

``MetadataFile`` (replication/target.py) writes a small image (64 KiB halves, so full copies roll
over to the other half quickly) the way ``Target`` drives it. Its ``os`` is replaced by ``FakeOs``:
fdatasync is skipped (durability is tests/e2e/test_metadata_crash.py's business) and, given a byte
budget, the write that would exceed it is cut there, as when the writing process is killed. A
``Site`` keeps the model of the pool's objects at every generation, so each read is compared with
exactly the state it claims to be.
"""

from __future__ import annotations

import copy
import io
import itertools
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farside.model.types import XML_UNSAFE
from farside.replication import format as fmt
from farside.replication import target
from farside.replication.target import MetadataFile

HALF = 64 << 10
CLASSES = ("VM", "VDI", "network")
POOL_UUID = "6c1e6f36-1a8e-4a5e-9d3e-2f1f3c0d9a11"
KEY = bytes(range(32))
SIGNED = {"key": KEY, "pool_uuid": POOL_UUID}
# Record head: magic (4), kind (1), epoch (16), sequence (8), generation (8), payload length (4).
HEAD = 41
MAGIC_AND_KIND = range(5)
LENGTH = range(37, 41)

Objects = dict[str, dict[str, dict[str, Any]]]
Change = dict[str, Any]


class Crash(Exception):
    """The writing process died in the middle of a pwrite."""


class FakeOs:
    """``os`` as MetadataFile sees it: no fdatasync; with a byte budget, the write past it is torn."""

    def __init__(self) -> None:
        self.budget: int | None = None
        self.written = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def fdatasync(self, fd: int) -> None:
        pass

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        if self.budget is not None:
            if len(data) > self.budget:
                os.pwrite(fd, data[: self.budget], offset)
                self.budget = 0
                raise Crash
            self.budget -= len(data)
        self.written += len(data)
        return os.pwrite(fd, data, offset)


@pytest.fixture(autouse=True)
def fake_os(monkeypatch: pytest.MonkeyPatch) -> FakeOs:
    fake = FakeOs()
    monkeypatch.setattr(target, "os", fake)
    return fake


def new_image(directory: Path, half: int = HALF) -> Path:
    """A zero-filled (sparse) metadata image: header and two halves."""
    path = directory / "metadata.img"
    with open(path, "wb") as fh:
        fh.truncate(fmt.HEADER_SIZE + 2 * half)
    return path


def stamp(generation: int) -> str:
    return f"2025-01-01T00:00:00.{generation:06d}Z"


def full_payload(generation: int, objects: Objects) -> dict[str, Any]:
    """A full copy's payload, shaped as replication/state.py's."""
    return {
        "format": 1,
        "farside_version": "0.1.0",
        "schema_version": 1,
        "pool_uuid": POOL_UUID,
        "pool_name": "Site A",
        "generation": generation,
        "written": stamp(generation),
        "objects": objects,
    }


def delta_payload(generation: int, changes: list[Change]) -> dict[str, Any]:
    return {"generation": generation, "written": stamp(generation), "changes": changes}


def apply_to_model(objects: Objects, change: Change) -> None:
    """The model's own reading of a change (deliberately not format.apply_delta); records are never mutated."""
    rows = objects[change["cls"]]
    if change["op"] == "del":
        del rows[change["ref"]]
    else:
        assert (change["ref"] in rows) == (change["op"] == "mod"), change
        rows[change["ref"]] = change["record"]


def snapshot_of(objects: Objects) -> Objects:
    """A copy of the model that later changes leave alone (records themselves are never mutated)."""
    return {cls: dict(rows) for cls, rows in objects.items()}


def record(rng: random.Random, name: str, pad: int = 200) -> dict[str, Any]:
    """A VM-like record; ``pad`` random bytes (hex) make it hard to compress."""
    return {
        "uuid": f"{rng.getrandbits(128):032x}",
        "name_label": name,
        "order": rng.randrange(1000),
        "other_config": {f"k{i}": f"v{rng.randrange(100)}" for i in range(rng.randrange(3))},
        "pad": rng.randbytes(pad).hex(),
    }


class Site:
    """A writer as Target drives MetadataFile, with the model of the pool's state at every generation."""

    def __init__(self, path: Path, half: int = HALF, generation: int = 100) -> None:
        self.file = MetadataFile(path, half, KEY)
        self.objects: Objects = {cls: {} for cls in CLASSES}
        self.generation = generation
        self.acked = -1
        self.history: dict[int, Objects] = {}
        self.rollovers = 0
        self._refs = itertools.count(1)

    def new_ref(self) -> str:
        return f"OpaqueRef:{next(self._refs):08d}"

    def full(self) -> None:
        """A full copy of the current state (to the other half)."""
        self.history[self.generation] = snapshot_of(self.objects)
        self.file.write_full(self.generation, full_payload(self.generation, self.objects))
        self.acked = self.generation

    def commit(self, *changes: Change) -> int:
        return self.commit_batch([list(changes)])

    def commit_batch(self, batch: list[list[Change]]) -> int:
        """Several commits written in one go (group commit); a full copy when the half is full."""
        deltas = []
        for changes in batch:
            for change in changes:
                apply_to_model(self.objects, change)
            self.generation += 1
            self.history[self.generation] = snapshot_of(self.objects)
            deltas.append((self.generation, delta_payload(self.generation, changes)))
        if not self.file.append(deltas):
            self.rollovers += 1
            self.full()
        self.acked = self.generation
        return self.generation

    def add(self, rng: random.Random, cls: str = "VM", pad: int = 200) -> Change:
        ref = self.new_ref()
        return {"op": "add", "cls": cls, "ref": ref, "record": record(rng, ref, pad)}

    @staticmethod
    def mod(cls: str, ref: str, rec: dict[str, Any]) -> Change:
        return {"op": "mod", "cls": cls, "ref": ref, "record": rec}

    @staticmethod
    def delete(cls: str, ref: str) -> Change:
        return {"op": "del", "cls": cls, "ref": ref}


def random_commit(site: Site, rng: random.Random, pad: int = 200, scratch: Objects | None = None) -> list[Change]:
    """One commit of 1-3 random changes against ``scratch`` (by default the site's current state)."""
    if scratch is None:
        scratch = snapshot_of(site.objects)
    changes = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        cls = rng.choice(CLASSES)
        rows = scratch[cls]
        roll = rng.random()
        if not rows or roll < 0.4:
            change = site.add(rng, cls, pad)
        elif roll < 0.6:
            change = Site.delete(cls, rng.choice(sorted(rows)))
        else:
            ref = rng.choice(sorted(rows))
            change = Site.mod(cls, ref, {**rows[ref], "order": rng.randrange(1000), "pad": rng.randbytes(pad).hex()})
        apply_to_model(scratch, change)
        changes.append(change)
    return changes


def random_batch(site: Site, rng: random.Random, commits: int, pad: int = 200) -> list[list[Change]]:
    """Several commits in a row, each against the state the ones before it leave."""
    scratch = snapshot_of(site.objects)
    return [random_commit(site, rng, pad, scratch) for _ in range(commits)]


def read(source: Path | bytes, half: int | None = HALF) -> tuple[fmt.Snapshot | None, list[fmt.HalfReport]]:
    """What a reader makes of an image file or of a byte copy of one."""
    if isinstance(source, bytes):
        snapshot, _, reports = fmt.newest(io.BytesIO(source), half)
    else:
        with open(source, "rb") as fh:
            snapshot, _, reports = fmt.newest(fh, half)
    return snapshot, reports


def assert_state(snapshot: fmt.Snapshot | None, site: Site, generation: int) -> None:
    """The snapshot is exactly the site's state at ``generation``."""
    assert snapshot is not None, f"no complete copy, expected generation {generation}"
    assert snapshot.generation == generation
    assert snapshot.objects == site.history[generation]
    assert snapshot.pool_uuid == POOL_UUID and snapshot.pool_name == "Site A"


def flip(data: bytes, byte: int, bit: int) -> bytes:
    damaged = bytearray(data)
    damaged[byte] ^= 1 << bit
    return bytes(damaged)


def site_with_rollover(tmp_path: Path, rng: random.Random, rollovers: int = 1, deltas_after: int = 4) -> Site:
    """A site whose current half is the one a rollover went to, with a few deltas after its full copy."""
    site = Site(new_image(tmp_path))
    site.full()
    while site.rollovers < rollovers:
        site.commit(*random_commit(site, rng, pad=600))
    for _ in range(deltas_after):
        site.commit(*random_commit(site, rng))
    return site


# -- round trips ------------------------------------------------------------------------------------


def test_a_full_copy_alone(tmp_path: Path) -> None:
    """A full copy on its own reads back as itself, from half 0, with the pool's identity."""
    rng = random.Random(1)
    site = Site(new_image(tmp_path))
    site.objects["VM"]["OpaqueRef:a"] = record(rng, "a")
    site.full()
    snapshot, reports = read(site.file.path)
    assert_state(snapshot, site, site.generation)
    assert snapshot is not None
    assert snapshot.half == 0 and snapshot.written == stamp(site.generation)
    assert snapshot.schema_version == 1 and snapshot.farside_version == "0.1.0"
    assert reports[1].full is None and reports[0].checksum_errors == reports[1].checksum_errors == 0


# Text a pool can hold: the API refuses what XML cannot carry, and so does the reader (replication/schema.py).
names = st.text(alphabet=st.characters(exclude_categories=["Cs", "Cc"]), max_size=12).filter(
    lambda t: not XML_UNSAFE.search(t)
)
records = st.fixed_dictionaries(
    {
        "name_label": names,
        "order": st.integers(-(2**53), 2**53),
        "other_config": st.dictionaries(names, names, max_size=3),
        "pad": st.integers(0, 1500).map(lambda n: random.Random(n).randbytes(n).hex()),
    }
)
# (op, class, which existing object, record): mod and del of a class with no objects become adds.
operations = st.tuples(st.sampled_from(["add", "mod", "del"]), st.sampled_from(CLASSES), st.integers(0, 99), records)
# Appends, each of one or more commits (group commit), each of one or more changes.
appends = st.lists(st.lists(st.lists(operations, min_size=1, max_size=4), min_size=1, max_size=3), max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(appends)
def test_random_changes_read_back_exactly(plan: list[list[list[tuple[str, str, int, dict[str, Any]]]]]) -> None:
    """After every append, the reader rebuilds exactly the model: full copy plus deltas, across rollovers."""
    with tempfile.TemporaryDirectory() as directory:
        site = Site(new_image(Path(directory)))
        site.full()
        for append in plan:
            scratch = snapshot_of(site.objects)
            batch = []
            for commit in append:
                changes = []
                for op, cls, index, rec in commit:
                    rows = scratch[cls]
                    if op == "add" or not rows:
                        ref = site.new_ref()
                        change: Change = {"op": "add", "cls": cls, "ref": ref, "record": rec}
                    else:
                        ref = sorted(rows)[index % len(rows)]
                        change = Site.delete(cls, ref) if op == "del" else Site.mod(cls, ref, rec)
                    apply_to_model(scratch, change)
                    changes.append(change)
                batch.append(changes)
            site.commit_batch(batch)
            snapshot, _ = read(site.file.path)
            assert_state(snapshot, site, site.generation)
            assert snapshot is not None and snapshot.written == stamp(site.generation)
        site.file.close()


def test_rollovers_alternate_halves_and_lose_nothing(tmp_path: Path) -> None:
    """A full half rolls over to a full copy in the other half; every generation on the way reads exactly."""
    rng = random.Random(2)
    site = Site(new_image(tmp_path))
    site.full()
    halves = []
    while site.rollovers < 5:
        if rng.random() < 0.2:
            site.commit_batch(random_batch(site, rng, rng.randrange(2, 5), pad=400))
        else:
            site.commit(*random_commit(site, rng, pad=400))
        snapshot, reports = read(site.file.path)
        assert_state(snapshot, site, site.generation)
        assert snapshot is not None
        halves.append(snapshot.half)
        assert sum(r.checksum_errors for r in reports) == 0
    assert [h for h, _ in itertools.groupby(halves)][:6] == [0, 1, 0, 1, 0, 1]


# -- torn writes ------------------------------------------------------------------------------------


def test_a_torn_last_delta_reads_the_previous_generation(tmp_path: Path) -> None:
    """Cut at every byte of the last delta, or with garbage after the cut: the generation before it, exactly."""
    rng = random.Random(3)
    site = Site(new_image(tmp_path))
    site.full()
    for _ in range(6):
        site.commit(*random_commit(site, rng))
    before = site.generation
    site.commit(*random_commit(site, rng))
    data = site.file.path.read_bytes()
    snapshot, reports = read(data)
    assert_state(snapshot, site, site.generation)
    last = reports[0].deltas[-1]
    start = fmt.half_offset(0, HALF) + last.offset
    for cut in range(start, start + last.size):
        snapshot, _ = read(data[:cut])
        assert_state(snapshot, site, before)
        garbage = rng.randbytes(start + last.size - cut)
        snapshot, _ = read(data[:cut] + garbage + data[start + last.size :])
        assert_state(snapshot, site, before)


def test_a_torn_full_copy_falls_back_to_the_other_half(tmp_path: Path) -> None:
    """A rollover's full copy cut anywhere: the reader takes the old half, up to its last delta."""
    rng = random.Random(4)
    site = Site(new_image(tmp_path))
    site.full()
    while True:
        acked = site.acked
        site.commit(*random_commit(site, rng, pad=600))
        if site.rollovers:
            break
    data = site.file.path.read_bytes()
    snapshot, reports = read(data)
    assert_state(snapshot, site, site.generation)
    assert snapshot is not None and snapshot.half == 1
    full = reports[1].full
    assert full is not None
    start = fmt.half_offset(1, HALF)
    for cut in [*range(start, start + 64), *range(start + 64, start + full.size, 41)]:
        snapshot, _ = read(data[:cut] + bytes(full.size - (cut - start)) + data[start + full.size :])
        assert_state(snapshot, site, acked)
        assert snapshot is not None and snapshot.half == 0


def _crash_script(site: Site) -> None:
    """The same writes every run: a full copy, single and group commits, three rollovers."""
    rng = random.Random(5)
    site.full()
    while site.rollovers < 3:
        if rng.random() < 0.2:
            site.commit_batch(random_batch(site, rng, 3, pad=500))
        else:
            site.commit(*random_commit(site, rng, pad=500))


def test_a_crash_at_any_byte_keeps_the_last_acknowledged_generation(tmp_path: Path, fake_os: FakeOs) -> None:
    """Killed at any byte of any write (deltas, group commits, rollovers): never older than acknowledged."""
    clean = Site(new_image(tmp_path))
    _crash_script(clean)
    clean.file.close()
    total = fake_os.written
    for budget in sorted({*random.Random(6).sample(range(total), 150), 0, 1, total - 1}):
        directory = tmp_path / f"crash-{budget}"
        directory.mkdir()
        site = Site(new_image(directory))
        fake_os.budget = budget
        with pytest.raises(Crash):
            _crash_script(site)
        fake_os.budget = None
        site.file.close()
        snapshot, _ = read(site.file.path)
        if snapshot is None:
            assert site.acked < 0, f"crash after {budget} bytes: nothing readable, {site.acked} acknowledged"
            continue
        assert site.acked <= snapshot.generation <= site.generation, f"crash after {budget} bytes"
        assert snapshot.objects == site.history[snapshot.generation], f"crash after {budget} bytes"


@pytest.mark.parametrize("rollovers", [0, 2], ids=["current-half-0-alone", "current-half-0-after-rollovers"])
def test_a_restart_killed_during_its_first_full_copy_keeps_the_acknowledged(
    tmp_path: Path, fake_os: FakeOs, rollovers: int
) -> None:
    """A restarted writer's first full copy, torn, must not destroy the copy the last writer acknowledged."""
    site = site_with_rollover(tmp_path, random.Random(7), rollovers=rollovers)
    snapshot, _ = read(site.file.path)
    assert_state(snapshot, site, site.acked)
    assert snapshot is not None and snapshot.half == 0
    site.file.close()
    # The server restarts (as Target does at start-up): a new MetadataFile, a full copy first.
    again = MetadataFile(site.file.path, HALF, KEY)
    payload = full_payload(site.generation, site.objects)
    size = len(fmt.encode_record(fmt.FULL, fmt.new_epoch(), 0, site.generation, payload, **SIGNED))
    fake_os.budget = size // 2
    with pytest.raises(Crash):
        again.write_full(site.generation, payload)
    again.close()
    snapshot, reports = read(site.file.path)
    assert snapshot is not None, f"nothing readable after a torn restart; acknowledged {site.acked}: {reports}"
    assert snapshot.generation >= site.acked, (
        f"a torn restart went back from acknowledged generation {site.acked} to {snapshot.generation}"
    )
    assert snapshot.objects == site.history[snapshot.generation]


def test_a_clean_restart_reads_its_new_full_copy(tmp_path: Path) -> None:
    """After a restart's full copy and more deltas, the reader has the newest generation."""
    rng = random.Random(8)
    site = site_with_rollover(tmp_path, rng)
    site.file.close()
    site.file = MetadataFile(site.file.path, HALF, KEY)
    site.full()
    for _ in range(3):
        site.commit(*random_commit(site, rng))
    snapshot, _ = read(site.file.path)
    assert_state(snapshot, site, site.generation)


# -- damage -------------------------------------------------------------------------------------------


def _site_with_deltas(tmp_path: Path, count: int = 8) -> tuple[Site, bytes, fmt.HalfReport]:
    rng = random.Random(9)
    site = Site(new_image(tmp_path))
    site.full()
    for _ in range(count):
        site.commit(*random_commit(site, rng))
    data = site.file.path.read_bytes()
    snapshot, reports = read(data)
    assert_state(snapshot, site, site.generation)
    return site, data, reports[0]


def test_a_flipped_bit_in_a_delta_stops_the_half_there(tmp_path: Path) -> None:
    """A bit flipped in a checksummed part of a delta: the generation before it, one checksum error."""
    site, data, half = _site_with_deltas(tmp_path)
    damaged, previous = half.deltas[4], half.deltas[3].generation
    start = fmt.half_offset(0, HALF) + damaged.offset
    rng = random.Random(10)
    checksummed = [*range(5, 37), *range(HEAD, damaged.size)]
    for byte in checksummed[::3]:
        snapshot, reports = read(flip(data, start + byte, rng.randrange(8)))
        assert_state(snapshot, site, previous)
        assert reports[0].stopped == "checksum mismatch" and reports[0].checksum_errors == 1, byte
        assert len(reports[0].deltas) == 4


def test_any_flipped_bit_in_a_delta_with_more_after_it_is_reported(tmp_path: Path) -> None:
    """Every bit of a delta's head, flipped: never a mix, and always reported (checksum_errors)."""
    site, data, half = _site_with_deltas(tmp_path)
    damaged, previous = half.deltas[4], half.deltas[3].generation
    start = fmt.half_offset(0, HALF) + damaged.offset
    unreported = []
    for byte in range(HEAD):
        for bit in range(8):
            snapshot, reports = read(flip(data, start + byte, bit))
            assert_state(snapshot, site, previous)
            if reports[0].checksum_errors == 0:
                unreported.append((byte, bit, reports[0].stopped))
    assert not unreported, (
        f"{len(unreported)} of {HEAD * 8} flipped bits in a delta followed by 3 good ones went unreported "
        f"(lost deltas, checksum_errors 0), e.g. (byte, bit, why stopped) {unreported[:4]}"
    )


def test_a_flipped_bit_in_the_current_full_copy_uses_the_other_half(tmp_path: Path) -> None:
    """Damage anywhere in the current half's full copy: the other half's full copy and deltas, never a mix."""
    site = site_with_rollover(tmp_path, random.Random(11))
    data = site.file.path.read_bytes()
    snapshot, reports = read(data)
    assert_state(snapshot, site, site.generation)
    assert snapshot is not None and snapshot.half == 1
    full, fallback = reports[1].full, reports[0].generation
    assert full is not None and reports[0].deltas and fallback < full.generation
    start = fmt.half_offset(1, HALF)
    rng = random.Random(12)
    for byte in [*range(HEAD), *rng.sample(range(HEAD, full.size), 150)]:
        snapshot, reports = read(flip(data, start + byte, rng.randrange(8)))
        assert_state(snapshot, site, fallback)
        assert snapshot is not None and snapshot.half == 0
        if byte not in MAGIC_AND_KIND and byte not in LENGTH:
            assert reports[1].checksum_errors == 1 and reports[1].stopped == "checksum mismatch", byte


def test_stale_deltas_of_an_older_epoch_are_not_applied(tmp_path: Path) -> None:
    """Deltas of an older full copy, left after a new one of the same size, are ignored even in sequence."""
    rng = random.Random(13)
    old: Objects = {cls: {} for cls in CLASSES}
    old["VM"]["OpaqueRef:a"] = record(rng, "a")
    new = copy.deepcopy(old)
    new["VM"]["OpaqueRef:b"] = record(rng, "b")
    epoch_old, epoch_new = fmt.new_epoch(), fmt.new_epoch()
    full_old = fmt.encode_record(fmt.FULL, epoch_old, 0, 200, full_payload(200, new), **SIGNED)
    for generation in range(300, 400):
        full_new = fmt.encode_record(fmt.FULL, epoch_new, 0, generation, full_payload(generation, new), **SIGNED)
        if len(full_new) == len(full_old):
            break
    else:
        pytest.fail("no full copy of the same size to lay over the old one")
    stale_change = Site.delete("VM", "OpaqueRef:a")
    stale = [
        fmt.encode_record(
            fmt.DELTA, epoch_old, n, generation + n, delta_payload(generation + n, [stale_change]), **SIGNED
        )
        for n in (1, 2)
    ]
    image = bytearray(fmt.encode_header(HALF, 0) + bytes(2 * HALF))
    half0 = full_new + b"".join(stale)
    image[fmt.HEADER_SIZE : fmt.HEADER_SIZE + len(half0)] = half0
    snapshot, reports = read(bytes(image))
    assert snapshot is not None and snapshot.generation == generation and snapshot.objects == new
    assert reports[0].deltas == [] and reports[0].stopped == "end of this full copy's deltas"
    assert reports[0].checksum_errors == 0


def test_a_gap_in_the_sequence_ends_the_half(tmp_path: Path) -> None:
    """A delta whose sequence number skips one is not applied, nor anything after it."""
    rng = random.Random(14)
    objects: Objects = {cls: {} for cls in CLASSES}
    epoch = fmt.new_epoch()
    records = [fmt.encode_record(fmt.FULL, epoch, 0, 10, full_payload(10, objects), **SIGNED)]
    changes = [{"op": "add", "cls": "VM", "ref": f"OpaqueRef:{n}", "record": record(rng, str(n))} for n in range(3)]
    for sequence, change in zip((1, 3, 4), changes, strict=True):
        records.append(
            fmt.encode_record(
                fmt.DELTA, epoch, sequence, 10 + sequence, delta_payload(10 + sequence, [change]), **SIGNED
            )
        )
    data = fmt.encode_header(HALF, 0) + b"".join(records)
    snapshot, reports = read(data)
    assert snapshot is not None and snapshot.generation == 11
    assert snapshot.objects == {**objects, "VM": {"OpaqueRef:0": changes[0]["record"]}}
    assert reports[0].stopped == "end of this full copy's deltas"


# -- copies and the header -----------------------------------------------------------------------------


@pytest.mark.parametrize("rollovers", [0, 1])
def test_a_copy_cut_short_after_the_last_record_reads_the_same(tmp_path: Path, rollovers: int) -> None:
    """A sparse copy that dropped the zeros at the end (cut after the last record, or at a block) still reads."""
    rng = random.Random(15)
    site = Site(new_image(tmp_path))
    site.full()
    while site.rollovers < rollovers:
        site.commit(*random_commit(site, rng, pad=600))
    for _ in range(4):
        site.commit(*random_commit(site, rng))
    data = site.file.path.read_bytes()
    end = len(data.rstrip(b"\0"))
    assert end < len(data)
    for cut in (end, -(-end // 4096) * 4096):
        snapshot, _ = read(data[:cut])
        assert_state(snapshot, site, site.generation)
        snapshot, _ = read(data[:cut], half=None)  # the header still gives the half size
        assert_state(snapshot, site, site.generation)


def test_a_zeroed_damaged_or_stale_header_changes_nothing(tmp_path: Path) -> None:
    """The header is only a hint: zeroed, garbage, or pointing at the wrong half, the reader finds the newest."""
    site = site_with_rollover(tmp_path, random.Random(16))
    data = site.file.path.read_bytes()
    body = data[fmt.HEADER_SIZE :]
    headers = {
        "zeroed": bytes(fmt.HEADER_SIZE),
        "garbage": random.Random(17).randbytes(fmt.HEADER_SIZE),
        "bit flipped": flip(data[: fmt.HEADER_SIZE], 20, 3),
        "wrong half": fmt.encode_header(HALF, 0),
        "no half": fmt.encode_header(HALF, fmt.NO_HALF),
    }
    for name, header in headers.items():
        snapshot, _ = read(header + body)
        assert snapshot is not None and snapshot.half == 1, name
        assert_state(snapshot, site, site.generation)


def test_a_zeroed_header_at_the_default_half_size(tmp_path: Path) -> None:
    """With the default 64 MiB halves, a reader given no half size finds the newest half without the header."""
    rng = random.Random(18)
    site = Site(new_image(tmp_path, fmt.DEFAULT_HALF_SIZE), fmt.DEFAULT_HALF_SIZE)
    site.full()
    site.commit(*random_commit(site, rng))
    site.full()  # a full copy goes to the other half
    for _ in range(3):
        site.commit(*random_commit(site, rng))
    with open(site.file.path, "r+b") as fh:
        fh.write(bytes(fmt.HEADER_SIZE))
    with open(site.file.path, "rb") as fh:
        snapshot, header, _ = fmt.newest(fh)
    assert not header.valid
    assert snapshot is not None and snapshot.half == 1
    assert_state(snapshot, site, site.generation)


def test_a_zeroed_header_needs_no_half_size_hint(tmp_path: Path) -> None:
    """Smaller halves, zeroed header: a reader given no half size (as VDI.open_database) still finds the newest."""
    site = site_with_rollover(tmp_path, random.Random(19))
    data = site.file.path.read_bytes()
    snapshot, _ = read(bytes(fmt.HEADER_SIZE) + data[fmt.HEADER_SIZE :], half=None)
    assert snapshot is not None
    assert snapshot.generation == site.generation, (
        f"the header's half size is trusted: with it gone the reader looks for half 1 at the default offset "
        f"and opens generation {snapshot.generation} instead of {site.generation}"
    )
    assert_state(snapshot, site, site.generation)
