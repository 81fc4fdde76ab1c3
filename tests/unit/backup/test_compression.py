"""XVA compression: detection as xapi does it, and decompression bounded per read."""

from __future__ import annotations

import gzip
import io

import pytest
import zstandard

from farside.backup import compression, tar
from farside.backup.errors import XvaInvalid

TAR = tar.member("ova.xml", b"<value/>") + tar.END


@pytest.mark.parametrize("name", ["", "gzip", "zstd"])
def test_round_trip_and_detection(name: str) -> None:
    """What the exporter compresses, the importer detects and reads back."""
    packer = compression.compressor(name)
    packed = packer.compress(TAR) + packer.flush()
    found, reader = compression.decompressing(io.BytesIO(packed))
    assert found == name
    out = b""
    while block := reader.read(100):
        out += block
    assert out == TAR


def test_bombs_are_read_in_bounded_pieces() -> None:
    """A small stream that expands to 1 GiB is handed out a read's worth at a time."""
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(1 << 30))
    assert len(bomb) < 1 << 20
    _, reader = compression.decompressing(io.BytesIO(bomb))
    assert len(reader.read(1 << 20)) <= 1 << 20
    g = gzip.compress(bytes(64 << 20))
    _, reader = compression.decompressing(io.BytesIO(g))
    assert len(reader.read(4096)) <= 4096


def test_corrupt_streams_are_import_errors() -> None:
    """A broken gzip or zstd stream is IMPORT_ERROR, not a library exception."""
    for blob in (b"\x1f\x8b\x08\x00" + b"\xff" * 600, compression.ZSTD_MAGIC + b"\xff" * 600):
        _, reader = compression.decompressing(io.BytesIO(blob))
        with pytest.raises(XvaInvalid):
            reader.read(1 << 20)


def test_use_compression_values() -> None:
    """xapi's values: true means gzip; anything else is refused."""
    assert [compression.method(v) for v in ("", "false", "true", "gzip", "zstd", "ZSTD")] == [
        "",
        "",
        "gzip",
        "gzip",
        "zstd",
        "zstd",
    ]
    with pytest.raises(XvaInvalid):
        compression.method("lz4")
