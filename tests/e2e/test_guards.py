"""Guards against misuse that would lose data or leak resources (found in review, kept as tests)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import XenAPI

from pools import PoolServer
from vms import bootable_vm, make_sr, qemu_pids


def test_devices_of_a_running_vm_stay(server: PoolServer, tmp_path: Path) -> None:
    """VBD.destroy and VIF.destroy are refused while the VM runs; its disk then cannot be deleted."""
    s = server.session()
    sr = make_sr(s, tmp_path / "lun")
    vm = bootable_vm(server, s, sr, "guarded")
    s.xenapi.VM.start(vm, False, False)
    vbd, vif = s.xenapi.VM.get_VBDs(vm)[0], s.xenapi.VM.get_VIFs(vm)[0]
    for destroy, ref in ((s.xenapi.VBD.destroy, vbd), (s.xenapi.VIF.destroy, vif)):
        with pytest.raises(XenAPI.Failure) as info:
            destroy(ref)
        assert info.value.details[0] == "OPERATION_NOT_ALLOWED"
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VDI.destroy(s.xenapi.VBD.get_VDI(vbd))
    assert info.value.details[0] == "VDI_IN_USE"
    s.xenapi.VM.hard_shutdown(vm)
    s.xenapi.VBD.destroy(vbd)


def test_no_destroy_during_an_operation(server: PoolServer, tmp_path: Path) -> None:
    """A VM being started cannot be destroyed (no QEMU would be left without its VM)."""
    s = server.session()
    sr = make_sr(s, tmp_path / "lun")
    vm = bootable_vm(server, s, sr, "busy")
    s.xenapi.VM.set_start_delay(vm, 2)
    task = s.xenapi.Async.VM.start(vm, False, False)
    deadline = time.monotonic() + 10
    while not s.xenapi.VM.get_current_operations(vm) and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VM.destroy(vm)
    assert info.value.details[0] in ("OTHER_OPERATION_IN_PROGRESS", "VM_BAD_POWER_STATE")
    while s.xenapi.task.get_status(task) == "pending":
        time.sleep(0.05)
    assert s.xenapi.VM.get_power_state(vm) == "Running"
    s.xenapi.VM.hard_shutdown(vm)


def test_two_starts_cannot_share_the_last_memory(server: PoolServer, tmp_path: Path) -> None:
    """Two VMs that each need most of the free memory, started at once: exactly one runs."""
    s = server.session()
    sr = make_sr(s, tmp_path / "lun")
    host = s.xenapi.host.get_all()[0]
    free = int(s.xenapi.host_metrics.get_memory_free(s.xenapi.host.get_metrics(host)))
    size_mib = int(free * 0.6) >> 20
    vms = [bootable_vm(server, s, sr, f"big{i}", memory_mib=size_mib) for i in range(2)]
    outcomes: list[str] = []

    def start(vm: str) -> None:
        try:
            server.session().xenapi.VM.start(vm, True, False)  # paused: no guest touches the memory
            outcomes.append("started")
        except XenAPI.Failure as failure:
            outcomes.append(failure.details[0])

    threads = [threading.Thread(target=start, args=(vm,)) for vm in vms]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["HOST_NOT_ENOUGH_FREE_MEMORY", "started"]
    for vm in vms:
        if s.xenapi.VM.get_power_state(vm) != "Halted":
            s.xenapi.VM.hard_shutdown(vm)
    assert qemu_pids(server) == []


def test_active_metadata_vdi_is_in_use(server: PoolServer, tmp_path: Path) -> None:
    """The metadata VDI being written cannot be destroyed or overwritten, and enabling twice at once makes one."""
    s = server.session()
    sr = make_sr(s, tmp_path / "lun")
    tasks = [s.xenapi.Async.SR.enable_database_replication(sr) for _ in range(4)]
    for task in tasks:
        while s.xenapi.task.get_status(task) == "pending":
            time.sleep(0.05)
    vdis = [v for v in s.xenapi.SR.get_VDIs(sr) if s.xenapi.VDI.get_type(v) == "metadata"]
    assert len(vdis) == 1
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.VDI.destroy(vdis[0])
    assert info.value.details[0] == "VDI_IN_USE"
    s.xenapi.SR.disable_database_replication(sr)
    assert [v for v in s.xenapi.SR.get_VDIs(sr) if s.xenapi.VDI.get_type(v) == "metadata"] == []


def farside(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "farside.cli.main", *args], capture_output=True, text=True, timeout=60)


def test_a_second_server_on_one_pool_is_refused(server: PoolServer) -> None:
    """Another server on the same data directory fails with one line, no traceback, no 'serving'."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = farside("server", str(server.data_dir), "--listen", f"127.0.0.1:{port}")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "serving" not in result.stdout
    assert f"is already served (pid {server.process.pid if server.process else '?'}): stop that server first" in (
        result.stderr
    )


def test_a_port_in_use_is_refused(pool_dir: Path) -> None:
    """A port already taken fails with one clear line before anything is served."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = farside("server", str(pool_dir), "--listen", f"127.0.0.1:{port}")
    assert result.returncode != 0
    assert "CANNOT_LISTEN" in result.stderr and "Traceback" not in result.stderr
    assert "serving" not in result.stdout
