"""VDI images: qemu-img for creating, inspecting, copying and resizing them.

qcow2 by default, raw when asked (``sm_config["type"] == "raw"``, as xapi's metadata VDIs are).
Every qemu-img failure becomes SR_BACKEND_FAILURE_IMAGE with qemu-img's own words.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from farside.storage.errors import image_failure

FORMATS = ("qcow2", "raw")
QEMU_IMG = "qemu-img"
QEMU_IO = "qemu-io"
# What qemu-io says when a running QEMU holds the image's write lock.
_LOCKED = "lock"


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int
    actual_size: int


def _run(*args: str) -> str:
    if shutil.which(QEMU_IMG) is None:
        raise image_failure("qemu-img is not installed; run 'make setup' (Debian package qemu-utils)")
    result = subprocess.run([QEMU_IMG, *args], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise image_failure((result.stderr or result.stdout).strip() or f"qemu-img {args[0]} failed")
    return result.stdout


def create(path: Path, fmt: str, size: int) -> None:
    """A new, empty (sparse) image of ``size`` bytes."""
    if fmt not in FORMATS:
        raise image_failure(f"unknown image format {fmt!r}; use one of {', '.join(FORMATS)}")
    _run("create", "-q", "-f", fmt, str(path), str(size))


def info(path: Path) -> ImageInfo:
    """Format and sizes, read even while a running VM holds the image (``-U``)."""
    data = json.loads(_run("info", "-U", "--output=json", str(path)))
    return ImageInfo(data["format"], int(data["virtual-size"]), int(data.get("actual-size", 0)))


def in_use(path: Path) -> bool:
    """Whether a running QEMU holds the image open for writing.

    Opening it for writing tells: QEMU's image locks refuse a second writer. (``qemu-img info``
    does not: it only asks to read, which a running VM allows on raw images.)
    """
    fmt = info(path).format
    result = subprocess.run([QEMU_IO, "-f", fmt, "-c", "quit", str(path)], capture_output=True, text=True, timeout=60)
    return result.returncode != 0 and _LOCKED in (result.stderr + result.stdout).lower()


def copy(source: Path, target: Path, fmt: str) -> None:
    """A full, independent copy (clones and snapshots of file VDIs; reflinks are not available)."""
    convert(source, target, info(source).format, fmt)


def convert(source: Path, target: Path, source_format: str, target_format: str) -> None:
    """Write ``source`` as a new image in ``target_format`` (sparse: zeros are not written)."""
    _run("convert", "-q", "-U", "-f", source_format, "-O", target_format, str(source), str(target))


def resize(path: Path, size: int) -> None:
    """Grow the image to ``size`` bytes (shrinking would lose data and is refused by callers)."""
    fmt = info(path).format
    _run("resize", "-q", "-f", fmt, str(path), str(size))


def check(path: Path) -> str | None:
    """None when a qcow2 image is consistent, else qemu-img check's complaint (raw: always None)."""
    if info(path).format != "qcow2":
        return None
    result = subprocess.run([QEMU_IMG, "check", "-U", "-q", str(path)], capture_output=True, text=True, timeout=600)
    return None if result.returncode == 0 else (result.stderr or result.stdout).strip() or "damaged"
