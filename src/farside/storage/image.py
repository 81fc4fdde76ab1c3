"""VDI images: qemu-img for creating, inspecting, copying and resizing them.

qcow2 by default, raw when asked (``sm_config["type"] == "raw"``, as xapi's metadata VDIs are).
Every call names the image's recorded format (``-f``): qemu-img never probes, because a raw disk's
bytes are the guest's and may be a qcow2 header naming any host file as its backing file.
An image is used only when it is self-contained (``contained``): no backing file, no external data
file, readable in its recorded format, a regular file. Every qemu-img failure becomes
SR_BACKEND_FAILURE_IMAGE with qemu-img's own words; an image refused as not self-contained,
SR_BACKEND_FAILURE_IMAGE_UNSAFE.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from farside.storage import reflink
from farside.storage.errors import BackendFailure, ImageUnsafe, image_failure

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
    # Other files the image's header names: opening it would open them too.
    backing_file: str | None = None
    data_file: str | None = None
    encrypted: bool = False


def _run(*args: str) -> str:
    if shutil.which(QEMU_IMG) is None:
        raise image_failure("qemu-img is not installed; run 'make setup' (Debian package qemu-utils)")
    result = subprocess.run([QEMU_IMG, *args], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise image_failure((result.stderr or result.stdout).strip() or f"qemu-img {args[0]} failed")
    return result.stdout


def _known(fmt: str) -> str:
    if fmt not in FORMATS:
        raise image_failure(f"unknown image format {fmt!r}; use one of {', '.join(FORMATS)}")
    return fmt


def create(path: Path, fmt: str, size: int) -> None:
    """A new, empty (sparse) image of ``size`` bytes."""
    _run("create", "-q", "-f", _known(fmt), str(path), str(size))


def info(path: Path, fmt: str) -> ImageInfo:
    """The image read as ``fmt``, even while a running VM holds it (``-U``).

    qemu-img info opens neither the backing file nor the data file; it only reports them."""
    data = json.loads(_run("info", "-U", "-f", _known(fmt), "--output=json", str(path)))
    specific = data.get("format-specific", {}).get("data", {})
    return ImageInfo(
        format=data["format"],
        virtual_size=int(data["virtual-size"]),
        actual_size=int(data.get("actual-size", 0)),
        backing_file=data.get("backing-filename") or data.get("full-backing-filename"),
        data_file=specific.get("data-file"),
        encrypted=bool(data.get("encrypted", False)),
    )


def contained(path: Path, fmt: str) -> ImageInfo:
    """The image's info if it is self-contained in ``fmt``, else ImageUnsafe saying why."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise image_failure(f"the image {path} does not exist") from None
    if not stat.S_ISREG(st.st_mode):
        # A symlink or a device would hand the VDI a file that is not the LUN's own.
        raise ImageUnsafe(f"the image {path} is not a regular file; a VDI's image must be a file of its own")
    if _known(fmt) == "raw":
        # Raw names no other file, and its size is the file's: no need to start qemu-img (a scan
        # checks every image).
        return ImageInfo("raw", st.st_size, st.st_blocks * 512)
    try:
        found = info(path, fmt)
    except BackendFailure as exc:
        raise ImageUnsafe(f"the image {path} cannot be read as {fmt}, the VDI's format: {exc.params[-1]}") from None
    if found.backing_file:
        raise ImageUnsafe(
            f"the image {path} names a backing file ({found.backing_file}); a VDI's image must be self-contained"
        )
    if found.data_file:
        raise ImageUnsafe(
            f"the image {path} names an external data file ({found.data_file}); a VDI's image must be self-contained"
        )
    if found.encrypted:
        raise ImageUnsafe(f"the image {path} is encrypted; Farside holds no keys for VDI images")
    if found.format != fmt:
        raise ImageUnsafe(f"the image {path} is {found.format}, not {fmt}, the VDI's format")
    return found


def in_use(path: Path) -> bool:
    """Whether a running QEMU holds the image open for writing.

    Opening it for writing tells: QEMU's image locks refuse a second writer. (``qemu-img info``
    does not: it only asks to read, which a running VM allows on raw images.) The locks live on
    the file itself, whatever its format, so it is opened as raw: this runs on images not checked
    yet (a LUN being plugged), and raw never opens a file that the image's bytes name.
    """
    result = subprocess.run([QEMU_IO, "-f", "raw", "-c", "quit", str(path)], capture_output=True, text=True, timeout=60)
    return result.returncode != 0 and _LOCKED in (result.stderr + result.stdout).lower()


def convert(source: Path, source_format: str, target: Path, target_format: str) -> ImageInfo:
    """Write a self-contained ``source`` as a new image in ``target_format`` (sparse: zeros are not
    written): clones, snapshots, conversions of uploads and exports. Returns the new image's info."""
    contained(source, source_format)
    _run("convert", "-q", "-U", "-f", source_format, "-O", _known(target_format), str(source), str(target))
    return contained(target, target_format)


def copy(source: Path, fmt: str, target: Path) -> tuple[ImageInfo, bool]:
    """A new self-contained image at ``target``, a point-in-time copy of the self-contained
    ``source`` in the same format, and whether it is a reflink: copy-on-write where the LUN's
    filesystem has reflinks (milliseconds whatever the size), else a sparse full copy. Never a
    backing chain (docs/security.md). The one copy path of snapshots, clones and copies of VDIs;
    the source must not be written meanwhile (a running VM's disk goes through QEMU instead)."""
    contained(source, fmt)
    if reflink.clone(source, target):
        try:
            return contained(target, fmt), True
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    return convert(source, fmt, target, fmt), False


def resize(path: Path, fmt: str, size: int) -> ImageInfo:
    """Grow a self-contained image to ``size`` bytes (shrinking would lose data and is refused by
    callers). Returns its new info."""
    contained(path, fmt)
    _run("resize", "-q", "-f", fmt, str(path), str(size))
    return info(path, fmt)
