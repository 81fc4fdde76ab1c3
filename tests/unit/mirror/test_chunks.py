"""Chunks: read several at a time, hashed, zeros told apart from data, a manifest's old hashes unknown."""

from __future__ import annotations

import os
from pathlib import Path

from farside.mirror.chunks import CHUNK, HASH, LEGACY_HASH, READ_CHUNKS, UNKNOWN, Reader, chunk_hash, digest, known
from farside.mirror.sparse import data_chunks


def test_hashed_reads_runs_and_keeps_zeros_apart(tmp_path: Path) -> None:
    """Every data chunk comes once with its own hash, across reads of READ_CHUNKS; written zeros are
    None like holes; the short last chunk is hashed as it is."""
    path = tmp_path / "image"
    size = (READ_CHUNKS + 3) * CHUNK + 123
    blocks = {i: os.urandom(CHUNK) for i in range(READ_CHUNKS + 3)}
    blocks[2] = bytes(CHUNK)  # data on disk, but zeros
    with open(path, "wb") as f:
        f.truncate(size)
        for i, data in blocks.items():
            if i != 5:  # chunk 5 stays a hole
                f.seek(i * CHUNK)
                f.write(data)
        f.seek((READ_CHUNKS + 3) * CHUNK)
        f.write(b"tail" * 30 + b"end")
    fd = os.open(path, os.O_RDONLY)
    try:
        got = {i: (bytes(data), h) for i, data, h in Reader().hashed(fd, size, data_chunks(fd, size, CHUNK))}
    finally:
        os.close(fd)
    assert 5 not in got
    assert got[2] == (bytes(CHUNK), None)
    for i, data in blocks.items():
        if i not in (2, 5):
            assert got[i] == (data, digest(data))
    last = READ_CHUNKS + 3
    assert got[last] == (b"tail" * 30 + b"end", digest(b"tail" * 30 + b"end"))


def test_a_chunk_is_zeros_only_if_all_its_bytes_are() -> None:
    """One non-zero byte makes a chunk data, even at the very end."""
    assert chunk_hash(bytes(CHUNK)) is None
    assert chunk_hash(bytes(100)) is None
    assert chunk_hash(bytes(CHUNK - 1) + b"\x01") == digest(bytes(CHUNK - 1) + b"\x01")


def test_hashes_of_another_algorithm_are_unknown() -> None:
    """A manifest's BLAKE2b hashes match no chunk any more; holes stay holes."""
    chunks: list[str | None] = [digest(b"a", LEGACY_HASH), None]
    assert known(chunks, LEGACY_HASH) == [UNKNOWN, None]
    assert known(chunks, HASH) == chunks
    assert digest(b"a", LEGACY_HASH) != digest(b"a")
