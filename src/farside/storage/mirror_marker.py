"""The marker a storage mirror leaves on the LUN directories it replicates (docs/mirror.md).

The mirror engine (``farside.mirror``, a layer above) writes and clears markers; the file SR reads
them here, so that it can refuse to plug a LUN a mirror is still writing into. The marker lives at
the root of the mirrored directory, which is a LUN or a directory of LUNs:

    MIRRORED_DIR/.farside-mirror/marker.json
        {"format": 1, "mirror": NAME, "state_dir": DIR, "role": "source"|"target", "active": bool}

``active`` is true on a target while the mirror replicates into it (or resynchronises it); a split
mirror's target keeps its marker, inactive, so the replication adapter still finds its mirror.
The mirror never copies its own ``.farside-mirror`` directory from source to target.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from farside.storage.errors import LunIsMirrorTarget
from farside.storage.files import fsync_dir, read_json, write_json

MARKER_DIR = ".farside-mirror"
MARKER_FILE = "marker.json"
MARKER_FORMAT = 1
SOURCE = "source"
TARGET = "target"


@dataclass(frozen=True)
class Marker:
    mirror: str
    state_dir: str
    role: str  # SOURCE or TARGET
    active: bool


def marker_path(root: Path) -> Path:
    return root / MARKER_DIR / MARKER_FILE


def read_marker(root: Path) -> Marker | None:
    """The marker at the root of a mirrored directory, or None if there is none (or it is unreadable)."""
    try:
        data = read_json(marker_path(root))
        return Marker(str(data["mirror"]), str(data["state_dir"]), str(data["role"]), bool(data["active"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_marker(lun: Path) -> tuple[Path, Marker] | None:
    """The marker that governs ``lun``: its own, or that of the nearest directory above it.

    A mirror may replicate a directory of LUNs; each LUN below it is then part of the mirror.
    """
    for root in (lun, *lun.parents):
        marker = read_marker(root)
        if marker is not None:
            return root, marker
    return None


def write_marker(root: Path, marker: Marker) -> None:
    """Write (or replace) the marker at ``root``, durably."""
    (root / MARKER_DIR).mkdir(exist_ok=True)
    write_json(marker_path(root), {"format": MARKER_FORMAT, **asdict(marker)})


def clear_marker(root: Path) -> None:
    path = marker_path(root)
    if path.exists():
        path.unlink()
        fsync_dir(path.parent)


def mirror_target(lun: Path) -> str | None:
    """The name of the mirror replicating into ``lun``, or None when none is."""
    found = find_marker(lun)
    if found is not None and found[1].role == TARGET and found[1].active:
        return found[1].mirror
    return None


def refuse_mirror_target(lun: Path) -> None:
    """Raise LUN_IS_MIRROR_TARGET if a mirror is replicating into ``lun``.

    Raises:
        LunIsMirrorTarget: ``[path, mirror name]``; split the mirror first.
    """
    mirror = mirror_target(lun)
    if mirror is not None:
        raise LunIsMirrorTarget(str(lun), mirror)
