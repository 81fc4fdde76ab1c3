"""A bootable El Torito CD image for tests: the test boot sector (storage/bootable.py) on an
emulated 1.44 MB floppy, so a VM that boots from the CD prints ``BOOT <tag>``.

Only what SeaBIOS reads is written: the boot record volume descriptor at sector 17 naming the boot
catalog, a terminator, the catalog (validation entry and default entry for floppy emulation), the
floppy image; plus a minimal primary volume descriptor so the file looks like ISO 9660 to tools.
"""

from __future__ import annotations

import struct
from pathlib import Path

from farside.storage.bootable import write_bootable

CD_SECTOR = 2048
FLOPPY_BYTES = 1474560
_PVD, _BOOT, _END, _CATALOG, _FLOPPY = 16, 17, 18, 19, 20


def _descriptor(kind: int, body: bytes) -> bytes:
    return (bytes([kind]) + b"CD001\x01" + body).ljust(CD_SECTOR, b"\0")


def write_boot_iso(path: Path, tag: str) -> None:
    floppy = path.with_suffix(".floppy")
    write_bootable(floppy, tag, 1)
    image = floppy.read_bytes().ljust(FLOPPY_BYTES, b"\0")
    floppy.unlink()
    total = _FLOPPY + FLOPPY_BYTES // CD_SECTOR
    pvd = _descriptor(1, b"\0" + b"FARSIDE".ljust(32) + b"TEST".ljust(32) + b"\0" * 8
                      + struct.pack("<I", total) + struct.pack(">I", total))  # fmt: skip
    boot = _descriptor(0, b"EL TORITO SPECIFICATION".ljust(32, b"\0") + b"\0" * 32 + struct.pack("<I", _CATALOG))
    validation = bytearray(struct.pack("<BBH24sHBB", 1, 0, 0, b"FARSIDE", 0, 0x55, 0xAA))
    checksum = -sum(struct.unpack("<16H", bytes(validation))) & 0xFFFF
    validation[28:30] = struct.pack("<H", checksum)
    # Bootable, 1.44 MB floppy emulation, load segment 0 (0x7C0), one sector, at the floppy's LBA.
    default = struct.pack("<BBHBBHI20x", 0x88, 2, 0, 0, 0, 1, _FLOPPY)
    catalog = (bytes(validation) + default).ljust(CD_SECTOR, b"\0")
    with path.open("wb") as f:
        f.write(b"\0" * (_PVD * CD_SECTOR) + pvd + boot + _descriptor(255, b"") + catalog + image)
