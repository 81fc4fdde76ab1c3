"""The tar members of an XVA, written and read as streams.

xapi writes each member with a plain header (ocaml-tar: mode 0400, owner 0, mtime 0) and ends the
archive with two zero blocks. The reader takes only regular files with short names: an XVA never
holds links, devices, directories or long-name extensions, and a member's size is bounded by the
caller before its data is read.
"""

from __future__ import annotations

import tarfile
from collections.abc import Callable
from dataclasses import dataclass

from farside.backup.errors import XvaInvalid, XvaTruncated

BLOCK = 512
END = bytes(2 * BLOCK)
_ZERO_BLOCK = bytes(BLOCK)
Read = Callable[[int], bytes]


def header(name: str, size: int) -> bytes:
    """The 512-byte header of a regular file ``name`` holding ``size`` bytes."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o400
    info.mtime = 0
    return info.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict")


def padding(size: int) -> bytes:
    """The zeros that round a member's data up to whole blocks."""
    return bytes(-size % BLOCK)


def member(name: str, data: bytes) -> bytes:
    """A whole member: header, data and padding."""
    return b"".join((header(name, len(data)), data, padding(len(data))))


@dataclass(frozen=True)
class Entry:
    name: str
    size: int


class TarReader:
    """Reads members one after the other from ``read`` (which returns at most n bytes, and b""
    only at the end of the stream)."""

    def __init__(self, read: Read) -> None:
        self._read = read
        self._left = 0  # data and padding of the current member not read yet
        self.consumed = 0

    def exact(self, n: int) -> bytes:
        parts = []
        want = n
        while want:
            got = self._read(want)
            if not got:
                raise XvaTruncated()
            parts.append(got)
            want -= len(got)
        self.consumed += n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def next(self) -> Entry | None:
        """The next member's header, or None at the end of the archive (zero block or end of stream)."""
        if self._left:
            self.exact(self._left)
            self._left = 0
        first = self._read(BLOCK)
        if not first:
            return None
        self.consumed += len(first)
        block = first if len(first) == BLOCK else first + self.exact(BLOCK - len(first))
        if block == _ZERO_BLOCK:
            return None
        try:
            info = tarfile.TarInfo.frombuf(block, "utf-8", "strict")
        except (tarfile.TarError, UnicodeDecodeError) as exc:
            raise XvaInvalid(f"not a tar header at byte {self.consumed - BLOCK}: {exc}") from None
        if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
            raise XvaInvalid(f"tar member {info.name!r} is not a regular file (type {info.type!r})")
        self._left = info.size + len(padding(info.size))
        return Entry(info.name, info.size)

    def data(self, entry: Entry) -> bytes:
        """The member's data (the caller bounded ``entry.size``), its padding skipped."""
        body = self.exact(entry.size) if entry.size else b""
        pad = len(padding(entry.size))
        if pad:
            self.exact(pad)
        self._left = 0
        return body
