"""QEMU processes on this host: run directories, spawning, pid files, /proc checks, serial logs.

Each VM has a run directory ``<run_root>/<uuid>/`` holding ``qemu.pid`` (written by QEMU, removed by
QEMU when it exits cleanly), ``qmp.sock`` (the driver listens, QEMU connects), ``serial.log`` and
``serial.log.1`` (the serial output, rotated), ``qemu.log`` (QEMU's own stderr) and ``spec.json``
(the spec it was started with). The directory outlives the domain, so the serial log of its last boot
stays readable, until the VM is destroyed.

QEMU runs in its own session and is not waited for, so it outlives the server (FACTS.md). A pid
file alone proves nothing once a process is gone, and pids are reused: a pid counts as our QEMU for
a uuid only while /proc shows a live (not zombie) process whose command line carries both
``-uuid <uuid>`` and ``-pidfile <that run directory's pid file>`` (compared as real paths).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from farside.hypervisor.driver import VMSpec
from farside.hypervisor.qemu.argv import PID_FILE, QMP_SOCKET, SERIAL_LOG

# Unix socket paths are limited to 108 bytes including the NUL (sun_path), for QEMU too.
MAX_SOCKET_PATH = 107
# QEMU's stderr (start-up errors, assertion messages) is kept, but not without bound.
MAX_QEMU_LOG = 256 * 1024


@dataclass(frozen=True)
class RunDir:
    """The run directory of one VM."""

    path: Path

    @classmethod
    def of(cls, root: Path, uuid: str) -> RunDir:
        return cls(root / uuid)

    @property
    def pid_file(self) -> Path:
        return self.path / PID_FILE

    @property
    def qmp_socket(self) -> Path:
        return self.path / QMP_SOCKET

    @property
    def serial_log(self) -> Path:
        return self.path / SERIAL_LOG

    @property
    def serial_log_old(self) -> Path:
        """The serial log before the last rotation."""
        return self.path / (SERIAL_LOG + ".1")

    @property
    def qemu_log(self) -> Path:
        return self.path / "qemu.log"

    @property
    def spec_file(self) -> Path:
        return self.path / "spec.json"

    def prepare(self, spec: VMSpec, serial_limit: int, new_boot: bool) -> None:
        """Create the directory, record the spec, and bound the logs a new QEMU will append to.

        A ``new_boot`` (not a restore from a suspend image) starts with no serial output: what a
        reader (a readiness probe) sees is only what this boot printed.
        """
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.spec_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(spec.to_json(), indent=2) + "\n")
        tmp.replace(self.spec_file)
        # No QEMU writes these now, so they can be cut freely.
        if new_boot:
            self.serial_log.unlink(missing_ok=True)
            self.serial_log_old.unlink(missing_ok=True)
        elif _size(self.serial_log) > serial_limit:
            self.serial_log.replace(self.serial_log_old)
        keep_tail(self.serial_log_old, serial_limit)
        keep_tail(self.qemu_log, MAX_QEMU_LOG)

    def clean(self) -> None:
        """Remove what only a live domain needs (a stale pid file, the socket); keep the logs."""
        self.pid_file.unlink(missing_ok=True)
        self.qmp_socket.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the directory with its logs (its VM is gone)."""
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(self.path)

    def read_serial(self, max_bytes: int) -> bytes:
        """The last ``max_bytes`` of serial output, across the rotated and the current log."""
        data = b""
        for path in (self.serial_log, self.serial_log_old):
            if len(data) >= max_bytes:
                break
            data = _tail(path, max_bytes - len(data)) + data
        return data


# Children whose driver closed while they ran. They are polled (reaped once they exit) instead of
# being left to the garbage collector, which would warn that they still run: that is the point.
_disowned: list[subprocess.Popen[bytes]] = []
_disowned_lock = threading.Lock()


def spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    """Start QEMU in a session of its own, so that it outlives us and our signals; stderr to ``log``."""
    reap_disowned()
    with open(log, "ab") as out:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def disown(popen: subprocess.Popen[bytes]) -> None:
    """Let go of a child that keeps running after its driver closed."""
    if popen.poll() is None:
        with _disowned_lock:
            _disowned.append(popen)


def reap_disowned() -> None:
    with _disowned_lock:
        _disowned[:] = [p for p in _disowned if p.poll() is None]


def read_pid(pid_file: Path) -> int | None:
    try:
        text = pid_file.read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() else None


def is_alive(pid: int) -> bool:
    """True while ``pid`` is a process that has not exited (zombies count as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ')'.
    state = stat.rpartition(")")[2].split()[:1]
    return state not in (["Z"], ["X"], ["x"])


def is_our_qemu(pid: int, uuid: str, pid_file: Path) -> bool:
    """True if ``pid`` is alive and is the QEMU started for ``uuid`` with this pid file."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return False
    pairs = set(itertools.pairwise(args))
    if (b"-uuid", uuid.encode()) not in pairs:
        return False
    # Compared as real paths: the run root may be reached through a symlink one time and not another.
    ours = os.path.realpath(pid_file)
    if not any(flag == b"-pidfile" and os.path.realpath(os.fsdecode(value)) == ours for flag, value in pairs):
        return False
    return is_alive(pid)


def find_qemu(run: RunDir, uuid: str) -> int | None:
    """The pid of the live QEMU of ``uuid`` in ``run``, if there is one."""
    pid = read_pid(run.pid_file)
    return pid if pid is not None and is_our_qemu(pid, uuid, run.pid_file) else None


def signal_pid(pid: int, sig: signal.Signals) -> None:
    """Send ``sig``; a process that has gone already is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def reap(popen: subprocess.Popen[bytes] | None) -> None:
    """Collect our child's exit status, so it does not linger as a zombie."""
    if popen is not None:
        popen.poll()


def wait_gone(pid: int, timeout: float, popen: subprocess.Popen[bytes] | None = None) -> bool:
    """Wait until ``pid`` has exited; True if it did within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        reap(popen)
        if not is_alive(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def keep_tail(path: Path, limit: int) -> None:
    """Cut a file that nobody writes any more down to its last ``limit`` bytes."""
    if _size(path) <= limit:
        return
    tail = _tail(path, limit)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(tail)
    tmp.replace(path)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _tail(path: Path, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            return f.read(limit)
    except FileNotFoundError:
        return b""


def attach_tap(tap: str, bridge: str, timeout: float = 5.0) -> None:
    """Put QEMU's new tap on ``bridge`` and bring it up, once QEMU has created it.

    Raises:
        OSError: the tap did not appear, or ``ip`` failed (its message is the error's).
    """
    deadline = time.monotonic() + timeout
    while not Path("/sys/class/net", tap).exists():
        if time.monotonic() > deadline:
            raise OSError(f"tap {tap} did not appear")
        time.sleep(0.01)
    done = subprocess.run(
        ["ip", "link", "set", "dev", tap, "master", bridge, "up"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise OSError(f"ip link set {tap} master {bridge}: {done.stderr.strip()}")


def host_bridges(sys_net: Path = Path("/sys/class/net")) -> frozenset[str]:
    """The names of the bridges on this host."""
    try:
        return frozenset(p.name for p in sys_net.iterdir() if (p / "bridge").is_dir())
    except FileNotFoundError:
        return frozenset()


def kvm_usable(cpuinfo: Path = Path("/proc/cpuinfo"), dev: Path = Path("/dev/kvm")) -> bool:
    """True if the CPU has hardware virtualization (vmx or svm) and /dev/kvm exists.

    /dev/kvm alone is not enough: under nested software KVM it opens but is about 100 times slower
    than TCG for real-mode code (FACTS.md).
    """
    try:
        text = cpuinfo.read_text()
    except FileNotFoundError:
        return False
    flags = {f for line in text.splitlines() if line.startswith("flags") for f in line.partition(":")[2].split()}
    return bool(flags & {"vmx", "svm"}) and dev.exists()
