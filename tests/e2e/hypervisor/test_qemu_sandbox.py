"""QEMU runs unprivileged, under seccomp, and reaches no host file but what the server hands it.

Issue 13's third attack: a qcow2 image whose header names a backing file (or an external data
file) made a root QEMU open that host file. Here QEMU runs as the ``farside-qemu`` user that
``make setup`` creates, with every disk, its serial log and its taps passed as descriptors, and
qcow2 blockdevs say ``"backing": null``. The secrets these tests aim at sit in a directory anyone
may enter, readable by root alone: only QEMU's user and the blockdev options keep them out.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from e2e.hypervisor.qemu_lab import Lab
from farside.config import DEFAULT_QEMU_USER
from farside.hypervisor.driver import DiskSpec, NicSpec
from farside.hypervisor.errors import DomainError
from farside.hypervisor.qemu import QemuDriver
from farside.hypervisor.qemu.process import is_alive

from pools import PoolServer
from vms import bootable_vm, last_tick, make_sr, qemu_pids, serial, wait_serial

QEMU = "qemu-system-x86_64"
SECRET = b"root's secret\n"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed"),
]


@pytest.fixture
def secret() -> Iterator[Path]:
    """A root-only file in a directory every user may enter (so only its own mode guards it)."""
    folder = Path(tempfile.mkdtemp(prefix="fs-secret-", dir="/tmp"))
    folder.chmod(0o755)
    path = folder / "secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    try:
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def status(pid: int) -> dict[str, str]:
    lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    return {key: value.strip() for key, _, value in (line.partition(":") for line in lines)}


def open_files(pid: int) -> list[str]:
    """What QEMU's descriptors point at: paths, or ``socket:[…]``, ``pipe:[…]``, ``anon_inode:…``."""
    fds = Path(f"/proc/{pid}/fd")
    return [os.readlink(fds / fd) for fd in os.listdir(fds)]


def assert_sandboxed(pid: int, run_dir: Path) -> None:
    """``pid`` runs as the QEMU user with no group, capability or way to gain one, under a seccomp filter."""
    user = pwd.getpwnam(DEFAULT_QEMU_USER)
    facts = status(pid)
    assert facts["Uid"].split() == [str(user.pw_uid)] * 4
    assert facts["Gid"].split() == [str(user.pw_gid)] * 4
    assert facts["Groups"] == ""
    for caps in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(facts[caps], 16) == 0, caps
    assert facts["NoNewPrivs"] == "1"
    assert facts["Seccomp"] == "2"  # a filter, QEMU's -sandbox
    assert os.readlink(f"/proc/{pid}/cwd") == os.path.realpath(run_dir)


def test_qemu_runs_unprivileged_under_seccomp(lab: Lab, driver: QemuDriver) -> None:
    """The QEMU a driver starts is the QEMU user's, capability-less, seccomp-filtered, in its run dir."""
    spec = lab.spec("jailed")
    pid = driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"BOOT jailed")
    assert_sandboxed(pid, driver.run_root / spec.uuid)
    driver.hard_stop(spec.uuid)


def test_qemu_holds_only_its_disks_and_logs(lab: Lab, driver: QemuDriver) -> None:
    """QEMU's open files are its disks, its serial log, its stderr log and /dev/null; nothing else by
    name (the rest are its sockets, pipes and event descriptors)."""
    spec = lab.spec("owner")
    data = lab.root / "data,disk.raw"
    data.write_bytes(bytes(1 << 20))
    cd = lab.root / "cd.iso"
    cd.write_bytes(bytes(1 << 16))
    spec = replace(
        spec,
        disks=[
            *spec.disks,
            DiskSpec("vdi-data", data, "raw", read_only=False, userdevice=1),
            DiskSpec("vdi-cd", cd, "raw", read_only=True, userdevice=3, cdrom=True),
        ],
    )
    pid = driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"BOOT owner")
    run = driver.run_root / spec.uuid
    allowed = {str(d.path) for d in spec.disks} | {str(run / "serial.log"), str(run / "qemu.log"), "/dev/null"}
    paths = {f for f in open_files(pid) if f.startswith("/")}
    assert paths <= allowed, paths - allowed
    assert {str(d.path) for d in spec.disks} <= paths
    assert not run.stat().st_mode & 0o007  # the run directory is closed to others
    # QEMU's image locks hold on descriptors as on paths: a second writer is kept out.
    read = ["qemu-io", "-f", "raw", "-c", "read 0 512", str(data)]
    other = subprocess.run(read, capture_output=True, text=True, check=False)
    assert other.returncode != 0 and "lock" in other.stderr, other.stderr
    driver.hard_stop(spec.uuid)


def test_backing_file_in_a_qcow2_header_is_never_opened(lab: Lab, driver: QemuDriver, secret: Path) -> None:
    """A qcow2 disk whose header names a root-only host file as its backing file boots from its own
    clusters; QEMU never opens that file."""
    image = lab.root / "evil.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(lab.image("evil")), str(image)], check=True)
    subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", str(secret), "-F", "raw", str(image)], check=True)
    spec = lab.spec("unused")
    spec = replace(spec, disks=[replace(spec.disks[0], path=image, format="qcow2")])
    pid = driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"BOOT evil")
    assert str(secret) not in open_files(pid)
    driver.hard_stop(spec.uuid)


def test_data_file_in_a_qcow2_header_is_out_of_reach(lab: Lab, driver: QemuDriver, secret: Path) -> None:
    """A qcow2 whose external data file is a root-only host file (7.2 cannot null ``data-file``):
    QEMU, as its user, may not open it, so the start fails, says why, and leaves nothing running."""
    image = lab.root / "datafile.qcow2"
    data = secret.with_name("data")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", f"data_file={data}", str(image), "1M"], check=True)
    data.chmod(0o600)
    spec = lab.spec("unused")
    spec = replace(spec, disks=[replace(spec.disks[0], path=image, format="qcow2")])
    with pytest.raises(DomainError, match="Permission denied"):
        driver.start(spec)
    assert driver.running() == {}
    assert lab.qemu_pids(str(lab.root)) == []


def test_reattach_keeps_the_sandbox_and_its_descriptors(lab: Lab) -> None:
    """After a restart the new driver reconnects over QMP to the same unprivileged QEMU, controls
    it, and can still hand it a new serial log (rotation passes a descriptor over that connection)."""
    first = lab.driver()
    spec = lab.spec("restart")
    pid = first.start(spec)
    lab.wait_serial(first, spec.uuid, b"TICK 1\r\n")
    first.close()
    second = lab.driver(serial_log_limit=100, serial_check_interval=0.1)
    assert second.running() == {spec.uuid: pid}
    second.reattach(spec.uuid)
    assert_sandboxed(pid, second.run_root / spec.uuid)
    second.pause(spec.uuid)
    second.unpause(spec.uuid)
    log = second.serial_log(spec.uuid)
    old = log.with_name(log.name + ".1")
    lab.wait_until(lambda: old.exists() and log.exists(), 10, "a rotation after the reattach")
    count = lab.ticks(second.read_serial(spec.uuid))[-1]
    lab.wait_serial(second, spec.uuid, f"TICK {count + 2}\r\n".encode())
    assert str(log) in open_files(pid)  # QEMU writes the new log, which root opened for it
    second.hard_stop(spec.uuid)


def test_tap_goes_with_qemu_however_it_ends(lab: Lab, bridge: str) -> None:
    """A bridged NIC's tap is the server's, passed to QEMU: it is on the bridge before the guest runs,
    QEMU holds it without any device or capability, and it vanishes when QEMU dies, even killed while
    no server runs; the VM then starts again with a new one."""
    first = lab.driver()
    spec = lab.spec("netted", nics=[NicSpec("02:00:00:00:00:07", bridge, 0)])
    tap = Path("/sys/class/net") / f"tap{spec.uuid[:8]}.0"
    pid = first.start(spec)
    assert (tap / "master").resolve().name == bridge
    assert int((tap / "flags").read_text(), 16) & 0x1  # IFF_UP
    assert "/dev/net/tun" in open_files(pid)  # inherited, never opened by QEMU's user
    assert_sandboxed(pid, first.run_root / spec.uuid)
    lab.wait_serial(first, spec.uuid, b"BOOT netted")
    first.close()
    os.kill(pid, signal.SIGKILL)
    lab.wait_until(lambda: not is_alive(pid), 5, "the kill")
    lab.wait_until(lambda: not tap.exists(), 5, "the tap to vanish with QEMU")
    second = lab.driver()
    second.start(spec)
    assert (tap / "master").resolve().name == bridge
    second.hard_stop(spec.uuid)
    assert not tap.exists()


def test_server_runs_vms_sandboxed_across_a_restart(pool_dir: Path, tmp_path: Path) -> None:
    """Through a real server: a VM started over XenAPI runs as the QEMU user under seccomp; after the
    server restarts it is reattached (same domid), answers, and shuts down cleanly."""
    server = PoolServer(pool_dir).start()
    try:
        s = server.session()
        vm = bootable_vm(server, s, make_sr(s, tmp_path / "lun"), "served")
        s.xenapi.VM.start(vm, False, False)
        domid = int(s.xenapi.VM.get_domid(vm))
        wait_serial(server, s, vm, b"BOOT served")
        run_dir = (pool_dir / "run").resolve() / s.xenapi.VM.get_uuid(vm)
        assert_sandboxed(domid, run_dir)
        server.stop(keep_vms=True)
        time.sleep(0.2)
        assert is_alive(domid)
        server = PoolServer(pool_dir).start()
        s = server.session()
        assert s.xenapi.VM.get_power_state(vm) == "Running"
        assert int(s.xenapi.VM.get_domid(vm)) == domid
        assert_sandboxed(domid, run_dir)
        s.xenapi.VM.pause(vm)
        s.xenapi.VM.unpause(vm)
        before = last_tick(serial(server, s, vm))
        wait_serial(server, s, vm, f"TICK {before + 2}".encode())  # the console follows the reattached guest
        s.xenapi.VM.clean_shutdown(vm)
        assert s.xenapi.VM.get_power_state(vm) == "Halted"
        assert qemu_pids(server) == []
    finally:
        server.stop()
