"""A VDI inside an XVA: members ``Ref:N/%08d`` of 1 MiB each, every one followed by its checksum
member ``Ref:N/%08d.xxhash`` (XXH64 as 16 uppercase hex digits; imports also take ``.checksum``,
SHA-1 in 40 lowercase hex digits, the only kind before 2019).

As xapi writes them (ocaml/xapi/stream_vdi.ml): chunks of zeros are left out, except the first
and the last, which are always written. The member name is a counter, not an offset: the reader
gets each chunk's place by adding up the sizes before it, counting each number skipped as one
chunk of zeros of the first chunk's size. When nothing has been sent for 5 s (a slow source), the
writer sends a zero-length member with the next counter, so that idle connections are not cut;
the counter then runs one ahead of the chunk index for the rest of the disk.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import xxhash

from farside.backup import tar
from farside.backup.errors import XvaChecksumFailed, XvaInvalid, XvaTruncated, XvaUnexpectedFile

CHUNK = 1 << 20
KEEPALIVE_S = 5.0
XXHASH = ".xxhash"
SHA1 = ".checksum"
# The largest chunk read into memory: xapi writes 1 MiB; other writers may use more, not this much.
MAX_CHUNK = 64 << 20
Clock = Callable[[], float]
Progress = Callable[[int], None]


class Sink(Protocol):
    """Where an imported disk's bytes go; zeros need not be written (the target starts empty)."""

    def write(self, offset: int, data: bytes) -> None: ...


_ZERO = bytes(CHUNK)


def is_zero(data: bytes) -> bool:
    """Whether a chunk is all zeros (a memcmp, which stops at the first byte of a data chunk)."""
    return data == (_ZERO if len(data) == CHUNK else bytes(len(data)))


def checksum(data: bytes) -> str:
    return f"{xxhash.xxh64_intdigest(data):016X}"


def _members(name: str, data: bytes) -> bytes:
    digest = checksum(data).encode()
    return b"".join(
        (
            tar.header(name, len(data)),
            data,
            tar.padding(len(data)),
            tar.header(name + XXHASH, len(digest)),
            digest,
            tar.padding(len(digest)),
        )
    )


def write_disk(
    prefix: str,
    chunks: Iterable[tuple[int, bytes]],
    last: int,
    clock: Clock = time.monotonic,
    keepalive_s: float = KEEPALIVE_S,
) -> Iterator[tuple[bytes, int]]:
    """The members of one disk, each with how many guest bytes it covers up to its chunk.

    ``chunks`` gives (index, data) in increasing order, always with the first and the last."""
    sent_at = clock()
    extra = 0  # keep-alive members sent so far: the counter runs this far ahead of the index
    done = 0
    for index, data in chunks:
        first_or_last = index in (0, last)
        if first_or_last or not is_zero(data):
            yield _members(f"{prefix}/{index + extra:08d}", data), index * CHUNK + len(data) - done
            done = index * CHUNK + len(data)
            sent_at = clock()
        elif clock() - sent_at > keepalive_s:
            yield _members(f"{prefix}/{index + extra:08d}", b""), 0
            extra += 1
            sent_at = clock()


def _suffix(prefix: str, entry: tar.Entry) -> str:
    stem = prefix + "/"
    if not entry.name.startswith(stem) or not entry.name[len(stem) :].isdigit() or not entry.name.isascii():
        raise XvaUnexpectedFile(f"{stem}<chunk number>", entry.name)
    return entry.name[len(stem) :]


def read_disk(
    reader: tar.TarReader,
    first: tar.Entry,
    prefix: str,
    size: int,
    sink: Sink,
    force: bool = False,
    progress: Progress | None = None,
) -> None:
    """Read one disk of ``size`` bytes whose first member is ``first`` into ``sink``.

    Raises:
        XvaUnexpectedFile: a member outside ``prefix/``, a number not above the last one, a
            checksum member missing or of another kind.
        XvaChecksumFailed: a chunk whose checksum differs (unless ``force``), naming it.
        XvaInvalid: a chunk larger than MAX_CHUNK or reaching past the disk's end.
        XvaTruncated: the stream ends before the disk does.
    """
    last = "-1"
    offset = 0
    chunk_length = -1
    entry: tar.Entry | None = first
    while offset < size:
        if entry is None:
            entry = reader.next()
            if entry is None:
                raise XvaTruncated()
        suffix = _suffix(prefix, entry)
        if suffix <= last:
            raise XvaUnexpectedFile(f"{prefix}/<a number above {last}>", entry.name)
        if entry.size > MAX_CHUNK:
            raise XvaInvalid(f"chunk {entry.name} holds {entry.size} bytes; at most {MAX_CHUNK} are read")
        if chunk_length < 0:
            chunk_length = entry.size
        skipped = (int(suffix) - int(last) - 1) * chunk_length
        offset += skipped
        if offset + entry.size > size:
            raise XvaInvalid(f"chunk {entry.name} reaches past the end of the {size}-byte disk")
        data = reader.data(entry)
        _verify(reader, entry.name, data, force)
        if not is_zero(data):
            sink.write(offset, data)
        offset += len(data)
        if progress is not None:
            progress(skipped + len(data))
        last = suffix
        entry = None


def _verify(reader: tar.TarReader, name: str, data: bytes, force: bool) -> None:
    entry = reader.next()
    if entry is None:
        raise XvaTruncated()
    if entry.name == name + XXHASH:
        recomputed = checksum(data)
    elif entry.name == name + SHA1:
        recomputed = hashlib.sha1(data).hexdigest()
    else:
        raise XvaUnexpectedFile(name + XXHASH, entry.name)
    if entry.size > 64:
        raise XvaInvalid(f"checksum member {entry.name} holds {entry.size} bytes")
    original = reader.data(entry).decode("ascii", "replace").strip()
    if original.lower() != recomputed.lower() and not force:
        raise XvaChecksumFailed(f"Block {name} checksum failed: original = {original}; recomputed = {recomputed}")
