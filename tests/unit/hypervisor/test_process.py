"""QEMU processes: host facts, pid checks against /proc, run directories and their logs."""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from farside.hypervisor.driver import DiskSpec, NicSpec, VMSpec
from farside.hypervisor.qemu import process
from farside.hypervisor.qemu.process import QemuUser, RunDir

UUID = "6f1c3c9e-2a51-4c1e-9a0b-3d2f1e0c4b5a"


@pytest.mark.parametrize(
    ("flags", "dev", "expected"),
    [("fpu vmx sse", True, True), ("fpu svm", True, True), ("fpu sse", True, False), ("fpu vmx", False, False)],
)
def test_kvm_usable_needs_flags_and_device(tmp_path: Path, flags: str, dev: bool, expected: bool) -> None:
    """KVM counts only with vmx or svm in /proc/cpuinfo and /dev/kvm present."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n")
    device = tmp_path / "kvm"
    if dev:
        device.touch()
    assert process.kvm_usable(cpuinfo, device) is expected


def test_host_bridges(tmp_path: Path) -> None:
    """Bridges are the interfaces with a bridge/ directory in sysfs."""
    (tmp_path / "xenbr0" / "bridge").mkdir(parents=True)
    (tmp_path / "eth0").mkdir()
    assert process.host_bridges(tmp_path) == frozenset({"xenbr0"})
    assert process.host_bridges(tmp_path / "missing") == frozenset()


@pytest.fixture
def fake_qemu(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], RunDir]]:
    """A process with -uuid on its command line and a run directory as its cwd, as a QEMU's."""
    run = RunDir(tmp_path / "r,un")
    run.path.mkdir()
    argv = [sys.executable, "-c", "import time; time.sleep(60)", "-uuid", UUID]
    child = subprocess.Popen(argv, cwd=run.path)
    run.write_pid(child.pid)
    deadline = time.monotonic() + 5  # until the child has exec'd, /proc shows our command line
    while UUID.encode() not in Path(f"/proc/{child.pid}/cmdline").read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield child, run
    finally:
        child.kill()
        child.wait()


def test_is_our_qemu_checks_uuid_and_run_dir(fake_qemu: tuple[subprocess.Popen[bytes], RunDir]) -> None:
    """A pid is our QEMU only with the uuid on its command line and the run directory as its cwd."""
    child, run = fake_qemu
    assert process.is_our_qemu(child.pid, UUID, run.path)
    assert not process.is_our_qemu(child.pid, "00000000-0000-0000-0000-000000000000", run.path)
    other = run.path.with_name("other")
    other.mkdir()
    assert not process.is_our_qemu(child.pid, UUID, other)
    assert not process.is_our_qemu(os.getpid(), UUID, run.path)
    assert process.find_qemu(run, UUID) == child.pid
    link = run.path.parent / "link"
    link.symlink_to(run.path)
    assert process.is_our_qemu(child.pid, UUID, link)  # the same directory, reached another way


def test_zombies_are_dead(fake_qemu: tuple[subprocess.Popen[bytes], RunDir]) -> None:
    """A process that exited but was not reaped yet no longer counts as alive."""
    child, run = fake_qemu
    os.kill(child.pid, signal.SIGKILL)
    assert process.wait_gone(child.pid, 5)  # without reaping: the zombie stays in /proc
    assert Path(f"/proc/{child.pid}").exists()
    assert not process.is_our_qemu(child.pid, UUID, run.path)
    assert process.find_qemu(run, UUID) is None


def test_stale_or_garbage_pid_files(tmp_path: Path) -> None:
    """A pid file naming a dead process, or holding garbage, finds nothing."""
    run = RunDir(tmp_path)
    assert process.find_qemu(run, UUID) is None
    run.pid_file.write_text("not a pid")
    assert process.find_qemu(run, UUID) is None
    done = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert done.returncode == 0
    run.pid_file.write_text("999999999\n")
    assert process.find_qemu(run, UUID) is None


def spec() -> VMSpec:
    disk = DiskSpec("vdi", Path("/srv/a,b.raw"), "raw", False, 0, bootable=True)
    return VMSpec(UUID, "vm", 16 << 20, 1, [disk], [NicSpec("02:00:00:00:00:01", "xenbr0", 0)])


def test_prepare_records_the_spec_and_bounds_old_logs(tmp_path: Path) -> None:
    """prepare for a restore (the same boot) writes spec.json, rotates an oversized serial log and
    cuts the rotated one."""
    run = RunDir.of(tmp_path, UUID)
    run.path.mkdir()
    run.serial_log.write_bytes(b"x" * 500 + b"END")
    run.prepare(spec(), serial_limit=100, user=QemuUser("someone", 65534, 65534), new_boot=False)

    assert VMSpec.from_json(json.loads(run.spec_file.read_text())) == spec()
    assert not run.serial_log.exists()
    assert run.serial_log_old.read_bytes() == b"x" * 97 + b"END"


def test_run_dir_is_entered_not_written_by_qemu(tmp_path: Path) -> None:
    """The run directory is root's, 0710, group the QEMU user's (an older 0700 one is fixed); the
    serial log QEMU gets as a descriptor is root's alone."""
    run = RunDir.of(tmp_path, UUID)
    run.path.mkdir(mode=0o700)
    run.prepare(spec(), serial_limit=100, user=QemuUser("someone", 65534, 65533), new_boot=False)
    st = run.path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o710, 0, 65533)
    os.close(run.open_serial())
    assert stat.S_IMODE(run.serial_log.stat().st_mode) == 0o600


def test_serial_log_is_never_opened_through_a_link(tmp_path: Path) -> None:
    """A link planted as serial.log is not followed (root opens it)."""
    run = RunDir(tmp_path)
    target = tmp_path / "elsewhere"
    run.serial_log.symlink_to(target)
    with pytest.raises(OSError):
        run.open_serial()
    assert not target.exists()


def test_qemu_user_lookup() -> None:
    """A missing user says to run make setup; root is refused."""
    with pytest.raises(LookupError, match="run `make setup`"):
        QemuUser.lookup("farside-no-such-user")
    with pytest.raises(LookupError, match="unprivileged"):
        QemuUser.lookup(pwd.getpwuid(0).pw_name)


def test_prepare_for_a_new_boot_drops_the_last_boots_output(tmp_path: Path) -> None:
    """A new boot starts with no serial output: a reader sees only what this boot prints."""
    run = RunDir.of(tmp_path, UUID)
    run.path.mkdir()
    run.serial_log.write_bytes(b"BOOT old\r\n")
    run.serial_log_old.write_bytes(b"older")
    run.prepare(spec(), serial_limit=100, user=QemuUser("someone", 65534, 65534), new_boot=True)
    assert run.read_serial(100) == b""
    assert not run.serial_log.exists() and not run.serial_log_old.exists()


def test_remove_takes_the_logs(tmp_path: Path) -> None:
    """remove deletes the run directory with its logs, and a missing one is no error."""
    run = RunDir.of(tmp_path, UUID)
    run.path.mkdir()
    run.serial_log.write_bytes(b"BOOT x")
    run.remove()
    assert not run.path.exists()
    run.remove()


def test_read_serial_spans_rotation(tmp_path: Path) -> None:
    """read_serial returns the newest bytes, taking from the rotated log when the current is short."""
    run = RunDir(tmp_path)
    run.serial_log_old.write_bytes(b"0123456789")
    run.serial_log.write_bytes(b"abc")
    assert run.read_serial(5) == b"89abc"
    assert run.read_serial(100) == b"0123456789abc"
    assert run.read_serial(2) == b"bc"


def test_keep_tail(tmp_path: Path) -> None:
    """keep_tail cuts a file to its last bytes and leaves small files alone."""
    path = tmp_path / "log"
    path.write_bytes(b"abcdef")
    process.keep_tail(path, 10)
    assert path.read_bytes() == b"abcdef"
    process.keep_tail(path, 2)
    assert path.read_bytes() == b"ef"
    process.keep_tail(tmp_path / "missing", 2)


def test_clean_keeps_logs(tmp_path: Path) -> None:
    """clean removes the pid file and socket of a gone domain, not its logs."""
    run = RunDir(tmp_path)
    for path in (run.pid_file, run.qmp_socket, run.serial_log):
        path.touch()
    run.clean()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serial.log"]
