"""QEMU processes on this host: run directories, spawning, pid files, /proc checks, serial logs, taps.

Each VM has a run directory ``<run_root>/<uuid>/`` holding ``qemu.pid`` (written by the driver once
QEMU is spawned), ``qmp.sock`` (the driver listens, QEMU connects), ``serial.log`` and
``serial.log.1`` (the serial output, rotated), ``qemu.log`` (QEMU's own stderr) and ``spec.json``
(the spec it was started with). The directory outlives the domain, so the serial log of its last boot
stays readable, until the VM is destroyed.

QEMU runs as an unprivileged user (``QemuUser``, made by ``make setup``) with the run directory as
its working directory. The directory is root's, mode 0710, group the QEMU user's: QEMU may enter it
to reach its QMP socket by a relative name, and can neither list nor create anything there, so it
cannot plant a link that root would later follow. The run directory's parents need no rights for
it at all (pytest's 0700 temporary directories work). Everything else it gets as a descriptor.

QEMU runs in its own session and is not waited for, so it outlives the server (FACTS.md). A pid
file alone proves nothing once a process is gone, and pids are reused: a pid counts as our QEMU for
a uuid only while /proc shows a live (not zombie) process whose command line carries
``-uuid <uuid>`` and whose working directory is that run directory (compared as real paths).
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import pwd
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from farside.hypervisor.driver import VMSpec
from farside.hypervisor.qemu.argv import MIGRATION_PID_FILE, MONITOR_ID, PID_FILE, QMP_SOCKET, QMP_SOCKETS, SERIAL_LOG

# Unix socket paths are limited to 108 bytes including the NUL (sun_path), for QEMU too.
MAX_SOCKET_PATH = 107
# QEMU's stderr (start-up errors, assertion messages) is kept, but not without bound.
MAX_QEMU_LOG = 256 * 1024
# The run directory: root's, entered (not listed, not written) by the QEMU user's group.
RUN_DIR_MODE = 0o710
# linux/if_tun.h
TUN_DEVICE = "/dev/net/tun"
TUNSETIFF = 0x400454CA
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000
# struct ifreq: the name, the flags, padding to its 40 bytes.
IFREQ = "16sH22x"


@dataclass(frozen=True)
class QemuUser:
    """The system user QEMU runs as."""

    name: str
    uid: int
    gid: int

    @classmethod
    def lookup(cls, name: str) -> QemuUser:
        """Raises LookupError, saying what to do, when ``name`` is no user or is root."""
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise LookupError(
                f"the QEMU user {name!r} does not exist: run `make setup` as root, which creates it"
            ) from None
        if entry.pw_uid == 0 or entry.pw_gid == 0:
            raise LookupError(f"the QEMU user {name!r} is root or in root's group: QEMU must run unprivileged")
        return cls(name, entry.pw_uid, entry.pw_gid)


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
    def migration_pid_file(self) -> Path:
        """The VM's other QEMU while a live migration runs (argv.MIGRATION_PID_FILE), so that the
        fencing watchdog and a restarted driver know every QEMU that may hold the VM's disks."""
        return self.path / MIGRATION_PID_FILE

    @property
    def qmp_socket(self) -> Path:
        return self.path / QMP_SOCKET

    def qmp_socket_of(self, slot: int) -> Path:
        """The QMP socket of the QEMU in ``slot`` (a migration's destination takes the other)."""
        return self.path / QMP_SOCKETS[slot]

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

    def prepare(self, spec: VMSpec, serial_limit: int, user: QemuUser, new_boot: bool) -> None:
        """Create the directory for ``user`` to enter, record the spec, and bound the logs a new
        QEMU will append to.

        A ``new_boot`` (not a restore from a suspend image) starts with no serial output: what a
        reader (a readiness probe) sees is only what this boot printed.
        """
        self.path.mkdir(mode=RUN_DIR_MODE, parents=True, exist_ok=True)
        os.chown(self.path, 0, user.gid)
        os.chmod(self.path, RUN_DIR_MODE)  # mkdir's mode is cut by the umask, and a directory may be older
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

    def open_serial(self) -> int:
        """The serial log, open for QEMU to append to (created for root only: QEMU gets the descriptor)."""
        return os.open(self.serial_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)

    def write_pid(self, pid: int, migration: bool = False) -> None:
        target = self.migration_pid_file if migration else self.pid_file
        tmp = target.with_suffix(".tmp")
        tmp.write_text(f"{pid}\n")
        tmp.replace(target)

    def clean(self) -> None:
        """Remove what only a live domain needs (a stale pid file, the socket); keep the logs."""
        self.pid_file.unlink(missing_ok=True)
        self.migration_pid_file.unlink(missing_ok=True)
        for name in QMP_SOCKETS:
            (self.path / name).unlink(missing_ok=True)

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


def spawn(argv: list[str], run: RunDir, user: QemuUser, fds: Sequence[int]) -> subprocess.Popen[bytes]:
    """Start QEMU as ``user`` in ``run``, in a session of its own, so that it outlives us and our
    signals; it inherits ``fds`` (same numbers) and nothing else; stderr goes to the run's qemu.log.

    The child changes directory while still root, then drops every group and becomes ``user``; no
    ``-runas``, so QEMU itself never holds a privilege to drop.
    """
    reap_disowned()
    with open(run.qemu_log, "ab") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=run.path,
            user=user.uid,
            group=user.gid,
            extra_groups=[],
            umask=0o077,
            pass_fds=tuple(fds),
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


def is_our_qemu(pid: int, uuid: str, run_dir: Path) -> bool:
    """True if ``pid`` is alive and is the QEMU started for ``uuid`` in this run directory."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (FileNotFoundError, ProcessLookupError):
        return False
    if (b"-uuid", uuid.encode()) not in set(itertools.pairwise(args)):
        return False
    # Compared as real paths: the run root may be reached through a symlink one time and not another.
    return cwd == os.path.realpath(run_dir) and is_alive(pid)


def find_qemu(run: RunDir, uuid: str, migration: bool = False) -> int | None:
    """The pid of the live QEMU of ``uuid`` in ``run`` (``migration``: the VM's other QEMU while a
    live migration runs), if there is one."""
    pid = read_pid(run.migration_pid_file if migration else run.pid_file)
    return pid if pid is not None and is_our_qemu(pid, uuid, run.path) else None


def slot_of(pid: int) -> int:
    """The process slot (``argv.QMP_SOCKETS``) a live QEMU of ours was started in, from its command
    line; 0 for anything else (a QEMU rewriting its own argv can only make itself unreachable)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for slot, name in enumerate(QMP_SOCKETS):
        if f"socket,id={MONITOR_ID},path={name},".encode() in args:
            return slot
    return 0


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


def open_tap(tap: str, bridge: str) -> int:
    """Create tap ``tap`` on ``bridge``, up, and return its descriptor, for QEMU to inherit.

    The tap is not persistent: it lives while a descriptor of it is open, so it goes away with
    QEMU however QEMU ends (and with this process, if QEMU never started). No one without
    CAP_NET_ADMIN can attach to it.

    Raises:
        OSError: the tap could not be made (a tap of that name is in use), or ``ip`` failed.
    """
    fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack(IFREQ, os.fsencode(tap), IFF_TAP | IFF_NO_PI))
        done = subprocess.run(
            ["ip", "link", "set", "dev", tap, "master", bridge, "up"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise OSError(f"ip link set {tap} master {bridge}: {done.stderr.strip()}")
    except BaseException:
        os.close(fd)
        raise
    return fd


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
