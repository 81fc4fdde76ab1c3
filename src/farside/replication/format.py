"""The metadata VDI format, version 1: what a reader at the other site can always open.

A metadata VDI is a raw image of fixed size: a 4 KiB header, then two halves (64 MiB each by
default). Each half holds one *full copy* of the pool's persistent state followed by *deltas*,
each delta one committed change. A new full copy goes to the other half; then the header records
which half is current. Every record is self-delimiting and checksummed::

    record  = MAGIC "FSM2" | kind (1: b"F" full, b"D" delta) | epoch (16) | sequence (u64)
              | generation (u64) | payload length (u32) | payload | MAC (32) | BLAKE2b-128 of all before it
    payload = zlib(JSON)
    MAC     = HMAC-SHA256(pool's DR key, DOMAIN | pool uuid | SHA-256(head | payload))

The checksum finds damage; the MAC, under a key only the pool and the DR sites it is paired with
hold, proves the pool wrote the record, at that place in its chain (epoch, sequence) and for that
generation, so records can be neither forged nor spliced into another chain.

``epoch`` is random per full copy: a delta belongs to the full copy whose epoch it carries, and
its sequence number follows the one before it without a gap. A reader of a half therefore takes
the full copy and then deltas for as long as they are whole, checksummed, of the same epoch and
in sequence; the first record that is not ends the half (a torn write, bytes of an older epoch,
or zeros). It never mixes two epochs. Of the two halves it takes the one whose last good record
has the higher generation; the header is only a hint, never trusted over the records. A copy
cut short, or whose zero regions a sparse copy dropped, reads as zeros past its end.

Nothing read is trusted: every length is capped by the file's size and the format's limits
(inflating included), and every payload is checked against its schema (replication/schema.py)
before it is used, so a hostile file costs a bounded amount of memory and is reported, never
raised.

The header (4 KiB, rewritten in place) holds MAGIC_HEADER, the format version, the half size,
the current half and a checksum; ``farside metadata inspect`` shows it.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import uuid as uuidlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from farside.replication import schema

FORMAT_VERSION = 2
HEADER_SIZE = 4096
DEFAULT_HALF_SIZE = 64 << 20
# No writer makes halves this large; a header claiming more is damaged or hostile.
MAX_HALF_SIZE = 16 << 30
MAGIC_HEADER = b"FARSIDE-METADATA"
MAGIC_RECORD = b"FSM2"
# Records of format 1 carried no MAC: recognised, to say why they are not read.
MAGIC_RECORD_V1 = b"FSMR"
FULL, DELTA = b"F", b"D"
# magic, kind, epoch, sequence, generation, payload length
_RECORD_HEAD = struct.Struct("<4s1s16sQQI")
_DIGEST = 16
MAC_SIZE = 32
_MAC_DOMAIN = b"farside-metadata-record-v2\0"
_HEADER = struct.Struct("<16sIQB")  # magic, version, half size, current half
NO_HALF = 255
_ZLIB_LEVEL = 1
# Inflating is bounded: pool JSON compresses less than this at level 1 (110x for 50,000 records
# holding nothing but defaults; real ones, with their uuids, less), a zlib bomb (about 1000x) is
# cut off after a bounded output.
MAX_INFLATE_RATIO = 256
MIN_INFLATE_BYTES = 64 << 10
MAX_INFLATE_BYTES = 1 << 30
# Reasons reading a half stopped that no torn write or stale bytes explain: shown as problems.
MALFORMED = "malformed payload"
FORGED = "fails authentication"
# The key a pool's records are checked with (its DR key), or None when this site has none.
KeyLookup = Callable[[str], bytes | None]


def digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST).digest()


def record_mac(key: bytes, pool_uuid: str, content: bytes) -> bytes:
    """The MAC of a record whose head and payload hash (SHA-256) to ``content``."""
    return hmac.new(key, _MAC_DOMAIN + pool_uuid.encode() + b"\0" + content, hashlib.sha256).digest()


def encode_record(
    kind: bytes, epoch: bytes, sequence: int, generation: int, payload: dict[str, Any], *, key: bytes, pool_uuid: str
) -> bytes:
    """One record, ready to write, authenticated under the pool's DR ``key``."""
    body = zlib.compress(orjson.dumps(payload), _ZLIB_LEVEL)
    head = _RECORD_HEAD.pack(MAGIC_RECORD, kind, epoch, sequence, generation, len(body))
    mac = record_mac(key, pool_uuid, hashlib.sha256(head + body).digest())
    return head + body + mac + digest(head + body + mac)


def record_size(payload_length: int) -> int:
    return _RECORD_HEAD.size + payload_length + MAC_SIZE + _DIGEST


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
    # SHA-256 of head and payload, and the MAC the record carries: checked once a key is known.
    content: bytes = b""
    mac: bytes = b""


@dataclass
class HalfReport:
    """What one half holds: its full copy, the deltas that follow it, and why reading stopped."""

    index: int
    full: Record | None = None
    deltas: list[Record] = field(default_factory=list)
    stopped: str = ""
    checksum_errors: int = 0
    # None: not checked (no key for the pool it claims); False: its full copy fails the check.
    authenticated: bool | None = None
    # What no torn write explains: a malformed payload, a record failing authentication.
    problems: list[str] = field(default_factory=list)

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

    @property
    def pool_uuid(self) -> str:
        return str(self.full.payload["pool_uuid"]) if self.full is not None else ""

    def rank(self) -> tuple[int, int]:
        """Authenticated halves first, unchecked ones next, forged ones last; then the newest."""
        trust = {True: 2, None: 1, False: 0}[self.authenticated]
        return (trust if self.full is not None else -1, self.generation)


def read_header(fh: BinaryIO) -> Header:
    fh.seek(0)
    data = fh.read(HEADER_SIZE).ljust(HEADER_SIZE, b"\0")
    head, check = data[: _HEADER.size], data[_HEADER.size : _HEADER.size + _DIGEST]
    magic, version, half_size, current = _HEADER.unpack(head)
    if magic != MAGIC_HEADER or digest(head) != check or not 0 < half_size <= MAX_HALF_SIZE:
        return Header(False)
    return Header(True, version, half_size, current)


def _read(fh: BinaryIO, at: int, size: int, file_size: int) -> bytes:
    """``size`` bytes at ``at``, zeros past the end of the file; never more allocated than the file holds."""
    fh.seek(at)
    return fh.read(max(0, min(size, file_size - at))).ljust(size, b"\0")


def inflate(body: bytes) -> bytes:
    """The payload's JSON, refused (zlib.error) when it would inflate past a bound set by its size."""
    limit = min(MAX_INFLATE_BYTES, max(MIN_INFLATE_BYTES, MAX_INFLATE_RATIO * len(body)))
    inflater = zlib.decompressobj()
    data = inflater.decompress(body, limit)
    if inflater.unconsumed_tail or not inflater.eof:
        raise zlib.error(f"inflates past {limit} bytes or is cut short")
    return data


def _read_record(fh: BinaryIO, base: int, offset: int, limit: int, file_size: int) -> tuple[Record | None, str]:
    """The record at ``offset`` in the half starting at ``base``, or None and why not."""
    if offset + record_size(0) > limit:
        return None, "end of half"
    head = _read(fh, base + offset, _RECORD_HEAD.size, file_size)
    magic, kind, epoch, sequence, generation, length = _RECORD_HEAD.unpack(head)
    if magic != MAGIC_RECORD:
        if magic == MAGIC_RECORD_V1:
            return None, "a format-1 record (written by an older Farside, with no MAC)"
        return None, "no record" if head == bytes(len(head)) else "not a record"
    size = record_size(length)
    if kind not in (FULL, DELTA) or offset + size > limit:
        return None, "bad record header"
    if base + offset + size > file_size:
        # Past the end reads as zeros, and zeros never end in the right checksum: not whole.
        return None, "cut short"
    rest = _read(fh, base + offset + _RECORD_HEAD.size, size - _RECORD_HEAD.size, file_size)
    body, mac, check = rest[:length], rest[length : length + MAC_SIZE], rest[length + MAC_SIZE :]
    if digest(head + body + mac) != check:
        return None, "checksum mismatch"
    try:
        payload = orjson.loads(inflate(body))
        schema.check_record(kind == FULL, generation, payload)
    except (zlib.error, orjson.JSONDecodeError) as exc:
        return None, f"{MALFORMED}: cannot inflate or parse it ({exc})"
    except schema.Malformed as exc:
        return None, f"{MALFORMED}: {exc}"
    content = hashlib.sha256(head + body).digest()
    return Record(kind, epoch, sequence, generation, payload, offset, size, content, mac), ""


def _names(fh: BinaryIO, at: int, epoch: bytes, sequence: int, file_size: int) -> bool:
    """Whether the record head at ``at``, though it failed its checks, names this epoch and sequence: damage."""
    head = _read(fh, at, _RECORD_HEAD.size, file_size)
    _, _, their_epoch, their_sequence, _, _ = _RECORD_HEAD.unpack(head)
    return bool(their_epoch == epoch and their_sequence == sequence)


def _file_size(fh: BinaryIO) -> int:
    return fh.seek(0, 2)


def read_half(fh: BinaryIO, index: int, half_size: int, keys: KeyLookup | None = None) -> HalfReport:
    """The half's full copy and deltas; with ``keys``, only what the claimed pool's key authenticates."""
    report = HalfReport(index)
    file_size = _file_size(fh)
    base = half_offset(index, half_size)
    record, why = _read_record(fh, base, 0, half_size, file_size)
    if record is None or record.kind != FULL:
        report.stopped = why or "no full copy"
        report.checksum_errors += why == "checksum mismatch"
        if why.startswith(MALFORMED):
            report.problems.append(f"half {index}: full copy: {why}")
        return report
    report.full = record
    key = keys(report.pool_uuid) if keys is not None else None
    if key is not None:
        report.authenticated = _authentic(record, key, report.pool_uuid)
        if not report.authenticated:
            report.problems.append(
                f"half {index}: full copy claims pool {report.pool_uuid} but {FORGED} under its DR key"
            )
    offset, expected = record.size, record.sequence + 1
    while True:
        record, why = _read_record(fh, base, offset, half_size, file_size)
        if record is None:
            report.stopped = why
            report.checksum_errors += why == "checksum mismatch" or (
                why in ("not a record", "bad record header", "cut short")
                and _names(fh, base + offset, report.full.epoch, expected, file_size)
            )
            if why.startswith(MALFORMED):
                report.problems.append(f"half {index}: delta {expected}: {why}")
            return report
        if record.kind != DELTA or record.epoch != report.full.epoch or record.sequence != expected:
            report.stopped = "end of this full copy's deltas"
            return report
        if report.authenticated and key is not None and not _authentic(record, key, report.pool_uuid):
            report.stopped = f"delta {expected} {FORGED}"
            report.problems.append(f"half {index}: delta {expected} {FORGED} under pool {report.pool_uuid}'s DR key")
            return report
        report.deltas.append(record)
        offset += record.size
        expected += 1


def _authentic(record: Record, key: bytes, pool_uuid: str) -> bool:
    return hmac.compare_digest(record_mac(key, pool_uuid, record.content), record.mac)


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
    # As HalfReport.authenticated: True only when the pool's DR key proves every record used.
    authenticated: bool | None = None


def newest(
    fh: BinaryIO, half_size: int | None = None, keys: KeyLookup | None = None
) -> tuple[Snapshot | None, Header, list[HalfReport]]:
    """Read both halves and rebuild the newest complete state (None when neither half is whole).

    With ``keys``, an authenticated half is preferred to any other, and one that fails its check
    is taken only when nothing better exists (so that its claim can be reported; it is marked)."""
    header = read_header(fh)
    if half_size or header.valid:
        sizes = [half_size or header.half_size]
    else:  # no header: the default, or what the image's length implies (a copy may be cut short)
        implied = min((_file_size(fh) - HEADER_SIZE) // 2, MAX_HALF_SIZE)
        sizes = [DEFAULT_HALF_SIZE] + ([implied] if 0 < implied != DEFAULT_HALF_SIZE else [])
    reports = max(
        ([read_half(fh, i, size, keys) for i in (0, 1)] for size in sizes),
        key=lambda rs: max(r.rank() for r in rs),
    )
    best = max(reports, key=lambda r: r.rank())
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
        authenticated=best.authenticated,
    )
    return snapshot, header, reports


def apply_delta(objects: dict[str, dict[str, dict[str, Any]]], payload: dict[str, Any]) -> None:
    for change in payload["changes"]:
        rows = objects.setdefault(change["cls"], {})
        if change["op"] == "del":
            rows.pop(change["ref"], None)
        else:
            rows[change["ref"]] = change["record"]
