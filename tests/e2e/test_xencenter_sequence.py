"""XenCenter's DR wizard, replayed call for call with the SDK (xenapi-dr.md §5.2-5.6), on file SRs.

A test failover: the storage page probes the copied LUN and creates a DR task, the metadata is
loaded from the latest metadata VDIs, the pre-checks run, vApps and VMs are recovered through
Async calls and started paused, and the final cleanup destroys the DR task, shuts down and destroys
what was recovered and forgets the SRs. Site B must end exactly as it began, and the copied disk
images byte-identical.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import XenAPI

from pools import PoolServer
from vms import bootable_vm, make_sr


def value(result: dict[str, Any]) -> Any:
    assert result["Status"] == "Success", result
    return result["Value"]


def wait_task(s: XenAPI.Session, task: str) -> str:
    """Poll a task as XenCenter does; its result (XML), or raise its error."""
    while s.xenapi.task.get_status(task) == "pending":
        time.sleep(0.05)
    record = s.xenapi.task.get_record(task)
    s.xenapi.task.destroy(task)
    if record["status"] != "success":
        raise XenAPI.Failure(record["error_info"])
    return str(record["result"])


def checksums(lun: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(lun.glob("*.*")) if p.is_file()}


def state_of(s: XenAPI.Session) -> dict[str, set[str]]:
    """Site B's persistent objects by uuid, class by class (what a test failover must leave alone)."""
    classes = ["VM", "VM_appliance", "SR", "VDI", "VBD", "VIF", "network", "PBD", "DR_task"]
    return {cls: {r["uuid"] for r in getattr(s.xenapi, cls).get_all_records().values()} for cls in classes}


def test_test_failover_as_xencenter_does_it(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """Every call XenCenter's test failover makes works against Farside, and cleanup restores site B."""
    a, b = two_pools
    sa, sb = a.session(), b.session()
    lun = tmp_path / "lun-a"
    sr = make_sr(sa, lun)
    # Configure (DRConfigureDialog): the SRs that pass the check; tick one; enable.
    sa.xenapi.SR.assert_supports_database_replication(sr)
    sa.xenapi.SR.enable_database_replication(sr)
    app = sa.xenapi.VM_appliance.create({"name_label": "erp", "name_description": ""})
    for tag in ("erp-db", "erp-app"):
        sa.xenapi.VM.set_appliance(bootable_vm(a, sa, sr, tag), app)
    bootable_vm(a, sa, sr, "mail")
    copy = tmp_path / "lun-b"
    subprocess.run(["cp", "-a", str(lun), str(copy)], check=True)
    before_images = checksums(copy)
    before = state_of(sb)
    coordinator = sb.xenapi.pool.get_master(sb.xenapi.pool.get_all()[0])

    # 5.2 Storage page: probe the device for SRs with metadata; tick those that have it.
    probe = sb.xenapi.SR.probe(coordinator, {"path": str(copy)}, "file", {"metadata": "true"})
    found = re.findall(r"<UUID>(.*?)</UUID>.*?<pool_metadata_detected>(\w+)</pool_metadata_detected>", probe, re.S)
    ticked = [uuid for uuid, metadata in found if metadata == "true"]
    assert ticked == [sa.xenapi.SR.get_uuid(sr)]
    task_xml = wait_task(sb, sb.xenapi.Async.DR_task.create("file", {"path": str(copy)}, ticked))
    dr_task = re.sub(r"</?value>", "", task_xml)
    introduced = sb.xenapi.DR_task.get_introduced_SRs(dr_task)

    # GetMetadataVDIsAction, then VdiLoadMetadataAction per VDI.
    vdis = [
        vdi
        for uuid in ticked
        for vdi in sb.xenapi.SR.get_VDIs(sb.xenapi.SR.get_by_uuid(uuid))
        if sb.xenapi.VDI.get_type(vdi) == "metadata" and sb.xenapi.VDI.get_metadata_latest(vdi)
        and not any(sb.xenapi.VBD.get_currently_attached(v) for v in sb.xenapi.VDI.get_VBDs(vdi))
    ]  # fmt: skip
    assert len(vdis) == 1
    db = sb.xenapi.VDI.open_database(vdis[0])
    pools = value(sb.pool.get_all_records(db))
    assert [p["name_label"] for p in pools.values()] == ["Site A"]
    appliances = value(sb.VM_appliance.get_all_records(db))
    vms = {
        ref: r
        for ref, r in value(sb.VM.get_all_records(db)).items()
        if not (r["is_a_snapshot"] or r["is_a_template"] or r["is_control_domain"])
    }
    value(sb.session.logout(db))
    standalone = [ref for ref, r in vms.items() if r["appliance"] not in appliances]
    assert len(appliances) == 1 and len(standalone) == 1

    # 5.3 Pre-checks: no VM of the same uuid in the target; storage available.
    db = sb.xenapi.VDI.open_database(vdis[0])
    for r in vms.values():
        assert sb.VM.get_by_uuid(sb.handle, r["uuid"])["ErrorDescription"][0] == "UUID_INVALID"
    for ref in appliances:
        value(sb.VM_appliance.assert_can_be_recovered(db, ref, sb.handle))
    for ref in standalone:
        value(sb.VM.assert_can_be_recovered(db, ref, sb.handle))
    value(sb.session.logout(db))

    # 5.4 Recovery: per VDI, Async recover of each vApp then each standalone VM, force=true.
    db = sb.xenapi.VDI.open_database(vdis[0])
    for ref in appliances:
        wait_task(sb, value(sb.Async.VM_appliance.recover(db, ref, sb.handle, True)))
    for ref in standalone:
        wait_task(sb, value(sb.Async.VM.recover(db, ref, sb.handle, True)))
    value(sb.session.logout(db))
    recovered_vms = [sb.xenapi.VM.get_by_uuid(r["uuid"]) for r in vms.values()]
    recovered_apps = [sb.xenapi.VM_appliance.get_by_uuid(r["uuid"]) for r in appliances.values()]
    # Test failover: start paused, standalone VMs one by one, then vApps.
    for uuid in (vms[ref]["uuid"] for ref in standalone):
        sb.xenapi.VM.start(sb.xenapi.VM.get_by_uuid(uuid), True, False)
    for app_b in recovered_apps:
        sb.xenapi.VM_appliance.start(app_b, True)
    assert {sb.xenapi.VM.get_power_state(vm) for vm in recovered_vms} == {"Paused"}

    # 5.6 Final cleanup: DR task; test failover: VMs, vApps, then the introduced SRs.
    sb.xenapi.DR_task.destroy(dr_task)
    for vm in recovered_vms:
        if sb.xenapi.VM.get_power_state(vm) in ("Running", "Paused", "Suspended"):
            sb.xenapi.VM.hard_shutdown(vm)
        for vbd in sb.xenapi.VM.get_VBDs(vm):
            sb.xenapi.VBD.destroy(vbd)
        for vif in sb.xenapi.VM.get_VIFs(vm):
            sb.xenapi.VIF.destroy(vif)
        sb.xenapi.VM.destroy(vm)
    for app_b in recovered_apps:
        sb.xenapi.VM_appliance.destroy(app_b)
    for sr_b in introduced:
        if sr_b in sb.xenapi.SR.get_all():
            for pbd in sb.xenapi.SR.get_PBDs(sr_b):
                sb.xenapi.PBD.unplug(pbd)
            sb.xenapi.SR.forget(sr_b)

    assert state_of(sb) == before
    assert checksums(copy) == before_images
