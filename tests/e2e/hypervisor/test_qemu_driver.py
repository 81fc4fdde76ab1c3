"""The QEMU driver under real QEMU (TCG), with guests from ``farside.storage.bootable``.

Each guest prints ``BOOT <tag>``, then ``TICK <n>`` about every 110 ms with n counted in guest
memory, and powers off when the ACPI power button is pressed (once it listens for it: an earlier
press is dropped, so tests press again until it halts, as ``Driver.clean_shutdown`` does).
Timings go to stdout (``pytest -s``) for the report.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from e2e.hypervisor.qemu_lab import Lab
from farside.hypervisor.driver import DiskSpec, DomainState, NicSpec
from farside.hypervisor.errors import DomainError, DomainNotFound, RunRootBusy, VdiMissing
from farside.hypervisor.qemu import QemuDriver
from farside.hypervisor.qemu.process import is_alive

QEMU = "qemu-system-x86_64"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which(QEMU) is None, reason=f"{QEMU} is not installed"),
]


def power_off(lab: Lab, driver: QemuDriver, uuid: str, timeout: float = 10) -> float:
    """Press the power button until the guest halts; returns the seconds from the last press."""
    deadline = time.monotonic() + timeout
    while True:
        pressed = time.monotonic()
        try:
            driver.press_power_button(uuid)
        except DomainError:  # it may be going down as we press
            assert driver.wait_halted(uuid, 5)
            return time.monotonic() - pressed
        if driver.wait_halted(uuid, 0.5):
            return time.monotonic() - pressed
        assert time.monotonic() < deadline, "the guest never powered off"


def test_start_shows_the_tag(lab: Lab, driver: QemuDriver) -> None:
    """A started VM runs: its serial log shows the tag, and running() lists its pid."""
    spec = lab.spec("hello")
    began = time.monotonic()
    pid = driver.start(spec)
    seen = lab.wait_serial(driver, spec.uuid, b"BOOT hello\r\n")
    print(f"\nstart-to-tag {seen - began:.3f} s")
    assert driver.state(spec.uuid) is DomainState.RUNNING
    assert driver.running() == {spec.uuid: pid}
    assert driver.serial_log(spec.uuid).read_bytes().startswith(b"BOOT hello\r\n")
    driver.hard_stop(spec.uuid)


def test_start_paused_runs_nothing_until_unpaused(lab: Lab, driver: QemuDriver) -> None:
    """start(paused=True) leaves the vCPUs stopped; unpause lets the guest boot."""
    spec = lab.spec("sleepy")
    driver.start(spec, paused=True)
    assert driver.state(spec.uuid) is DomainState.PAUSED
    time.sleep(0.5)
    assert driver.read_serial(spec.uuid) == b""
    driver.unpause(spec.uuid)
    lab.wait_serial(driver, spec.uuid, b"BOOT sleepy")
    assert driver.state(spec.uuid) is DomainState.RUNNING
    driver.hard_stop(spec.uuid)


def test_pause_stops_ticks_and_unpause_continues(lab: Lab, driver: QemuDriver) -> None:
    """Paused, the guest does not tick; unpaused, it counts on from where it stopped."""
    spec = lab.spec("pausing")
    driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"TICK 2\r\n")
    driver.pause(spec.uuid)
    assert driver.state(spec.uuid) is DomainState.PAUSED
    at_pause = lab.ticks(driver.read_serial(spec.uuid))
    time.sleep(0.6)
    assert lab.ticks(driver.read_serial(spec.uuid)) == at_pause
    driver.unpause(spec.uuid)
    after = lab.wait_until(
        lambda: (seen := lab.ticks(driver.read_serial(spec.uuid))) and len(seen) > len(at_pause) + 1 and seen,
        5,
        "ticks after unpause",
    )
    assert after == list(range(1, len(after) + 1))
    driver.hard_stop(spec.uuid)


def test_power_button_halts_and_reports(lab: Lab, driver: QemuDriver) -> None:
    """The guest powers off on the button: QEMU exits, on_halted hears guest-shutdown, files are tidied."""
    halted: list[tuple[str, str]] = []
    driver.on_halted = lambda uuid, reason: halted.append((uuid, reason))
    spec = lab.spec("button")
    pid = driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"TICK 1\r\n")
    latency = power_off(lab, driver, spec.uuid)
    print(f"\npower-button-to-halted {latency * 1000:.0f} ms")
    assert not is_alive(pid)
    assert b"POWEROFF" in driver.read_serial(spec.uuid)
    lab.wait_until(lambda: halted, 5, "on_halted")
    assert halted == [(spec.uuid, "guest-shutdown")]
    assert driver.state(spec.uuid) is DomainState.HALTED
    assert driver.running() == {}
    assert not (driver.run_root / spec.uuid / "qemu.pid").exists()
    with pytest.raises(DomainNotFound):
        driver.press_power_button(spec.uuid)


def test_clean_shutdown_default_retries_the_button(lab: Lab, driver: QemuDriver) -> None:
    """Driver.clean_shutdown right after start presses until the guest listens, then returns True."""
    spec = lab.spec("early")
    driver.start(spec)
    assert driver.clean_shutdown(spec.uuid, timeout=10, press_interval=0.2)
    assert driver.state(spec.uuid) is DomainState.HALTED


def test_hard_stop_is_quiet_and_idempotent(lab: Lab, driver: QemuDriver) -> None:
    """hard_stop ends QEMU at once, does not call on_halted, and may be repeated."""
    halted: list[tuple[str, str]] = []
    driver.on_halted = lambda uuid, reason: halted.append((uuid, reason))
    spec = lab.spec("plug")
    pid = driver.start(spec)
    driver.hard_stop(spec.uuid)
    assert not is_alive(pid)
    assert driver.state(spec.uuid) is DomainState.HALTED
    driver.hard_stop(spec.uuid)
    time.sleep(0.2)
    assert halted == []


def test_reset_reboots_the_guest(lab: Lab, driver: QemuDriver) -> None:
    """reset (hard reboot) boots the guest again in the same QEMU: a second BOOT, ticks from 1."""
    spec = lab.spec("again")
    pid = driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"TICK 3\r\n")
    driver.reset(spec.uuid)
    lab.wait_until(lambda: driver.read_serial(spec.uuid).count(b"BOOT again") == 2, 10, "a second boot")
    second = driver.read_serial(spec.uuid).rpartition(b"BOOT again")[2]
    lab.wait_until(lambda: b"TICK 1\r\n" in driver.read_serial(spec.uuid).rpartition(b"BOOT again")[2], 5, "tick 1")
    assert b"TICK 3" not in second
    assert driver.running() == {spec.uuid: pid}
    driver.hard_stop(spec.uuid)


def test_suspend_and_resume_continue_the_count(lab: Lab, driver: QemuDriver) -> None:
    """suspend leaves no QEMU and a state file; a start from it counts on instead of booting."""
    halted: list[tuple[str, str]] = []
    driver.on_halted = lambda uuid, reason: halted.append((uuid, reason))
    spec = lab.spec("sleeper")
    pid = driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"TICK 3\r\n")
    state = lab.root / "suspend,vdi.img"
    began = time.monotonic()
    driver.suspend(spec.uuid, state)
    print(f"\nsuspend {time.monotonic() - began:.3f} s, {state.stat().st_size} bytes")
    assert not is_alive(pid)
    assert lab.qemu_pids(str(lab.root)) == []
    assert driver.running() == {}
    assert driver.state(spec.uuid) is DomainState.HALTED
    assert state.stat().st_size > 0
    last = lab.ticks(driver.read_serial(spec.uuid))[-1]

    began = time.monotonic()
    driver.start(spec, restore_from=state)
    restored = time.monotonic()
    assert driver.state(spec.uuid) is DomainState.RUNNING
    lab.wait_until(lambda: lab.ticks(driver.read_serial(spec.uuid))[-1] >= last + 3, 5, "ticks after resume")
    first_after = lab.wait_serial(driver, spec.uuid, f"TICK {last + 1}\r\n".encode())
    print(f"resume {restored - began:.3f} s (to running), first tick after {first_after - began:.3f} s")
    output = driver.read_serial(spec.uuid)
    assert output.count(b"BOOT sleeper") == 1
    assert lab.ticks(output) == list(range(1, len(lab.ticks(output)) + 1))
    driver.hard_stop(spec.uuid)
    assert halted == []


def test_resume_paused(lab: Lab, driver: QemuDriver) -> None:
    """A restore with paused=True stays paused, and counts on after unpause."""
    spec = lab.spec("paused-resume")
    driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"TICK 2\r\n")
    state = lab.root / "state.img"
    driver.suspend(spec.uuid, state)
    last = lab.ticks(driver.read_serial(spec.uuid))[-1]
    driver.start(spec, paused=True, restore_from=state)
    assert driver.state(spec.uuid) is DomainState.PAUSED
    time.sleep(0.4)
    assert lab.ticks(driver.read_serial(spec.uuid))[-1] == last
    driver.unpause(spec.uuid)
    lab.wait_serial(driver, spec.uuid, f"TICK {last + 1}\r\n".encode())
    driver.hard_stop(spec.uuid)


def test_restore_from_missing_file_is_refused(lab: Lab, driver: QemuDriver) -> None:
    """A resume from a state file that is not there fails before QEMU starts."""
    spec = lab.spec("nostate")
    with pytest.raises(DomainError, match="no suspend image"):
        driver.start(spec, restore_from=lab.root / "nothing.img")
    assert driver.running() == {}


def test_restore_from_garbage_fails_and_leaves_nothing(lab: Lab, driver: QemuDriver) -> None:
    """A state file that is not a saved state makes QEMU exit; the error says so and nothing is left."""
    halted: list[tuple[str, str]] = []
    driver.on_halted = lambda uuid, reason: halted.append((uuid, reason))
    spec = lab.spec("garbage")
    state = lab.root / "garbage.img"
    state.write_bytes(b"not a migration stream" * 100)
    with pytest.raises(DomainError, match="restoring from"):
        driver.start(spec, restore_from=state)
    assert driver.running() == {}
    time.sleep(0.2)
    assert halted == []  # a failed start is start()'s error, not a halt
    assert lab.qemu_pids(str(lab.root)) == []


def test_reattach_after_restart(lab: Lab) -> None:
    """A new driver on the same run root (a restarted server) finds, controls and powers off the VM."""
    first = lab.driver()
    spec = lab.spec("survivor")
    pid = first.start(spec)
    lab.wait_serial(first, spec.uuid, b"TICK 1\r\n")
    first.close()  # the server stops; the VM does not
    time.sleep(0.3)
    assert is_alive(pid)

    halted: list[tuple[str, str]] = []
    second = lab.driver()
    second.on_halted = lambda uuid, reason: halted.append((uuid, reason))
    assert second.running() == {spec.uuid: pid}
    began = time.monotonic()
    second.reattach(spec.uuid)
    print(f"\nreattach {time.monotonic() - began:.3f} s")
    assert second.state(spec.uuid) is DomainState.RUNNING
    second.pause(spec.uuid)
    assert second.state(spec.uuid) is DomainState.PAUSED
    second.unpause(spec.uuid)
    power_off(lab, second, spec.uuid)
    assert not is_alive(pid)
    lab.wait_until(lambda: halted, 5, "on_halted after reattach")
    assert halted == [(spec.uuid, "guest-shutdown")]


def test_commands_reattach_by_themselves(lab: Lab) -> None:
    """After a restart, state() on a running VM reattaches without an explicit reattach()."""
    first = lab.driver()
    spec = lab.spec("lazy")
    first.start(spec)
    first.close()
    second = lab.driver()
    assert second.state(spec.uuid) is DomainState.RUNNING
    second.hard_stop(spec.uuid)
    assert second.running() == {}


def test_hard_stop_of_an_unattached_vm(lab: Lab) -> None:
    """hard_stop works on a VM the new driver has not reattached."""
    first = lab.driver()
    spec = lab.spec("orphan")
    pid = first.start(spec)
    first.close()
    second = lab.driver()
    second.hard_stop(spec.uuid)
    assert not is_alive(pid)
    assert second.running() == {}


def test_vm_killed_while_no_driver_is_not_running(lab: Lab) -> None:
    """A QEMU killed while the server was down is not in running(); its VM can start again."""
    first = lab.driver()
    spec = lab.spec("victim")
    pid = first.start(spec)
    lab.wait_serial(first, spec.uuid, b"BOOT victim")
    first.close()
    os.kill(pid, signal.SIGKILL)
    lab.wait_until(lambda: not is_alive(pid), 5, "the kill")
    second = lab.driver()
    assert (second.run_root / spec.uuid / "qemu.pid").exists()  # stale, left by the kill
    assert second.running() == {}
    assert second.state(spec.uuid) is DomainState.HALTED
    second.start(spec)
    lab.wait_serial(second, spec.uuid, b"BOOT victim")
    assert second.read_serial(spec.uuid).count(b"BOOT ") == 1  # this boot's output only
    second.hard_stop(spec.uuid)


def test_vm_killed_while_attached_is_reported(lab: Lab, driver: QemuDriver) -> None:
    """A QEMU that dies under a watching driver is reported through on_halted as killed."""
    halted: list[tuple[str, str]] = []
    driver.on_halted = lambda uuid, reason: halted.append((uuid, reason))
    spec = lab.spec("sniped")
    pid = driver.start(spec)
    os.kill(pid, signal.SIGKILL)
    lab.wait_until(lambda: halted, 5, "on_halted")
    assert halted == [(spec.uuid, "killed")]
    assert driver.state(spec.uuid) is DomainState.HALTED


def test_missing_disk_names_the_vdi(lab: Lab, driver: QemuDriver) -> None:
    """A VM whose disk is missing fails with VDI_MISSING naming the VDI, and no QEMU runs."""
    spec = lab.spec("ghost")
    gone = replace(spec.disks[0], vdi_uuid="0d1e2f3a-0000-4000-8000-000000000001", path=lab.root / "gone.img")
    with pytest.raises(VdiMissing) as caught:
        driver.start(replace(spec, disks=[gone]))
    assert caught.value.failure == ["VDI_MISSING", gone.vdi_uuid, str(gone.path)]
    assert lab.qemu_pids(str(lab.root)) == []
    assert driver.running() == {}


def test_qemu_start_failure_leaves_nothing(lab: Lab, driver: QemuDriver) -> None:
    """When QEMU itself refuses (a disk locked by another VM), the error carries its message."""
    first = lab.spec("holder")
    driver.start(first)
    second = replace(lab.spec("taker"), disks=first.disks)
    with pytest.raises(DomainError, match=r"QEMU failed to start.*lock"):
        driver.start(second)
    assert driver.running() == {first.uuid: driver.running()[first.uuid]}
    driver.hard_stop(first.uuid)


def test_start_twice_is_refused(lab: Lab, driver: QemuDriver) -> None:
    """Starting a VM whose domain runs fails and leaves the running one alone."""
    spec = lab.spec("twice")
    pid = driver.start(spec)
    with pytest.raises(DomainError, match="running already"):
        driver.start(spec)
    assert driver.running() == {spec.uuid: pid}
    driver.hard_stop(spec.uuid)


def test_ten_vms_started_concurrently(lab: Lab, driver: QemuDriver) -> None:
    """Ten VMs started from ten threads at once all boot and show their own tags."""
    specs = [lab.spec(f"vm{i}") for i in range(10)]
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            driver.start(specs[i])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(10)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    started = time.monotonic()
    for i, spec in enumerate(specs):
        lab.wait_serial(driver, spec.uuid, f"BOOT vm{i}\r\n".encode())
    print(f"\n10 VMs: all started {started - began:.3f} s, all tags {time.monotonic() - began:.3f} s")
    assert sorted(driver.running()) == sorted(s.uuid for s in specs)
    stoppers = [threading.Thread(target=driver.hard_stop, args=(s.uuid,)) for s in specs]
    for t in stoppers:
        t.start()
    for t in stoppers:
        t.join()
    assert driver.running() == {}


def test_serial_log_is_bounded_and_loses_nothing(lab: Lab) -> None:
    """Past the limit the log is rotated: both files stay small and the ticks have no gap."""
    driver = lab.driver(serial_log_limit=200, serial_check_interval=0.1)
    spec = lab.spec("chatty")
    driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"TICK 40\r\n", timeout=15)
    driver.pause(spec.uuid)  # no more output: let a last check run, then measure a still log
    time.sleep(0.5)
    log = driver.serial_log(spec.uuid)
    old = log.with_name(log.name + ".1")
    assert old.exists()
    assert log.stat().st_size <= 200
    assert old.stat().st_size <= 200
    seen = lab.ticks(driver.read_serial(spec.uuid, 400))
    assert seen == list(range(seen[0], seen[0] + len(seen))), seen
    assert seen[-1] >= 40
    driver.hard_stop(spec.uuid)


def test_full_spec_boots_from_qcow2(lab: Lab, driver: QemuDriver) -> None:
    """qcow2 root disk + raw data disk + CD + two NICs, with commas in every path and the name."""
    raw = lab.image("qcow")
    root = lab.root / "root,disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(root)], check=True)
    data = lab.root / "data,disk.raw"
    data.write_bytes(bytes(1024 * 1024))
    cd = lab.root / "install,cd.iso"
    cd.write_bytes(bytes(2048 * 16))
    spec = replace(
        lab.spec("unused"),
        name="web,01\nprimary",  # the newline cannot go to QEMU; the VM still starts
        disks=[
            DiskSpec("vdi-cd", cd, "raw", read_only=True, userdevice=3, cdrom=True),
            DiskSpec("vdi-data", data, "raw", read_only=False, userdevice=1),
            DiskSpec("vdi-root", root, "qcow2", read_only=False, userdevice=0, bootable=True),
        ],
        nics=[NicSpec("02:00:00:00:00:01", "xenbr0", 0), NicSpec("02:00:00:00:00:02", "nosuchbr", 1)],
    )
    driver.start(spec)
    lab.wait_serial(driver, spec.uuid, b"BOOT qcow\r\n")
    driver.hard_stop(spec.uuid)


def test_one_driver_per_run_root(lab: Lab, driver: QemuDriver) -> None:
    """A second driver on a run root in use is refused (it would steal the QMP sockets)."""
    with pytest.raises(RunRootBusy):
        QemuDriver(driver.run_root)


def test_uuids_cannot_escape_the_run_root(driver: QemuDriver) -> None:
    """Only canonical uuids name run directories."""
    for bad in ("../etc", "", "6F1C3C9E-2A51-4C1E-9A0B-3D2F1E0C4B5A"):
        with pytest.raises(DomainError):
            driver.state(bad)
    assert driver.state("6f1c3c9e-2a51-4c1e-9a0b-3d2f1e0c4b5a") is DomainState.HALTED


def test_run_root_path_length_checked(tmp_path: Path) -> None:
    """A run root too long for Unix socket paths below it is refused up front."""
    with pytest.raises(ValueError, match="too long"):
        QemuDriver(tmp_path / ("x" * 100))


def test_nic_on_an_existing_bridge_gets_a_tap(lab: Lab, driver: QemuDriver, bridge: str) -> None:
    """A NIC whose bridge exists gets a tap on it, up, gone with QEMU; one whose bridge does not, no tap."""
    spec = lab.spec("bridged", nics=[NicSpec("02:00:00:00:00:01", bridge, 0), NicSpec("02:00:00:00:00:02", "nobr", 1)])
    driver.start(spec)
    tap = Path("/sys/class/net") / f"tap{spec.uuid[:8]}.0"
    assert (tap / "master").resolve().name == bridge
    assert int((tap / "flags").read_text(), 16) & 0x1  # IFF_UP
    assert not (Path("/sys/class/net") / f"tap{spec.uuid[:8]}.1").exists()
    lab.wait_serial(driver, spec.uuid, b"BOOT bridged")
    driver.hard_stop(spec.uuid)
    assert not tap.exists()
