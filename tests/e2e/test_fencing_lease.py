"""One writer per LUN, from both sides (issue 14, point 2), on real servers and QEMU.

Pool A's server frozen (SIGSTOP) past its lease: its watchdog kills A's QEMU on the LUN before pool B
may plug it, B plugs after the TTL and the takeover wait, and A, woken, finds the lease taken and
fences. The same with A alive but unable to write its lease (a full filesystem).
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import XenAPI

from farside.hypervisor.qemu import process

from pools import PoolServer, make_pool
from vms import bootable_vm, make_sr, wait_serial

# Short leases: TTL 8 s, renewed every second, fenced 3.5 s before the end, checked twice a second.
FAST = {
    "FARSIDE_LEASE_TTL": "8",
    "FARSIDE_LEASE_RENEW": "1",
    "FARSIDE_FENCE_MARGIN": "3.5",
    "FARSIDE_WATCHDOG_INTERVAL": "0.5",
    "FARSIDE_FENCE_KILL_TIMEOUT": "2",
    "FARSIDE_LEASE_TAKEOVER_WAIT": "1",
}
# Far longer than TTL + wait: only a hang reaches it.
BOUND_S = 60.0


@pytest.fixture
def fast_leases(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in FAST.items():
        monkeypatch.setenv(name, value)


def qemu_of(server: PoolServer, s: XenAPI.Session, vm: str) -> int:
    uuid = s.xenapi.VM.get_uuid(vm)
    pid = process.find_qemu(process.RunDir(server.data_dir / "run" / uuid), uuid)
    assert pid is not None, "the VM has no live QEMU"
    return pid


def wait_watchdog(server: PoolServer) -> None:
    log = server.data_dir / "watchdog.log"
    deadline = time.monotonic() + BOUND_S
    while not (log.exists() and "watching the VMs of pool" in log.read_text()):
        assert time.monotonic() < deadline, "the watchdog did not start"
        time.sleep(0.1)


def wait_fenced(s: XenAPI.Session, pbd: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while s.xenapi.PBD.get_currently_attached(pbd):
        assert time.monotonic() < deadline, "the SR was never fenced"
        time.sleep(0.2)


def assert_fenced(s: XenAPI.Session, sr: str, vm: str, pid: int, why: str) -> None:
    """A's side after the fence: VM halted and its QEMU gone, writes and scans refused, a message raised."""
    assert not process.is_alive(pid)
    assert s.xenapi.VM.get_power_state(vm) == "Halted"
    vdis = set(s.xenapi.SR.get_VDIs(sr))
    for call in (
        lambda: s.xenapi.VDI.create({"SR": sr, "virtual_size": str(1 << 20), "type": "user", "name_label": "late",
                                     "sharable": False, "read_only": False, "other_config": {}}),
        lambda: s.xenapi.SR.scan(sr),
    ):  # fmt: skip
        with pytest.raises(XenAPI.Failure) as info:
            call()
        assert info.value.details[:2] == ["SR_NOT_ATTACHED", sr]
    assert set(s.xenapi.SR.get_VDIs(sr)) == vdis  # nothing of the other pool's imported
    messages = [m for m in s.xenapi.message.get_all_records().values() if m["name"] == "LUN_LEASE_LOST"]
    assert len(messages) == 1
    assert messages[0]["cls"] == "SR" and messages[0]["obj_uuid"] == s.xenapi.SR.get_uuid(sr)
    assert messages[0]["priority"] == "1"
    assert why in messages[0]["body"]
    assert "writes to the SR are refused" in messages[0]["body"]


def test_a_frozen_server_is_fenced_by_its_watchdog(tmp_path: Path, fast_leases: None) -> None:
    """SIGSTOP A past its lease: the watchdog kills A's QEMU before B can plug the LUN; B plugs once
    TTL + wait have passed; SIGCONT A: A finds the lease taken and fences."""
    make_pool(tmp_path / "a", "Site A")
    make_pool(tmp_path / "b", "Site B")
    a, b = PoolServer(tmp_path / "a").start(), PoolServer(tmp_path / "b").start()
    assert a.process is not None
    try:
        sa, sb = a.session(), b.session()
        lun = tmp_path / "lun"
        sr = make_sr(sa, lun)
        vm = bootable_vm(a, sa, sr, "frozen")
        sa.xenapi.VM.start(vm, False, False)
        wait_serial(a, sa, vm, b"BOOT frozen")
        pid = qemu_of(a, sa, vm)
        pbd_a = sa.xenapi.SR.get_PBDs(sr)[0]
        wait_watchdog(a)
        sr_b = sb.xenapi.SR.introduce(sa.xenapi.SR.get_uuid(sr), "taken", "", "file", "user", True, {})
        pbd_b = sb.xenapi.PBD.create(
            {"host": sb.xenapi.host.get_all()[0], "SR": sr_b, "device_config": {"path": str(lun)}}
        )

        os.kill(a.process.pid, signal.SIGSTOP)
        qemu_gone_first = None
        deadline = time.monotonic() + BOUND_S
        while True:
            assert time.monotonic() < deadline, "B never plugged the LUN"
            qemu_alive = process.is_alive(pid)
            try:
                sb.xenapi.PBD.plug(pbd_b)
            except XenAPI.Failure as exc:
                assert exc.details[0] == "LUN_LEASED_BY_OTHER_POOL"
                time.sleep(0.2)
                continue
            qemu_gone_first = not qemu_alive
            break
        assert qemu_gone_first, "B plugged the LUN while A's QEMU still ran"
        assert "fenced the QEMU of VM" in (a.data_dir / "watchdog.log").read_text()
        # B writes to the LUN it now holds.
        b_vdi = sb.xenapi.VDI.create({"SR": sr_b, "virtual_size": str(1 << 20), "type": "user", "name_label": "B's",
                                      "sharable": False, "read_only": False, "other_config": {}})  # fmt: skip

        os.kill(a.process.pid, signal.SIGCONT)
        wait_fenced(sa, pbd_a)
        assert_fenced(sa, sr, vm, pid, "was taken over")
        assert sb.xenapi.VDI.get_uuid(b_vdi) not in [sa.xenapi.VDI.get_uuid(v) for v in sa.xenapi.SR.get_VDIs(sr)]
        # A new plug needs the lease again, and B holds it.
        with pytest.raises(XenAPI.Failure) as info:
            sa.xenapi.PBD.plug(pbd_a)
        assert info.value.details[0] == "LUN_LEASED_BY_OTHER_POOL"
        assert sb.xenapi.PBD.get_currently_attached(pbd_b)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(a.process.pid, signal.SIGCONT)
        a.stop()
        b.stop()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs, unmounted afterwards (as root only)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(mount)], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    return filler


def test_a_live_server_that_cannot_renew_fences(tmp_path: Path, fast_leases: None, small_fs: Path) -> None:
    """A's LUN fills up, so its lease cannot be written: A's VM is stopped before the lease ends, the SR
    fenced and a message raised, all with A's server running; once there is room, a plug takes it back."""
    make_pool(tmp_path / "a", "Site A")
    a = PoolServer(tmp_path / "a").start()
    try:
        s = a.session()
        lun = small_fs / "lun"
        sr = make_sr(s, lun)
        vm = bootable_vm(a, s, sr, "full")
        s.xenapi.VM.start(vm, False, False)
        wait_serial(a, s, vm, b"BOOT full")
        pid = qemu_of(a, s, vm)
        pbd = s.xenapi.SR.get_PBDs(sr)[0]
        wait_watchdog(a)

        filler = fill(small_fs)
        wait_fenced(s, pbd)
        assert_fenced(s, sr, vm, pid, "No space left on device")

        filler.unlink()
        s.xenapi.PBD.plug(pbd)
        assert s.xenapi.PBD.get_currently_attached(pbd)
        s.xenapi.VM.start(vm, False, False)
        assert s.xenapi.VM.get_power_state(vm) == "Running"
    finally:
        a.stop()
