"""VM.recover and VM_appliance.recover: a metadata-only, UUID-preserving import (xenapi-dr.md §4.3-4.4).

The VMs are read from a foreign pool's database (opened from its metadata VDI) and written into
this pool's database in one transaction, so a recovery is all or nothing. Nothing crosses pools by
ref: SRs are matched by uuid, VDIs by (SR uuid, location), networks by name and then bridge, and
the VM, its VBDs and VIFs keep their uuids (and the VIFs their MACs). Every recovery raises the
VM's ``version`` by one, which is how a failback's copy wins over the stale one it replaces.
"""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

from farside.db import Database, Transaction
from farside.errors import XenAPIFailure
from farside.model import STORED, stored_fields
from farside.model.types import NULL_REF
from farside.model.vm_rules import power_state_error

# Fields of a recovered VM that describe the running domain or this pool's objects: reset.
_RUNTIME_VM_FIELDS = {
    "power_state": "Halted",
    "resident_on": NULL_REF,
    "scheduled_to_be_resident_on": NULL_REF,
    "affinity": NULL_REF,
    "domid": -1,
    "appliance": NULL_REF,
    "protection_policy": NULL_REF,
    "snapshot_schedule": NULL_REF,
    "metrics": NULL_REF,
    "guest_metrics": NULL_REF,
    "suspend_VDI": NULL_REF,
    "suspend_SR": NULL_REF,
    "parent": NULL_REF,
    "snapshot_of": NULL_REF,
    "current_operations": {},
    "allowed_operations": [],
}


@dataclass(frozen=True)
class Outcome:
    """What a recovery did: the VMs it recovered (target refs) and those it skipped (foreign refs)."""

    recovered: list[str]
    skipped: list[str]
    srs_used: list[str]


def required_srs(foreign: Database, target: Database, vm: str) -> list[str]:
    """SRs the VM needs that are missing in the target (foreign ref) or not plugged there (target ref)."""
    needed = []
    with foreign.read() as ftx, target.read() as ttx:
        for sr_uuid, foreign_sr in _needed_srs(ftx, vm):
            local = ttx.find("SR", "uuid", sr_uuid)
            if not local:
                needed.append(foreign_sr)
            elif not _plugged(ttx, local[0]):
                needed.append(local[0])
    return list(dict.fromkeys(needed))


def assert_can_be_recovered(foreign: Database, target: Database, vm: str) -> None:
    """VM_REQUIRES_SR [vm, sr] for the first SR the VM needs that the target lacks."""
    with foreign.read() as ftx:
        ftx.check("VM", vm)
    missing = required_srs(foreign, target, vm)
    if missing:
        raise XenAPIFailure("VM_REQUIRES_SR", vm, missing[0])


def _needed_srs(ftx: Transaction, vm: str) -> list[tuple[str, str]]:
    """(uuid, foreign ref) of the SRs holding the VM's disks (CDs and ISO SRs excluded)."""
    found = []
    for vbd in ftx.get_field("VM", vm, "VBDs"):
        record = ftx.get_record("VBD", vbd)
        if record["type"] == "CD" or not ftx.exists("VDI", record["VDI"]):
            continue
        sr = ftx.get_field("VDI", record["VDI"], "SR")
        if ftx.exists("SR", sr) and ftx.get_field("SR", sr, "content_type") != "iso":
            found.append((ftx.get_field("SR", sr, "uuid"), sr))
    return found


def _plugged(ttx: Transaction, sr: str) -> bool:
    return any(ttx.get_field("PBD", p, "currently_attached") for p in ttx.get_field("SR", sr, "PBDs"))


def recover(foreign: Database, target: Database, vms: list[str], force: bool, appliance: str | None = None) -> Outcome:
    """Recover ``vms`` (foreign refs) into ``target``, with their vApp if given, in one transaction.

    Raises:
        XenAPIFailure: VM_REQUIRES_SR, VM_BAD_POWER_STATE, VM_TO_IMPORT_IS_NOT_NEWER_VERSION,
            VDI_LOCATION_MISSING; nothing is changed then.
    """
    for vm in vms:
        assert_can_be_recovered(foreign, target, vm)
    with foreign.read() as ftx:
        sources = {vm: _gather(ftx, vm) for vm in vms}
        app_record = ftx.get_record("VM_appliance", appliance) if appliance is not None else None
    recovered: list[str] = []
    skipped: list[str] = []
    srs: list[str] = []
    with target.write() as ttx:
        for vm, source in sources.items():
            existing = ttx.find("VM", "uuid", source["vm"]["uuid"])
            if existing and not may_replace(ttx, existing[0], source["vm"], force):
                skipped.append(vm)
                continue
            if existing:
                destroy_vm(ttx, existing[0])
            ref, used = import_vm(ttx, source, force)
            recovered.append(ref)
            srs += used
        for sr in dict.fromkeys(srs):
            # The SR now holds a recovered VM's disks: DR_task.destroy must keep it.
            ttx.set_fields("SR", sr, {"introduced_by": NULL_REF})
        if app_record is not None:
            attach_appliance(ttx, app_record, recovered)
    return Outcome(recovered, skipped, list(dict.fromkeys(srs)))


def may_replace(ttx: Transaction, existing: str, incoming: dict[str, Any], force: bool) -> bool:
    """xapi's version rule: False means skip (force and running), raising where it must refuse."""
    record = ttx.get_record("VM", existing)
    if record["power_state"] != "Halted":
        if force:
            return False
        raise power_state_error(existing, "halted", record["power_state"])
    if record["version"] >= incoming["version"] and not force:
        raise XenAPIFailure("VM_TO_IMPORT_IS_NOT_NEWER_VERSION", existing, record["version"], incoming["version"])
    return True


def _gather(ftx: Transaction, vm: str) -> dict[str, Any]:
    """The VM with what it refers to, resolved to uuids and names (refs do not cross pools)."""
    record = ftx.get_record("VM", vm)
    vbds = []
    for vbd in record["VBDs"]:
        v = ftx.get_record("VBD", vbd)
        disk = None
        if ftx.exists("VDI", v["VDI"]):
            vdi = ftx.get_record("VDI", v["VDI"])
            sr_uuid = ftx.get_field("SR", vdi["SR"], "uuid") if ftx.exists("SR", vdi["SR"]) else ""
            disk = (sr_uuid, vdi["location"])
        vbds.append((v, disk))
    vifs = []
    for vif in record["VIFs"]:
        v = ftx.get_record("VIF", vif)
        net = ftx.get_record("network", v["network"]) if ftx.exists("network", v["network"]) else None
        vifs.append((v, net))
    suspend = None
    if record["power_state"] == "Suspended" and ftx.exists("VDI", record["suspend_VDI"]):
        vdi = ftx.get_record("VDI", record["suspend_VDI"])
        suspend = (ftx.get_field("SR", vdi["SR"], "uuid"), vdi["location"])
    return {"vm": record, "vbds": vbds, "vifs": vifs, "suspend": suspend}


def _vdi_at(ttx: Transaction, sr_uuid: str, location: str) -> str | None:
    srs = ttx.find("SR", "uuid", sr_uuid)
    if not srs:
        return None
    for vdi in ttx.find("VDI", "location", location):
        if ttx.get_field("VDI", vdi, "SR") == srs[0]:
            return vdi
    return None


def _columns(cls: str, record: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in stored_fields(STORED[cls]) if not f.internal}
    return {k: v for k, v in record.items() if k in names}


def import_vm(
    ttx: Transaction, source: dict[str, Any], force: bool, import_task: str = "VM.recover"
) -> tuple[str, list[str]]:
    """Create the VM of ``source`` (``_gather``'s shape: disks by SR uuid and location, networks
    by record) with its uuid, VBDs, VIFs and MACs, its version raised by one; ``import_task``
    goes into its other_config. Returns the new VM and the SRs its disks are on."""
    vm_record = source["vm"]
    srs: list[str] = []
    values = {**_columns("VM", vm_record), **_RUNTIME_VM_FIELDS}
    values["version"] = vm_record["version"] + 1
    values["generation_id"] = f"{uuidlib.uuid4().int % 2**63}:0"
    values["other_config"] = {**vm_record["other_config"], "import_task": import_task}
    if source["suspend"] is not None:
        suspend = _vdi_at(ttx, *source["suspend"])
        if suspend is None and not force:
            raise XenAPIFailure("VDI_LOCATION_MISSING", *source["suspend"])
        if suspend is not None:
            values.update(power_state="Suspended", suspend_VDI=suspend)
    vm = ttx.create("VM", values)
    metrics = ttx.create("VM_metrics", {"memory_actual": vm_record["memory_static_max"]})
    ttx.set_fields("VM", vm, {"metrics": metrics})
    for vbd, disk in source["vbds"]:
        vdi = NULL_REF
        if disk is not None:
            found = _vdi_at(ttx, *disk)
            if found is not None:
                vdi = found
                srs.append(ttx.get_field("VDI", vdi, "SR"))
            elif vbd["type"] != "CD":  # an ISO this site's libraries lack: the drive comes back empty
                if not force:
                    raise XenAPIFailure("VDI_LOCATION_MISSING", *disk)
                continue  # force: the disk is left out, as xapi skips it
        _replace_by_uuid(ttx, "VBD", vbd["uuid"])
        fields = _columns("VBD", vbd)
        fields.update(VM=vm, VDI=vdi, empty=vdi == NULL_REF, currently_attached=False, metrics=NULL_REF)
        fields["allowed_operations"], fields["current_operations"] = [], {}
        ttx.create("VBD", fields)
    for vif, network in source["vifs"]:
        _replace_by_uuid(ttx, "VIF", vif["uuid"])
        fields = _columns("VIF", vif)
        fields.update(VM=vm, network=_network(ttx, network), currently_attached=False, metrics=NULL_REF)
        fields["allowed_operations"], fields["current_operations"] = [], {}
        ttx.create("VIF", fields)
    return vm, srs


def _replace_by_uuid(ttx: Transaction, cls: str, uuid: str) -> None:
    """A VBD or VIF with the recovered one's uuid is an older copy of it: it goes."""
    for ref in ttx.find(cls, "uuid", uuid):
        ttx.destroy(cls, ref)


def _network(ttx: Transaction, network: dict[str, Any] | None) -> str:
    """The target's network with the same name, else the same bridge, else a new one like it."""
    if network is None:
        nets = ttx.refs("network")
        return nets[0] if nets else ttx.create("network", {"name_label": "Recovered network", "bridge": "xapi0"})
    for field in ("name_label", "bridge"):
        if network[field]:
            found = ttx.find("network", field, network[field])
            if found:
                return found[0]
    fields = {k: network[k] for k in ("name_label", "name_description", "bridge", "MTU", "other_config")}
    fields["other_config"] = {**fields["other_config"], "farside-created-by": "recovery"}
    return ttx.create("network", fields)


def destroy_vm(ttx: Transaction, vm: str) -> None:
    """Remove a VM with its VBDs, VIFs and metrics; its disks stay."""
    record = ttx.get_record("VM", vm)
    for vbd in record["VBDs"]:
        ttx.destroy("VBD", vbd)
    for vif in record["VIFs"]:
        ttx.destroy("VIF", vif)
    for cls, field in (("VM_metrics", "metrics"), ("VM_guest_metrics", "guest_metrics")):
        if ttx.exists(cls, record[field]):
            ttx.destroy(cls, record[field])
    ttx.destroy("VM", vm)


def recover_appliance(foreign: Database, target: Database, appliance: str, force: bool) -> Outcome:
    """VM_appliance.recover: its VMs and the vApp (uuid kept) holding them, in one transaction."""
    with foreign.read() as ftx:
        members = ftx.get_field("VM_appliance", ftx.check("VM_appliance", appliance), "VMs")
    return recover(foreign, target, members, force, appliance)


def attach_appliance(ttx: Transaction, record: dict[str, Any], vms: list[str]) -> None:
    """Reuse the vApp with the same uuid (emptied, renamed) or make it; attach the recovered VMs."""
    existing = ttx.find("VM_appliance", "uuid", record["uuid"])
    names = {"name_label": record["name_label"], "name_description": record["name_description"]}
    if existing:
        app = existing[0]
        for vm in ttx.get_field("VM_appliance", app, "VMs"):
            ttx.set_fields("VM", vm, {"appliance": NULL_REF})
        ttx.set_fields("VM_appliance", app, names)
    else:
        app = ttx.create("VM_appliance", {**names, "uuid": record["uuid"]})
    for vm in vms:
        if not ttx.get_field("VM", vm, "is_a_template"):
            ttx.set_fields("VM", vm, {"appliance": app})
    ttx.set_fields("VM_appliance", app, {"allowed_operations": ["start"] if vms else []})
