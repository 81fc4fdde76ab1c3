"""Reading an image's guest bytes in XVA chunks: only data extents, for raw and qcow2 images."""

from __future__ import annotations

import os
from pathlib import Path

from farside.backup.disk import CHUNK, Disk
from farside.storage import image


def _raw(path: Path, size: int, writes: dict[int, bytes]) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)
        for offset, data in writes.items():
            fh.seek(offset)
            fh.write(data)


def _content(disk: Disk) -> bytes:
    out = bytearray(disk.size)
    for index, data in disk.chunks():
        out[index * CHUNK : index * CHUNK + len(data)] = data
    return bytes(out)


def test_raw_reads_only_data_chunks_and_the_first_and_last(tmp_path: Path) -> None:
    """A 1 GiB raw file with two writes yields chunk 0, the two data chunks and the last."""
    path = tmp_path / "d.raw"
    writes = {5 * CHUNK + 100: b"x" * 10, 300 * CHUNK - 3: b"yyyyyy"}
    _raw(path, 1 << 30, writes)
    with Disk(path, "raw", 1 << 30) as disk:
        indices = [i for i, _ in disk.chunks()]
        assert indices == [0, 5, 299, 300, 1023]
        content = _content(disk)
    for offset, data in writes.items():
        assert content[offset : offset + len(data)] == data


def test_qcow2_reads_guest_bytes_from_host_offsets(tmp_path: Path) -> None:
    """A qcow2 image made from a raw one gives back the raw one's bytes, chunk by chunk."""
    raw = tmp_path / "d.raw"
    size = 40 * CHUNK + 4096  # a short last chunk
    writes = {0: os.urandom(70000), 17 * CHUNK + 65536 - 10: os.urandom(200000), size - 5: b"tail!"}
    _raw(raw, size, writes)
    qcow = tmp_path / "d.qcow2"
    image.convert(raw, "raw", qcow, "qcow2")
    with Disk(qcow, "qcow2", size) as disk:
        indices = [i for i, _ in disk.chunks()]
        assert indices[0] == 0 and indices[-1] == 40 and len(indices) < 6
        assert _content(disk) == raw.read_bytes()


def test_an_empty_disk_has_no_chunks_and_a_small_one_one(tmp_path: Path) -> None:
    """Size 0: nothing; a disk smaller than a chunk: its one chunk."""
    path = tmp_path / "e.raw"
    _raw(path, 100, {})
    with Disk(path, "raw", 0) as disk:
        assert list(disk.chunks()) == []
    with Disk(path, "raw", 100) as disk:
        assert list(disk.chunks()) == [(0, bytes(100))]
