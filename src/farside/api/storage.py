"""The pool's side of file SRs: plugging LUNs under a lease, and keeping VDI records in step.

Storage work (qemu-img, LUN records, leases) never runs inside a database transaction: each
operation reads what it needs, acts on the LUN, then writes the outcome, undoing its LUN work if
that write fails.
"""

from __future__ import annotations

import functools
import logging
import threading
import uuid as uuidlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from farside.config import crash_point
from farside.db import Database, Transaction
from farside.errors import FarsideError, XenAPIFailure
from farside.model.types import NULL_REF
from farside.storage import image, lease
from farside.storage.errors import BackendFailure, VdiInUse, path_failure, records_failure
from farside.storage.lun import Lun, check_usable, image_format, new_location, recorded_format
from farside.storage.roots import check_lun

ImageMaker = Callable[[Path, str], object]
# A LUN's VDI records whose images may be used, by uuid, and the uuids of those refused.
Usable = tuple[dict[str, dict[str, Any]], set[str]]

log = logging.getLogger(__name__)


class StorageService:
    """Plug, unplug and scan file SRs for one pool, and keep its leases alive."""

    def __init__(self, db: Database, pool: str, host: str) -> None:
        self._db = db
        self._pool = pool
        self._host = host
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None
        # Told after an SR's PBD is plugged and before it is unplugged (metadata replication).
        self.after_plug: list[Callable[[str], None]] = []
        self.before_unplug: list[Callable[[str], None]] = []
        # Told after a scan read the LUN again (metadata VDIs that came with a copied-back LUN).
        self.after_scan: list[Callable[[str], None]] = []

    # -- identities ----------------------------------------------------------------------------

    def _owner(self) -> tuple[str, str, str]:
        with self._db.read() as tx:
            pool = tx.get_record("pool", self._pool)
            host = tx.get_field("host", self._host, "hostname")
        return pool["uuid"], pool["name_label"], host

    def lun_roots(self) -> list[str]:
        with self._db.read() as tx:
            roots: list[str] = tx.get_field("pool", self._pool, "lun_roots")
        return roots

    def lun_path(self, device_config: dict[str, str]) -> Path:
        """The LUN directory a device_config names, if it is one this pool may use (storage/roots.py)."""
        path = device_config.get("path")
        if not path:
            raise path_failure("device_config needs 'path': the absolute path of the LUN directory")
        return check_usable(check_lun(path, self.lun_roots()))

    def attached_lun(self, tx: Transaction, sr: str) -> Lun:
        """The LUN of a plugged SR; SR_HAS_NO_PBDS [sr] when it is not plugged here."""
        for pbd in tx.get_field("SR", tx.check("SR", sr), "PBDs"):
            record = tx.get_record("PBD", pbd)
            if record["currently_attached"]:
                return Lun(Path(record["device_config"]["path"]))
        raise XenAPIFailure("SR_HAS_NO_PBDS", sr)

    # -- plug and unplug -----------------------------------------------------------------------

    def plug(self, pbd: str) -> None:
        with self._db.read() as tx:
            record = tx.get_record("PBD", tx.check("PBD", pbd))
            if record["currently_attached"]:
                return
            sr_uuid = tx.get_field("SR", record["SR"], "uuid")
        path = self.lun_path(record["device_config"])
        lun = Lun(path)
        if not lun.formatted or lun.identity().get("uuid") != sr_uuid:
            found = lun.identity().get("uuid") if lun.formatted else "no SR"
            raise records_failure(f"{path} holds {found}, not SR {sr_uuid}")
        pool_uuid, pool_name, hostname = self._owner()
        lease.acquire(path, pool_uuid, pool_name, hostname, lambda: _images_in_use(lun))
        crash_point("plug:leased")
        try:
            found = usable_records(lun)
            with self._db.write() as tx:
                self._sync(tx, record["SR"], lun, found)
                tx.set_fields("PBD", pbd, {"currently_attached": True})
        except BaseException:
            lease.release(path, pool_uuid)
            raise
        for hook in self.after_plug:
            hook(record["SR"])

    def reattach(self) -> None:
        """At start-up: take the lease again on each LUN this host had plugged, as a plug would.

        A LUN that cannot be taken (a mirror now replicates into it, or another pool holds it)
        has its PBD marked unplugged, with the reason logged: the pool must not write into it.
        An SR whose disks a running VM uses stays as it is, with an error logged."""
        with self._db.read() as tx:
            attached = {
                pbd: r
                for pbd, r in tx.get_records("PBD").items()
                if r["currently_attached"] and r["host"] == self._host
            }
        pool_uuid, pool_name, hostname = self._owner()
        for pbd, record in attached.items():
            path = Path(record["device_config"]["path"])
            try:
                lease.acquire(path, pool_uuid, pool_name, hostname, functools.partial(_images_in_use, Lun(path)))
            except (FarsideError, OSError) as exc:
                with self._db.write() as tx:
                    busy = [v for v in tx.get_field("SR", record["SR"], "VDIs") if vdi_busy(tx, v)]
                    if busy:
                        log.error("LUN %s cannot be taken again (%s), but running VMs use it; it stays plugged",
                                  path, exc)  # fmt: skip
                        continue
                    tx.set_fields("PBD", pbd, {"currently_attached": False})
                log.warning("SR on %s unplugged at start-up: %s", path, exc)

    def unplug(self, pbd: str) -> None:
        with self._db.read() as tx:
            record = tx.get_record("PBD", tx.check("PBD", pbd))
            if not record["currently_attached"]:
                return
            busy = [v for v in tx.get_field("SR", record["SR"], "VDIs") if vdi_busy(tx, v)]
        if busy:
            raise VdiInUse(*busy)
        for hook in self.before_unplug:
            hook(record["SR"])
        with self._db.write() as tx:
            tx.set_fields("PBD", pbd, {"currently_attached": False})
        pool_uuid, _, _ = self._owner()
        try:
            lease.release(Path(record["device_config"]["path"]), pool_uuid)
        except OSError as exc:  # a LUN that is gone has no lease left to give back
            log.warning("could not release the lease on %s: %s", record["device_config"].get("path"), exc)

    def scan(self, sr: str) -> None:
        with self._db.read() as tx:
            lun = self.attached_lun(tx, sr)
        found = usable_records(lun)
        with self._db.write() as tx:
            self._sync(tx, sr, lun, found)
        for hook in self.after_scan:
            hook(sr)

    def _sync(self, tx: Transaction, sr: str, lun: Lun, found: Usable) -> None:
        """Make the SR's VDI records match the LUN's usable ones (``usable_records``), and refresh
        the SR's name and sizes. A VDI the pool knows whose image is refused now stays, missing."""
        on_lun, refused = found
        ours = {tx.get_field("VDI", v, "uuid"): v for v in tx.get_field("SR", sr, "VDIs")}
        pool_uuid = tx.get_field("pool", self._pool, "uuid")
        for vdi_uuid, record in on_lun.items():
            values = vdi_values(record, lun, pool_uuid, self._pool)
            if vdi_uuid in ours:
                tx.set_fields("VDI", ours[vdi_uuid], values)
            else:
                tx.create("VDI", {**values, "uuid": vdi_uuid, "SR": sr, "managed": True})
        for vdi_uuid, ref in ours.items():
            if vdi_uuid in on_lun:
                continue
            if vdi_uuid in refused or vdi_busy(tx, ref):
                tx.set_fields("VDI", ref, {"missing": True})
            else:
                for vbd in tx.get_field("VDI", ref, "VBDs"):
                    tx.set_fields("VBD", vbd, {"VDI": NULL_REF, "empty": True})
                tx.destroy("VDI", ref)
        identity = lun.identity()
        usage = lun.usage()
        tx.set_fields(
            "SR",
            sr,
            {
                "name_label": identity.get("name_label", ""),
                "name_description": identity.get("name_description", ""),
                "physical_size": usage.physical_size,
                "physical_utilisation": usage.physical_utilisation,
                "virtual_allocation": usage.virtual_allocation,
            },
        )

    # -- leases ------------------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        self._heartbeat = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(5)

    def _beat(self) -> None:
        while not self._stop.wait(lease.RENEW_INTERVAL_S):
            try:
                self.renew_leases()
            except Exception:
                log.exception("lease heartbeat failed")

    def renew_leases(self) -> None:
        with self._db.read() as tx:
            paths = [
                Path(r["device_config"]["path"])
                for r in tx.get_records("PBD").values()
                if r["currently_attached"] and r["host"] == self._host
            ]
        pool_uuid, pool_name, hostname = self._owner()
        for path in paths:
            try:
                if not lease.renew(path, pool_uuid, pool_name, hostname):
                    log.error("LUN %s was taken over by another pool or a mirror; its SR must be unplugged here", path)
            except OSError as exc:
                log.error("cannot renew the lease on %s: %s", path, exc)


def usable_records(lun: Lun) -> Usable:
    """The LUN's VDI records whose image is absent (the VDI is missing) or self-contained, and the
    uuids of those refused, each logged. Images reach a LUN from outside the pool (a mirror, a copy
    from another site), so none is imported before it is checked; one bad image does not stop the
    scan. Runs outside any transaction: it calls qemu-img."""
    usable = {}
    refused = set()
    for vdi_uuid, record in lun.vdi_records().items():
        try:
            path = lun.image_path(record["location"])
            fmt = recorded_format(record["location"])
            if path.exists() or path.is_symlink():
                image.contained(path, fmt)
        except BackendFailure as exc:
            log.warning("SR scan of %s skips VDI %s: %s", lun.path, vdi_uuid, exc.params[-1])
            refused.add(vdi_uuid)
            continue
        usable[vdi_uuid] = record
    return usable, refused


def vdi_values(record: dict[str, Any], lun: Lun, pool_uuid: str, pool_ref: str) -> dict[str, Any]:
    """The VDI fields a LUN record gives, with sizes read from the image itself."""
    path = lun.image_path(record["location"])
    physical = path.stat().st_blocks * 512 if path.exists() else 0
    metadata_pool = record.get("metadata_of_pool", "")
    return {
        "name_label": record.get("name_label", ""),
        "name_description": record.get("name_description", ""),
        "type": record.get("type", "user"),
        "virtual_size": int(record.get("virtual_size", 0)),
        "physical_utilisation": physical,
        "location": record["location"],
        "sharable": bool(record.get("sharable", False)),
        "read_only": bool(record.get("read_only", False)),
        "sm_config": dict(record.get("sm_config", {})),
        "is_a_snapshot": bool(record.get("is_a_snapshot", False)),
        "snapshot_time": record.get("snapshot_time", "19700101T00:00:00Z"),
        "missing": not path.exists(),
        # Foreign pools' metadata VDIs are resolved by the replication layer; ours point at us.
        "metadata_of_pool": pool_ref if metadata_pool == pool_uuid else NULL_REF,
    }


def vdi_busy(tx: Transaction, vdi: str, held: Callable[[str], bool] | None = None) -> bool:
    """Whether the VDI is in use: by a VM that is not halted (running, paused, suspended), by one
    in the middle of an operation (being started), or, through ``held``, by something of the
    server's own (an active metadata VDI)."""
    if held is not None and held(vdi):
        return True
    for vbd in tx.get_field("VDI", vdi, "VBDs"):
        vm = tx.get_field("VBD", vbd, "VM")
        if not tx.exists("VM", vm):
            continue
        if tx.get_field("VM", vm, "power_state") != "Halted" or tx.get_field("VM", vm, "current_operations"):
            return True
    return False


def _images_in_use(lun: Lun) -> bool:
    for record in lun.vdi_records().values():
        path = lun.image_path(record["location"])
        if path.exists() and image.in_use(path):
            return True
    return False


def forget_sr(tx: Transaction, sr: str) -> None:
    """Drop an SR's records (its VDIs, their VBDs, its PBDs) from the pool; the LUN is untouched."""
    for vdi in tx.get_field("SR", sr, "VDIs"):
        for vbd in tx.get_field("VDI", vdi, "VBDs"):
            tx.destroy("VBD", vbd)
        tx.destroy("VDI", vdi)
    for pbd in tx.get_field("SR", sr, "PBDs"):
        tx.destroy("PBD", pbd)
    tx.destroy("SR", sr)


def sr_record(uuid: str, name_label: str, name_description: str, sr_type: str, content_type: str = "",
              sm_config: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """A new SR record; file SRs are always shared."""
    return {
        "uuid": uuid,
        "name_label": name_label,
        "name_description": name_description,
        "type": sr_type,
        "content_type": content_type,
        "shared": True,
        "sm_config": sm_config or {},
    }


def refuse_if_plugged(tx: Transaction, sr: str) -> None:
    """SR_HAS_PBD [sr] while any PBD of the SR is attached (forget never unplugs by itself)."""
    for pbd in tx.get_field("SR", sr, "PBDs"):
        if tx.get_field("PBD", pbd, "currently_attached"):
            raise XenAPIFailure("SR_HAS_PBD", sr)


def lun_record(tx: Transaction, vdi: str) -> dict[str, Any]:
    """What the LUN keeps of a VDI (its pool ref of metadata_of_pool stored as the pool's uuid)."""
    record = tx.get_record("VDI", vdi)
    owner = record.get("metadata_of_pool", NULL_REF)
    record["metadata_of_pool"] = tx.get_field("pool", owner, "uuid") if tx.exists("pool", owner) else ""
    snap = record.get("snapshot_of", NULL_REF)
    record["snapshot_of"] = tx.get_field("VDI", snap, "uuid") if tx.exists("VDI", snap) else ""
    return record


def new_vdi(db: Database, pool: str, sr: str, lun: Lun, fields: dict[str, Any], make_image: ImageMaker) -> str:
    """Make the image, record it on the LUN, then in the pool; undo the LUN work if the last step fails."""
    vdi_uuid = str(uuidlib.uuid4())
    fmt = image_format(fields.get("sm_config", {}))
    location = new_location(vdi_uuid, fmt)
    path = lun.image_path(location)
    make_image(path, fmt)
    try:
        size = image.info(path, fmt).virtual_size
        with db.write() as tx:
            ref = tx.create(
                "VDI",
                {**fields, "uuid": vdi_uuid, "SR": sr, "location": location, "virtual_size": size, "managed": True},
            )
            pool_uuid = tx.get_field("pool", pool, "uuid")
            record = lun_record(tx, ref)
            lun.write_vdi(record)
            tx.set_fields("VDI", ref, vdi_values(record, lun, pool_uuid, pool))
        return ref
    except BaseException:
        lun.remove_vdi(vdi_uuid)
        path.unlink(missing_ok=True)
        raise
