"""XenAPI's disaster-recovery calls between two real sites: DR tasks, VM and vApp recovery, real boots."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from farside.model.roles import Role

from pools import PoolServer, kill_qemus
from vms import bootable_vm, make_sr, wait_serial


def value(result: dict[str, Any]) -> Any:
    assert result["Status"] == "Success", result
    return result["Value"]


def failure(result: dict[str, Any]) -> list[str]:
    assert result["Status"] == "Failure", result
    return list(result["ErrorDescription"])


def test_failover_with_xenapi_calls(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """A's VMs, replicated and copied, are recovered on B with DR calls and boot there from the copies."""
    a, b = two_pools
    sa, sb = a.session(), b.session()
    lun = tmp_path / "lun-a"
    sr = make_sr(sa, lun)
    sr_uuid = sa.xenapi.SR.get_uuid(sr)
    sa.xenapi.SR.enable_database_replication(sr)
    app = sa.xenapi.VM_appliance.create({"name_label": "shop", "name_description": "front and back"})
    members = [bootable_vm(a, sa, sr, tag) for tag in ("shop-db", "shop-web")]
    for order, vm in enumerate(members):
        sa.xenapi.VM.set_appliance(vm, app)
        sa.xenapi.VM.set_order(vm, order)
    lone = bootable_vm(a, sa, sr, "lone")
    uuids = {sa.xenapi.VM.get_uuid(vm): vm for vm in [*members, lone]}
    tags = {sa.xenapi.VM.get_uuid(vm): sa.xenapi.VM.get_name_label(vm) for vm in [*members, lone]}
    lone_uuid, first_member_uuid = sa.xenapi.VM.get_uuid(lone), sa.xenapi.VM.get_uuid(members[0])
    sa.xenapi.VM_appliance.start(app, False)
    # The mirror: a byte copy of the LUN; then site A is lost.
    copy = tmp_path / "lun-b"
    subprocess.run(["cp", "-a", str(lun), str(copy)], check=True)
    a.stop()
    assert kill_qemus(a.data_dir / "run") == []

    # Before the SR is attached, recovery is refused naming the SR it needs.
    task = sb.xenapi.DR_task.create("file", {"path": str(copy)}, [])
    assert sb.xenapi.DR_task.get_introduced_SRs(task) == []
    sb.xenapi.DR_task.destroy(task)
    task = sb.xenapi.DR_task.create("file", {"path": str(copy)}, [sr_uuid])
    [sr_b] = sb.xenapi.DR_task.get_introduced_SRs(task)
    assert sb.xenapi.SR.get_uuid(sr_b) == sr_uuid and sb.xenapi.SR.get_introduced_by(sr_b) == task
    [vdi] = [v for v in sb.xenapi.SR.get_VDIs(sr_b) if sb.xenapi.VDI.get_type(v) == "metadata"]
    assert sb.xenapi.VDI.get_metadata_latest(vdi)

    db = sb.xenapi.VDI.open_database(vdi)
    foreign_vms = value(sb.VM.get_all_records(db))
    by_uuid = {r["uuid"]: ref for ref, r in foreign_vms.items()}
    [foreign_app] = value(sb.VM_appliance.get_all(db))
    lone_ref, member_ref = by_uuid[lone_uuid], by_uuid[first_member_uuid]
    assert failure(sb.VM.recover(db, member_ref, sb.handle, False))[:1] == ["VM_IS_PART_OF_AN_APPLIANCE"]
    b.add_user("viewer", Role.READ_ONLY)
    weak = b.session("viewer", "pw")
    assert failure(sb.VM.recover(db, lone_ref, weak.handle, False))[0] == "RBAC_PERMISSION_DENIED"
    assert value(sb.VM.get_SRs_required_for_recovery(db, lone_ref, sb.handle)) == []
    value(sb.VM_appliance.assert_can_be_recovered(db, foreign_app, sb.handle))
    value(sb.VM_appliance.recover(db, foreign_app, sb.handle, False))
    value(sb.VM.recover(db, lone_ref, sb.handle, False))
    # Recovering the same VM again: the copy in B is not older, so force is needed.
    again = failure(sb.VM.recover(db, lone_ref, sb.handle, False))
    assert again[0] == "VM_TO_IMPORT_IS_NOT_NEWER_VERSION"
    sb.session.logout(db)

    recovered = {sb.xenapi.VM.get_uuid(vm): vm for vm in sb.xenapi.VM.get_all() if sb.xenapi.VM.get_uuid(vm) in uuids}
    assert set(recovered) == set(uuids)
    for uuid, vm in recovered.items():
        record = sb.xenapi.VM.get_record(vm)
        assert record["version"] == "1" and record["power_state"] == "Halted"
        source = uuids[uuid]
        assert len(record["VBDs"]) == 1 and len(record["VIFs"]) == 1
        assert sb.xenapi.VIF.get_MAC(record["VIFs"][0]) == sa_mac(a, source)
    [app_b] = sb.xenapi.VM_appliance.get_all()
    assert sb.xenapi.VM_appliance.get_uuid(app_b) == sa_app_uuid(a, app)
    assert sb.xenapi.SR.get_introduced_by(sr_b) == "OpaqueRef:NULL"
    sb.xenapi.DR_task.destroy(task)
    assert sr_b in sb.xenapi.SR.get_all(), "an SR the recovered VMs use must stay"

    sb.xenapi.VM_appliance.start(app_b, False)
    sb.xenapi.VM.start(recovered[lone_uuid], False, False)
    for uuid, vm in recovered.items():
        wait_serial(b, sb, vm, f"BOOT {tags[uuid]}".encode())


def sa_mac(a: PoolServer, vm: str) -> str:
    """The MAC a VM had at site A, read from A's database file (A's server is gone)."""
    return str(_site_a(a)["VIF"][vm])


def sa_app_uuid(a: PoolServer, app: str) -> str:
    return str(_site_a(a)["VM_appliance"][app])


def _site_a(a: PoolServer) -> dict[str, dict[str, str]]:
    from farside.db import Database

    db = Database.open(a.data_dir / "pool.db")
    try:
        with db.read() as tx:
            macs = {r["VM"]: r["MAC"] for r in tx.get_records("VIF").values()}
            apps = {ref: r["uuid"] for ref, r in tx.get_records("VM_appliance").items()}
    finally:
        db.close()
    return {"VIF": macs, "VM_appliance": apps}


def test_failed_dr_task_leaves_nothing(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """A DR task whose SR cannot be plugged (the LUN is leased live by A) leaves no task and no SR."""
    a, b = two_pools
    sa, sb = a.session(), b.session()
    lun = tmp_path / "lun"
    sr = make_sr(sa, lun)
    srs, tasks = set(sb.xenapi.SR.get_all()), sb.xenapi.DR_task.get_all()
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_task.create("file", {"path": str(lun)}, [sa.xenapi.SR.get_uuid(sr)])
    assert info.value.details[0] == "LUN_LEASED_BY_OTHER_POOL"
    assert set(sb.xenapi.SR.get_all()) == srs and sb.xenapi.DR_task.get_all() == tasks
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_task.create("nfs", {"path": str(lun)}, [])
    assert info.value.details == ["OPERATION_NOT_ALLOWED", "Disaster recovery not supported on SRs of type nfs"]
