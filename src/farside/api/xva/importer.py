"""VM import from an XVA stream (``PUT /import``, ``PUT /import_metadata``), as import.ml does it.

All or nothing. The disks stream into fresh raw files on the target LUN, named after the import;
only once every chunk has arrived and checked are they made into the VDIs' images (qemu-img
convert reads them as raw: whatever a guest wrote, even a qcow2 header naming a host file, stays
guest data), and then one transaction records the VDIs, the VMs, their VBDs and VIFs. A journal on
the LUN lists what an import has made so far; a failure removes it all at once, and a server
killed midway removes it when it starts again (``sweep``).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farside.api import xmlrpc
from farside.api.context import Services
from farside.api.handlers import vbd as vbd_handler
from farside.api.handlers import vif as vif_handler
from farside.api.storage import lun_record, vdi_values
from farside.api.transfers import Transfer
from farside.api.xva import ova
from farside.backup import chunks, tar
from farside.backup.compression import Source, decompressing
from farside.backup.errors import XvaInvalid, XvaObjectMissing, XvaTruncated, XvaUnexpectedFile
from farside.config import crash_point
from farside.db import Transaction
from farside.dr.recovery import destroy_vm, import_vm, may_replace
from farside.errors import XenAPIFailure
from farside.model.types import NULL_REF, parse
from farside.model.vm_rules import DELAY_FIELDS, check_delay, check_memory, check_vcpus
from farside.storage import image
from farside.storage.errors import BackendFailure
from farside.storage.files import fsync_dir, read_json, write_json
from farside.storage.lun import Lun, image_format, new_location

log = logging.getLogger(__name__)
JOURNAL_PREFIX = ".xva-import-"
# The largest disk an XVA may ask for: far above any real one, far below what breaks qemu-img.
MAX_DISK = 64 << 40
_VDI_TYPES = ("user", "system", "ephemeral")
_RESULT = xmlrpc.encoder(parse("VM ref set"))
_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Options:
    restore: bool = False
    force: bool = False
    dry_run: bool = False
    metadata: bool = False  # the disks exist already: VBDs find their VDIs by uuid


@dataclass
class _Disk:
    """One disk the XVA streams: its ova.xml object and the VDI it becomes here."""

    obj: ova.Obj
    uuid: str
    fmt: str
    staging: Path | None = None
    fd: int = -1

    @property
    def size(self) -> int:
        return int(self.obj.snapshot["virtual_size"])

    @property
    def location(self) -> str:
        return new_location(self.uuid, self.fmt)


@dataclass
class _Journal:
    """What one import has made on its LUN, so that a failure or a restart can remove it."""

    lun: Lun
    token: str
    disks: list[_Disk] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.lun.path / f"{JOURNAL_PREFIX}{self.token}.json"

    def write(self) -> None:
        write_json(self.path, {"vdis": [d.uuid for d in self.disks], "locations": [d.location for d in self.disks]})

    def staging(self, disk: _Disk) -> Path:
        return self.lun.path / f"{JOURNAL_PREFIX}{self.token}-{disk.uuid}.raw"


def result(refs: list[str]) -> str:
    """The task result of an import: the set of new VM refs, XML-RPC encoded."""
    return _RESULT(refs)


def read_header(reader: tar.TarReader) -> ova.Header:
    """ova.xml, which must come first and be at most ova.MAX_SIZE bytes."""
    entry = reader.next()
    if entry is None:
        raise XvaTruncated()
    if entry.name != ova.NAME:
        raise XvaUnexpectedFile(ova.NAME, entry.name)
    if entry.size > ova.MAX_SIZE:
        raise XvaInvalid(f"ova.xml holds {entry.size} bytes; at most {ova.MAX_SIZE} are read")
    return ova.decode(reader.data(entry))


class Import:
    """One import into SR ``sr`` (a full import), or of metadata only."""

    def __init__(self, services: Services, sr: str, options: Options, transfer: Transfer) -> None:
        self._services = services
        self._sr = sr
        self._options = options
        self._transfer = transfer

    def run(self, source: Source) -> list[str]:
        _, plain = decompressing(source)
        reader = tar.TarReader(plain.read)
        header = read_header(reader)
        vms = [o for o in header.of_class("VM") if not o.snapshot["is_control_domain"]]
        if not vms:
            raise XvaInvalid("ova.xml holds no VM")
        wanted = _disks(header, vms)
        for vm in vms:  # every record checked before any byte of a disk is written
            _source(header, vm, lambda _: None, self._options.restore)
        if self._options.metadata:
            return self._metadata(header, vms, wanted)
        with self._services.db.read() as tx:
            lun = self._services.storage.attached_lun(tx, self._sr)
            self._check_replace(tx, vms)
        disks = [_Disk(obj, str(uuidlib.uuid4()), _format(obj)) for obj in wanted]
        self._transfer.total = sum(d.size for d in disks)
        _check_space(lun, disks)
        journal = _Journal(lun, uuidlib.uuid4().hex, disks)
        if self._options.dry_run:
            self._receive(reader, header, disks, None)
            return []
        journal.write()
        try:
            self._receive(reader, header, disks, journal)
            crash_point("xva-import:received")
            _make_images(lun, journal)
            crash_point("xva-import:images")
            refs = self._commit(lun, header, vms, disks)
        except BaseException:
            _remove(journal)
            raise
        finally:
            for disk in disks:
                if disk.fd >= 0:
                    os.close(disk.fd)
                    disk.fd = -1
        _forget(journal)
        return refs

    # -- checks ----------------------------------------------------------------------------

    def _check_replace(self, tx: Transaction, vms: list[ova.Obj]) -> None:
        """restore: refuse early what the commit would refuse (a running VM, an older version)."""
        if not self._options.restore:
            return
        for vm in vms:
            existing = tx.find("VM", "uuid", vm.snapshot["uuid"])
            if existing:
                may_replace(tx, existing[0], vm.snapshot, self._options.force)

    # -- disks -----------------------------------------------------------------------------

    def _receive(self, reader: tar.TarReader, header: ova.Header, disks: list[_Disk], journal: _Journal | None) -> None:
        """Every disk's chunks, in the order the stream has them (xapi writes ``Ref:10`` before
        ``Ref:9``: lexicographic order), each member checked to belong to a disk not done yet."""
        pending = {d.obj.id: d for d in disks if d.size > 0}
        while pending:
            entry = reader.next()
            if entry is None:
                raise XvaTruncated()
            prefix = entry.name.split("/", 1)[0]
            disk = pending.pop(prefix, None)
            if disk is None:
                raise XvaUnexpectedFile(" or ".join(f"{p}/00000000" for p in sorted(pending)), entry.name)
            sink: chunks.Sink = _NullSink()
            if journal is not None:
                disk.staging = journal.staging(disk)
                disk.fd = os.open(
                    disk.staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
                )
                sink = _FileSink(disk.fd, self._sr)
            chunks.read_disk(reader, entry, prefix, disk.size, sink, self._options.force, self._transfer.add)
            if journal is not None:
                _settle(disk.fd, disk.size, self._sr)

    # -- records ---------------------------------------------------------------------------

    def _commit(self, lun: Lun, header: ova.Header, vms: list[ova.Obj], disks: list[_Disk]) -> list[str]:
        services = self._services
        with services.db.write() as tx:
            sr_uuid = tx.get_field("SR", self._sr, "uuid")
            pool_uuid = tx.get_field("pool", services.pool, "uuid")
            located: dict[str, tuple[str, str]] = {}
            for disk in disks:
                ref = tx.create("VDI", {**_vdi_fields(disk), "SR": self._sr})
                record = lun_record(tx, ref)
                lun.write_vdi(record)
                tx.set_fields("VDI", ref, vdi_values(record, lun, pool_uuid, services.pool))
                located[disk.obj.id] = (sr_uuid, disk.location)
            refs = self._create_vms(tx, header, vms, located.get)
            crash_point("xva-import:recorded")
        return refs

    def _create_vms(
        self, tx: Transaction, header: ova.Header, vms: list[ova.Obj], disk_of: Callable[[str], tuple[str, str] | None]
    ) -> list[str]:
        options = self._options
        refs = []
        for vm in vms:
            source = _source(header, vm, disk_of, options.restore)
            existing = tx.find("VM", "uuid", source["vm"]["uuid"]) if options.restore else []
            if existing:
                if not may_replace(tx, existing[0], source["vm"], options.force):
                    continue  # force: a running VM is left as it is, as xapi skips it
                destroy_vm(tx, existing[0])
            ref, _ = import_vm(tx, source, options.force, import_task=self._transfer.ref)
            refs.append(ref)
        return refs

    def _metadata(self, header: ova.Header, vms: list[ova.Obj], wanted: list[ova.Obj]) -> list[str]:
        """The VMs of a metadata export, their VBDs on the VDIs of this pool with the same uuids."""
        with self._services.db.read() as tx:
            located: dict[str, tuple[str, str]] = {}
            for obj in wanted:
                found = tx.find("VDI", "uuid", obj.snapshot["uuid"])
                if found:
                    vdi = tx.get_record("VDI", found[0])
                    located[obj.id] = (tx.get_field("SR", vdi["SR"], "uuid"), vdi["location"])
                elif not self._options.force:
                    raise XvaObjectMissing(obj.snapshot["uuid"])
            self._check_replace(tx, vms)
        if self._options.dry_run:
            return []
        with self._services.db.write() as tx:
            return self._create_vms(tx, header, vms, located.get)


class _NullSink:
    def write(self, offset: int, data: bytes) -> None:
        pass


class _FileSink:
    def __init__(self, fd: int, sr: str) -> None:
        self._fd = fd
        self._sr = sr

    def write(self, offset: int, data: bytes) -> None:
        try:
            os.pwrite(self._fd, data, offset)
        except OSError as exc:
            raise _io_failure(exc, self._sr, len(data)) from None


def _io_failure(exc: OSError, sr: str, wanted: int) -> XenAPIFailure:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return XenAPIFailure("SR_FULL", wanted, 0)
    return XenAPIFailure("VDI_IO_ERROR", f"writing into SR {sr}: {exc.strerror or exc}")


def _settle(fd: int, size: int, sr: str) -> None:
    try:
        os.ftruncate(fd, size)  # zeros at the end were skipped: the file still has the disk's size
        os.fsync(fd)
    except OSError as exc:
        raise _io_failure(exc, sr, size) from None


def _format(obj: ova.Obj) -> str:
    return image_format({"type": obj.snapshot["sm_config"].get("type", "")})


def _disks(header: ova.Header, vms: list[ova.Obj]) -> list[ova.Obj]:
    """The VDIs the VMs' disk VBDs use (not CDs, not on ISO SRs), each checked."""
    found: dict[str, ova.Obj] = {}
    for vm in vms:
        for vbd_id in vm.snapshot["VBDs"]:
            vbd = _find(header, vbd_id, "VBD")
            vdi_id = vbd.snapshot["VDI"]
            if vbd.snapshot["type"] == "CD" or vdi_id == NULL_REF:
                continue
            vdi = _find(header, vdi_id, "VDI")
            sr = header.find(vdi.snapshot["SR"])
            if sr is not None and sr.cls == "SR" and sr.snapshot["content_type"] == "iso":
                continue
            if not vdi_id.startswith("Ref:") or not vdi_id[4:].isdigit():
                raise XvaInvalid(f"VDI id {vdi_id!r} is not of the form Ref:N")
            if not 0 <= int(vdi.snapshot["virtual_size"]) <= MAX_DISK:
                raise XvaInvalid(f"VDI {vdi_id} asks for {vdi.snapshot['virtual_size']} bytes; at most {MAX_DISK}")
            found[vdi_id] = vdi
    return [found[k] for k in sorted(found)]


def _find(header: ova.Header, ref: str, cls: str) -> ova.Obj:
    obj = header.find(ref)
    if obj is None or obj.cls != cls:
        raise XvaObjectMissing(ref)
    return obj


def _check_space(lun: Lun, disks: list[_Disk]) -> None:
    """SR_FULL [requested, free] when the data the XVA says its disks hold cannot fit."""
    requested = sum(min(int(d.obj.snapshot["physical_utilisation"]), d.size) for d in disks)
    free = shutil.disk_usage(lun.path).free
    if requested > free:
        raise XenAPIFailure("SR_FULL", requested, free)


def _vdi_fields(disk: _Disk) -> dict[str, Any]:
    s = disk.obj.snapshot
    return {
        "uuid": disk.uuid,
        "name_label": s["name_label"],
        "name_description": s["name_description"],
        # A metadata or suspend VDI is the pool's own business: an XVA brings only disks.
        "type": s["type"] if s["type"] in _VDI_TYPES else "user",
        "sharable": s["sharable"],
        "read_only": s["read_only"],
        "other_config": s["other_config"],
        "sm_config": {"type": "raw"} if disk.fmt == "raw" else {},
        "virtual_size": disk.size,
        "location": disk.location,
        "managed": True,
    }


def _source(
    header: ova.Header, vm: ova.Obj, disk_of: Callable[[str], tuple[str, str] | None], restore: bool
) -> dict[str, Any]:
    """The VM in recovery's shape; without ``restore`` it gets new uuids and its VIFs new MACs."""
    record = dict(vm.snapshot)
    if not restore:
        record["uuid"] = str(uuidlib.uuid4())
    vbds = []
    for vbd_id in vm.snapshot["VBDs"]:
        vbd = dict(_find(header, vbd_id, "VBD").snapshot)
        if not restore:
            vbd["uuid"] = str(uuidlib.uuid4())
        vbds.append((vbd, disk_of(vbd["VDI"]) if vbd["type"] != "CD" else None))
    vifs = []
    for vif_id in vm.snapshot["VIFs"]:
        vif = dict(_find(header, vif_id, "VIF").snapshot)
        if not restore:
            vif.update(uuid=str(uuidlib.uuid4()), MAC=vif_handler.random_mac(), MAC_autogenerated=True)
        network = header.find(vif["network"])
        vifs.append((vif, network.snapshot if network is not None and network.cls == "network" else None))
    _check(record, [v for v, _ in vbds], [v for v, _ in vifs])
    return {"vm": record, "vbds": vbds, "vifs": vifs, "suspend": None}


def _check(vm: dict[str, Any], vbds: list[dict[str, Any]], vifs: list[dict[str, Any]]) -> None:
    """What VM.create, VBD.create and VIF.create would refuse, refused here too: an XVA is a record
    written by anyone, and these values reach QEMU's command line."""
    check_memory(vm)
    check_vcpus(vm)
    for name in DELAY_FIELDS:
        check_delay(name, vm[name])
    devices = [v["userdevice"] for v in vbds]
    if any(not d.isdigit() or int(d) >= vbd_handler.MAX_DEVICES for d in devices) or len(set(devices)) < len(devices):
        raise XvaInvalid(f"the VM's disk devices {devices} are not distinct numbers below {vbd_handler.MAX_DEVICES}")
    for vbd in vbds:
        vbd["device"] = "hd" + "abcd"[int(vbd["userdevice"])]
    nics = [v["device"] for v in vifs]
    if any(not d.isdigit() or int(d) >= vif_handler.MAX_DEVICES for d in nics) or len(set(nics)) < len(nics):
        raise XvaInvalid(f"the VM's network devices {nics} are not distinct numbers below {vif_handler.MAX_DEVICES}")
    for vif in vifs:
        if not vif["MAC"]:  # as VIF.create does with an empty MAC
            vif.update(MAC=vif_handler.random_mac(), MAC_autogenerated=True)
        vif["MAC"] = vif["MAC"].lower()
        if not vif_handler.valid_mac(vif["MAC"]):
            raise XvaInvalid(f"VIF {vif['device']} has no valid unicast MAC: {vif['MAC']!r}")


def _make_images(lun: Lun, journal: _Journal) -> None:
    """Each staged disk made into its VDI's image (raw: renamed; qcow2: converted from raw)."""
    for disk in journal.disks:
        target = lun.image_path(disk.location)
        if disk.staging is None:  # an empty disk: nothing was streamed
            image.create(target, disk.fmt, disk.size)
        elif disk.fmt == "raw":
            os.replace(disk.staging, target)
        else:
            image.convert(disk.staging, "raw", target, disk.fmt)
            disk.staging.unlink()
    fsync_dir(lun.path)


def _remove(journal: _Journal) -> None:
    """Remove what the import made on the LUN: staging files, images, LUN records, the journal."""
    lun = journal.lun
    for disk in journal.disks:
        journal.staging(disk).unlink(missing_ok=True)
        lun.image_path(disk.location).unlink(missing_ok=True)
        lun.remove_vdi(disk.uuid)
    _forget(journal)


def _forget(journal: _Journal) -> None:
    journal.path.unlink(missing_ok=True)
    fsync_dir(journal.lun.path)


def sweep(services: Services) -> None:
    """At start-up: remove what imports cut short by a crash left on the plugged LUNs."""
    with services.db.read() as tx:
        luns = [
            Lun(Path(r["device_config"]["path"]))
            for r in tx.get_records("PBD").values()
            # an ISO SR (device_config location, no path) is read-only: no import writes there
            if r["currently_attached"] and r["host"] == services.host and "path" in r["device_config"]
        ]
    for lun in luns:
        for path in sorted(lun.path.glob(f"{JOURNAL_PREFIX}*.json")):
            try:
                listed = read_json(path)
                # Checked: the journal lives on a LUN, which another site may have written.
                uuids = [str(uuidlib.UUID(str(u))) for u in listed.get("vdis", [])]
                locations = [lun.image_path(str(x)).name for x in listed.get("locations", [])]
            except (OSError, ValueError, AttributeError, BackendFailure):
                log.warning("unreadable import journal %s: removed", path)
                path.unlink(missing_ok=True)
                continue
            with services.db.read() as tx:
                committed = any(tx.find("VDI", "uuid", u) for u in uuids)
            token = path.name.removeprefix(JOURNAL_PREFIX).removesuffix(".json")
            journal = _Journal(lun, token, [])
            for stray in lun.path.glob(f"{JOURNAL_PREFIX}{token}-*.raw"):
                stray.unlink(missing_ok=True)
            if not committed:
                for vdi_uuid, location in zip(uuids, locations, strict=False):
                    lun.remove_vdi(vdi_uuid)
                    lun.image_path(location).unlink(missing_ok=True)
                log.warning("removed what an import cut short left on %s: VDIs %s", lun.path, ", ".join(uuids))
            _forget(journal)
