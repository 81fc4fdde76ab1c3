"""The metadata VDI format, version 1: what a reader at the other site can always open.

A metadata VDI is a raw image of fixed size: a 4 KiB header, then two halves (64 MiB each by
default). Each half holds one *full copy* of the pool's persistent state followed by *deltas*,
each delta one committed change. A new full copy goes to the other half; then the header records
which half is current. Every record is self-delimiting and checksummed::

    record  = MAGIC "FSMR" | kind (1: b"F" full, b"D" delta) | epoch (16) | sequence (u64)
              | generation (u64) | payload length (u32) | payload | BLAKE2b-128 of all before it
    payload = zlib(JSON)

``epoch`` is random per full copy: a delta belongs to the full copy whose epoch it carries, and
its sequence number follows the one before it without a gap. A reader of a half therefore takes
the full copy and then deltas for as long as they are whole, checksummed, of the same epoch and
in sequence; the first record that is not ends the half (a torn write, bytes of an older epoch,
or zeros). It never mixes two epochs. Of the two halves it takes the one whose last good record
has the higher generation; the header is only a hint, never trusted over the records. A copy
cut short, or whose zero regions a sparse copy dropped, reads as zeros past its end.

The header (4 KiB, rewritten in place) holds MAGIC_HEADER, the format version, the half size,
the current half and a checksum; ``farside metadata inspect`` shows it.
"""

from __future__ import annotations

import hashlib
import struct
import uuid as uuidlib
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

FORMAT_VERSION = 1
HEADER_SIZE = 4096
DEFAULT_HALF_SIZE = 64 << 20
MAGIC_HEADER = b"FARSIDE-METADATA"
MAGIC_RECORD = b"FSMR"
FULL, DELTA = b"F", b"D"
# magic, kind, epoch, sequence, generation, payload length
_RECORD_HEAD = struct.Struct("<4s1s16sQQI")
_DIGEST = 16
_HEADER = struct.Struct("<16sIQB")  # magic, version, half size, current half
NO_HALF = 255
# A payload larger than a half cannot be a record; this bounds what a reader allocates.
_ZLIB_LEVEL = 1


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


def encode_record(kind: bytes, epoch: bytes, sequence: int, generation: int, payload: dict[str, Any]) -> bytes:
    """One record, ready to write."""
    body = zlib.compress(orjson.dumps(payload), _ZLIB_LEVEL)
    head = _RECORD_HEAD.pack(MAGIC_RECORD, kind, epoch, sequence, generation, len(body))
    return head + body + digest(head + body)


def encode_header(half_size: int, current: int) -> bytes:
    head = _HEADER.pack(MAGIC_HEADER, FORMAT_VERSION, half_size, current)
    return (head + digest(head)).ljust(HEADER_SIZE, b"\0")


def half_offset(index: int, half_size: int) -> int:
    return HEADER_SIZE + index * half_size


def new_epoch() -> bytes:
    return uuidlib.uuid4().bytes


@dataclass(frozen=True)
class Header:
    valid: bool
    version: int = 0
    half_size: int = 0
    current: int = NO_HALF


@dataclass
class Record:
    kind: bytes
    epoch: bytes
    sequence: int
    generation: int
    payload: dict[str, Any]
    offset: int
    size: int


@dataclass
class HalfReport:
    """What one half holds: its full copy, the deltas that follow it, and why reading stopped."""

    index: int
    full: Record | None = None
    deltas: list[Record] = field(default_factory=list)
    stopped: str = ""
    checksum_errors: int = 0

    @property
    def generation(self) -> int:
        if self.full is None:
            return -1
        return self.deltas[-1].generation if self.deltas else self.full.generation

    @property
    def end(self) -> int:
        """Offset, within the half, just past the last good record."""
        last = self.deltas[-1] if self.deltas else self.full
        return 0 if last is None else last.offset + last.size


def read_header(fh: BinaryIO) -> Header:
    fh.seek(0)
    data = fh.read(HEADER_SIZE).ljust(HEADER_SIZE, b"\0")
    head, check = data[: _HEADER.size], data[_HEADER.size : _HEADER.size + _DIGEST]
    magic, version, half_size, current = _HEADER.unpack(head)
    if magic != MAGIC_HEADER or digest(head) != check:
        return Header(False)
    return Header(True, version, half_size, current)


def _read_record(fh: BinaryIO, base: int, offset: int, limit: int) -> tuple[Record | None, str]:
    """The record at ``offset`` in the half starting at ``base``, or None and why not."""
    if offset + _RECORD_HEAD.size + _DIGEST > limit:
        return None, "end of half"
    fh.seek(base + offset)
    head = fh.read(_RECORD_HEAD.size).ljust(_RECORD_HEAD.size, b"\0")
    magic, kind, epoch, sequence, generation, length = _RECORD_HEAD.unpack(head)
    if magic != MAGIC_RECORD:
        return None, "no record" if head == bytes(len(head)) else "not a record"
    if kind not in (FULL, DELTA) or offset + _RECORD_HEAD.size + length + _DIGEST > limit:
        return None, "bad record header"
    body = fh.read(length).ljust(length, b"\0")
    check = fh.read(_DIGEST).ljust(_DIGEST, b"\0")
    if digest(head + body) != check:
        return None, "checksum mismatch"
    try:
        payload = orjson.loads(zlib.decompress(body))
    except (zlib.error, orjson.JSONDecodeError):
        return None, "undecodable payload"
    size = _RECORD_HEAD.size + length + _DIGEST
    return Record(kind, epoch, sequence, generation, payload, offset, size), ""


def _names(fh: BinaryIO, at: int, epoch: bytes, sequence: int) -> bool:
    """Whether the record head at ``at``, though it failed its checks, names this epoch and sequence: damage."""
    fh.seek(at)
    head = fh.read(_RECORD_HEAD.size).ljust(_RECORD_HEAD.size, b"\0")
    _, _, their_epoch, their_sequence, _, _ = _RECORD_HEAD.unpack(head)
    return bool(their_epoch == epoch and their_sequence == sequence)


def read_half(fh: BinaryIO, index: int, half_size: int) -> HalfReport:
    report = HalfReport(index)
    base = half_offset(index, half_size)
    record, why = _read_record(fh, base, 0, half_size)
    if record is None or record.kind != FULL:
        report.stopped = why or "no full copy"
        report.checksum_errors += why == "checksum mismatch"
        return report
    report.full = record
    offset, expected = record.size, record.sequence + 1
    while True:
        record, why = _read_record(fh, base, offset, half_size)
        if record is None:
            report.stopped = why
            report.checksum_errors += why == "checksum mismatch" or (
                why in ("not a record", "bad record header") and _names(fh, base + offset, report.full.epoch, expected)
            )
            return report
        if record.kind != DELTA or record.epoch != report.full.epoch or record.sequence != expected:
            report.stopped = "end of this full copy's deltas"
            return report
        report.deltas.append(record)
        offset += record.size
        expected += 1


@dataclass
class Snapshot:
    """The newest complete generation a metadata VDI holds."""

    pool_uuid: str
    pool_name: str
    generation: int
    written: str
    farside_version: str
    schema_version: int
    objects: dict[str, dict[str, dict[str, Any]]]
    half: int


def newest(fh: BinaryIO, half_size: int | None = None) -> tuple[Snapshot | None, Header, list[HalfReport]]:
    """Read both halves and rebuild the newest complete state (None when neither half is whole)."""
    header = read_header(fh)
    if half_size or header.valid:
        sizes = [half_size or header.half_size]
    else:  # no header: the default, or what the image's length implies (a copy may be cut short)
        implied = (fh.seek(0, 2) - HEADER_SIZE) // 2
        sizes = [DEFAULT_HALF_SIZE] + ([implied] if 0 < implied != DEFAULT_HALF_SIZE else [])
    reports = max(
        ([read_half(fh, i, size) for i in (0, 1)] for size in sizes), key=lambda rs: max(r.generation for r in rs)
    )
    best = max(reports, key=lambda r: r.generation)
    if best.full is None:
        return None, header, reports
    full = best.full.payload
    objects: dict[str, dict[str, dict[str, Any]]] = {cls: dict(rows) for cls, rows in full["objects"].items()}
    written = full["written"]
    for delta in best.deltas:
        apply_delta(objects, delta.payload)
        written = delta.payload["written"]
    snapshot = Snapshot(
        pool_uuid=full["pool_uuid"],
        pool_name=full["pool_name"],
        generation=best.generation,
        written=written,
        farside_version=full["farside_version"],
        schema_version=int(full["schema_version"]),
        objects=objects,
        half=best.index,
    )
    return snapshot, header, reports


def apply_delta(objects: dict[str, dict[str, dict[str, Any]]], payload: dict[str, Any]) -> None:
    for change in payload["changes"]:
        rows = objects.setdefault(change["cls"], {})
        if change["op"] == "del":
            rows.pop(change["ref"], None)
        else:
            rows[change["ref"]] = change["record"]
