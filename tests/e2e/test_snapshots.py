"""VM snapshots, checkpoints and reverts on a real pool server with real QEMU guests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from farside.model.roles import Role
from farside.storage.bootable import read_counter

from pools import PoolServer, make_pool
from vms import bootable_vm, last_tick, make_sr, serial, wait_serial, wait_state


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PoolServer, XenAPI.Session, str, Path]]:
    base = tmp_path_factory.mktemp("snapshots")
    make_pool(base / "pool")
    server = PoolServer(base / "pool").start()
    server.add_user("viewer", Role.READ_ONLY)
    server.add_user("admin", Role.VM_ADMIN)
    try:
        s = server.session()
        lun = base / "lun"
        yield server, s, make_sr(s, lun), lun
    finally:
        server.stop()


def image(s: XenAPI.Session, lun: Path, vm: str) -> Path:
    """The image of the VM's first disk."""
    vbd = s.xenapi.VM.get_VBDs(vm)[0]
    return lun / s.xenapi.VDI.get_location(s.xenapi.VBD.get_VDI(vbd))


def wait_counter(path: Path, at_least: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while (count := read_counter(path) or 0) < at_least:
        assert time.monotonic() < deadline, f"the guest's disk counter is {count}, not {at_least}"
        time.sleep(0.05)
    return count


def test_snapshot_of_running_vm_and_revert(site: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """A running guest's disk is copied through QEMU while it runs; a revert brings back exactly
    the counter the snapshot holds, with the VM's uuid kept and new VDI uuids."""
    server, s, sr, lun = site
    vm = bootable_vm(server, s, sr, "counting", counter=True)
    uuid = s.xenapi.VM.get_uuid(vm)
    s.xenapi.VM.start(vm, False, False)
    before = wait_counter(image(s, lun, vm), 3)
    snap = s.xenapi.VM.snapshot(vm, "live", [])
    after = read_counter(image(s, lun, vm)) or 0
    assert s.xenapi.VM.get_power_state(vm) == "Running"
    record = s.xenapi.VM.get_record(snap)
    assert record["is_a_snapshot"] and record["snapshot_of"] == vm and record["power_state"] == "Halted"
    info = record["snapshot_info"]
    assert info["power-state-at-snapshot"] == "Running" and info["disk-snapshot-type"] == "crash_consistent"
    assert float(info["farside-disk-io-held-ms"]) >= 0
    assert record["allowed_operations"] and "start" not in record["allowed_operations"]
    assert s.xenapi.VM.get_snapshots(vm) == [snap] and s.xenapi.VM.get_parent(vm) == snap
    snap_disk = image(s, lun, snap)
    taken = read_counter(snap_disk)
    assert taken is not None and before <= taken <= after + 1
    snap_vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(snap)[0])
    assert s.xenapi.VDI.get_is_a_snapshot(snap_vdi)
    wait_counter(image(s, lun, vm), taken + 3)  # the guest ran on
    # VDI.snapshot of the running disk goes through QEMU too.
    low = read_counter(image(s, lun, vm)) or 0
    disk_snap = s.xenapi.VDI.snapshot(s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(vm)[0]), {})
    high = read_counter(image(s, lun, vm)) or 0
    assert s.xenapi.VDI.get_is_a_snapshot(disk_snap)
    assert low <= (read_counter(lun / s.xenapi.VDI.get_location(disk_snap)) or -1) <= high + 1
    s.xenapi.VDI.destroy(disk_snap)
    old_vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(vm)[0])
    s.xenapi.VM.revert(snap)
    assert s.xenapi.VM.get_power_state(vm) == "Halted" and s.xenapi.VM.get_uuid(vm) == uuid
    new_vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(vm)[0])
    assert new_vdi != old_vdi and new_vdi != snap_vdi
    assert read_counter(image(s, lun, vm)) == taken
    assert read_counter(snap_disk) == taken  # the snapshot itself is untouched

    with pytest.raises(XenAPI.Failure) as exc:
        s.xenapi.VM.start(snap, False, False)
    assert exc.value.details == ["VM_IS_SNAPSHOT", snap, "start"]
    with pytest.raises(XenAPI.Failure) as exc:
        s.xenapi.VM.revert(vm)
    assert exc.value.details[0] == "ONLY_REVERT_SNAPSHOT"
    with pytest.raises(XenAPI.Failure) as exc:
        s.xenapi.VM.snapshot(snap, "of a snapshot", [])
    assert exc.value.details == ["VM_IS_SNAPSHOT", snap, "snapshot"]


def test_checkpoint_and_revert_resume_the_guest(site: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """A checkpoint keeps the guest's memory; the VM runs on; after a revert (Suspended, as in xapi)
    a resume continues the guest from the checkpoint's count."""
    server, s, sr, _ = site
    vm = bootable_vm(server, s, sr, "memory")
    s.xenapi.VM.start(vm, False, False)
    wait_serial(server, s, vm, b"TICK 3")
    snap = s.xenapi.VM.checkpoint(vm, "with memory")
    at_checkpoint = last_tick(serial(server, s, vm))
    assert s.xenapi.VM.get_power_state(vm) == "Running"
    assert s.xenapi.VM.get_power_state(snap) == "Suspended"
    assert s.xenapi.VM.get_suspend_VDI(snap) != "OpaqueRef:NULL"
    assert s.xenapi.VM.get_suspend_VDI(vm) == "OpaqueRef:NULL"  # the image passed to the checkpoint
    wait_serial(server, s, vm, f"TICK {at_checkpoint + 15}".encode(), timeout=30)  # it runs on
    s.xenapi.VM.revert(snap)
    assert s.xenapi.VM.get_power_state(vm) == "Suspended"
    seen = len(serial(server, s, vm))
    s.xenapi.VM.resume(vm, False, False)
    wait_state(s, vm, "Running")
    deadline = time.monotonic() + 20
    while last_tick(serial(server, s, vm)[seen:]) == 0:
        assert time.monotonic() < deadline, "the resumed guest prints no tick"
        time.sleep(0.05)
    resumed = last_tick(serial(server, s, vm)[seen:])
    assert at_checkpoint - 2 <= resumed < at_checkpoint + 12
    s.xenapi.VM.hard_shutdown(vm)
    # A checkpoint's memory image goes with it.
    memory = s.xenapi.VM.get_suspend_VDI(snap)
    s.xenapi.VM.destroy(snap)
    assert memory not in s.xenapi.VDI.get_all()


def test_revert_rebuilds_a_destroyed_vm(site: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """A halted VM's snapshot is a file copy; reverting after the VM was destroyed rebuilds it
    with its uuid."""
    server, s, sr, _ = site
    vm = bootable_vm(server, s, sr, "gone")
    uuid = s.xenapi.VM.get_uuid(vm)
    snap = s.xenapi.VM.snapshot(vm, "before", [])
    s.xenapi.VM.destroy(vm)
    s.xenapi.VM.revert(snap)
    rebuilt = s.xenapi.VM.get_by_uuid(uuid)
    assert s.xenapi.VM.get_snapshot_of(snap) == rebuilt
    assert s.xenapi.VM.get_name_label(rebuilt) == "gone" and len(s.xenapi.VM.get_VBDs(rebuilt)) == 1
    s.xenapi.VM.start(rebuilt, False, False)
    wait_serial(server, s, rebuilt, b"BOOT gone")
    s.xenapi.VM.hard_shutdown(rebuilt)


def test_roles(site: tuple[PoolServer, XenAPI.Session, str, Path]) -> None:
    """Snapshots need vm-power-admin (as xapi): read-only and vm-admin are refused, nothing made."""
    server, s, sr, _ = site
    vm = bootable_vm(server, s, sr, "guarded")
    count = len(s.xenapi.VM.get_all())
    for user in ("viewer", "admin"):
        other = server.session(user, "pw")
        calls = (lambda o=other: o.xenapi.VM.snapshot(vm, "x", []), lambda o=other: o.xenapi.VM.checkpoint(vm, "x"))
        for call in calls:
            with pytest.raises(XenAPI.Failure) as exc:
                call()
            assert exc.value.details[0] == "RBAC_PERMISSION_DENIED"
    assert len(s.xenapi.VM.get_all()) == count
