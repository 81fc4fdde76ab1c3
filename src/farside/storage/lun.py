"""A file SR's LUN: a directory holding VDI images and the SR's own records.

Like the management volume XenServer's storage manager keeps on a LUN, ``.farside-sr/`` holds the
SR's identity and its VDI records, so a pool that introduces the same LUN, or a copy of it made by
a mirror or ``cp -a``, sees the same SR uuid and the same VDIs:

    LUN/
      .farside-sr/sr.json            {"uuid", "name_label", "name_description", "format": 1,
                                      "pending_for": pool uuid, only until SR.create has finished}
      .farside-sr/vdis/<uuid>.json   a VDI's record (see VDI_FIELDS)
      .farside-sr/lease.json         the lease of the pool that has it plugged (lease.py)
      <vdi uuid>.qcow2|.raw          the images; a VDI's ``location`` is its file name
"""

from __future__ import annotations

import os
import shutil
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farside.config import crash_point
from farside.storage.errors import format_failure, path_failure, records_failure
from farside.storage.files import fsync_dir, read_json, write_json
from farside.storage.image import FORMATS

META_DIR = ".farside-sr"
STAGING_PREFIX = ".farside-sr.new-"
# In sr.json while the SR.create that formatted the LUN has not finished: the creating pool's uuid.
PENDING_KEY = "pending_for"
LAYOUT_VERSION = 1
# The VDI fields an SR keeps on its LUN: enough for another pool to see the same VDIs.
VDI_FIELDS = (
    "uuid",
    "name_label",
    "name_description",
    "type",
    "virtual_size",
    "location",
    "sharable",
    "read_only",
    "sm_config",
    "metadata_of_pool",
    "is_a_snapshot",
    "snapshot_of",
    "snapshot_time",
)


@dataclass(frozen=True)
class Usage:
    physical_size: int
    physical_utilisation: int
    virtual_allocation: int


def check_usable(path: Path) -> Path:
    """``path`` as an absolute path if it is an existing, writable directory; else a clear error."""
    if not path.is_absolute():
        raise path_failure(f"the LUN path must be absolute, not {str(path)!r}")
    if not path.exists():
        raise path_failure(f"the LUN path {path} does not exist; create the directory first")
    if not path.is_dir():
        raise path_failure(f"the LUN path {path} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        raise path_failure(f"the LUN path {path} is not writable")
    return path


class Lun:
    """One LUN directory and the SR records on it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta = path / META_DIR

    @property
    def formatted(self) -> bool:
        return (self.meta / "sr.json").is_file()

    def format(self, sr_uuid: str, name_label: str, name_description: str, pending_for: str) -> None:
        """Write a new SR's identity onto the LUN: all of it, or (on failure) nothing.

        The SR is marked as being created by the pool ``pending_for`` until ``settle``: a pool
        that died before it recorded and plugged the SR finds its own unfinished SR again, and an
        SR.create rerun completes it instead of refusing a LUN that holds an SR nobody knows."""
        check_usable(self.path)
        if self.meta.exists():
            existing = self.identity().get("uuid", "?") if self.formatted else "a damaged SR"
            raise format_failure(f"{self.path} already holds SR {existing}; introduce it, or pick another LUN")
        for stale in self.path.glob(f"{STAGING_PREFIX}*"):  # a format that was killed before its rename
            shutil.rmtree(stale, ignore_errors=True)
        staging = self.path / f"{STAGING_PREFIX}{uuidlib.uuid4().hex[:8]}"
        try:
            (staging / "vdis").mkdir(parents=True)
            identity = {
                "uuid": sr_uuid,
                "name_label": name_label,
                "name_description": name_description,
                "format": LAYOUT_VERSION,
                PENDING_KEY: pending_for,
            }
            write_json(staging / "sr.json", identity)
            fsync_dir(staging / "vdis")
            crash_point("sr-create:staged")
            # The rename is the commit: before it no SR exists on the LUN, after it a whole one.
            staging.rename(self.meta)
            fsync_dir(self.path)
        except OSError as exc:
            raise format_failure(f"cannot write to {self.path}: {exc.strerror or exc}") from exc
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)

    def identity(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = read_json(self.meta / "sr.json")
        except (OSError, ValueError) as exc:
            raise records_failure(f"{self.path} holds no readable SR records ({exc})") from exc
        return data

    def set_identity(self, **changes: str) -> None:
        data = self.identity()
        data.update(changes)
        write_json(self.meta / "sr.json", data)

    @property
    def pending_for(self) -> str:
        """The uuid of the pool whose SR.create of this SR has not finished ("" once it has)."""
        return str(self.identity().get(PENDING_KEY, "")) if self.formatted else ""

    def settle(self) -> None:
        """The SR is created: recorded and plugged in its pool."""
        data = self.identity()
        if data.pop(PENDING_KEY, None) is not None:
            write_json(self.meta / "sr.json", data)

    # -- VDI records -------------------------------------------------------------------------

    def vdi_records(self) -> dict[str, dict[str, Any]]:
        """The VDI records on the LUN, by uuid; unreadable ones are reported, not skipped silently."""
        records = {}
        for path in sorted((self.meta / "vdis").glob("*.json")):
            try:
                record = read_json(path)
            except (OSError, ValueError) as exc:
                raise records_failure(f"VDI record {path} is damaged: {exc}") from exc
            records[record["uuid"]] = record
        return records

    def write_vdi(self, record: dict[str, Any]) -> None:
        write_json(self.meta / "vdis" / f"{record['uuid']}.json", {k: record[k] for k in VDI_FIELDS if k in record})

    def remove_vdi(self, vdi_uuid: str) -> None:
        (self.meta / "vdis" / f"{vdi_uuid}.json").unlink(missing_ok=True)
        fsync_dir(self.meta / "vdis")

    def image_path(self, location: str) -> Path:
        """The image of a VDI; a location can never point outside the LUN."""
        if not location or "/" in location or location.startswith("."):
            raise records_failure(f"VDI location {location!r} is not a file name on the LUN")
        path = self.path / location
        if path.is_symlink():  # an image is a file of the LUN's own, never a link to a host file
            raise records_failure(f"VDI image {path} is a symlink; an image must be a plain file on the LUN")
        return path

    # -- space ----------------------------------------------------------------------------------

    def usage(self) -> Usage:
        stat = os.statvfs(self.path)
        used = 0
        virtual = 0
        for record in self.vdi_records().values():
            path = self.image_path(record["location"])
            if path.exists():
                used += path.stat().st_blocks * 512
            virtual += int(record.get("virtual_size", 0))
        return Usage(stat.f_blocks * stat.f_frsize, used, virtual)

    def wipe(self) -> None:
        """SR.destroy: delete the images this SR owns and its records; other files stay."""
        for record in self.vdi_records().values():
            self.image_path(record["location"]).unlink(missing_ok=True)
        shutil.rmtree(self.meta)
        fsync_dir(self.path)


def image_format(sm_config: dict[str, str]) -> str:
    """qcow2, or raw when ``sm_config["type"] == "raw"`` (as xapi asks for metadata VDIs)."""
    return "raw" if sm_config.get("type") == "raw" else "qcow2"


def new_location(vdi_uuid: str, fmt: str) -> str:
    return f"{vdi_uuid}.{fmt}"


def recorded_format(location: str) -> str:
    """The format a VDI's image is pinned to: the one it was made in, kept in its location's suffix.

    Never probed from the bytes (a raw disk may hold anything, qcow2 headers included), and not
    read from sm_config, which a vm-admin may change after the image was made."""
    fmt = location.rpartition(".")[2]
    if fmt not in FORMATS:
        raise records_failure(f"VDI location {location!r} names no image format ({', '.join(FORMATS)})")
    return fmt
