"""Real VMs through the SDK: QEMU boots disks from file SRs; power operations and vApps."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import XenAPI

from pools import PoolServer
from vms import bootable_vm, last_tick, make_sr, qemu_pids, serial, wait_serial, wait_state


@pytest.fixture
def pool(server: PoolServer, tmp_path: Path) -> tuple[PoolServer, XenAPI.Session, str]:
    s = server.session()
    return server, s, make_sr(s, tmp_path / "lun")


class TestLifecycle:
    def test_boot_and_clean_shutdown(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """A VM boots from its imported disk (its tag on the console) and powers off through ACPI."""
        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "alpha")
        s.xenapi.VM.start(vm, False, False)
        record = s.xenapi.VM.get_record(vm)
        assert record["power_state"] == "Running" and int(record["domid"]) > 0
        assert record["resident_on"] == s.xenapi.host.get_all()[0]
        assert "clean_shutdown" in record["allowed_operations"] and "start" not in record["allowed_operations"]
        assert int(s.xenapi.VM_metrics.get_VCPUs_number(record["metrics"])) == 1
        wait_serial(server, s, vm, b"BOOT alpha")
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.start(vm, False, False)
        assert info.value.details == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
        s.xenapi.VM.clean_shutdown(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Halted"
        assert int(s.xenapi.VM.get_domid(vm)) == -1 and "start" in s.xenapi.VM.get_allowed_operations(vm)
        assert int(s.xenapi.VM_metrics.get_VCPUs_number(record["metrics"])) == 0
        assert b"POWEROFF" in serial(server, s, vm)
        assert qemu_pids(server) == []

    def test_pause_and_unpause(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """A paused guest stops ticking and carries on after unpause."""
        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "beta")
        s.xenapi.VM.start(vm, False, False)
        wait_serial(server, s, vm, b"TICK 3")
        s.xenapi.VM.pause(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Paused"
        frozen = last_tick(serial(server, s, vm))
        time.sleep(0.6)
        assert last_tick(serial(server, s, vm)) <= frozen + 1
        s.xenapi.VM.unpause(vm)
        wait_serial(server, s, vm, f"TICK {frozen + 3}".encode())
        s.xenapi.VM.hard_shutdown(vm)
        assert qemu_pids(server) == []

    def test_suspend_and_resume(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """Suspend leaves no QEMU and a non-empty suspend VDI; resume continues the tick count."""
        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "gamma")
        s.xenapi.VM.start(vm, False, False)
        wait_serial(server, s, vm, b"TICK 5")
        s.xenapi.VM.suspend(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Suspended"
        assert qemu_pids(server) == []
        suspend_vdi = s.xenapi.VM.get_suspend_VDI(vm)
        assert s.xenapi.VDI.get_type(suspend_vdi) == "suspend"
        assert int(s.xenapi.VDI.get_virtual_size(suspend_vdi)) > 0
        before = last_tick(serial(server, s, vm))
        s.xenapi.VM.resume(vm, False, False)
        assert s.xenapi.VM.get_power_state(vm) == "Running"
        wait_serial(server, s, vm, f"TICK {before + 2}".encode())
        after = serial(server, s, vm)
        assert after.count(b"BOOT gamma") == 1, "the guest rebooted instead of resuming"
        assert suspend_vdi not in s.xenapi.VDI.get_all()
        s.xenapi.VM.hard_shutdown(vm)

    def test_start_paused_and_hard_reboot(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """start_paused leaves the guest paused; hard_reboot boots it again."""
        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "delta")
        s.xenapi.VM.start(vm, True, False)
        assert s.xenapi.VM.get_power_state(vm) == "Paused"
        time.sleep(0.3)
        assert b"BOOT delta" not in serial(server, s, vm)
        s.xenapi.VM.unpause(vm)
        wait_serial(server, s, vm, b"BOOT delta")
        s.xenapi.VM.hard_reboot(vm)
        deadline = time.monotonic() + 20
        while serial(server, s, vm).count(b"BOOT delta") < 2:
            assert time.monotonic() < deadline, "no second boot after hard_reboot"
            time.sleep(0.05)
        s.xenapi.VM.shutdown(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Halted"

    def test_guest_power_off_is_noticed(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """A guest that stops by itself (QEMU killed) is recorded as Halted."""
        import os
        import signal

        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "epsilon")
        s.xenapi.VM.start(vm, False, False)
        os.kill(int(s.xenapi.VM.get_domid(vm)), signal.SIGKILL)
        wait_state(s, vm, "Halted")
        assert s.xenapi.VM.get_resident_on(vm) == "OpaqueRef:NULL"


class TestStartErrors:
    def test_missing_disk(self, pool: tuple[PoolServer, XenAPI.Session, str], tmp_path: Path) -> None:
        """A VM whose image file is gone fails to start naming the VDI, and leaves no QEMU."""
        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "zeta")
        vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(vm)[0])
        (tmp_path / "lun" / s.xenapi.VDI.get_location(vdi)).unlink()
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.start(vm, False, False)
        assert info.value.details[0] == "VDI_MISSING" and vdi in info.value.details
        assert s.xenapi.VM.get_power_state(vm) == "Halted"
        assert qemu_pids(server) == []

    def test_not_enough_memory(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """A VM bigger than the host's free memory is refused before QEMU starts."""
        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "huge", memory_mib=1 << 20)
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.start(vm, False, False)
        assert info.value.details[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
        assert qemu_pids(server) == []

    def test_disk_in_use(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """A VDI a running VM uses cannot be destroyed, nor used by a second VM."""
        server, s, sr = pool
        vm = bootable_vm(server, s, sr, "eta")
        vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(vm)[0])
        s.xenapi.VM.start(vm, False, False)
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VDI.destroy(vdi)
        assert info.value.details[0] == "VDI_IN_USE"
        other = bootable_vm(server, s, sr, "theta")
        s.xenapi.VBD.destroy(s.xenapi.VM.get_VBDs(other)[0])
        s.xenapi.VBD.create(
            {"VM": other, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW", "type": "Disk",
             "empty": False, "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
        )  # fmt: skip
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.start(other, False, False)
        assert info.value.details[0] == "VDI_IN_USE"
        s.xenapi.VM.hard_shutdown(vm)


class TestAppliance:
    def test_order_groups_and_delays(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """A vApp starts its order groups ascending, waiting out each start_delay, and stops them in reverse."""
        server, s, sr = pool
        app = s.xenapi.VM_appliance.create({"name_label": "tiers", "name_description": ""})
        layout = {"db": (0, 2), "app": (1, 1), "web": (2, 0)}
        vms = {}
        for tag, (order, delay) in layout.items():
            vm = bootable_vm(server, s, sr, tag)
            s.xenapi.VM.set_appliance(vm, app)
            s.xenapi.VM.set_order(vm, order)
            s.xenapi.VM.set_start_delay(vm, delay)
            s.xenapi.VM.set_shutdown_delay(vm, 1)
            vms[tag] = vm
        booted: dict[str, float] = {}
        stop = threading.Event()

        def watch() -> None:
            watcher = server.session()
            while not stop.is_set() and len(booted) < len(vms):
                for tag, vm in vms.items():
                    if tag not in booted and f"BOOT {tag}".encode() in serial(server, watcher, vm):
                        booted[tag] = time.monotonic()
                time.sleep(0.02)

        thread = threading.Thread(target=watch)
        thread.start()
        try:
            s.xenapi.VM_appliance.start(app, False)
        finally:
            time.sleep(1.0)
            stop.set()
            thread.join()
        assert all(s.xenapi.VM.get_power_state(vm) == "Running" for vm in vms.values())
        assert booted["db"] < booted["app"] < booted["web"], booted
        assert booted["app"] - booted["db"] >= 1.8  # db's start_delay of 2 s
        assert booted["web"] - booted["app"] >= 0.8  # app's start_delay of 1 s
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM_appliance.start(app, False)
        assert info.value.details == ["OPERATION_NOT_ALLOWED", "There are no halted VMs in this appliance."]
        halted: dict[str, float] = {}

        def watch_stop() -> None:
            watcher = server.session()
            while len(halted) < len(vms):
                for tag, vm in vms.items():
                    if tag not in halted and watcher.xenapi.VM.get_power_state(vm) == "Halted":
                        halted[tag] = time.monotonic()
                time.sleep(0.02)

        thread = threading.Thread(target=watch_stop)
        thread.start()
        s.xenapi.VM_appliance.clean_shutdown(app)
        thread.join(30)
        assert halted["web"] < halted["app"] < halted["db"], halted
        assert qemu_pids(server) == []

    def test_empty_and_busy_appliance(self, pool: tuple[PoolServer, XenAPI.Session, str]) -> None:
        """An empty vApp cannot start; a vApp with nothing running cannot shut down."""
        server, s, sr = pool
        app = s.xenapi.VM_appliance.create({"name_label": "empty", "name_description": ""})
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM_appliance.start(app, False)
        assert info.value.details == ["OPERATION_NOT_ALLOWED", "Appliance has no VMs."]
        vm = bootable_vm(server, s, sr, "lonely")
        s.xenapi.VM.set_appliance(vm, app)
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM_appliance.hard_shutdown(app)
        assert info.value.details == ["OPERATION_NOT_ALLOWED", "All VMs in this appliance are halted."]

    def test_partial_failure_names_the_vm(self, pool: tuple[PoolServer, XenAPI.Session, str], tmp_path: Path) -> None:
        """A member that cannot start is named in OPERATION_PARTIALLY_FAILED; the others run."""
        server, s, sr = pool
        app = s.xenapi.VM_appliance.create({"name_label": "mixed", "name_description": ""})
        good = bootable_vm(server, s, sr, "good")
        bad = bootable_vm(server, s, sr, "bad")
        for vm in (good, bad):
            s.xenapi.VM.set_appliance(vm, app)
        vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(bad)[0])
        (tmp_path / "lun" / s.xenapi.VDI.get_location(vdi)).unlink()
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM_appliance.start(app, False)
        assert info.value.details == ["OPERATION_PARTIALLY_FAILED", "VM_appliance.start", bad]
        assert s.xenapi.VM.get_power_state(good) == "Running"
        s.xenapi.VM_appliance.hard_shutdown(app)


class TestServerRestart:
    def test_vms_outlive_the_server(self, pool_dir: Path, tmp_path: Path) -> None:
        """VMs keep running while the server is down and are reattached; a killed one comes back Halted."""
        import os
        import signal

        server = PoolServer(pool_dir).start()
        try:
            s = server.session()
            sr = make_sr(s, tmp_path / "lun")
            keeper = bootable_vm(server, s, sr, "keeper")
            victim = bootable_vm(server, s, sr, "victim")
            for vm in (keeper, victim):
                s.xenapi.VM.start(vm, False, False)
            wait_serial(server, s, keeper, b"TICK 2")
            victim_pid = int(s.xenapi.VM.get_domid(victim))
            keeper_pid = int(s.xenapi.VM.get_domid(keeper))
        finally:
            server.stop(keep_vms=True)
        os.kill(victim_pid, signal.SIGKILL)
        time.sleep(0.5)  # ticks that land in the log while no server runs must not be lost
        server = PoolServer(pool_dir).start()
        try:
            s = server.session()
            assert s.xenapi.VM.get_power_state(keeper) == "Running"
            assert int(s.xenapi.VM.get_domid(keeper)) == keeper_pid
            assert s.xenapi.VM.get_power_state(victim) == "Halted"
            before = last_tick(serial(server, s, keeper))
            wait_serial(server, s, keeper, f"TICK {before + 2}".encode())
            s.xenapi.VM.pause(keeper)
            s.xenapi.VM.unpause(keeper)
            s.xenapi.VM.clean_shutdown(keeper)
            assert qemu_pids(server) == []
        finally:
            server.stop()


class TestLeaseWithRunningVM:
    def test_expired_lease_is_not_taken_while_qemu_runs(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Another pool may not take over an expired lease while a QEMU still holds the LUN's disks."""
        import json

        # The image locks alone: without the fencing watchdog, which would kill the VM first.
        monkeypatch.setenv("FARSIDE_WATCHDOG", "0")

        from pools import make_pool

        make_pool(tmp_path / "a", "Site A")
        make_pool(tmp_path / "b", "Site B")
        a, b = PoolServer(tmp_path / "a").start(), PoolServer(tmp_path / "b").start()
        try:
            sa, sb = a.session(), b.session()
            lun = tmp_path / "lun"
            sr = make_sr(sa, lun)
            vm = bootable_vm(a, sa, sr, "holder")
            sa.xenapi.VM.start(vm, False, False)
            sr_uuid = sa.xenapi.SR.get_uuid(sr)
            a.stop(keep_vms=True)  # the pool's server dies; its VM runs on
            lease_file = lun / ".farside-sr" / "lease.json"
            lease = json.loads(lease_file.read_text())
            lease["expiry"] = time.time() - 60  # the heartbeat stopped long ago
            lease_file.write_text(json.dumps(lease))
            host = sb.xenapi.host.get_all()[0]
            sr_b = sb.xenapi.SR.introduce(sr_uuid, "taken", "", "file", "user", True, {})
            pbd = sb.xenapi.PBD.create({"host": host, "SR": sr_b, "device_config": {"path": str(lun)}})
            with pytest.raises(XenAPI.Failure) as info:
                sb.xenapi.PBD.plug(pbd)
            assert info.value.details[0] == "LUN_LEASED_BY_OTHER_POOL"
            from pools import kill_qemus

            assert kill_qemus(tmp_path / "a" / "run")
            time.sleep(0.3)
            sb.xenapi.PBD.plug(pbd)
            assert sb.xenapi.PBD.get_currently_attached(pbd)
        finally:
            a.stop()
            b.stop()


def test_memory_and_vcpus_change_while_halted_within_the_rules(server: PoolServer, tmp_path: Path) -> None:
    s = server.session()
    vm = bootable_vm(server, s, make_sr(s, tmp_path / "lun"), "sizes")
    mib = 1 << 20
    s.xenapi.VM.set_memory(vm, str(32 * mib))
    record = s.xenapi.VM.get_record(vm)
    assert [int(record[f"memory_{k}"]) for k in ("static_max", "dynamic_max", "dynamic_min")] == [32 * mib] * 3
    s.xenapi.VM.set_memory_limits(vm, str(16 * mib), str(64 * mib), str(24 * mib), str(48 * mib))
    s.xenapi.VM.set_VCPUs_max(vm, "2")
    s.xenapi.VM.set_VCPUs_at_startup(vm, "2")
    for call, args, code in [
        (s.xenapi.VM.set_memory_dynamic_max, [str(128 * mib)], "MEMORY_CONSTRAINT_VIOLATION"),
        (s.xenapi.VM.set_VCPUs_at_startup, ["3"], "INVALID_VALUE"),
    ]:
        with pytest.raises(XenAPI.Failure) as info:
            call(vm, *args)
        assert info.value.details[0] == code
    s.xenapi.VM.start(vm, False, False)
    try:
        assert int(s.xenapi.VM.get_VCPUs_at_startup(vm)) == 2
        with pytest.raises(XenAPI.Failure) as info:
            s.xenapi.VM.set_memory_static_max(vm, str(64 * mib))
        assert info.value.details[0] == "VM_BAD_POWER_STATE"
    finally:
        s.xenapi.VM.hard_shutdown(vm)
