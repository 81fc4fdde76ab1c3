"""XVA compression: xapi's ``use_compression=true|gzip|zstd`` on export, detected on import.

The import side detects the stream as xapi does (a tar header, the zstd magic, else gzip) and
decompresses with bounded output per read, so a small hostile stream cannot expand in memory.
"""

from __future__ import annotations

import gzip
import zlib
from typing import Protocol

import zstandard

from farside.backup.errors import XvaInvalid

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
# xapi's names for the export parameter; "true" has always meant gzip.
METHODS = {"": "", "false": "", "true": "gzip", "gzip": "gzip", "zstd": "zstd"}
# Speed over ratio, as `zstd -1` and `gzip -1`: an export is bound by the disk, not the network.
_ZSTD_LEVEL = 1
_GZIP_LEVEL = 1
_ZSTD_THREADS = 2


class Source(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class Compressor(Protocol):
    def compress(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...


class _Plain:
    def compress(self, data: bytes) -> bytes:
        return data

    def flush(self) -> bytes:
        return b""


def method(value: str) -> str:
    """The compression an export parameter asks for ("" for none)."""
    found = METHODS.get(value.lower())
    if found is None:
        raise XvaInvalid(f"use_compression={value!r} is not one of {', '.join(k for k in METHODS if k)}")
    return found


def compressor(name: str) -> Compressor:
    if name == "zstd":
        # zstd's own worker threads compress while this one reads and hashes the next chunks, as
        # `tar | zstd` runs in two processes.
        return zstandard.ZstdCompressor(level=_ZSTD_LEVEL, threads=_ZSTD_THREADS).compressobj()
    if name == "gzip":
        return zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)
    return _Plain()


class _Peeked:
    """``source`` with its first bytes read already, handed back first."""

    def __init__(self, head: bytes, source: Source) -> None:
        self._head = head
        self._source = source

    def read(self, n: int = -1) -> bytes:
        if self._head:
            out, self._head = self._head[:n], self._head[n:]
            return out
        return self._source.read(n)


def _read_head(source: Source, n: int) -> bytes:
    head = b""
    while len(head) < n:
        got = source.read(n - len(head))
        if not got:
            break
        head += got
    return head


def _looks_like_tar(head: bytes) -> bool:
    # The ustar magic at 257, or (old V7 headers) a header whose checksum field is octal digits.
    return head[257:262] == b"ustar" or (len(head) >= 156 and head[148:154].strip(b" \0").isdigit())


class _Guarded:
    """A decompressing reader whose library errors become IMPORT_ERROR."""

    def __init__(self, inner: Source, name: str) -> None:
        self._inner = inner
        self._name = name

    def read(self, n: int = -1) -> bytes:
        try:
            return self._inner.read(n)
        except (OSError, EOFError, zlib.error, zstandard.ZstdError) as exc:
            raise XvaInvalid(f"the {self._name} stream is corrupt: {exc}") from None


def decompressing(source: Source) -> tuple[str, Source]:
    """The compression found and a reader of the plain tar."""
    head = _read_head(source, 512)
    peeked = _Peeked(head, source)
    if head.startswith(ZSTD_MAGIC):
        reader = zstandard.ZstdDecompressor().stream_reader(peeked, read_across_frames=True)  # type: ignore[arg-type]
        return "zstd", _Guarded(reader, "zstd")
    if _looks_like_tar(head) or not head.startswith(GZIP_MAGIC):
        return "", peeked
    return "gzip", _Guarded(gzip.GzipFile(fileobj=peeked, mode="rb"), "gzip")  # type: ignore[call-overload]
