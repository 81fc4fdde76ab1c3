"""VM.pool_migrate and VM.migrate_send through the SDK: a real live migration into a new QEMU.

One server and one counting guest serve the module: the guest prints ``TICK <n>`` from a count
in its memory and writes the count to its disk at every tick, so a migrated guest proves that it
ran on (one ``BOOT``, no gap in the count) and that its new process writes the same image.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import xmlrpc.client
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from e2e.test_xe import failed, ok
from farside.model.roles import Role
from farside.storage.bootable import read_counter

from pools import PoolServer, make_pool
from vms import bootable_vm, make_sr, qemu_pids, serial, wait_serial, wait_task

pytestmark = pytest.mark.e2e


class Site:
    def __init__(self, server: PoolServer, lun: Path) -> None:
        self.server = server
        self.s = server.session()
        self.lun = lun
        self.sr = make_sr(self.s, lun)
        self.host = self.s.xenapi.host.get_all()[0]
        self.vm = bootable_vm(server, self.s, self.sr, "mover", counter=True)
        self.s.xenapi.VM.start(self.vm, False, False)
        wait_serial(server, self.s, self.vm, b"TICK 2")

    def image(self) -> Path:
        vdi = self.s.xenapi.VBD.get_VDI(self.s.xenapi.VM.get_VBDs(self.vm)[0])
        return self.lun / self.s.xenapi.VDI.get_location(vdi)

    def pid(self) -> int:
        uuid = self.s.xenapi.VM.get_uuid(self.vm)
        return int((self.server.data_dir / "run" / uuid / "qemu.pid").read_text())

    def ran_on(self, since: bytes) -> None:
        """The guest carries on from ``since``: one boot, the count without a gap, the disk written."""
        ticks_before = since.count(b"TICK ")
        on_disk = read_counter(self.image()) or 0
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            out = serial(self.server, self.s, self.vm)
            if out.count(b"TICK ") >= ticks_before + 3 and (read_counter(self.image()) or 0) > on_disk + 2:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the guest did not carry on after the migration")
        assert out.count(b"BOOT mover") == 1, "the guest booted again"
        ticks = [int(t.split()[1]) for t in out.replace(b"\r", b"").split(b"\n") if t.startswith(b"TICK ")]
        assert ticks == list(range(1, len(ticks) + 1))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("migrate")
    make_pool(root / "pool")
    server = PoolServer(root / "pool").start()
    try:
        server.add_user("operator", Role.VM_OPERATOR)
        server.add_user("poweradmin", Role.VM_POWER_ADMIN)
        yield Site(server, root / "lun")
    finally:
        server.stop()


def test_pool_migrate_moves_the_guest_into_a_new_qemu(site: Site) -> None:
    """Async pool_migrate to this host: the task succeeds, current_operations showed pool_migrate,
    the guest runs on in a new QEMU (a new domid) that writes its disk, and the old QEMU is gone."""
    s = site.s
    assert "pool_migrate" in s.xenapi.VM.get_allowed_operations(site.vm)
    old = site.pid()
    before = serial(site.server, s, site.vm)
    seen: set[str] = set()
    watcher = site.server.session()
    event_from = getattr(watcher.xenapi.event, "from")
    token = event_from(["VM"], "", 0)["token"]
    done = threading.Event()

    def watch() -> None:
        # Events coalesce to the object's state when event.from answers: a long-poll that is
        # waiting when the claim is made answers while the migration still runs.
        nonlocal token
        while not done.is_set():
            batch = event_from(["VM"], token, 5)
            token = batch["token"]
            seen.update(op for e in batch["events"] if e["ref"] == site.vm
                        for op in e["snapshot"]["current_operations"].values())  # fmt: skip

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.2)  # the watcher is waiting
    task = s.xenapi.Async.VM.pool_migrate(site.vm, site.host, {"live": "true"})
    record = wait_task(s, task, 60)
    done.set()
    thread.join(10)
    assert record["status"] == "success", record["error_info"]
    assert "pool_migrate" in seen
    vm = s.xenapi.VM.get_record(site.vm)
    assert vm["power_state"] == "Running" and vm["current_operations"] == {}
    assert "pool_migrate" in vm["allowed_operations"]
    assert int(vm["domid"]) == site.pid() != old
    assert old not in qemu_pids(site.server) and not os.path.exists(f"/proc/{old}")
    site.ran_on(before)


def test_migrate_send_with_migrate_receive(site: Site) -> None:
    """migrate_send to this host's migrate_receive answer moves the guest and returns the VM itself;
    assert_can_migrate and assert_can_migrate_sender accept the same call."""
    s = site.s
    net = s.xenapi.network.get_all()[0]
    dest = s.xenapi.host.migrate_receive(site.host, net, {})
    assert dest["host"] == site.host and dest["session_id"] == s.handle
    vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(site.vm)[0])
    vdi_map = {vdi: site.sr}
    s.xenapi.VM.assert_can_migrate(site.vm, dest, True, vdi_map, {}, {}, {})
    s.xenapi.VM.assert_can_migrate_sender(site.vm, dest, True, vdi_map, {}, {}, {"live": "true"})
    old, before = site.pid(), serial(site.server, s, site.vm)
    assert s.xenapi.VM.migrate_send(site.vm, dest, True, vdi_map, {}, {}, {}) == site.vm
    assert site.pid() != old
    site.ran_on(before)


def failure(call: object, *args: object) -> list[str]:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)  # type: ignore[operator]
    return list(info.value.details)


def test_refusals_as_xapi_gives_them(site: Site, tmp_path: Path) -> None:
    """Bad handles, options and maps, a halted VM and a VM too big for a second copy are refused
    with xapi's errors, and nothing moves."""
    s, vm = site.s, site.vm
    pid = site.pid()
    net = s.xenapi.network.get_all()[0]
    dest = s.xenapi.host.migrate_receive(site.host, net, {})
    assert failure(s.xenapi.VM.pool_migrate, vm, "OpaqueRef:nope", {})[:2] == ["HANDLE_INVALID", "host"]
    assert failure(s.xenapi.VM.pool_migrate, vm, site.host, {"live": "maybe"})[0] == "INVALID_VALUE"
    assert failure(s.xenapi.VM.pool_migrate, vm, site.host, {"copy": "true"})[0] == "OPERATION_NOT_ALLOWED"
    assert failure(s.xenapi.VM.assert_can_migrate, vm, {}, True, {}, {}, {}, {})[0] == "INVALID_VALUE"
    bad_session = {**dest, "session_id": "OpaqueRef:gone"}
    # Raw: the SDK takes SESSION_INVALID for its own session's and logs in again.
    raw = xmlrpc.client.ServerProxy(site.server.url).VM.migrate_send(s.handle, vm, bad_session, True, {}, {}, {}, {})
    assert raw["ErrorDescription"] == ["SESSION_INVALID", "OpaqueRef:gone"]
    other_sr = make_sr(s, tmp_path / "other-lun", "other")
    vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(vm)[0])
    moved = failure(s.xenapi.VM.migrate_send, vm, dest, True, {vdi: other_sr}, {}, {}, {})
    assert moved[0] == "OPERATION_NOT_ALLOWED" and "Storage migration" in moved[1]
    vgpu = failure(s.xenapi.VM.assert_can_migrate, vm, dest, True, {}, {}, {}, {"OpaqueRef:g": "OpaqueRef:h"})
    assert vgpu[:2] == ["HANDLE_INVALID", "VGPU"]

    halted = bootable_vm(site.server, s, site.sr, "still")
    assert failure(s.xenapi.VM.pool_migrate, halted, site.host, {}) == ["VM_BAD_POWER_STATE", halted, "running",
                                                                       "halted"]  # fmt: skip
    assert failure(s.xenapi.VM.assert_can_migrate, halted, dest, True, {}, {}, {}, {})[0] == "VM_BAD_POWER_STATE"
    template = bootable_vm(site.server, s, site.sr, "tmpl")
    s.xenapi.VM.set_is_a_template(template, True)
    assert failure(s.xenapi.VM.pool_migrate, template, site.host, {}) == ["VM_IS_TEMPLATE", template]

    # Room for one copy but not two: both QEMUs run until the guest has moved.
    metrics = s.xenapi.host.get_metrics(site.host)
    free = int(s.xenapi.host_metrics.get_memory_free(metrics)) - (1 << 30)
    big = bootable_vm(site.server, s, site.sr, "big", memory_mib=int(free * 0.6) >> 20)
    s.xenapi.VM.start(big, False, False)
    try:
        assert failure(s.xenapi.VM.pool_migrate, big, site.host, {})[0] == "HOST_NOT_ENOUGH_FREE_MEMORY"
        assert failure(s.xenapi.VM.assert_can_migrate, big, dest, True, {}, {}, {}, {})[0] == (
            "HOST_NOT_ENOUGH_FREE_MEMORY"
        )
        s.xenapi.VM.assert_can_migrate_sender(big, dest, True, {}, {}, {}, {})  # the sender has no such check
        bad_vgpu = failure(
            s.xenapi.VM.assert_can_migrate_sender, vm, dest, True, {}, {}, {"OpaqueRef:g": "OpaqueRef:h"}, {}
        )
        assert bad_vgpu[:2] == ["HANDLE_INVALID", "VGPU"]
    finally:
        s.xenapi.VM.hard_shutdown(big)
    assert site.pid() == pid


def test_roles(site: Site) -> None:
    """vm-power-admin may migrate; vm-operator may neither migrate nor ask whether it could."""
    operator = site.server.session("operator", "pw")
    net = site.s.xenapi.network.get_all()[0]
    for call, args in (
        (operator.xenapi.VM.pool_migrate, (site.vm, site.host, {})),
        (operator.xenapi.VM.assert_can_migrate, (site.vm, {}, True, {}, {}, {}, {})),
        (operator.xenapi.host.migrate_receive, (site.host, net, {})),
    ):
        assert failure(call, *args)[0] == "RBAC_PERMISSION_DENIED"
    admin = site.server.session("poweradmin", "pw")
    old = site.pid()
    admin.xenapi.VM.pool_migrate(site.vm, site.host, {})
    assert site.pid() != old


def test_destination_killed_leaves_the_vm_running(site: Site) -> None:
    """A destination QEMU killed during the migration: VM_MIGRATE_FAILED, and the guest runs on in
    its old QEMU (same domid), still writing its disk; no second QEMU is left."""
    s = site.s
    uuid = s.xenapi.VM.get_uuid(site.vm)
    pid = site.pid()
    killed: list[int] = []
    stop = threading.Event()

    def kill_destination() -> None:
        # The destination is the VM's QEMU that the pid file does not name yet.
        while not stop.is_set() and not killed:
            for entry in os.listdir("/proc"):
                if not entry.isdigit() or int(entry) == pid:
                    continue
                try:
                    cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
                except OSError:
                    continue
                if b"-uuid\0" + uuid.encode() in cmdline:
                    os.kill(int(entry), signal.SIGKILL)
                    killed.append(int(entry))
                    break

    thread = threading.Thread(target=kill_destination, daemon=True)
    thread.start()
    before = serial(site.server, s, site.vm)
    try:
        details = failure(s.xenapi.VM.pool_migrate, site.vm, site.host, {})
    finally:
        stop.set()
        thread.join(5)
    assert killed, "the destination QEMU was never seen"
    assert details[:2] == ["VM_MIGRATE_FAILED", site.vm]
    vm = s.xenapi.VM.get_record(site.vm)
    assert vm["power_state"] == "Running" and int(vm["domid"]) == pid == site.pid()
    assert vm["current_operations"] == {}
    site.ran_on(before)
    assert qemu_pids(site.server) == [pid]


def test_xe_vm_migrate(site: Site) -> None:
    """xe vm-migrate moves the guest (to the pool's one host unless host= names it); a host that is
    not there is refused before anything moves."""
    uuid = site.s.xenapi.VM.get_uuid(site.vm)
    old = site.pid()
    assert ok(site.server, "vm-migrate", f"vm={uuid}", "live=true") == ""
    assert site.pid() != old
    host = site.s.xenapi.host.get_uuid(site.host)
    moved = site.pid()
    assert ok(site.server, "vm-migrate", "vm=mover", f"host-uuid={host}") == ""
    assert site.pid() != moved
    assert failed(site.server, "vm-migrate", "vm=mover", "host=elsewhere") == ["Error: No matching host found"]
