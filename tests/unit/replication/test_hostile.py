"""Hostile metadata images: the reader never raises, never allocates more than a bound, and never
takes a record the pool's DR key does not prove.

Images are built here byte by byte (with ``fmt.encode_record`` where a valid record is needed),
as a forger with write access to a LUN, or a mirror carrying one, would make them.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farside.replication import format as fmt

HALF = 16 << 10
POOL = "6c1e6f36-1a8e-4a5e-9d3e-2f1f3c0d9a11"
KEY = bytes(range(32))
OTHER_KEY = bytes(32)
# A 4 KiB file, however hostile, may make the reader hold this much at most at any moment.
SMALL_FILE_BOUND = 8 << 20
_HEAD = struct.Struct("<4s1s16sQQI")


def keys(pool: str) -> bytes | None:
    return KEY if pool == POOL else None


def vm(name: str, memory: Any = 16 << 20) -> dict[str, Any]:
    return {"uuid": "0c5e0e0c-5a4b-4d3e-8f2a-9d1b2c3d4e5f", "name_label": name, "memory_static_max": memory}


def full(generation: int, objects: dict[str, Any] | None = None, pool: str = POOL) -> dict[str, Any]:
    return {
        "format": 1, "farside_version": "0.1.0", "schema_version": 1, "pool_uuid": pool, "pool_name": "Site A",
        "generation": generation, "written": "20261207T10:00:00Z",
        "objects": objects if objects is not None else {"VM": {"OpaqueRef:1": vm("one")}},
    }  # fmt: skip


def delta(generation: int, changes: list[dict[str, Any]]) -> dict[str, Any]:
    return {"generation": generation, "written": "20261207T10:00:01Z", "changes": changes}


def record(kind: bytes, epoch: bytes, sequence: int, generation: int, payload: Any, key: bytes = KEY) -> bytes:
    return fmt.encode_record(kind, epoch, sequence, generation, payload, key=key, pool_uuid=POOL)


def raw_record(kind: bytes, epoch: bytes, sequence: int, generation: int, body: bytes, key: bytes = KEY) -> bytes:
    """A record around any payload bytes, its checksum and MAC right (what a holder of the key could write)."""
    head = _HEAD.pack(fmt.MAGIC_RECORD, kind, epoch, sequence, generation, len(body))
    mac = fmt.record_mac(key, POOL, hashlib.sha256(head + body).digest())
    return head + body + mac + fmt.digest(head + body + mac)


def image(half0: bytes = b"", half1: bytes = b"", half: int = HALF, current: int = 0) -> bytes:
    assert len(half0) <= half and len(half1) <= half
    return fmt.encode_header(half, current) + half0.ljust(half, b"\0") + half1.ljust(half, b"\0")


def read(data: bytes, half: int | None = None) -> tuple[fmt.Snapshot | None, list[fmt.HalfReport]]:
    snapshot, _, reports = fmt.newest(io.BytesIO(data), half, keys)
    return snapshot, reports


def peak(action: Callable[[], object]) -> int:
    """The most memory ``action`` held at once (Python allocations, as tracemalloc counts them)."""
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


EPOCH = b"e" * 16
GOOD = image(record(fmt.FULL, EPOCH, 0, 10, full(10)) + record(fmt.DELTA, EPOCH, 1, 11, delta(11, [])))


def test_a_genuine_image_is_authenticated() -> None:
    snapshot, reports = read(GOOD)
    assert snapshot is not None and snapshot.generation == 11 and snapshot.authenticated is True
    assert reports[0].problems == []


def test_a_forged_copy_claiming_a_huge_generation_is_never_preferred() -> None:
    """Half 1: a well-formed full copy claiming the pool at 2^62, under the wrong key; the genuine half wins."""
    forged = record(fmt.FULL, b"f" * 16, 0, 2**62, full(2**62), key=OTHER_KEY)
    snapshot, reports = read(image(GOOD[fmt.HEADER_SIZE : fmt.HEADER_SIZE + HALF], forged, current=1))
    assert snapshot is not None and snapshot.generation == 11 and snapshot.authenticated is True
    assert reports[1].authenticated is False and "fails authentication" in reports[1].problems[0]
    # Alone, it is read (to be reported) but marked: nobody may use it.
    snapshot, _ = read(image(forged))
    assert snapshot is not None and snapshot.generation == 2**62 and snapshot.authenticated is False


def test_a_forged_delta_ends_the_half_before_it() -> None:
    """A delta spliced after a genuine full copy (right epoch and sequence, wrong MAC) is not applied."""
    spliced = record(
        fmt.DELTA, EPOCH, 2, 2**62, delta(2**62, [{"op": "del", "cls": "VM", "ref": "OpaqueRef:1"}]), OTHER_KEY
    )
    data = image(GOOD[fmt.HEADER_SIZE : fmt.HEADER_SIZE + HALF].rstrip(b"\0") + spliced)
    snapshot, reports = read(data)
    assert snapshot is not None and snapshot.generation == 11 and "OpaqueRef:1" in snapshot.objects["VM"]
    assert reports[0].stopped == "delta 2 fails authentication" and reports[0].problems


def test_a_record_of_another_pool_uuid_does_not_verify_under_this_pool() -> None:
    """The MAC binds the pool uuid: a genuine record cannot be relabelled as another pool's."""
    other = "11111111-2222-4333-8444-555555555555"
    body = record(fmt.FULL, EPOCH, 0, 5, full(5, pool=other))  # MAC made over POOL, payload claims other
    snapshot, _, _ = fmt.newest(io.BytesIO(image(body)), None, lambda p: KEY)
    assert snapshot is not None and snapshot.authenticated is False


def bad_vm(**fields: Any) -> bytes:
    return zlib.compress(orjson.dumps(full(50, {"VM": {"OpaqueRef:1": {**vm("x"), **fields}}})))


def test_malformed_payloads_with_valid_checksum_and_mac_are_skipped_and_named() -> None:
    """Each malformed full copy in the newer half is named; the older, good half is read."""
    older = GOOD[fmt.HEADER_SIZE : fmt.HEADER_SIZE + HALF]
    bad_payloads: dict[str, bytes] = {
        "not json": zlib.compress(b"{nope"),
        "not zlib": b"plain bytes",
        "a list": zlib.compress(orjson.dumps([1, 2])),
        "generation disagrees": zlib.compress(orjson.dumps(full(99))),
        "objects not a map": zlib.compress(orjson.dumps({**full(50), "objects": []})),
        "a field of the wrong type": zlib.compress(orjson.dumps(full(50, {"VM": {"OpaqueRef:1": vm("x", "lots")}}))),
        "an enum value that is no member": bad_vm(power_state="Flying"),
        "a set of the wrong elements": bad_vm(tags=["ok", 7]),
        "a map of the wrong values": bad_vm(other_config={"k": None}),
        "a datetime that is not one": bad_vm(snapshot_time="yesterday"),
        "a bool where an int goes": bad_vm(VCPUs_at_startup=True),
        "a control character in a string": bad_vm(name_label="a\x01b"),
        "a record that is a string": zlib.compress(orjson.dumps(full(50, {"VM": {"OpaqueRef:1": "x"}}))),
        "pool uuid not a uuid": zlib.compress(orjson.dumps(full(50, pool="../../etc"))),
        "missing keys": zlib.compress(orjson.dumps({"generation": 50})),
        "int beyond 64 bits": zlib.compress(b'{"generation": 99999999999999999999999}'),
    }
    for name, body in bad_payloads.items():
        newer = raw_record(fmt.FULL, b"n" * 16, 0, 50, body)
        snapshot, reports = read(image(older, newer, current=1))
        assert snapshot is not None and snapshot.half == 0 and snapshot.generation == 11, name
        assert reports[1].full is None and reports[1].problems, name
        assert reports[1].problems[0].startswith("half 1: full copy: malformed payload"), name


def test_a_malformed_delta_ends_the_half_there() -> None:
    bad = raw_record(fmt.DELTA, EPOCH, 2, 12, zlib.compress(orjson.dumps(delta(12, [{"op": "zap"}]))))
    data = image(GOOD[fmt.HEADER_SIZE : fmt.HEADER_SIZE + HALF].rstrip(b"\0") + bad)
    snapshot, reports = read(data)
    assert snapshot is not None and snapshot.generation == 11
    assert reports[0].problems == ["half 0: delta 2: malformed payload: delta: change 0 is not an add, mod or del"]


def test_a_4k_file_claiming_huge_lengths_costs_a_bounded_amount() -> None:
    """Header: halves of 16 GiB; record: a 4 GiB payload. Nothing near that is read or allocated."""
    head = _HEAD.pack(fmt.MAGIC_RECORD, fmt.FULL, EPOCH, 0, 1, 2**32 - 1)
    hostile = (fmt.encode_header(fmt.MAX_HALF_SIZE, 0) + head).ljust(4096, b"\xff")
    for half in (None, fmt.MAX_HALF_SIZE):
        used = peak(lambda: read(hostile, half))  # noqa: B023 - called at once
        assert used < SMALL_FILE_BOUND
        snapshot, reports = read(hostile, half)
        assert snapshot is None and all(r.full is None for r in reports)
    headerless = (bytes(fmt.HEADER_SIZE) + head).ljust(4096, b"\0")
    assert peak(lambda: read(headerless)) < SMALL_FILE_BOUND


def test_a_zlib_bomb_is_cut_off_within_a_bound() -> None:
    """256 MiB of zeros compressed to about 256 KiB, checksum and MAC right: refused, never wholly inflated."""
    packer = zlib.compressobj(9)
    chunk = bytes(1 << 20)
    bomb = b"".join(packer.compress(chunk) for _ in range(256)) + packer.flush()
    half = 1 << 20
    data = image(raw_record(fmt.FULL, EPOCH, 0, 1, bomb), half=half)
    used = peak(lambda: read(data))
    # zlib grows its output buffer by doubling: twice the inflation bound at most, never the bomb's 256 MiB.
    assert used < 4 * len(data) + 2 * fmt.MAX_INFLATE_RATIO * len(bomb) + SMALL_FILE_BOUND < 256 << 20
    snapshot, reports = read(data)
    assert snapshot is None and "inflates past" in reports[0].problems[0]


def test_a_format_1_record_is_named() -> None:
    old = b"FSMR" + GOOD[fmt.HEADER_SIZE + 4 : fmt.HEADER_SIZE + HALF]
    snapshot, reports = read(image(old))
    assert snapshot is None and reports[0].stopped.startswith("a format-1 record")


# -- fuzzing ---------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
field_values = st.sampled_from(["name_label", "memory_static_max", "VBDs", "other_config", "power_state", "uuid"])
objects = st.dictionaries(
    st.sampled_from(["VM", "VDI", "SR", "Nope", "user"]),
    st.dictionaries(
        st.text(max_size=6), st.dictionaries(field_values, json_values, max_size=4) | json_values, max_size=3
    ),
    max_size=3,
)
payloads = st.one_of(
    json_values,
    st.builds(lambda g, o: full(g, o), st.integers(0, 2**63), objects),  # type: ignore[arg-type]
    st.builds(
        lambda g, cs: delta(g, cs),
        st.integers(0, 2**63),
        st.lists(
            st.fixed_dictionaries(
                {
                    "op": st.sampled_from(["add", "mod", "del", "x"]),
                    "cls": st.text(max_size=4),
                    "ref": json_values,
                    "record": json_values,
                }
            ),
            max_size=3,
        ),
    ),
)


def _fuzz_read(data: bytes) -> None:
    used = peak(lambda: read(data))
    assert used < SMALL_FILE_BOUND + 64 * len(data)
    for half in (None, HALF):
        snapshot, reports = read(data, half)
        assert snapshot is None or snapshot.authenticated is not None or snapshot.pool_uuid != POOL
        for r in reports:
            assert all(isinstance(p, str) for p in r.problems)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from([fmt.FULL, fmt.DELTA, b"X"]),
    generation=st.integers(0, 2**64 - 1),
    payload=payloads,
    signed=st.booleans(),
)
def test_random_records_never_raise(kind: bytes, generation: int, payload: Any, signed: bool) -> None:
    """Any payload, in a record whose checksum (and, if ``signed``, MAC) is right: read or reported, never raised."""
    body = zlib.compress(json.dumps(payload).encode())  # the stdlib's: it writes ints orjson cannot read
    first = raw_record(kind, EPOCH, 0, generation, body, KEY if signed else OTHER_KEY)
    if len(first) > HALF:
        return
    _fuzz_read(image(first))
    _fuzz_read(GOOD[: fmt.HEADER_SIZE + HALF] + first.ljust(HALF, b"\0"))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=12),
    cut=st.integers(0, len(GOOD)),
)
def test_mutated_images_never_raise(edits: list[tuple[int, int]], cut: int) -> None:
    """A genuine image with bytes changed (the header and record heads included) and cut short."""
    data = bytearray(GOOD)
    for at, value in edits:
        data[at] = value
    _fuzz_read(bytes(data[:cut]))
    _fuzz_read(bytes(data))
    snapshot, _ = read(bytes(data))
    # Whatever a mutation did, a snapshot said to be authenticated is one the pool really wrote.
    if snapshot is not None and snapshot.authenticated:
        assert snapshot.generation in (10, 11)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=0, max_size=8192))
def test_random_files_never_raise(data: bytes) -> None:
    _fuzz_read(data)
    _fuzz_read(fmt.encode_header(HALF, 0) + data)
