"""VM snapshots, checkpoints and reverts, with xapi's semantics (xapi_vm_snapshot.ml).

A snapshot is a VM record (``is_a_snapshot``) with copies of the VM's disks, each a whole,
self-contained image: a reflink where the LUN's filesystem has them, a sparse copy elsewhere, and
for a running VM a copy through QEMU's block layer (``Driver.backup_disks``), all disks at one
instant while the guest runs on. A checkpoint also keeps the guest's memory: the VM is suspended
(its memory image becomes the checkpoint's suspend VDI), its disks copied, and it is resumed from
that image. A revert gives the VM (same uuid; rebuilt from ``snapshot_metadata`` if it was
destroyed) fresh copies of the snapshot's disks, its fields and its power state.

Images are made with no transaction open; the records follow in one transaction, and images made
for a step that fails are removed, so a failure leaves nothing behind.
"""

from __future__ import annotations

import json
import logging
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from farside.api.storage import StorageService, lun_record
from farside.api.vms import VMService
from farside.db import Database, Transaction
from farside.errors import OperationNotAllowed, XenAPIFailure
from farside.model.types import NULL_REF, now
from farside.storage import image
from farside.storage.lun import Lun, new_location, recorded_format

log = logging.getLogger(__name__)

# snapshot_info's key for the milliseconds a live snapshot held the guest's disk I/O (Farside's).
HOLD_KEY = "farside-disk-io-held-ms"

# Fields a snapshot does not take from its VM (xapi's do_not_copy, for the fields Farside has):
# identity, runtime state and the relations the snapshot gets of its own.
_NOT_COPIED = frozenset(
    {"uuid", "allowed_operations", "current_operations", "power_state", "suspend_VDI", "resident_on",
     "scheduled_to_be_resident_on", "domid", "consoles", "VIFs", "VBDs", "VUSBs", "crash_dumps", "VTPMs",
     "metrics", "guest_metrics", "is_a_snapshot", "snapshot_of", "snapshots", "snapshot_time",
     "transportable_snapshot_id", "snapshot_info", "snapshot_metadata", "parent", "children", "blobs",
     "snapshot_schedule", "is_vmss_snapshot", "VGPUs", "attached_PCIs", "appliance", "is_control_domain",
     "pending_guidances", "pending_guidances_recommended", "pending_guidances_full", "requires_reboot"}
)  # fmt: skip
_VDI_COPIED = ("name_label", "name_description", "type", "sharable", "read_only", "sm_config", "other_config")
_VBD_COPIED = ("userdevice", "bootable", "mode", "type", "unpluggable", "empty", "other_config",
               "qos_algorithm_type", "qos_algorithm_params")  # fmt: skip
_VIF_COPIED = ("device", "network", "MAC", "MTU", "other_config")


@dataclass
class _Disk:
    """One disk being copied: from the VDI ``source`` (None for an empty VBD) to a new image."""

    vbd: dict[str, Any]
    source: str | None
    vdi: dict[str, Any] | None = None
    lun: Lun | None = None
    uuid: str = ""
    location: str = ""

    @property
    def path(self) -> Path:
        assert self.lun is not None
        return self.lun.image_path(self.location)

    @property
    def source_path(self) -> Path:
        assert self.lun is not None and self.vdi is not None
        return self.lun.image_path(self.vdi["location"])

    @property
    def format(self) -> str:
        return recorded_format(self.location)


class SnapshotService:
    """VM.snapshot, VM.checkpoint and VM.revert for one pool."""

    def __init__(self, db: Database, vms: VMService, storage: StorageService) -> None:
        self._db = db
        self._vms = vms
        self._storage = storage

    # -- snapshot and checkpoint ----------------------------------------------------------

    def snapshot(self, vm: str, name: str, ignore_vdis: list[str], task: str | None = None,
                 *, vmss: str = NULL_REF, taken_at: str | None = None) -> str:  # fmt: skip
        """A crash-consistent snapshot of the VM (halted, running or paused); its ref.
        ``vmss``, ``taken_at``: a schedule's run, stamped by the scheduler's clock."""
        with self._vms.claim(vm, "snapshot", ("Halted", "Running", "Paused"), task) as record:
            self._refuse_template(vm, record, "snapshot")
            disks = self._disks(record, ignore_vdis)
            info = {"power-state-at-snapshot": record["power_state"], "disk-snapshot-type": "crash_consistent"}
            if record["power_state"] == "Halted":
                self._copy_files(disks)
            else:
                # A Farside key: how long the guest's disk I/O waited for the copy's instant.
                info[HOLD_KEY] = f"{self._copy_live(record, disks) * 1000:.3f}"
            return self._record(vm, record, name, disks, info, vmss=vmss, taken_at=taken_at)

    def checkpoint(self, vm: str, name: str, task: str | None = None, *, vmss: str = NULL_REF,
                   taken_at: str | None = None) -> str:  # fmt: skip
        """A snapshot with the guest's memory; the VM runs on (or stays paused) afterwards.

        Until the checkpoint's records are written the VM is an ordinary suspended VM (its memory
        image its own suspend VDI), so a server that dies meanwhile leaves it resumable; the same
        transaction that makes the checkpoint hands the image over to it."""
        with self._vms.claim(vm, "checkpoint", ("Running", "Paused"), task) as record:
            self._refuse_template(vm, record, "checkpoint")
            disks = self._disks(record, [])
            memory = self._vms.save_memory(vm, record, owner=vm)
            self._vms.record_state(vm, "Suspended")
            try:
                self._copy_files(disks)
                info = {"power-state-at-snapshot": record["power_state"], "disk-snapshot-type": "crash_consistent"}
                snap = self._record(vm, record, name, disks, info, memory=memory, vmss=vmss, taken_at=taken_at)
            except BaseException:
                self._resume(vm, record, memory, drop=True)
                raise
            try:
                self._resume(vm, record, memory, drop=False)
            except BaseException:
                # The memory is the checkpoint's now: the VM is left Halted (a revert brings it back).
                self._vms.record_state(vm, "Halted")
                raise
            return snap

    def _resume(self, vm: str, record: dict[str, Any], memory: str, drop: bool) -> None:
        """Start the VM again from the memory image ``memory``; ``drop``: the image was not taken
        by a checkpoint (it is still the VM's suspend VDI), so it goes once the guest runs."""
        with self._db.read() as tx:
            vdi = tx.get_record("VDI", memory)
            lun = self._storage.attached_lun(tx, vdi["SR"])
        self._vms.restore(vm, record, lun.image_path(vdi["location"]), record["power_state"] == "Paused")
        if drop:
            _remove_images(lun, [(vdi["uuid"], vdi["location"])])
            with self._db.write() as tx:
                tx.set_fields("VM", vm, {"suspend_VDI": NULL_REF})
                tx.destroy("VDI", memory)

    def _refuse_template(self, vm: str, record: dict[str, Any], op: str) -> None:
        if record["is_a_template"]:
            raise XenAPIFailure("VM_IS_TEMPLATE", vm, op)

    def _disks(self, record: dict[str, Any], ignore_vdis: list[str]) -> list[_Disk]:
        """The VM's VBDs, with a new image's place for each disk that is copied (not a CD, not
        ignored, not sharable: those keep pointing at their VDI, as in xapi)."""
        disks = []
        with self._db.read() as tx:
            for vbd in record["VBDs"]:
                v = tx.get_record("VBD", vbd)
                source = v["VDI"] if tx.exists("VDI", v["VDI"]) else None
                disk = _Disk(v, source)
                if source is not None and v["type"] != "CD" and source not in ignore_vdis:
                    disk.vdi = tx.get_record("VDI", source)
                    if not disk.vdi["sharable"]:
                        disk.lun = self._storage.attached_lun(tx, disk.vdi["SR"])
                        disk.uuid = str(uuidlib.uuid4())
                        disk.location = new_location(disk.uuid, recorded_format(disk.vdi["location"]))
                if source is not None and source in ignore_vdis:
                    continue  # xapi leaves an ignored disk out of the snapshot altogether
                disks.append(disk)
        return disks

    def _copy_files(self, disks: list[_Disk]) -> None:
        """Copy each disk's image (nothing writes them: the VM is halted or suspended)."""
        made: list[_Disk] = []
        try:
            for disk in disks:
                if disk.lun is None:
                    continue
                made.append(disk)
                image.copy(disk.source_path, disk.format, disk.path)
        except BaseException:
            _remove_made(made)
            raise

    def _copy_live(self, record: dict[str, Any], disks: list[_Disk]) -> float:
        """Copy a running VM's disks through its hypervisor, all at one instant; the seconds the
        guest's disk I/O was held."""
        copied = [d for d in disks if d.lun is not None]
        try:
            targets = {}
            for disk in copied:
                assert disk.vdi is not None
                image.create(disk.path, disk.format, image.contained(disk.source_path, disk.format).virtual_size)
                targets[int(disk.vbd["userdevice"])] = (disk.path, disk.format)
            held = self._vms.driver.backup_disks(record["uuid"], targets) if targets else 0.0
            for disk in copied:
                image.contained(disk.path, disk.format)
            return held
        except BaseException:
            _remove_made(copied)
            raise

    def _record(self, vm: str, record: dict[str, Any], name: str, disks: list[_Disk], info: dict[str, str],
                *, memory: str = NULL_REF, vmss: str = NULL_REF, taken_at: str | None = None) -> str:  # fmt: skip
        """The snapshot's records (VM, VDIs, VBDs, VIFs), in one transaction; a checkpoint's
        ``memory`` passes from the VM to it."""
        try:
            with self._db.write() as tx:
                fields = {k: v for k, v in tx.get_record("VM", vm).items() if k not in _NOT_COPIED}
                snap = tx.create(
                    "VM",
                    {
                        **fields,
                        "name_label": name,
                        "is_a_snapshot": True,
                        "snapshot_of": vm,
                        "snapshot_time": taken_at or now(),
                        "transportable_snapshot_id": str(uuidlib.uuid4()),
                        "snapshot_info": info,
                        "snapshot_metadata": json.dumps(_metadata(tx, vm)),
                        "parent": tx.get_field("VM", vm, "parent"),
                        "is_vmss_snapshot": vmss != NULL_REF,
                        "power_state": "Suspended" if memory != NULL_REF else "Halted",
                        "suspend_VDI": memory,
                        "metrics": tx.create("VM_metrics", {"memory_actual": record["memory_static_max"]}),
                    },
                )
                self._attach_copies(tx, snap, disks, snapshot_of=True)
                for vif in record["VIFs"]:
                    v = tx.get_record("VIF", vif)
                    tx.create("VIF", {**{k: v[k] for k in _VIF_COPIED}, "VM": snap})
                tx.set_fields("VM", vm, {"parent": snap, **({"suspend_VDI": NULL_REF} if memory != NULL_REF else {})})
                return snap
        except BaseException:
            _remove_made([d for d in disks if d.lun is not None])
            raise

    def _attach_copies(self, tx: Transaction, owner: str, disks: list[_Disk], snapshot_of: bool) -> None:
        """VDI records for the copied images and a VBD for each disk, on the VM ``owner``."""
        for disk in disks:
            target = disk.source if disk.source is not None else NULL_REF
            if disk.lun is not None and disk.vdi is not None:
                fields = {k: disk.vdi[k] for k in _VDI_COPIED}
                if snapshot_of:
                    fields.update(is_a_snapshot=True, snapshot_of=disk.source, snapshot_time=now())
                size = image.contained(disk.path, disk.format)
                target = tx.create(
                    "VDI",
                    {**fields, "uuid": disk.uuid, "SR": disk.vdi["SR"], "location": disk.location, "managed": True,
                     "virtual_size": size.virtual_size, "physical_utilisation": size.actual_size},
                )  # fmt: skip
                disk.lun.write_vdi(lun_record(tx, target))
            tx.create("VBD", {**{k: disk.vbd[k] for k in _VBD_COPIED}, "VM": owner, "VDI": target})

    def copy_running_disk(self, vm: str, userdevice: int, target: Path, fmt: str, size: int) -> None:
        """``VDI.snapshot``/``clone`` of a disk a running VM writes: a new image at ``target``
        copied through the VM's hypervisor, as VM.snapshot copies it (never the file under the
        guest). The VM is held for it (OTHER_OPERATION_IN_PROGRESS to others meanwhile)."""
        with self._vms.claim(vm, "snapshot", ("Running", "Paused")) as record:
            try:
                image.create(target, fmt, size)
                self._vms.driver.backup_disks(record["uuid"], {userdevice: (target, fmt)})
            except BaseException:
                target.unlink(missing_ok=True)
                raise

    # -- destroy ----------------------------------------------------------------------------

    def uninstall(self, snapshot: str, disks: bool = True) -> None:
        """Destroy a snapshot with its memory image, and with its disks' VDIs when ``disks``
        (a schedule's pruning; VM.destroy keeps them, as xapi's does)."""
        with self._vms.claim(snapshot, "destroy", ("Halted", "Suspended")) as record:
            if not record["is_a_snapshot"]:
                raise OperationNotAllowed("Only a snapshot is uninstalled this way.")
            images: list[tuple[Lun, str, str]] = []
            with self._db.write() as tx:
                owned = [tx.get_field("VBD", vbd, "VDI") for vbd in record["VBDs"]] if disks else []
                for vdi in [*owned, record["suspend_VDI"]]:
                    if _owned_disk(tx, vdi) or (vdi == record["suspend_VDI"] and tx.exists("VDI", vdi)):
                        v = tx.get_record("VDI", vdi)
                        images.append((self._storage.attached_lun(tx, v["SR"]), v["uuid"], v["location"]))
                        for vbd in v["VBDs"]:
                            tx.destroy("VBD", vbd)
                        tx.destroy("VDI", vdi)
                for vbd in tx.get_field("VM", snapshot, "VBDs"):
                    tx.destroy("VBD", vbd)
                for vif in tx.get_field("VM", snapshot, "VIFs"):
                    tx.destroy("VIF", vif)
                if tx.exists("VM_metrics", record["metrics"]):
                    tx.destroy("VM_metrics", record["metrics"])
                for child in tx.get_field("VM", snapshot, "children"):
                    tx.set_fields("VM", child, {"parent": record["parent"]})
                tx.destroy("VM", snapshot)
        for lun, uuid, location in images:
            _remove_images(lun, [(uuid, location)])

    # -- revert ---------------------------------------------------------------------------

    def revert(self, snapshot: str, task: str | None = None) -> str:
        """Give the snapshot's VM the snapshot's disks (fresh copies), fields and power state; the VM."""
        with self._db.read() as tx:
            snap = tx.get_record("VM", tx.check("VM", snapshot))
        if not snap["is_a_snapshot"]:
            raise XenAPIFailure("ONLY_REVERT_SNAPSHOT")
        vm = self._target(snapshot, snap)
        with self._vms.claim(vm, "revert", ("Halted", "Running", "Paused", "Suspended"), task) as record:
            disks = self._disks(snap, [])
            memory = self._copy_memory(snap)
            try:
                self._copy_files(disks)
            except BaseException:
                if memory is not None:
                    _remove_images(memory[0], [memory[1:]])
                raise
            if record["power_state"] in ("Running", "Paused"):
                self._vms.driver.hard_stop(record["uuid"])
                self._vms.record_state(vm, "Halted")
            for lun, uuid, location in self._replace(vm, snapshot, snap, disks, memory):
                _remove_images(lun, [(uuid, location)])
        return vm

    def _target(self, snapshot: str, snap: dict[str, Any]) -> str:
        """The snapshot's VM; rebuilt, halted and with its own uuid, from the snapshot's metadata
        when it was destroyed."""
        with self._db.write() as tx:
            if tx.exists("VM", snap["snapshot_of"]):
                return str(snap["snapshot_of"])
            try:
                meta = json.loads(snap["snapshot_metadata"])
                fields = meta["VM"]
            except (ValueError, KeyError, TypeError):
                raise XenAPIFailure("VM_REVERT_FAILED", snapshot, "the snapshot has no metadata of its VM") from None
            if tx.find("VM", "uuid", fields["uuid"]):
                raise OperationNotAllowed(f"VM {fields['uuid']} exists, but is not the VM this snapshot is of")
            vm = tx.create("VM", {**_known_fields(tx, fields), "power_state": "Halted"})
            tx.set_fields(
                "VM", vm, {"metrics": tx.create("VM_metrics", {"memory_actual": fields["memory_static_max"]})}
            )
            tx.set_fields("VM", snapshot, {"snapshot_of": vm})
            log.info("VM %s was destroyed; rebuilt from the metadata of snapshot %s", fields["uuid"], snap["uuid"])
            return str(vm)

    def _copy_memory(self, snap: dict[str, Any]) -> tuple[Lun, str, str] | None:
        """A copy of a checkpoint's memory image (LUN, new VDI uuid, location); None for a snapshot."""
        with self._db.read() as tx:
            if snap["power_state"] != "Suspended" or not tx.exists("VDI", snap["suspend_VDI"]):
                return None
            vdi = tx.get_record("VDI", snap["suspend_VDI"])
            lun = self._storage.attached_lun(tx, vdi["SR"])
        uuid = str(uuidlib.uuid4())
        location = new_location(uuid, recorded_format(vdi["location"]))
        try:
            image.copy(lun.image_path(vdi["location"]), recorded_format(location), lun.image_path(location))
        except BaseException:
            lun.image_path(location).unlink(missing_ok=True)
            raise
        return lun, uuid, location

    def _replace(self, vm: str, snapshot: str, snap: dict[str, Any], disks: list[_Disk],
                 memory: tuple[Lun, str, str] | None) -> list[tuple[Lun, str, str]]:  # fmt: skip
        """In one transaction: the VM's disks, VIFs, fields and power state become the snapshot's.
        Returns the images of the VM's old disks (LUN, VDI uuid, location) for the caller to remove."""
        old: list[tuple[Lun, str, str]] = []
        try:
            with self._db.write() as tx:
                for vbd in tx.get_field("VM", vm, "VBDs"):
                    vdi = tx.get_field("VBD", vbd, "VDI")
                    tx.destroy("VBD", vbd)
                    if _owned_disk(tx, vdi):
                        v = tx.get_record("VDI", vdi)
                        old.append((self._storage.attached_lun(tx, v["SR"]), v["uuid"], v["location"]))
                        for child in tx.get_field("VDI", vdi, "snapshots"):
                            tx.set_fields("VDI", child, {"snapshot_of": NULL_REF})
                        tx.destroy("VDI", vdi)
                suspend = tx.get_field("VM", vm, "suspend_VDI")
                if tx.exists("VDI", suspend):
                    v = tx.get_record("VDI", suspend)
                    old.append((self._storage.attached_lun(tx, v["SR"]), v["uuid"], v["location"]))
                    tx.destroy("VDI", suspend)
                for vif in tx.get_field("VM", vm, "VIFs"):
                    tx.destroy("VIF", vif)
                self._attach_copies(tx, vm, disks, snapshot_of=False)
                for vif in snap["VIFs"]:
                    v = tx.get_record("VIF", vif)
                    tx.create("VIF", {**{k: v[k] for k in _VIF_COPIED}, "VM": vm})
                meta = json.loads(snap["snapshot_metadata"] or "{}").get("VM", {})
                fields = {k: v for k, v in _known_fields(tx, meta).items() if k not in _NOT_COPIED}
                new_memory = NULL_REF
                if memory is not None:
                    lun, uuid, location = memory
                    source = tx.get_record("VDI", snap["suspend_VDI"])
                    new_memory = tx.create(
                        "VDI",
                        {**{k: source[k] for k in _VDI_COPIED}, "uuid": uuid, "SR": source["SR"],
                         "location": location, "managed": True, "virtual_size": source["virtual_size"]},
                    )  # fmt: skip
                    lun.write_vdi(lun_record(tx, new_memory))
                tx.set_fields(
                    "VM",
                    vm,
                    {**fields, "parent": snapshot, "suspend_VDI": new_memory,
                     "power_state": "Suspended" if memory is not None else "Halted"},
                )  # fmt: skip
        except BaseException:
            _remove_made([d for d in disks if d.lun is not None])
            if memory is not None:
                _remove_images(memory[0], [memory[1:]])
            raise
        return old


def _owned_disk(tx: Transaction, vdi: str) -> bool:
    """A VDI a revert replaces: the VM's own disk (not a CD, not shared with other VMs)."""
    if not tx.exists("VDI", vdi):
        return False
    record = tx.get_record("VDI", vdi)
    return bool(record["type"] != "iso" and not record["sharable"] and len(record["VBDs"]) <= 1)


def _metadata(tx: Transaction, vm: str) -> dict[str, Any]:
    """What a revert needs to rebuild the VM if it is destroyed: its record, by value."""
    record = tx.get_record("VM", vm)
    return {"VM": {k: v for k, v in record.items() if k not in _NOT_COPIED or k == "uuid"}}


def _known_fields(tx: Transaction, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields of a VM record from metadata that still make sense here: refs to objects gone
    become null."""
    out = {}
    for k, v in fields.items():
        if k in ("affinity", "suspend_SR", "protection_policy") and not _live(tx, v):
            v = NULL_REF
        out[k] = v
    return out


def _live(tx: Transaction, ref: Any) -> bool:
    return isinstance(ref, str) and ref != NULL_REF and any(tx.exists(c, ref) for c in ("host", "SR"))


def _remove_made(disks: list[_Disk]) -> None:
    for disk in disks:
        assert disk.lun is not None
        _remove_images(disk.lun, [(disk.uuid, disk.location)])


def _remove_images(lun: Lun, images: list[tuple[str, str]]) -> None:
    for uuid, location in images:
        lun.remove_vdi(uuid)
        lun.image_path(location).unlink(missing_ok=True)
