"""The bootable test image: its size, sectors, tag checks, counter sector, and the embedded code."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from farside.storage import bootable
from farside.storage.bootable import (
    BOOT_ASM,
    BOOT_CODE,
    MAX_TAG,
    SECTOR,
    boot_sector,
    read_counter,
    read_tag,
    write_bootable,
)

MIB = 1024 * 1024


def sector(path: Path, n: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(n * SECTOR)
        return f.read(SECTOR)


class TestImage:
    def test_size_and_signature(self, tmp_path: Path) -> None:
        """The image has the asked size, and sector 0 is the boot code ending in 0x55 0xAA."""
        img = tmp_path / "a.raw"
        write_bootable(img, "a", size_mib=3)
        assert img.stat().st_size == 3 * MIB
        first = sector(img, 0)
        assert first[510:] == b"\x55\xaa"
        assert first == boot_sector() and first.startswith(BOOT_CODE)

    def test_default_size_is_one_mib(self, tmp_path: Path) -> None:
        """Without a size the image is 1 MiB."""
        write_bootable(tmp_path / "a.raw", "a")
        assert (tmp_path / "a.raw").stat().st_size == MIB

    def test_sparse(self, tmp_path: Path) -> None:
        """Only the first sectors take space: a 64 MiB image allocates a few KiB at most."""
        img = tmp_path / "a.raw"
        write_bootable(img, "a", size_mib=64)
        assert img.stat().st_blocks * 512 <= 64 * 1024

    def test_code_is_the_same_for_every_tag(self, tmp_path: Path) -> None:
        """The tag and the counter flag change only sector 1 (and 3), never the code in sector 0."""
        write_bootable(tmp_path / "a.raw", "first", counter=False)
        write_bootable(tmp_path / "b.raw", "second one", counter=True)
        assert sector(tmp_path / "a.raw", 0) == sector(tmp_path / "b.raw", 0)

    def test_tag_sector(self, tmp_path: Path) -> None:
        """Sector 1 holds the magic, the flags, the length and the tag, NUL-terminated."""
        img = tmp_path / "a.raw"
        write_bootable(img, "vm-7 <site A>", counter=True)
        data = sector(img, 1)
        assert data[:4] == b"FSTG"
        assert data[4] == 1 and data[5] == len("vm-7 <site A>")
        assert data[6 : 6 + 13] == b"vm-7 <site A>" and data[6 + 13] == 0
        assert read_tag(img) == "vm-7 <site A>"

    def test_counter_flag_off(self, tmp_path: Path) -> None:
        """Without counter the flags byte is 0."""
        img = tmp_path / "a.raw"
        write_bootable(img, "a")
        assert sector(img, 1)[4] == 0

    def test_longest_tag(self, tmp_path: Path) -> None:
        """A tag of MAX_TAG characters fits, with its terminating NUL."""
        img = tmp_path / "a.raw"
        write_bootable(img, "~" * MAX_TAG)
        assert read_tag(img) == "~" * MAX_TAG
        assert sector(img, 1)[6 + MAX_TAG] == 0

    def test_never_overwrites(self, tmp_path: Path) -> None:
        """An existing file is left alone: the call fails with FileExistsError."""
        img = tmp_path / "a.raw"
        img.write_bytes(b"someone's disk")
        with pytest.raises(FileExistsError):
            write_bootable(img, "a")
        assert img.read_bytes() == b"someone's disk"


class TestBadInput:
    @pytest.mark.parametrize(
        "tag",
        ["", "x" * (MAX_TAG + 1), "tab\there", "new\nline", "nul\0", "caf\u00e9", "del\x7f", "\u2603"],
        ids=["empty", "too-long", "tab", "newline", "nul", "latin1", "del", "snowman"],
    )
    def test_bad_tags(self, tmp_path: Path, tag: str) -> None:
        """Empty, too long, or not printable ASCII: ValueError, and no file is made."""
        with pytest.raises(ValueError, match="tag"):
            write_bootable(tmp_path / "a.raw", tag)
        assert not (tmp_path / "a.raw").exists()

    @pytest.mark.parametrize("size", [0, -1])
    def test_too_small(self, tmp_path: Path, size: int) -> None:
        """An image needs at least 1 MiB."""
        with pytest.raises(ValueError, match="at least 1 MiB"):
            write_bootable(tmp_path / "a.raw", "a", size_mib=size)
        assert not (tmp_path / "a.raw").exists()

    def test_missing_directory(self, tmp_path: Path) -> None:
        """A path in a directory that does not exist is an OSError."""
        with pytest.raises(FileNotFoundError):
            write_bootable(tmp_path / "no" / "a.raw", "a")


class TestCounter:
    def test_fresh_image_without_counter(self, tmp_path: Path) -> None:
        """An image made without counter has no count."""
        img = tmp_path / "a.raw"
        write_bootable(img, "a")
        assert read_counter(img) is None
        assert sector(img, 3) == bytes(SECTOR)

    def test_fresh_image_with_counter(self, tmp_path: Path) -> None:
        """An image made with counter starts at 0, before the guest ever ticked."""
        img = tmp_path / "a.raw"
        write_bootable(img, "a", counter=True)
        assert read_counter(img) == 0

    def test_reads_what_the_guest_writes(self, tmp_path: Path) -> None:
        """The layout the guest writes, a little-endian dword then b"FSCT", parses back."""
        img = tmp_path / "a.raw"
        write_bootable(img, "a", counter=True)
        with open(img, "r+b") as f:
            f.seek(3 * SECTOR)
            f.write(struct.pack("<I", 123456789) + b"FSCT")
        assert read_counter(img) == 123456789

    def test_not_our_image(self, tmp_path: Path) -> None:
        """A file too short or with other bytes in sector 3 has no count and no tag."""
        short = tmp_path / "short.raw"
        short.write_bytes(b"\0" * 100)
        assert read_counter(short) is None and read_tag(short) is None
        other = tmp_path / "other.raw"
        other.write_bytes(os.urandom(4 * SECTOR))
        assert read_counter(other) is None


class TestBootCode:
    def test_fits_in_the_boot_sector(self) -> None:
        """The code leaves room for the signature."""
        assert 0 < len(BOOT_CODE) <= SECTOR - 2

    @pytest.mark.skipif(shutil.which("nasm") is None, reason="nasm is not installed")
    def test_listing_assembles_to_the_embedded_bytes(self, tmp_path: Path) -> None:
        """nasm turns BOOT_ASM into exactly the sector the module writes."""
        (tmp_path / "boot.asm").write_text(BOOT_ASM)
        subprocess.run(
            ["nasm", "-f", "bin", "-o", str(tmp_path / "boot.bin"), str(tmp_path / "boot.asm")],
            check=True,
            capture_output=True,
        )
        built = (tmp_path / "boot.bin").read_bytes()
        assert built == boot_sector(), "BOOT_CODE is stale; paste this:\n" + literal(built)

    def test_module_needs_only_the_stdlib(self) -> None:
        """The module imports nothing outside the stdlib, so it works where nasm is absent."""
        source = Path(bootable.__file__).read_text()
        imports = [line for line in source.splitlines() if line.startswith(("import ", "from "))]
        assert imports == ["from __future__ import annotations", "import struct", "from pathlib import Path"]


def literal(built: bytes) -> str:
    """A BOOT_CODE literal for a freshly assembled sector: the code without its zero padding.

    Zero bytes at the code's very end are dropped too; ``boot_sector`` pads them back.
    """
    code = built[:510].rstrip(b"\0")
    rows = [code[i : i + 16] for i in range(0, len(code), 16)]
    return "\n".join('    b"' + "".join(f"\\x{b:02x}" for b in row) + '"' for row in rows)
