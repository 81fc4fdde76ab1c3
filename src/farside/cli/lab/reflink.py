"""The lab's reflink LUN: an XFS filesystem in a loop file (``lab up --reflink``), where VDI
copies and snapshots are copy-on-write clones (storage/reflink.py).

The loop file is ``DIR/reflink.img`` (sparse); it is mounted on ``DIR/luns-a/reflink``, inside
site A's LUN root, where site A gets an SR on it. It is not mirrored: the mirror copies files, and
a copy at site B would hold every shared block twice. ``lab down`` unmounts it and detaches the
loop device (found from the file, not remembered: a device number may have been reused); the
file itself goes with ``down --purge``. ``lab start a`` does not mount it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from farside.cli.lab.layout import Lab, LabError

IMAGE = "reflink.img"
MOUNT = "reflink"
SIZE = 4 << 30
SR_NAME = "Reflink LUN"


def image_path(lab: Lab) -> Path:
    return lab.root / IMAGE


def mount_point(lab: Lab) -> Path:
    return lab.luns_dir("a") / MOUNT


def make(lab: Lab, size: int = SIZE) -> Path:
    """Make, format and mount the loop file; its mount point. Undone entirely if a step fails."""
    if os.geteuid() != 0:
        raise LabError("--reflink mounts an XFS loop file, which needs root")
    if shutil.which("mkfs.xfs") is None:
        raise LabError("--reflink needs mkfs.xfs: run 'make setup' (Debian package xfsprogs)")
    image, mount = image_path(lab), mount_point(lab)
    with open(image, "xb") as f:
        f.truncate(size)
    try:
        device = _run("losetup", "-f", "--show", str(image)).strip()
        _run("mkfs.xfs", "-q", "-m", "reflink=1", device)
        mount.mkdir()
        _run("mount", device, str(mount))
    except BaseException:
        remove(lab)
        image.unlink(missing_ok=True)
        raise
    return mount


def remove(lab: Lab) -> bool:
    """Unmount and detach the reflink LUN if the lab has one (the loop file stays until
    ``down --purge``); whether it was mounted or attached."""
    image, mount = image_path(lab), mount_point(lab)
    found = False
    if _mounted(mount):
        _run("umount", str(mount))
        found = True
    if image.exists():
        for line in _run("losetup", "-j", str(image)).splitlines():
            _run("losetup", "-d", line.partition(":")[0])
            found = True
    if mount.is_dir() and not _mounted(mount):
        mount.rmdir()
    return found


def _mounted(path: Path) -> bool:
    target = os.fsencode(str(path.resolve()) if path.exists() else str(path))
    with open("/proc/self/mounts", "rb") as f:
        return any(line.split()[1] == target for line in f if len(line.split()) > 1)


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout
