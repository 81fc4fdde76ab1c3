"""ISO SRs: a directory of ``.iso`` files, each a read-only VDI a CD drive can hold.

An ISO SR (type ``iso``, content_type ``iso``, as xapi's ISO library) is plugged with
``device_config:location`` naming the directory, which must lie under the pool's LUN roots like
any LUN (storage/roots.py: absolute, no ``..``, no symlink on the way). Nothing is ever written
there: no SR records, no lease. A scan lists the regular files named ``*.iso`` directly in it
(symlinks and other files are skipped), each a VDI of type ``user``, read-only and sharable, keyed
by its file name, so its uuid stays the same from scan to scan. An ISO is always raw: its bytes are
never probed for a format, and QEMU gets it as a read-only descriptor (hypervisor/qemu).
"""

from __future__ import annotations

import os
import uuid as uuidlib
from pathlib import Path
from typing import Any

from farside.api.storage import ISO_SR_TYPE, StorageService, sr_record, vdi_busy
from farside.db import Database, Transaction
from farside.errors import XenAPIFailure
from farside.model.types import NULL_REF
from farside.storage.errors import path_failure
from farside.storage.roots import check_lun

ISO_SUFFIX = ".iso"
ISO_FORMAT = "raw"
LOCATION_KEY = "location"


def library_path(storage: StorageService, device_config: dict[str, str]) -> Path:
    """The ISO directory a device_config names, if this pool may use it; INVALID_VALUE or
    SR_BACKEND_FAILURE saying why not."""
    location = device_config.get(LOCATION_KEY)
    if not location:
        raise path_failure("an ISO SR's device_config needs 'location': the absolute path of its directory")
    path = check_lun(location, storage.lun_roots())
    if not path.is_dir():
        raise path_failure(f"the ISO library {path} is not an existing directory")
    return path


def is_iso(tx: Transaction, sr: str) -> bool:
    return bool(tx.get_field("SR", sr, "type") == ISO_SR_TYPE)


def attached_library(tx: Transaction, sr: str) -> Path:
    """The directory of a plugged ISO SR; SR_HAS_NO_PBDS [sr] when it is not plugged."""
    for pbd in tx.get_field("SR", sr, "PBDs"):
        record = tx.get_record("PBD", pbd)
        if record["currently_attached"]:
            return Path(record["device_config"][LOCATION_KEY])
    raise XenAPIFailure("SR_HAS_NO_PBDS", sr)


def image_path(tx: Transaction, vdi: dict[str, Any]) -> Path:
    """The ISO file of one of an ISO SR's VDIs (its location is a bare file name, checked again)."""
    name = vdi["location"]
    if "/" in name or not name.endswith(ISO_SUFFIX) or name.startswith("."):
        raise XenAPIFailure("VDI_LOCATION_MISSING", vdi["SR"], name)
    return attached_library(tx, vdi["SR"]) / str(name)


def iso_files(path: Path) -> dict[str, int]:
    """The ``*.iso`` regular files directly in ``path`` (never through a symlink), with their sizes."""
    found = {}
    with os.scandir(path) as entries:
        for entry in entries:
            if (
                entry.name.endswith(ISO_SUFFIX)
                and not entry.name.startswith(".")
                and entry.is_file(follow_symlinks=False)
            ):
                found[entry.name] = entry.stat(follow_symlinks=False).st_size
    return found


def create(
    storage: StorageService, db: Database, host: str, device_config: dict[str, str], name_label: str,
    name_description: str, sm_config: dict[str, str],
) -> str:  # fmt: skip
    """An ISO SR on the directory, plugged on ``host`` and scanned, in one transaction."""
    path = library_path(storage, device_config)
    files = iso_files(path)
    with db.write() as tx:
        record = sr_record(str(uuidlib.uuid4()), name_label, name_description, ISO_SR_TYPE, "iso", sm_config)
        sr = tx.create("SR", record)
        config = {LOCATION_KEY: str(path)}
        tx.create("PBD", {"host": host, "SR": sr, "device_config": config, "currently_attached": True})
        _sync(tx, sr, path, files)
    return sr


def plug(storage: StorageService, db: Database, pbd: str) -> None:
    with db.read() as tx:
        record = tx.get_record("PBD", tx.check("PBD", pbd))
    path = library_path(storage, record["device_config"])
    files = iso_files(path)
    with db.write() as tx:
        tx.set_fields("PBD", pbd, {"currently_attached": True})
        _sync(tx, record["SR"], path, files)


def unplug(db: Database, pbd: str) -> None:
    """Unplug, unless a VM that is not halted has one of its ISOs in a drive (VDI_IN_USE)."""
    with db.write() as tx:
        sr = tx.get_field("PBD", tx.check("PBD", pbd), "SR")
        busy = [v for v in tx.get_field("SR", sr, "VDIs") if vdi_busy(tx, v)]
        if busy:
            raise XenAPIFailure("VDI_IN_USE", *busy)
        tx.set_fields("PBD", pbd, {"currently_attached": False})


def scan(storage: StorageService, db: Database, sr: str) -> None:
    with db.read() as tx:
        pbds = tx.get_field("SR", tx.check("SR", sr), "PBDs")
        attached = [tx.get_record("PBD", p) for p in pbds if tx.get_field("PBD", p, "currently_attached")]
    if not attached:
        raise XenAPIFailure("SR_HAS_NO_PBDS", sr)
    path = library_path(storage, attached[0]["device_config"])
    files = iso_files(path)
    with db.write() as tx:
        _sync(tx, sr, path, files)


def _sync(tx: Transaction, sr: str, path: Path, files: dict[str, int]) -> None:
    """One VDI a file: new files added, gone ones dropped (kept as missing while a VM uses them)."""
    ours = {tx.get_field("VDI", v, "location"): v for v in tx.get_field("SR", sr, "VDIs")}
    for name, size in files.items():
        values = {"virtual_size": size, "physical_utilisation": size, "missing": False}
        if name in ours:
            tx.set_fields("VDI", ours[name], values)
            continue
        tx.create(
            "VDI",
            {**values, "SR": sr, "name_label": name, "location": name, "type": "user", "read_only": True,
             "sharable": True, "managed": True},
        )  # fmt: skip
    for name, ref in ours.items():
        if name in files:
            continue
        if vdi_busy(tx, ref):
            tx.set_fields("VDI", ref, {"missing": True})
            continue
        for vbd in tx.get_field("VDI", ref, "VBDs"):
            tx.set_fields("VBD", vbd, {"VDI": NULL_REF, "empty": True})
        tx.destroy("VDI", ref)
    stat = os.statvfs(path)
    tx.set_fields(
        "SR",
        sr,
        {"physical_size": stat.f_blocks * stat.f_frsize, "physical_utilisation": sum(files.values()),
         "virtual_allocation": sum(files.values())},
    )  # fmt: skip
