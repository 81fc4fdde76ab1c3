"""The messages built for the datamodel walk, over the SDK on one real server.

Roles and permissions, the pool's guest agent settings, licence state and coordinator messages,
host reads; each with xapi's answer on a one-host pool and its checks on bad input.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from farside.model.roles import Role

from pools import MINIMAL_VM, PoolServer
from vms import bootable_vm, make_sr, wait_serial

pytestmark = pytest.mark.e2e

NOWHERE = "OpaqueRef:nowhere"


@pytest.fixture(scope="module")
def root(shared_server: PoolServer) -> Iterator[XenAPI.Session]:
    s = shared_server.session()
    yield s
    s.xenapi.session.logout()


def failure(call: object, *args: object) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)  # type: ignore[operator]
    return list(info.value.details)


class TestRoles:
    def test_permissions_are_the_weaker_roles(self, root: XenAPI.Session) -> None:
        """A role's permissions are every role below it; a permission belongs to every role above."""
        x = root.xenapi
        by_name = {x.role.get_name_label(r): r for r in x.role.get_all()}
        names = x.role.get_permissions_name_label(by_name["vm-admin"])
        assert sorted(names) == ["read-only", "vm-operator"]
        assert set(x.role.get_permissions(by_name["read-only"])) == set()
        holders = {x.role.get_name_label(r) for r in x.role.get_by_permission(by_name["vm-admin"])}
        assert holders == {"vm-power-admin", "pool-operator", "pool-admin"}
        assert set(x.role.get_by_permission_name_label("vm-admin")) == {by_name[n] for n in holders}
        assert x.role.get_by_permission_name_label("no-such-permission") == []
        assert failure(x.role.get_permissions, NOWHERE) == ["HANDLE_INVALID", "role", NOWHERE]


class TestPool:
    def test_guest_agent_config(self, root: XenAPI.Session) -> None:
        """Keys are added once (MAP_DUPLICATE_KEY after), removed quietly even when absent."""
        x = root.xenapi
        pool = x.pool.get_all()[0]
        x.pool.add_to_guest_agent_config(pool, "auto_update_enabled", "false")
        assert x.pool.get_guest_agent_config(pool) == {"auto_update_enabled": "false"}
        assert failure(x.pool.add_to_guest_agent_config, pool, "auto_update_enabled", "true")[0] == "MAP_DUPLICATE_KEY"
        x.pool.remove_from_guest_agent_config(pool, "auto_update_enabled")
        x.pool.remove_from_guest_agent_config(pool, "auto_update_enabled")
        assert x.pool.get_guest_agent_config(pool) == {}

    def test_auth_thread_counts(self, root: XenAPI.Session) -> None:
        """Thread counts below one are refused with INVALID_VALUE, others read back."""
        x = root.xenapi
        pool = x.pool.get_all()[0]
        x.pool.set_local_auth_max_threads(pool, "4")
        assert x.pool.get_local_auth_max_threads(pool) == "4"
        assert failure(x.pool.set_ext_auth_max_threads, pool, "0") == ["INVALID_VALUE", "ext_auth_max_threads", "0"]

    def test_licence_state_and_extensions(self, root: XenAPI.Session) -> None:
        """An unlicensed pool that never expires, and no extensions anywhere."""
        x = root.xenapi
        pool = x.pool.get_all()[0]
        host = x.pool.get_master(pool)
        assert x.pool.get_license_state(pool) == {"edition": "free", "expiry": "never"}
        assert x.pool.has_extension(pool, "Cluster_host.get_cluster_config") is False
        assert x.host.has_extension(host, "anything") is False

    def test_coordinator_messages_on_one_host(self, root: XenAPI.Session) -> None:
        """The only host is the coordinator: designating it is a no-op, no supporters to recover."""
        x = root.xenapi
        pool = x.pool.get_all()[0]
        x.pool.designate_new_master(x.pool.get_master(pool))
        assert failure(x.pool.designate_new_master, NOWHERE) == ["HANDLE_INVALID", "host", NOWHERE]
        assert x.pool.recover_slaves() == []
        x.pool.sync_database()
        x.pool.detect_nonhomogeneous_external_auth(pool)

    def test_read_only_is_denied(self, shared_server: PoolServer) -> None:
        """A read-only user reads the licence state, and is refused the settings."""
        shared_server.add_user("pool-reader", Role.READ_ONLY, "pw")
        s = shared_server.session("pool-reader", "pw")
        try:
            pool = s.xenapi.pool.get_all()[0]
            assert s.xenapi.pool.get_license_state(pool)["expiry"] == "never"
            assert failure(s.xenapi.pool.add_to_guest_agent_config, pool, "k", "v")[0] == "RBAC_PERMISSION_DENIED"
            assert failure(s.xenapi.pool.sync_database)[0] == "RBAC_PERMISSION_DENIED"
        finally:
            s.xenapi.session.logout()


class TestHost:
    def test_list_methods_names_what_is_implemented(self, root: XenAPI.Session) -> None:
        """host.list_methods lists implemented messages, not refused ones."""
        methods = root.xenapi.host.list_methods()
        assert "VM.start" in methods and "host.list_methods" in methods
        assert "pool.enable_ha" not in methods

    def test_memory(self, root: XenAPI.Session) -> None:
        """Free memory is what a VM may still claim: at most the host's free memory."""
        x = root.xenapi
        host = x.pool.get_master(x.pool.get_all()[0])
        free = int(x.host.compute_free_memory(host))
        assert 0 <= free <= int(x.host_metrics.get_memory_total(x.host.get_metrics(host)))
        assert int(x.host.compute_memory_overhead(host)) >= 0
        assert failure(x.host.compute_free_memory, NOWHERE) == ["HANDLE_INVALID", "host", NOWHERE]


@pytest.fixture(scope="module")
def halted_vm(root: XenAPI.Session) -> Iterator[str]:
    vm = root.xenapi.VM.create(dict(MINIMAL_VM, name_label="walk-settings"))
    yield vm
    root.xenapi.VM.destroy(vm)


class TestVMBoot:
    def test_boot_policy_and_domain_type_follow_each_other(self, root: XenAPI.Session, halted_vm: str) -> None:
        """As xapi, each sets the other; the values that would make a PV guest are not supported."""
        x = root.xenapi
        x.VM.set_HVM_boot_policy(halted_vm, "BIOS order")
        assert x.VM.get_domain_type(halted_vm) == "hvm"
        assert failure(x.VM.set_HVM_boot_policy, halted_vm, "")[:3] == ["VALUE_NOT_SUPPORTED", "HVM_boot_policy", ""]
        assert failure(x.VM.set_domain_type, halted_vm, "pv")[:3] == ["VALUE_NOT_SUPPORTED", "domain_type", "pv"]
        assert failure(x.VM.set_domain_type, halted_vm, "unspecified")[:2] == ["INVALID_VALUE", "domain_type"]
        x.VM.set_domain_type(halted_vm, "hvm")
        assert x.VM.get_HVM_boot_policy(halted_vm) == "BIOS order"

    def test_nvram_crash_action_shadow_and_vendor_device(self, root: XenAPI.Session, halted_vm: str) -> None:
        """NVRAM keys as a map, the crash action kept, xapi's shadow bound, no vendor device."""
        x = root.xenapi
        x.VM.set_NVRAM(halted_vm, {"EFI-variables": "AAAA"})
        x.VM.add_to_NVRAM(halted_vm, "other", "1")
        assert failure(x.VM.add_to_NVRAM, halted_vm, "other", "2")[0] == "MAP_DUPLICATE_KEY"
        x.VM.remove_from_NVRAM(halted_vm, "other")
        assert x.VM.get_NVRAM(halted_vm) == {"EFI-variables": "AAAA"}
        x.VM.set_actions_after_crash(halted_vm, "restart")
        assert x.VM.get_actions_after_crash(halted_vm) == "restart"
        assert failure(x.VM.set_actions_after_crash, halted_vm, "explode")[0] == "INVALID_VALUE"
        x.VM.set_HVM_shadow_multiplier(halted_vm, 2.0)
        assert float(x.VM.get_HVM_shadow_multiplier(halted_vm)) == 2.0
        assert failure(x.VM.set_HVM_shadow_multiplier, halted_vm, 0.5) == ["INVALID_VALUE", "multiplier", "0.5"]
        x.VM.set_has_vendor_device(halted_vm, False)
        assert failure(x.VM.set_has_vendor_device, halted_vm, True)[0] == "VALUE_NOT_SUPPORTED"

    def test_memory_ranges(self, root: XenAPI.Session, halted_vm: str) -> None:
        """Static and dynamic ranges under xapi's memory rules."""
        x = root.xenapi
        mib = 1 << 20
        x.VM.set_memory_static_range(halted_vm, str(16 * mib), str(32 * mib))
        x.VM.set_memory_dynamic_range(halted_vm, str(16 * mib), str(32 * mib))
        record = x.VM.get_record(halted_vm)
        assert (record["memory_static_max"], record["memory_dynamic_max"]) == (str(32 * mib), str(32 * mib))
        bad = failure(x.VM.set_memory_dynamic_range, halted_vm, str(32 * mib), str(16 * mib))
        assert bad[0] == "MEMORY_CONSTRAINT_VIOLATION"

    def test_read_only_cannot_change_boot_settings(self, shared_server: PoolServer, halted_vm: str) -> None:
        """A read-only user reads boot settings but is refused changing them."""
        shared_server.add_user("boot-reader", Role.READ_ONLY, "pw")
        s = shared_server.session("boot-reader", "pw")
        try:
            assert s.xenapi.VM.get_cooperative(halted_vm) is True
            assert failure(s.xenapi.VM.set_HVM_boot_policy, halted_vm, "BIOS order")[0] == "RBAC_PERMISSION_DENIED"
            assert failure(s.xenapi.VM.start_on, halted_vm, NOWHERE, False, False)[0] == "RBAC_PERMISSION_DENIED"
        finally:
            s.xenapi.session.logout()


class TestVMPlacement:
    def test_boot_checks_and_possible_hosts(self, root: XenAPI.Session, halted_vm: str) -> None:
        """A bootable VM can boot on the only host; a template cannot, and has no possible host."""
        x = root.xenapi
        host = x.pool.get_master(x.pool.get_all()[0])
        x.VM.assert_can_boot_here(halted_vm, host)
        assert x.VM.get_possible_hosts(halted_vm) == [host]
        assert failure(x.VM.assert_can_boot_here, halted_vm, NOWHERE) == ["HANDLE_INVALID", "host", NOWHERE]
        template = x.VM.create(dict(MINIMAL_VM, name_label="walk-template", is_a_template=True))
        try:
            assert failure(x.VM.assert_can_boot_here, template, host) == ["VM_IS_TEMPLATE", template]
            assert x.VM.get_possible_hosts(template) == []
        finally:
            x.VM.destroy(template)

    def test_too_little_memory_is_refused_before_qemu(self, root: XenAPI.Session) -> None:
        """A VM of no memory (the memory rules allow it) answers VM_MEMORY_SIZE_TOO_LOW, as xapi's start."""
        x = root.xenapi
        host = x.pool.get_master(x.pool.get_all()[0])
        empty = x.VM.create({"name_label": "walk-no-memory", "VCPUs_max": "1", "VCPUs_at_startup": "1"})
        try:
            assert failure(x.VM.assert_can_boot_here, empty, host) == ["VM_MEMORY_SIZE_TOO_LOW", empty]
            assert failure(x.VM.start, empty, False, False) == ["VM_MEMORY_SIZE_TOO_LOW", empty]
        finally:
            x.VM.destroy(empty)

    def test_operations(self, root: XenAPI.Session, halted_vm: str) -> None:
        """A halted VM may start, not shut down; recomputing its operations gives the halted ones."""
        x = root.xenapi
        x.VM.assert_operation_valid(halted_vm, "start")
        assert failure(x.VM.assert_operation_valid, halted_vm, "clean_shutdown")[0] == "OPERATION_NOT_ALLOWED"
        x.VM.update_allowed_operations(halted_vm)
        assert "start" in x.VM.get_allowed_operations(halted_vm)
        assert x.VM.get_boot_record(halted_vm)["uuid"] == x.VM.get_uuid(halted_vm)

    def test_memory_overhead(self, root: XenAPI.Session, halted_vm: str) -> None:
        """The overhead is what the host books per VM; maximise_memory leaves exactly room for it."""
        x = root.xenapi
        overhead = int(x.VM.compute_memory_overhead(halted_vm))
        assert overhead > 0
        assert int(x.VM.maximise_memory(halted_vm, str(overhead + 4096), True)) == 4096


def test_start_on_the_host_boots_the_vm(
    shared_server: PoolServer, root: XenAPI.Session, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """VM.start_on boots the VM as VM.start does; power_state_reset refuses a live QEMU, halts a suspended VM."""
    x = root.xenapi
    sr = make_sr(root, tmp_path_factory.mktemp("walk") / "lun")
    vm = bootable_vm(shared_server, root, sr, "start-on")
    host = x.pool.get_master(x.pool.get_all()[0])
    assert failure(x.VM.start_on, vm, NOWHERE, False, False) == ["HANDLE_INVALID", "host", NOWHERE]
    x.VM.start_on(vm, host, False, False)
    try:
        wait_serial(shared_server, root, vm, b"BOOT start-on")
        assert x.VM.get_resident_on(vm) == host
        assert failure(x.VM.power_state_reset, vm) == ["DOMAIN_EXISTS", vm]
        assert x.VM.get_power_state(vm) == "Running"
        x.VM.suspend(vm)
    finally:
        if x.VM.get_power_state(vm) == "Running":
            x.VM.hard_shutdown(vm)
    image = x.VM.get_suspend_VDI(vm)
    x.VM.power_state_reset(vm)  # a suspended VM's memory image goes with the reset
    assert x.VM.get_power_state(vm) == "Halted"
    assert x.VM.get_suspend_VDI(vm) == "OpaqueRef:NULL" and image not in x.VDI.get_all()


class TestDevices:
    def test_disk_and_nic_settings_while_halted(
        self, shared_server: PoolServer, root: XenAPI.Session, tmp_path_factory: pytest.TempPathFactory
    ) -> None:
        """VBD mode, VDI boot and caching flags, NIC network: set while halted, refused while running."""
        x = root.xenapi
        sr = make_sr(root, tmp_path_factory.mktemp("walk") / "lun")
        vm = bootable_vm(shared_server, root, sr, "devices")
        vbd = x.VM.get_VBDs(vm)[0]
        vdi = x.VBD.get_VDI(vbd)
        vif = x.VM.get_VIFs(vm)[0]
        other = x.network.create({"name_label": "walk-net", "bridge": "", "MTU": "1500", "other_config": {}})
        x.VBD.set_mode(vbd, "RO")
        assert x.VBD.get_mode(vbd) == "RO"
        x.VBD.set_mode(vbd, "RW")
        x.VDI.set_on_boot(vdi, "persist")
        assert failure(x.VDI.set_on_boot, vdi, "reset") == ["SR_OPERATION_NOT_SUPPORTED", sr]
        x.VDI.set_allow_caching(vdi, True)
        assert x.VDI.get_allow_caching(vdi) is True
        assert x.VDI.get_nbd_info(vdi) == []
        x.VDI.update(vdi)
        assert x.VDI.get_virtual_size(vdi) == str(1 << 20)
        x.VIF.move(vif, other)
        assert x.VIF.get_network(vif) == other
        assert failure(x.VIF.move, vif, NOWHERE) == ["HANDLE_INVALID", "network", NOWHERE]
        x.VM.start(vm, False, False)
        try:
            assert failure(x.VBD.set_mode, vbd, "RO")[0] == "VM_BAD_POWER_STATE"
            assert failure(x.VDI.set_allow_caching, vdi, False)[0] == "VDI_IN_USE"
            assert failure(x.VIF.move, vif, x.network.get_all()[0])[0] == "VM_BAD_POWER_STATE"
        finally:
            x.VM.hard_shutdown(vm)


def test_disabled_host_starts_no_vm(root: XenAPI.Session, halted_vm: str) -> None:
    """host.disable: VM.start and the boot checks answer HOST_DISABLED until host.enable."""
    x = root.xenapi
    host = x.pool.get_master(x.pool.get_all()[0])
    x.host.disable(host)
    try:
        assert x.host.get_enabled(host) is False
        assert failure(x.VM.start, halted_vm, False, False) == ["HOST_DISABLED", host]
        assert failure(x.VM.assert_can_boot_here, halted_vm, host) == ["HOST_DISABLED", host]
        assert x.VM.get_possible_hosts(halted_vm) == []
    finally:
        x.host.enable(host)
    assert x.host.get_enabled(host) is True
    x.VM.assert_can_boot_here(halted_vm, host)


def test_server_certificate(shared_server: PoolServer, root: XenAPI.Session, pool_dir: Path) -> None:
    """host.get_server_certificate gives the PEM the server presents over HTTPS; none over plain HTTP."""
    x = root.xenapi
    host = x.pool.get_master(x.pool.get_all()[0])
    assert failure(x.host.get_server_certificate, host)[0] == "OPERATION_NOT_ALLOWED"
    srv = PoolServer(pool_dir, tls=True).start()
    try:
        s = srv.session()
        pem = s.xenapi.host.get_server_certificate(s.xenapi.host.get_all()[0])
        s.xenapi.session.logout()
    finally:
        srv.stop()
    assert pem == (pool_dir / "tls" / "cert.pem").read_text()
    assert "PRIVATE KEY" not in pem
