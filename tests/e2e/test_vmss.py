"""Snapshot schedules run by a real pool server on a fake clock (FARSIDE_VMSS_CLOCK)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import XenAPI

from farside.model.roles import Role

from pools import PoolServer, make_pool
from vms import bootable_vm, make_sr


def at(clock: Path, moment: str) -> None:
    clock.write_text(str(datetime.strptime(moment, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()))


def wait_for(what: str, check: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"not seen in {timeout} s: {what}"
        time.sleep(0.1)


def names(s: XenAPI.Session) -> list[str]:
    return [m["name"] for m in s.xenapi.message.get_all_records().values() if m["cls"] == "VMSS"]


def test_schedule_runs_prunes_and_catches_up(tmp_path: Path) -> None:
    """Hourly at :00 keeping 2: each hour a snapshot, the oldest beyond 2 deleted with its disks,
    last_run_time set, a message each run; a run missed while the server was down runs once."""
    clock = tmp_path / "clock"
    at(clock, "2026-01-01 10:05:00")
    make_pool(tmp_path / "pool")
    env = {"FARSIDE_VMSS_CLOCK": str(clock), "FARSIDE_VMSS_INTERVAL": "0.2"}
    server = PoolServer(tmp_path / "pool", env=env)
    server.add_user("power", Role.VM_POWER_ADMIN)
    server.start()
    try:
        s = server.session()
        sr = make_sr(s, tmp_path / "lun")
        vm = bootable_vm(server, s, sr, "scheduled")
        vmss = s.xenapi.VMSS.create(
            {"name_label": "hourly", "type": "snapshot", "frequency": "hourly", "schedule": {"min": "0"},
             "retained_snapshots": "2", "enabled": True}
        )  # fmt: skip
        # Schedules are pool-operator business (xapi's roles): a vm-power-admin is refused.
        power = server.session("power", "pw")
        for call in (lambda: power.xenapi.VM.set_snapshot_schedule(vm, vmss),
                     lambda: power.xenapi.VMSS.snapshot_now(vmss),
                     lambda: power.xenapi.VMSS.create({"name_label": "x", "type": "snapshot", "frequency": "hourly",
                                                       "schedule": {"min": "0"}})):  # fmt: skip
            with pytest.raises(XenAPI.Failure) as exc:
                call()
            assert exc.value.details[0] == "RBAC_PERMISSION_DENIED"
        assert s.xenapi.VM.get_snapshots(vm) == [] and len(s.xenapi.VMSS.get_all()) == 1
        s.xenapi.VM.set_snapshot_schedule(vm, vmss)
        assert s.xenapi.VMSS.get_VMs(vmss) == [vm]
        time.sleep(1)
        assert s.xenapi.VM.get_snapshots(vm) == []  # not due before 11:00
        disks = len(s.xenapi.VDI.get_all())
        for run, hour in enumerate(("11", "12", "13"), start=1):
            at(clock, f"2026-01-01 {hour}:00:30")
            wait_for(f"run at {hour}:00", lambda h=hour: s.xenapi.VMSS.get_last_run_time(vmss).value.startswith(
                f"20260101T{h}:00"))  # fmt: skip
            wait_for("the message", lambda n=run: names(s).count("VMSS_SNAPSHOT_SUCCEEDED") == n)
        snaps = s.xenapi.VM.get_snapshots(vm)
        assert len(snaps) == 2 and all(s.xenapi.VM.get_is_vmss_snapshot(x) for x in snaps)
        assert sorted(s.xenapi.VM.get_name_label(x) for x in snaps) == [
            "scheduled-20260101T12:00:30Z", "scheduled-20260101T13:00:30Z"]  # fmt: skip
        assert len(s.xenapi.VDI.get_all()) == disks + 2  # the pruned snapshot's disk went with it

        server.stop()
        at(clock, "2026-01-01 16:20:00")  # 14:00, 15:00 and 16:00 pass while it is down
        server.start()
        s = server.session()
        wait_for("the catch-up run", lambda: "VMSS_SNAPSHOT_MISSED_EVENT" in names(s))
        wait_for("its snapshot", lambda: names(s).count("VMSS_SNAPSHOT_SUCCEEDED") == 4)
        time.sleep(1)
        assert names(s).count("VMSS_SNAPSHOT_SUCCEEDED") == 4  # one run for three missed hours
        assert len(s.xenapi.VM.get_snapshots(vm)) == 2

        assert s.xenapi.VMSS.snapshot_now(vmss)
        wait_for("snapshot_now's message", lambda: names(s).count("VMSS_SNAPSHOT_SUCCEEDED") == 5)

        for bad, details in (
            (lambda: s.xenapi.VMSS.destroy(vmss), ["VMSS_HAS_VM"]),
            (lambda: s.xenapi.VMSS.set_retained_snapshots(vmss, "11"), ["INVALID_VALUE", "retained_snapshots", "11"]),
            (lambda: s.xenapi.VMSS.add_to_schedule(vmss, "hour", "3"), ["INVALID_VALUE", "schedule:hour", "3"]),
            (lambda: s.xenapi.VMSS.set_schedule(vmss, {"min": "7"}), ["INVALID_VALUE", "schedule:min", "7"]),
        ):
            with pytest.raises(XenAPI.Failure) as exc:
                bad()
            assert exc.value.details == details
        s.xenapi.VMSS.set_frequency(vmss, "weekly")
        assert s.xenapi.VMSS.get_schedule(vmss) == {"min": "0", "hour": "0", "days": "monday"}

        template = bootable_vm(server, s, sr, "template")
        s.xenapi.VM.set_is_a_template(template, True)
        with pytest.raises(XenAPI.Failure) as exc:
            s.xenapi.VM.set_snapshot_schedule(template, vmss)
        assert exc.value.details == ["VM_IS_TEMPLATE", template]
        s.xenapi.VM.set_snapshot_schedule(vm, "OpaqueRef:NULL")
        s.xenapi.VMSS.destroy(vmss)
    finally:
        server.stop()
