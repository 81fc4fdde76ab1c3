"""The lab's long-running processes: started detached, found again by pid file, stopped by pid.

A pid alone is not proof: before signalling, the process's command line must still be the one the
lab started (pids are reused), so ``lab down`` run twice, or after a reboot, kills nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from farside.cli.lab.layout import LabError
from farside.hypervisor.qemu.process import is_alive, read_pid


def farside_argv(*args: str) -> list[str]:
    """The ``farside`` command as this interpreter runs it (the venv's, wherever it is)."""
    return [sys.executable, "-m", "farside.cli.main", *args]


def start(argv: list[str], pid_file: Path, log: Path) -> int:
    """Start ``argv`` in its own session (it outlives this command), its pid in ``pid_file``."""
    with open(log, "ab") as out:
        child = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    pid_file.write_text(f"{child.pid}\n")
    return child.pid


def running(pid_file: Path, marker: str) -> int | None:
    """The pid in ``pid_file`` if that process lives and its command line holds ``marker``."""
    pid = read_pid(pid_file)
    if pid is None or not is_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return None
    return pid if marker.encode() in cmdline else None


def stop(pid_file: Path, marker: str, sig: signal.Signals = signal.SIGTERM, timeout: float = 15.0) -> bool:
    """Stop the process of ``pid_file`` (``sig``, then SIGKILL after ``timeout``); True if one ran."""
    pid = running(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, sig)
    deadline = time.monotonic() + timeout
    while is_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if is_alive(pid):
        os.kill(pid, signal.SIGKILL)
        while is_alive(pid):
            _reap(pid)
            time.sleep(0.02)
    pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status when the process is this one's child (else it stays a zombie)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def kill_qemus(run_dir: Path) -> list[int]:
    """SIGKILL every QEMU whose pid file is under ``run_dir`` (a site's VMs, at a disaster)."""
    killed = []
    for pid_file in run_dir.glob("*/qemu*.pid"):  # with a live migration's destination
        pid = running(pid_file, "qemu")
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def wait_http(url: str, pid: int, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers; the process ``pid`` dying first, or silence, is an error.

    The pid itself is watched, not its command line: just after the fork, before the exec, the
    child still shows its parent's command line."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise LabError(f"the process {pid} ended before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answers, if only with an error
        except OSError:
            time.sleep(0.1)
    raise LabError(f"{url} did not answer within {timeout:.0f} s")
