"""Chunks: the 1 MiB unit the mirror compares, sends and checks, and the hash that names each one.

The hash is XXH3-128 (rsync's default checksum since 3.2): at tens of GB/s per core it costs almost
nothing next to the copy itself, where BLAKE2b (under 1 GB/s) was the mirror's largest cost. It
detects corruption as well as a cryptographic hash, but it is not collision resistant: a guest that
crafts two colliding chunks of its own disk can keep the second from being replicated. That harms
only the guest's own copy, which its owner controls anyway.

Reading goes through one reusable buffer, several chunks per system call; a chunk is handed out as
a view into that buffer, valid until the next one is asked for. (Reading ahead in a second thread
was measured slower on two cores: the other core is better spent on fsync and the end-to-end check.)
The buffer is page aligned and reads are whole blocks, so the same reader serves files opened with
``O_DIRECT`` (the journal's new files, see ``journal.NewFile``).
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import os
from collections.abc import Iterator

import xxhash

CHUNK = 1 << 20
# What O_DIRECT needs of buffers, offsets and lengths (the largest logical block size in use).
ALIGN = 4096
# Chunks read per system call.
READ_CHUNKS = 8
HASH = "xxh3-128"
# The hash of manifests and journals written before the mirror used XXH3.
LEGACY_HASH = "blake2b-128"
# A chunk hash that matches no chunk: data whose hash is unknown (a manifest from another hash).
UNKNOWN = "unknown"
_ZEROS = bytes(CHUNK)


def digest(data: bytes | bytearray | memoryview, algorithm: str = HASH) -> str:
    """A chunk's hash as hex, by ``algorithm`` (the current one unless a journal says otherwise)."""
    if algorithm == HASH:
        return xxhash.xxh3_128_hexdigest(data)
    if algorithm == LEGACY_HASH:
        return hashlib.blake2b(data, digest_size=16).hexdigest()
    raise ValueError(f"unknown chunk hash {algorithm!r}")


@functools.lru_cache(maxsize=4)
def _zeros_digest(length: int) -> str:
    return digest(_ZEROS[:length])


def chunk_hash(data: bytes | memoryview) -> str | None:
    """A chunk's hash, or None if it is all zeros (kept as a hole)."""
    hash_ = digest(data)
    # Comparing hashes first leaves the byte comparison to the rare chunk that is really zeros.
    if hash_ == _zeros_digest(len(data)) and bytes(data) == _ZEROS[: len(data)]:
        return None
    return hash_


def known(chunks: list[str | None], algorithm: str) -> list[str | None]:
    """A manifest's chunk hashes as the current hash can use them: those of another hash unknown.

    An unknown hash never equals a chunk's, so each such chunk is sent again once.
    """
    if algorithm == HASH:
        return chunks
    return [None if c is None else UNKNOWN for c in chunks]


def count(size: int) -> int:
    """The number of chunks of a file of ``size`` bytes."""
    return (size + CHUNK - 1) // CHUNK


_Batch = list[tuple[int, memoryview, str | None]]


class Reader:
    """Reads and hashes chunks of open files into a buffer it owns (one reader per thread)."""

    def __init__(self) -> None:
        # An anonymous mapping: page aligned, as O_DIRECT needs.
        self._view = memoryview(mmap.mmap(-1, READ_CHUNKS * CHUNK))

    def hashed(self, fd: int, size: int, indexes: list[int]) -> Iterator[tuple[int, memoryview, str | None]]:
        """Each chunk of ``fd`` at ``indexes`` (ascending) with its hash (None for zeros).

        Adjacent chunks are read together. A file that shrank while read gives fewer chunks; the
        caller's stat check sees it.
        """
        for first, n in _runs(indexes, READ_CHUNKS):
            yield from self._batch(fd, size, first, n, self._view)

    def read(self, fd: int, length: int, offset: int) -> memoryview:
        """``length`` (at most one chunk) bytes at ``offset``; fewer at the end of the file."""
        got = os.preadv(fd, [self._view[:length]], offset)
        return self._view[:got]

    @staticmethod
    def _batch(fd: int, size: int, first: int, n: int, view: memoryview) -> _Batch:
        """Read ``n`` chunks from ``first`` in one call into ``view``, each with its hash."""
        start = first * CHUNK
        # Whole blocks are asked for (past the end of the file is fine), as O_DIRECT needs.
        want = min(n * CHUNK, -(-max(0, size - start) // ALIGN) * ALIGN)
        got = min(os.preadv(fd, [view[:want]], start), max(0, size - start))
        out: _Batch = []
        for k in range(n):
            at = k * CHUNK
            if at >= got:
                break
            data = view[at : min(at + CHUNK, got)]
            out.append((first + k, data, chunk_hash(data)))
        return out


def _runs(indexes: list[int], most: int) -> Iterator[tuple[int, int]]:
    """``(first, n)`` for each run of consecutive indexes, at most ``most`` long."""
    i = 0
    while i < len(indexes):
        first = indexes[i]
        n = 1
        while n < most and i + n < len(indexes) and indexes[i + n] == first + n:
            n += 1
        yield first, n
        i += n
