"""XVA disk chunks: xapi's naming, zero skipping, keep-alive members, and a strict reader."""

from __future__ import annotations

import contextlib
import io
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from farside.backup import chunks, tar
from farside.backup.errors import XvaChecksumFailed, XvaInvalid, XvaTruncated, XvaUnexpectedFile

MIB = chunks.CHUNK


class Memory:
    def __init__(self, size: int) -> None:
        self.size = size
        self.writes: dict[int, bytes] = {}

    def write(self, offset: int, data: bytes) -> None:
        self.writes[offset] = data

    @property
    def data(self) -> bytes:
        out = bytearray(self.size)
        for offset, data in self.writes.items():
            out[offset : offset + len(data)] = data
        return bytes(out)


def _read(stream: bytes, prefix: str, size: int, force: bool = False) -> bytes:
    reader = tar.TarReader(io.BytesIO(stream).read)
    first = reader.next()
    assert first is not None
    sink = Memory(size)
    chunks.read_disk(reader, first, prefix, size, sink, force)
    return bytes(sink.data)


def _disk(layout: str) -> list[tuple[int, bytes]]:
    """Chunks from a layout string: 'D' a data chunk, '0' a chunk of zeros."""
    return [(i, (bytes([65 + i]) * MIB if c == "D" else bytes(MIB))) for i, c in enumerate(layout)]


def _names(stream: bytes) -> list[str]:
    reader = tar.TarReader(io.BytesIO(stream).read)
    names = []
    while (entry := reader.next()) is not None:
        names.append(entry.name)
    return names


def test_zero_chunks_are_skipped_but_first_and_last_kept() -> None:
    """Only data chunks are written, and always chunk 0 and the last, each with its XXH64 member."""
    members = b"".join(m for m, _ in chunks.write_disk("Ref:3", _disk("00D00"), 4))
    assert _names(members) == [
        "Ref:3/00000000", "Ref:3/00000000.xxhash", "Ref:3/00000002", "Ref:3/00000002.xxhash",
        "Ref:3/00000004", "Ref:3/00000004.xxhash",
    ]  # fmt: skip
    assert _read(members, "Ref:3", 5 * MIB) == b"".join(d for _, d in _disk("00D00"))


def test_keepalive_members_put_the_counter_ahead_of_the_offset() -> None:
    """On a slow source a zero-length member with the next counter goes out; the reader still
    puts every chunk at its offset."""
    clock = itertools.count(0, 6).__next__  # every reading of the clock is 6 s later
    layout = "D00D0D"
    members = b"".join(m for m, _ in chunks.write_disk("Ref:1", _disk(layout), 5, clock=lambda: float(clock())))
    names = [n for n in _names(members) if not n.endswith(".xxhash")]
    # Each zero chunk, 6 s after the last member, is a keep-alive; data chunk 3 is then counter 5.
    assert names == [f"Ref:1/{n:08d}" for n in (0, 1, 3, 5, 6, 8)]
    assert _read(members, "Ref:1", 6 * MIB) == b"".join(d for _, d in _disk(layout))


def test_corrupt_chunk_is_named_unless_forced() -> None:
    """A chunk whose checksum differs is refused, naming it; force takes it as it is."""
    members = b"".join(m for m, _ in chunks.write_disk("Ref:2", _disk("DD"), 1))
    broken = members.replace(b"B" * 100, b"b" * 100, 1)
    with pytest.raises(XvaChecksumFailed, match="Block Ref:2/00000001 checksum failed"):
        _read(broken, "Ref:2", 2 * MIB)
    assert _read(broken, "Ref:2", 2 * MIB, force=True)[MIB : MIB + 100] == b"b" * 100


def test_sha1_checksums_are_read() -> None:
    """Legacy ``.checksum`` members (SHA-1, lowercase hex) are verified as well."""
    import hashlib

    data = b"x" * 1000
    stream = tar.member("Ref:1/00000000", data) + tar.member(
        "Ref:1/00000000.checksum", hashlib.sha1(data).hexdigest().encode()
    )
    assert _read(stream, "Ref:1", 1000) == data
    bad = tar.member("Ref:1/00000000", data) + tar.member("Ref:1/00000000.checksum", b"0" * 40)
    with pytest.raises(XvaChecksumFailed):
        _read(bad, "Ref:1", 1000)


@pytest.mark.parametrize(
    ("names", "error"),
    [
        (["Ref:1/00000001", "Ref:1/00000001"], XvaUnexpectedFile),  # not increasing
        (["Ref:2/00000000"], XvaUnexpectedFile),  # another disk's prefix
        (["Ref:1/0000000x"], XvaUnexpectedFile),  # not a number
        (["Ref:1/../../x"], XvaUnexpectedFile),
        (["Ref:1/00000000"], XvaTruncated),  # the disk needs three chunks
    ],
)
def test_bad_member_names_are_refused(names: list[str], error: type[Exception]) -> None:
    """Names outside the disk's prefix, not numbers, or not increasing are refused; so is an early end."""
    stream = b""
    for name in names:
        stream += tar.member(name, b"d" * 10) + tar.member(name + ".xxhash", chunks.checksum(b"d" * 10).encode())
    with pytest.raises(error):
        _read(stream, "Ref:1", 30 + 3 * MIB)


def test_chunk_past_the_end_and_huge_chunks_are_refused() -> None:
    """A chunk reaching past the disk's end, or larger than MAX_CHUNK, is refused before it is read."""
    with pytest.raises(XvaInvalid, match="past the end"):
        _read(tar.member("Ref:1/00000000", b"x" * 20), "Ref:1", 10)
    huge = tar.header("Ref:1/00000000", chunks.MAX_CHUNK + 1)
    with pytest.raises(XvaInvalid, match="at most"):
        _read(huge, "Ref:1", 1 << 40)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_reader(blob: bytes) -> None:
    """Whatever the stream holds, the reader answers with one of its XVA errors or reads a disk."""
    stream = tar.member("Ref:1/00000000", blob[:100]) + blob
    with contextlib.suppress(XvaInvalid, XvaTruncated, XvaUnexpectedFile, XvaChecksumFailed):
        _read(stream, "Ref:1", 100 + len(blob))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.sampled_from("D0"), min_size=1, max_size=12))
def test_written_disks_read_back(layout: list[str]) -> None:
    """Any layout of data and zero chunks reads back as it was written."""
    disk = _disk("".join(layout))
    members = b"".join(m for m, _ in chunks.write_disk("Ref:7", disk, len(disk) - 1))
    assert _read(members, "Ref:7", len(disk) * MIB) == b"".join(d for _, d in disk)
