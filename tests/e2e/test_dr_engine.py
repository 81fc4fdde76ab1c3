"""The DR engine run through DR_run on two real sites: a failover that boots VMs, and a test
failover that leaves the DR site and the replica exactly as they were."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from pathlib import Path

import pytest
import XenAPI

from farside.db import Database
from farside.model.vm_rules import MAX_DELAY_S

from pools import PoolServer, kill_qemus
from vms import shop_site, wait_serial


def run(s: XenAPI.Session, kind: str, options: dict[str, str]) -> str:
    ref = s.xenapi.DR_run.create(kind, options)
    task = s.xenapi.Async.DR_run.start(ref)
    while s.xenapi.task.get_status(task) == "pending":
        time.sleep(0.1)
    assert s.xenapi.task.get_status(task) == "success", s.xenapi.task.get_error_info(task)
    return str(ref)


def checksums(lun: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(lun.glob("*.*")) if p.is_file()}


def test_failover_boots_the_vms_and_protects_the_site(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """A is lost; a failover run on B attaches the copy, recovers, boots every VM and replicates B's metadata."""
    a, b = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    a.stop()
    kill_qemus(a.data_dir / "run")
    sb = b.session()
    ref = run(sb, "failover", {"luns": str(tmp_path / "copy"), "confirm_split": "true", "declare_site_down": "Site A"})
    record = sb.xenapi.DR_run.get_record(ref)
    assert record["state"] == "done"
    steps = json.loads(record["steps"])
    assert all(steps[name]["state"] == "done" for name in ("discover", "attach", "recover", "start", "protect"))
    for uuid, tag in tags.items():
        vm = sb.xenapi.VM.get_by_uuid(uuid)
        assert sb.xenapi.VM.get_power_state(vm) == "Running"
        wait_serial(b, sb, vm, f"BOOT {tag}".encode())
    assert steps["start"]["data"]["vms"][next(u for u, t in tags.items() if t == "lone")]["ready_seconds"] > 0
    report = record["report"]
    assert "Failover (succeeded)" in report and "Site A" in report and "vApp shop" in report
    assert re.search(r"recover - Succeeded", report)
    # Protected: B's own metadata now replicates onto the recovered SR.
    pool_b = sb.xenapi.pool.get_all()[0]
    assert len(sb.xenapi.pool.get_metadata_VDIs(pool_b)) == 1
    # DR tasks are gone; the SR the VMs use stays.
    assert sb.xenapi.DR_task.get_all() == []


def test_test_failover_leaves_everything_as_it_was(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """A test failover recovers paused, then cleanup leaves B as before and the replica byte-identical."""
    a, b = two_pools
    sa, tags = shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    before = checksums(tmp_path / "copy")
    sb = b.session()
    inventory = {cls: set(getattr(sb.xenapi, cls).get_all()) for cls in ("VM", "SR", "VDI", "network", "PBD")}
    ref = run(sb, "test", {"luns": str(tmp_path / "copy")})
    for uuid in tags:
        assert sb.xenapi.VM.get_power_state(sb.xenapi.VM.get_by_uuid(uuid)) == "Paused"
    assert "Site A" in sb.xenapi.DR_run.get_report(ref)
    sb.xenapi.DR_run.cleanup(ref)
    assert sb.xenapi.DR_run.get_state(ref) == "cleaned up"
    assert {cls: set(getattr(sb.xenapi, cls).get_all()) for cls in inventory} == inventory
    assert checksums(tmp_path / "copy") == before
    # A never noticed: its VMs are where they were.
    assert {sa.xenapi.VM.get_uuid(vm) for vm in sa.xenapi.VM.get_all()} >= set(tags)


def test_bad_runs_are_refused(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """Options are checked at create; a failover of an unmanaged LUN needs the split confirmed."""
    a, b = two_pools
    shop_site(a, tmp_path / "lun")
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    sb = b.session()
    for kind, options in (("fly", {"luns": "/x"}), ("failover", {}), ("test", {"luns": "/x", "power": "start"})):
        with pytest.raises(XenAPI.Failure) as info:
            sb.xenapi.DR_run.create(kind, options)
        assert info.value.details[0] == "INVALID_VALUE"
    ref = sb.xenapi.DR_run.create("failover", {"luns": str(tmp_path / "copy"), "declare_site_down": "Site A"})
    with pytest.raises(XenAPI.Failure) as info:
        sb.xenapi.DR_run.start(ref)
    assert info.value.details[0] == "DR_RUN_FAILED" and "confirm_split" in info.value.details[2]
    assert sb.xenapi.DR_run.get_state(ref) == "failed"
    assert "precheck - Failed" in sb.xenapi.DR_run.get_report(ref)
    sb.xenapi.DR_run.cleanup(ref)
    assert all(r["is_control_domain"] or r["is_default_template"] for r in sb.xenapi.VM.get_all_records().values())


def test_a_directory_of_luns_is_searched(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """Given the directory holding the LUN copies, the run finds each LUN below it; the task shows progress."""
    a, b = two_pools
    _, tags = shop_site(a, tmp_path / "lun")
    (tmp_path / "site-b-luns").mkdir()
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "site-b-luns" / "lun0")], check=True)
    sb = b.session()
    ref = sb.xenapi.DR_run.create("test", {"luns": str(tmp_path / "site-b-luns"), "power": "none"})
    task = sb.xenapi.Async.DR_run.start(ref)
    while sb.xenapi.task.get_status(task) == "pending":
        time.sleep(0.1)
    assert sb.xenapi.task.get_status(task) == "success", sb.xenapi.task.get_error_info(task)
    assert sb.xenapi.task.get_progress(task) == 1.0
    steps = json.loads(sb.xenapi.DR_run.get_steps(ref))
    assert [s["path"] for s in steps["discover"]["data"]["srs"]] == [str(tmp_path / "site-b-luns" / "lun0")]
    assert {sb.xenapi.VM.get_uuid(vm) for vm in sb.xenapi.VM.get_all()} >= set(tags)
    sb.xenapi.DR_run.cleanup(ref)
    assert sb.xenapi.SR.get_all() == []  # site B had no SR before the test


def test_vms_still_running_at_the_source_stop_a_failover(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    """Given the source pool, a failover of VMs that still run there is refused; given only its address, warned."""
    from farside.dr.context import RunFailed
    from farside.dr.runner import Engine
    from farside.dr.session import XmlRpcSession

    from pools import ADMIN_PASSWORD

    a, b = two_pools
    sa, tags = shop_site(a, tmp_path / "lun")
    lone = sa.xenapi.VM.get_by_uuid(next(u for u, t in tags.items() if t == "lone"))
    sa.xenapi.VM.start(lone, False, False)
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    sb = b.session()
    run_ref = sb.xenapi.DR_run.create(
        "failover", {"luns": str(tmp_path / "copy"), "confirm_split": "true", "select": "lone", "power": "none"}
    )
    engine = Engine(
        XmlRpcSession(b.url, "root", ADMIN_PASSWORD), run_ref, source=XmlRpcSession(a.url, "root", ADMIN_PASSWORD)
    )
    with pytest.raises(RunFailed, match="still Running in the source pool"):
        engine.run()
    sb.xenapi.DR_run.cleanup(run_ref)  # the refused run lets go of the SR it attached
    warned = run(sb, "test", {"luns": str(tmp_path / "copy"), "power": "none", "source_url": a.url})
    assert "the source pool answers" in sb.xenapi.DR_run.get_report(warned)
    sb.xenapi.DR_run.cleanup(warned)


def test_test_failover_keeps_suspend_images(two_pools: tuple[PoolServer, PoolServer], tmp_path: Path) -> None:
    """A VM suspended at the source is recovered suspended; the test's cleanup leaves its memory image."""
    a, b = two_pools
    sa, tags = shop_site(a, tmp_path / "lun")
    lone = sa.xenapi.VM.get_by_uuid(next(u for u, t in tags.items() if t == "lone"))
    sa.xenapi.VM.start(lone, False, False)
    sa.xenapi.VM.suspend(lone)
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    before = checksums(tmp_path / "copy")
    sb = b.session()
    ref = run(sb, "test", {"luns": str(tmp_path / "copy"), "power": "none"})
    assert sb.xenapi.VM.get_power_state(sb.xenapi.VM.get_by_uuid(sa.xenapi.VM.get_uuid(lone))) == "Suspended"
    sb.xenapi.DR_run.cleanup(ref)
    assert sb.xenapi.DR_run.get_state(ref) == "cleaned up"
    assert checksums(tmp_path / "copy") == before


def test_huge_delays_from_foreign_metadata_are_clamped(
    two_pools: tuple[PoolServer, PoolServer], tmp_path: Path
) -> None:
    """Issue 14, 4: a source pool's start_delay came into DR as it was (10**6 s held the start for
    days). The API bounds delays now, but metadata from a pool without that bound (an older or a
    hand-edited one) can still carry such values: a run clamps them to the bound, and says so."""
    a, b = two_pools
    sa, tags = shop_site(a, tmp_path / "lun")
    lone = sa.xenapi.VM.get_by_uuid(next(u for u, t in tags.items() if t == "lone"))
    # Written into the source's database behind its API, as a pool without the bound would hold them.
    a.stop()
    db = Database.open(a.data_dir / "pool.db")
    try:
        with db.write() as tx:
            tx.set_fields("VM", lone, {"start_delay": 10**6, "shutdown_delay": 7200})
    finally:
        db.close()
    a.start()
    sa = a.session()
    sa.xenapi.VM.set_name_description(lone, "delays from an older pool")  # a commit the replicator writes
    assert sa.xenapi.VM.get_start_delay(lone) == "1000000"
    subprocess.run(["cp", "-a", str(tmp_path / "lun"), str(tmp_path / "copy")], check=True)
    sb = b.session()
    options = {"luns": str(tmp_path / "copy"), "confirm_split": "true", "select": "lone", "power": "none",
               "declare_site_down": "Site A"}  # fmt: skip
    ref = run(sb, "failover", options)
    here = sb.xenapi.VM.get_by_uuid(sa.xenapi.VM.get_uuid(lone))
    assert (sb.xenapi.VM.get_start_delay(here), sb.xenapi.VM.get_shutdown_delay(here)) == (
        str(MAX_DELAY_S),
        str(MAX_DELAY_S),
    )
    report = sb.xenapi.DR_run.get_report(ref)
    assert f"lone: start_delay 1000000 s clamped to {MAX_DELAY_S} s" in report
    assert "lone: shutdown_delay 7200 s clamped" in report
