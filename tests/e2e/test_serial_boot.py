"""A VM's serial output, as a readiness probe reads it, is what this boot printed (issue 14, point 3).

Before, ``serial.log`` was appended across boots and kept after VM.destroy, so after a first
failover a probe for ``BOOT <tag>`` matched the previous boot's line at once.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from pools import PoolServer
from vms import bootable_vm, import_bootable, make_sr, qemu_pids, serial, wait_serial


def test_a_new_boot_does_not_show_the_last_boots_output(server: PoolServer, tmp_path: Path) -> None:
    """Boot, stop, change the disk's tag, boot again: the console never shows the first boot's line;
    a suspend and resume is the same boot and keeps what it printed."""
    s = server.session()
    vm = bootable_vm(server, s, make_sr(s, tmp_path / "lun"), "before")
    s.xenapi.VM.start(vm, False, False)
    wait_serial(server, s, vm, b"BOOT before")
    s.xenapi.VM.hard_shutdown(vm)
    assert b"BOOT before" in serial(server, s, vm)  # a halted VM's last boot stays readable
    vdi = s.xenapi.VBD.get_VDI(s.xenapi.VM.get_VBDs(vm)[0])
    import_bootable(server, s, vdi, "after")
    s.xenapi.VM.start(vm, False, False)
    assert b"BOOT before" not in serial(server, s, vm)  # what a probe sees the moment start returns
    output = wait_serial(server, s, vm, b"TICK 2")
    assert b"BOOT before" not in output and output.count(b"BOOT ") == 1
    s.xenapi.VM.suspend(vm)
    s.xenapi.VM.resume(vm, False, False)
    assert serial(server, s, vm).count(b"BOOT after") == 1
    s.xenapi.VM.hard_shutdown(vm)
    assert qemu_pids(server) == []


def test_destroy_removes_the_vms_serial_output(server: PoolServer, tmp_path: Path) -> None:
    """VM.destroy removes the VM's run directory: nothing of its output is left to be read."""
    s = server.session()
    vm = bootable_vm(server, s, make_sr(s, tmp_path / "lun"), "gone")
    uuid = s.xenapi.VM.get_uuid(vm)
    s.xenapi.VM.start(vm, False, False)
    wait_serial(server, s, vm, b"BOOT gone")
    s.xenapi.VM.hard_shutdown(vm)
    run = (server.data_dir / "run").resolve() / uuid
    assert (run / "serial.log").is_file()
    s.xenapi.VM.destroy(vm)
    assert not run.exists()
    response = httpx.get(f"{server.url}/console/serial", params={"session_id": s.handle, "uuid": uuid}, timeout=30)
    assert response.status_code == 404 and response.text.startswith("UUID_INVALID"), response.text
