"""A VDI image's guest bytes, read sparsely in XVA chunks.

Only the chunks that may hold data are read: for a raw image, the file's data extents
(SEEK_DATA/SEEK_HOLE); for a qcow2 image, the guest ranges ``qemu-img map`` reports as data, read
straight from the host offsets it gives (a self-contained qcow2 we made has no compressed or
encrypted clusters; one that has is refused). A 10 GiB disk with
1 MiB of data costs one chunk read, not 10 GiB of zeros.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from farside.storage import image
from farside.storage.errors import image_failure

CHUNK = 1 << 20


@dataclass(frozen=True)
class Extent:
    """Guest bytes [start, start + length) stored at ``host`` in the image file."""

    start: int
    length: int
    host: int


def _open(path: Path) -> int:
    # The file checked by the caller, never a symlink put in its place since.
    return os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)


def raw_extents(fd: int, size: int) -> Iterator[Extent]:
    """The data extents of a raw file (guest offset = host offset)."""
    end = min(size, os.fstat(fd).st_size)
    pos = 0
    while pos < end:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole is left
                return
            raise
        if start >= end:
            return
        stop = min(os.lseek(fd, start, os.SEEK_HOLE), end)
        yield Extent(start, stop - start, start)
        pos = stop


def qcow2_extents(path: Path) -> list[Extent]:
    """The data extents of a qcow2 image, with their host offsets."""
    result = subprocess.run(
        [image.QEMU_IMG, "map", "-f", "qcow2", "--output=json", str(path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if result.returncode != 0:
        raise image_failure(result.stderr.strip() or "qemu-img map failed")
    extents = []
    for item in json.loads(result.stdout):
        if not item.get("data") or item.get("zero"):
            continue
        if "offset" not in item or item.get("depth", 0) != 0:
            # Compressed clusters: only qemu-img can read them (not made here: images are plain).
            raise image_failure(f"{path}: guest bytes at {item['start']} have no host offset; convert the image first")
        extents.append(Extent(int(item["start"]), int(item["length"]), int(item["offset"])))
    return extents


class Disk:
    """The guest bytes of one self-contained image of ``size`` bytes, as candidate chunks."""

    def __init__(self, path: Path, fmt: str, size: int) -> None:
        image.contained(path, fmt)
        self.size = size
        self._fd = _open(path)
        try:
            # qcow2: mapped now, so an image that cannot be read this way is refused before anything is sent.
            self._extents: list[Extent] | None = qcow2_extents(path) if fmt == "qcow2" else None
        except BaseException:
            os.close(self._fd)
            raise

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> Disk:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def last(self) -> int:
        """The index of the last chunk (-1 for an empty disk)."""
        return (self.size - 1) // CHUNK

    def _extents_iter(self) -> Iterator[Extent]:
        if self._extents is None:
            return raw_extents(self._fd, self.size)
        return iter(self._extents)

    def chunks(self) -> Iterator[tuple[int, bytes]]:
        """``(index, data)`` in increasing order for every chunk that may hold data, and always the
        first and the last (xapi's format writes them whatever they hold). Other chunks are zeros."""
        if self.size <= 0:
            return
        previous = -1
        for index, data in self._data_chunks():
            if previous < 0 and index > 0:
                yield 0, self._blank(0)
            yield index, data
            previous = index
        if previous < 0:
            yield 0, self._blank(0)
            previous = 0
        if previous < self.last:
            yield self.last, self._blank(self.last)

    def _data_chunks(self) -> Iterator[tuple[int, bytes]]:
        """The chunks that the extents touch, each assembled from the extents' pieces."""
        index, buffer = -1, bytearray()
        for extent in self._extents_iter():
            pos = extent.start
            end = min(extent.start + extent.length, self.size)
            while pos < end:
                at = pos // CHUNK
                stop = min(end, (at + 1) * CHUNK)
                if at != index and pos == at * CHUNK and stop - pos == self._length(at):
                    # A whole chunk in one extent: read as it is, no assembly.
                    if index >= 0:
                        yield index, bytes(buffer)
                    index = -1
                    yield at, os.pread(self._fd, stop - pos, extent.host + (pos - extent.start))
                    pos = stop
                    continue
                if at != index:
                    if index >= 0:
                        yield index, bytes(buffer)
                    index, buffer = at, bytearray(self._blank(at))
                piece = os.pread(self._fd, stop - pos, extent.host + (pos - extent.start))
                offset = pos - at * CHUNK
                buffer[offset : offset + len(piece)] = piece
                pos = stop
        if index >= 0:
            yield index, bytes(buffer)

    def _blank(self, index: int) -> bytes:
        return bytes(self._length(index))

    def _length(self, index: int) -> int:
        return min(CHUNK, self.size - index * CHUNK)
