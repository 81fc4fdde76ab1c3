#!/usr/bin/env python3
"""Benchmark of booting VMs through a real ``farside server``, against launching QEMU directly.

The issue's benchmark: start 20 VMs of 16 MiB each through the API and time until every guest's
``BOOT <tag>`` line is on its serial console, against launching the same 20 QEMU command lines
directly in the same run (the floor). Target: Farside's time at most 1.2x the floor's.

Set-up (not timed): a pool made as ``farside init`` does, a real ``farside server`` process, a
file SR on a LUN directory, and ``--count`` VMs, each with its own bootable RAW disk (imported
through ``import_raw_vdi``) that prints ``BOOT <tag>`` when the BIOS has booted it, one VIF and
16 MiB of memory. One unmeasured warm-up round through the API fills the page cache and leaves
each VM's ``spec.json`` in the server's run directory.

Three kinds of run, interleaved (the order rotates from one repetition to the next):

- **Farside**: ``--count`` client threads, each with its own XenAPI session (XML-RPC on its own
  keep-alive HTTP connection), are released together by a barrier and call the synchronous
  ``VM.start(vm, False, False)``, as a client that starts a group of VMs at once would. Timed from
  the first call until every guest's tag is in its serial log; the time until every ``VM.start``
  has returned is reported too. Afterwards every VM is stopped with ``VM.hard_shutdown`` through
  the API.
- **Floor**: the same QEMU command lines, built by the driver's ``open_command`` from the
  ``spec.json`` the driver wrote (which opens the serial log and disks QEMU inherits; checked to
  equal the live Farside QEMUs' command lines, up to descriptor numbers), in a run directory of
  their own, launched as the driver launches them (``process.spawn``: the QEMU user, the run
  directory as working directory) from ``--count`` threads released together by a barrier (one
  thread launching them one after the other is slower: the last of 20 runs about 250 ms later on
  2 CPUs). The command line starts QEMU with
  ``-S`` and a QMP chardev that connects to a listener, so the floor binds a socket per VM first
  and, on a thread per VM, answers QEMU's connection with the least a client must send to let
  the guest run: ``qmp_capabilities``, then ``cont`` (raw JSON lines, no QMP library). This
  floor is the minimum cost of running *these* command lines, and the ratio uses it.
- **Bare** (a reference only): the same command lines without ``-S`` and without the QMP
  chardev/``-mon`` pair, so the guest runs from the start with no control connection at all.
  The difference to the floor is what the ``-S``/QMP design costs by itself.

Readiness is read straight from each VM's serial log file (the server's
``<data dir>/run/<uuid>/serial.log``, and the floor's own), polled every few milliseconds from
the offset it had before the run, so the measurement is not dominated by HTTP polling of
``/console/serial``. Alongside, the CPU seconds from a run's start to its last tag of the server
process, of all QEMUs (summed), of this process, and of everything else on the host (``/proc/stat``
less those; steal time included). Boots under TCG are CPU-bound, so other load on the host
skews the timings: the host's idle share is sampled before and after, with a warning when
other processes keep the CPUs busy.

Usage: ``.venv/bin/python bench/vm_boot.py [--quick] [--count N] [--reps N]``. ``--quick`` does
one repetition instead of three. Every QEMU is killed by pid, the server stopped and every
temporary directory removed at the end, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import XenAPI

from bigpool import server_cpu_s as cpu_s
from farside.config import DEFAULT_QEMU_USER
from farside.hypervisor.driver import VMSpec
from farside.hypervisor.qemu import process
from farside.hypervisor.qemu.argv import MONITOR_ID, PID_FILE, QMP_SOCKET, SERIAL_LOG
from farside.hypervisor.qemu.driver import DEFAULT_QEMU, DEFAULT_SERIAL_LOG_LIMIT, open_command
from farside.hypervisor.qemu.process import QemuUser, RunDir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pools import PoolServer, kill_qemus, make_pool
from vms import bootable_vm, make_sr, qemu_pids

MEMORY_MIB = 16
DEFAULT_COUNT = 20
TARGET_RATIO = 1.2
# How often the serial logs are checked for the tags.
POLL_S = 0.005
RUN_TIMEOUT_S = 180.0
# Quiet time after a run's VMs are gone, before the next run starts.
SETTLE_S = 1.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

FARSIDE = "farside"
FLOOR = "floor"
BARE = "bare"
KIND_NAMES = {
    FLOOR: "floor: same argv, minimal QMP (capabilities, cont)",
    BARE: "reference: argv without -S and QMP monitor",
    FARSIDE: "Farside: VM.start x N through the API",
}
ORDERS = [(FLOOR, BARE, FARSIDE), (FARSIDE, FLOOR, BARE), (BARE, FARSIDE, FLOOR)]


@dataclass(frozen=True)
class Guest:
    ref: str
    uuid: str
    tag: str

    @property
    def needle(self) -> bytes:
        """The guest's whole boot line, so that tag ``vm-1`` cannot match ``vm-10``."""
        return f"BOOT {self.tag}\r\n".encode()


@dataclass
class Run:
    kind: str
    rep: int  # 0 is the warm-up
    tags_s: list[float]  # per guest, from the first action of the run
    returned_s: list[float]  # per guest: VM.start returned (Farside) or Popen returned (floor)
    call_s: list[float] = field(default_factory=list)  # per VM.start call, its own latency
    spawned_s: list[float] = field(default_factory=list)  # per QEMU, its start time (10 ms resolution)
    # CPU seconds from the run's start until its last tag
    server_cpu_s: float = math.nan
    qemu_cpu_s: float = math.nan
    client_cpu_s: float = math.nan  # this process
    other_cpu_s: float = math.nan  # every other process on the host (and steal time)

    @property
    def all_tags_s(self) -> float:
        return max(self.tags_s)

    @property
    def all_returned_s(self) -> float:
        return max(self.returned_s)


# -- measuring ----------------------------------------------------------------------------------


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def host_busy_s() -> float:
    """Non-idle CPU seconds of the whole host so far, summed over its CPUs (steal counts as busy)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS  # less idle and iowait


@dataclass(frozen=True)
class CpuMark:
    """CPU counters at one moment, to split a run's CPU time between it and everything else."""

    host: float
    server: float
    bench: float

    @classmethod
    def now(cls, server_pid: int) -> CpuMark:
        return cls(host_busy_s(), cpu_s(server_pid), own_cpu_s())


def host_idle_share(seconds: float) -> float:
    """The share of the host's CPU time that was idle over the next ``seconds``."""
    before, busy = time.perf_counter(), host_busy_s()
    time.sleep(seconds)
    elapsed = (time.perf_counter() - before) * (os.cpu_count() or 1)
    return max(0.0, 1 - (host_busy_s() - busy) / elapsed)


def wait_tags(logs: list[Path], offsets: list[int], needles: list[bytes], check: Callable[[], None]) -> list[float]:
    """``time.perf_counter()`` at which each needle first appeared in its log after its offset.

    Reads only what each log gained since the last look. ``check`` is called between rounds and
    raises to abandon the wait (a failed start, an exited QEMU).
    """
    found = [math.nan] * len(logs)
    offsets = list(offsets)
    tails = [b""] * len(logs)
    pending = set(range(len(logs)))
    deadline = time.perf_counter() + RUN_TIMEOUT_S
    while pending:
        for i in list(pending):
            try:
                with open(logs[i], "rb") as f:
                    f.seek(offsets[i])
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            offsets[i] += len(data)
            window = tails[i] + data
            if needles[i] in window:
                found[i] = time.perf_counter()
                pending.discard(i)
            tails[i] = window[-len(needles[i]) :]
        if not pending:
            break
        check()
        if time.perf_counter() > deadline:
            missing = ", ".join(needles[i].decode().strip() for i in sorted(pending))
            raise RuntimeError(f"no boot line within {RUN_TIMEOUT_S:g} s for: {missing}")
        time.sleep(POLL_S)
    return found


def qemu_cpu_s(pids: list[int]) -> float:
    return sum(c for c in (cpu_s(p) for p in pids) if not math.isnan(c))


def boot_offset() -> float:
    """``CLOCK_BOOTTIME`` minus ``perf_counter``, to place process start times on the bench's clock."""
    before = time.perf_counter()
    boot = time.clock_gettime(time.CLOCK_BOOTTIME)
    return boot - (before + time.perf_counter()) / 2


def spawned_at(pids: list[int], offset: float) -> list[float]:
    """The ``perf_counter`` time at which each process started (/proc start time, in clock ticks)."""
    times = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        times.append(int(stat.rsplit(")", 1)[1].split()[19]) / CLOCK_TICKS - offset)
    return times


# -- Farside ------------------------------------------------------------------------------------


def farside_run(server: PoolServer, sessions: list[XenAPI.Session], guests: list[Guest], rep: int) -> Run:
    """Start every guest through the API at once; wait for every tag; hard_shutdown them all."""
    assert server.process is not None
    run_root = server.data_dir / "run"
    logs = [run_root / g.uuid / SERIAL_LOG for g in guests]
    # A new boot starts with an empty serial log (the driver removes the last boot's); removed here
    # first, so that the last boot's tag is not read before the driver gets to it.
    for p in logs:
        p.unlink(missing_ok=True)
    offsets = [0] * len(logs)
    n = len(guests)
    barrier = threading.Barrier(n + 1)
    called = [math.nan] * n
    returned = [math.nan] * n
    errors: list[BaseException] = []

    def start(i: int) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return  # the run was abandoned before it began
        called[i] = time.perf_counter()
        try:
            sessions[i].xenapi.VM.start(guests[i].ref, False, False)
        except BaseException as exc:
            errors.append(exc)
        returned[i] = time.perf_counter()

    def check() -> None:
        if errors:
            raise RuntimeError(f"VM.start failed: {errors[0]!r}")

    threads = [threading.Thread(target=start, args=(i,), name=f"start-{i}", daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    pid = server.process.pid
    try:
        before = CpuMark.now(pid)
        barrier.wait()
        seen = wait_tags(logs, offsets, [g.needle for g in guests], check)
        pids = qemu_pids(server)
        qemu_cpu = qemu_cpu_s(pids)
        after = CpuMark.now(pid)
        spawned = spawned_at(pids, boot_offset())
        for t in threads:
            t.join(RUN_TIMEOUT_S)
        check()
    finally:
        barrier.abort()  # frees the callers still waiting if the run failed before it began
        for t in threads:
            t.join(RUN_TIMEOUT_S)
        hard_shutdown_all(server, sessions, guests)
    t0 = min(called)
    run = Run(
        FARSIDE,
        rep,
        tags_s=[s - t0 for s in seen],
        returned_s=[r - t0 for r in returned],
        call_s=[r - c for c, r in zip(called, returned, strict=True)],
        spawned_s=[max(0.0, s - t0) for s in spawned],  # whole ticks: a few ms early at worst
    )
    return with_cpu(run, before, after, qemu_cpu)


def with_cpu(run: Run, before: CpuMark, after: CpuMark, qemu_cpu: float) -> Run:
    """``run`` with its CPU time split between the server, the QEMUs, this process and the rest."""
    run.server_cpu_s = after.server - before.server
    run.client_cpu_s = after.bench - before.bench
    run.qemu_cpu_s = qemu_cpu
    run.other_cpu_s = max(0.0, after.host - before.host - run.server_cpu_s - run.client_cpu_s - qemu_cpu)
    return run


def hard_shutdown_all(server: PoolServer, sessions: list[XenAPI.Session], guests: list[Guest]) -> None:
    """``VM.hard_shutdown`` every running guest through the API, concurrently, one session each."""

    def stop(i: int) -> None:
        s, vm = sessions[i], guests[i].ref
        if s.xenapi.VM.get_power_state(vm) != "Halted":
            s.xenapi.VM.hard_shutdown(vm)

    with ThreadPoolExecutor(len(guests), thread_name_prefix="hard-shutdown") as pool:
        list(pool.map(stop, range(len(guests))))
    left = qemu_pids(server)
    if left:
        raise RuntimeError(f"QEMU processes left after hard_shutdown: {left}")


# -- the floor ----------------------------------------------------------------------------------


def floor_specs(server: PoolServer, guests: list[Guest]) -> list[VMSpec]:
    """The specs the driver started ``guests`` with (their spec.json)."""
    server_run = server.data_dir / "run"
    return [VMSpec.from_json(json.loads((server_run / g.uuid / "spec.json").read_text())) for g in guests]


# Descriptor numbers differ from one process to the next; the rest of a command line must not.
_FD_NUMBER = re.compile(r"(?<=fd=)\d+|(?<=set=)\d+|(?<=/dev/fdset/)\d+")


def unnumbered(argv: list[str]) -> list[str]:
    return [_FD_NUMBER.sub("N", a) for a in argv]


def check_same_argv(server: PoolServer, guests: list[Guest], specs: list[VMSpec], root: Path) -> None:
    """The floor's argv must be what Farside runs (read from /proc), up to descriptor numbers."""
    user = QemuUser.lookup(DEFAULT_QEMU_USER)
    live: dict[str, list[str]] = {}
    for pid in qemu_pids(server):
        args = [os.fsdecode(a) for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]]
        live[args[args.index("-uuid") + 1]] = unnumbered(args)
    for g, spec in zip(guests, specs, strict=True):
        run = RunDir(root / g.uuid)
        run.prepare(spec, DEFAULT_SERIAL_LOG_LIMIT, user, new_boot=True)
        with contextlib.ExitStack() as opened:
            argv = unnumbered(open_command(spec, run, opened, qemu=DEFAULT_QEMU, kvm=False, incoming=False)[0])
        if live.get(g.uuid) != argv:
            raise RuntimeError(f"the floor's argv for {g.tag} differs from Farside's:\n{argv}\n{live.get(g.uuid)}")


def bare(argv: list[str]) -> list[str]:
    """``argv`` without ``-S`` and without the QMP chardev and its ``-mon``."""
    out = [a for a in argv if a != "-S"]
    k = out.index("-mon")
    if out[k - 2] != "-chardev" or not out[k - 1].startswith(f"socket,id={MONITOR_ID},"):
        raise RuntimeError(f"unexpected monitor arguments: {out[k - 2 : k + 2]}")
    del out[k - 2 : k + 2]
    return out


def _qmp_line(f: BinaryIO, key: bytes) -> None:
    """Read QMP messages until one holds ``key``; events in between are skipped."""
    while True:
        line = f.readline()
        if not line:
            raise EOFError("QEMU closed the QMP connection")
        if b'"error"' in line:
            raise RuntimeError(f"QMP error: {line!r}")
        if key in line:
            return


def qmp_minimal(listener: socket.socket, conns: list[socket.socket], errors: list[BaseException]) -> None:
    """Accept QEMU's QMP connection and let its vCPUs run: ``qmp_capabilities``, then ``cont``."""
    try:
        conn, _ = listener.accept()
    except OSError:
        return  # the run is being torn down
    conns.append(conn)
    try:
        with conn.makefile("rb") as f:
            _qmp_line(f, b'"QMP"')  # the greeting
            conn.sendall(b'{"execute": "qmp_capabilities"}\n')
            _qmp_line(f, b'"return"')
            conn.sendall(b'{"execute": "cont"}\n')
            _qmp_line(f, b'"return"')
    except (OSError, EOFError, RuntimeError) as exc:
        errors.append(exc)


def floor_run(specs: list[VMSpec], root: Path, guests: list[Guest], kind: str, rep: int, server_pid: int) -> Run:
    """Launch every command line at once with Popen; wait for every tag; kill them all.

    One Popen per thread, the threads released together by a barrier, as the server's worker
    threads spawn: one thread launching all 20 one after the other had the last one running about
    250 ms later on 2 CPUs (each Popen waits for its child's exec on CPUs the earlier QEMUs already
    fill), which would flatter Farside.
    """
    dirs = [root / g.uuid for g in guests]
    for d in dirs:
        for name in (SERIAL_LOG, QMP_SOCKET, PID_FILE):
            (d / name).unlink(missing_ok=True)
    user = QemuUser.lookup(DEFAULT_QEMU_USER)
    n = len(guests)
    procs: list[subprocess.Popen[bytes] | None] = [None] * n
    returned = [math.nan] * n
    listeners: list[socket.socket] = []
    conns: list[socket.socket] = []
    errors: list[BaseException] = []
    qmp_threads: list[threading.Thread] = []
    go = threading.Barrier(n + 1)

    def spawn(i: int) -> None:
        run = RunDir(dirs[i])
        with contextlib.ExitStack() as opened:
            argv, fds = open_command(specs[i], run, opened, qemu=DEFAULT_QEMU, kvm=False, incoming=False)
            child = process.spawn(bare(argv) if kind == BARE else argv, run, user, fds)
        run.write_pid(child.pid)  # for kill_qemus, as the driver does
        procs[i] = child
        returned[i] = time.perf_counter()

    def launch(i: int) -> None:
        try:
            go.wait()
            spawn(i)
        except threading.BrokenBarrierError:
            pass  # the run was abandoned before it began
        except BaseException as exc:
            errors.append(exc)

    def live() -> list[subprocess.Popen[bytes]]:
        return [p for p in procs if p is not None]

    def check() -> None:
        if errors:
            raise RuntimeError(f"floor run failed: {errors[0]!r}")
        for p, d in zip(procs, dirs, strict=True):
            if p is not None and p.poll() is not None:
                raise RuntimeError(f"QEMU exited with {p.returncode}: {(d / 'qemu.log').read_text()[-500:]}")

    launchers = [threading.Thread(target=launch, args=(i,), name=f"launch-{i}", daemon=True) for i in range(n)]
    for t in launchers:
        t.start()
    try:
        before = CpuMark.now(server_pid)
        t0 = time.perf_counter()
        if kind == FLOOR:
            for d in dirs:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                listeners.append(sock)
                sock.bind(os.fsencode(d / QMP_SOCKET))
                # QEMU runs as its user: as the driver does, the socket takes the run directory's group.
                os.chown(d / QMP_SOCKET, -1, d.stat().st_gid)
                os.chmod(d / QMP_SOCKET, 0o660)
                sock.listen(1)
                t = threading.Thread(target=qmp_minimal, args=(sock, conns, errors), daemon=True)
                t.start()
                qmp_threads.append(t)
        go.wait()
        seen = wait_tags([d / SERIAL_LOG for d in dirs], [0] * n, [g.needle for g in guests], check)
        pids = [p.pid for p in live()]
        qemu_cpu = qemu_cpu_s(pids)
        after = CpuMark.now(server_pid)
        spawned = spawned_at(pids, boot_offset())
    finally:
        go.abort()  # frees launchers still waiting if the run failed before it began
        for t in launchers:
            t.join(RUN_TIMEOUT_S)
        for p in live():
            p.kill()
        for p in live():
            p.wait(30)
        for sock in listeners:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread still blocked in accept()
            sock.close()
        for t in qmp_threads:
            t.join(5)
        for c in conns:
            c.close()
    run = Run(
        kind,
        rep,
        tags_s=[s - t0 for s in seen],
        returned_s=[r - t0 for r in returned],
        spawned_s=[max(0.0, s - t0) for s in spawned],  # whole ticks: a few ms early at worst
    )
    return with_cpu(run, before, after, qemu_cpu)


# -- set-up -------------------------------------------------------------------------------------


def make_guests(server: PoolServer, lun: Path, count: int) -> list[Guest]:
    s = server.session()
    try:
        sr = make_sr(s, lun)
        guests = []
        for i in range(count):
            tag = f"vmboot-{i:03d}"
            ref = bootable_vm(server, s, sr, tag, memory_mib=MEMORY_MIB)
            guests.append(Guest(ref, str(s.xenapi.VM.get_uuid(ref)), tag))
        return guests
    finally:
        s.xenapi.session.logout()


# -- the report ---------------------------------------------------------------------------------


def fmt_s(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    return f"{seconds:.2f} s"


def print_run(run: Run) -> None:
    rep = "warm-up" if run.rep == 0 else f"rep {run.rep}"
    tags = sorted(run.tags_s)
    line = (
        f"  {rep:<8} {run.kind:<8} all tags {fmt_s(run.all_tags_s):>8}"
        f"  (first {fmt_s(tags[0])}, median {fmt_s(statistics.median(tags))})"
    )
    if run.kind == FARSIDE:
        line += (
            f"  all VM.start returned {fmt_s(run.all_returned_s)}"
            f"  per call median {fmt_s(statistics.median(run.call_s))} max {fmt_s(max(run.call_s))}"
        )
    else:
        line += f"  all Popen returned {fmt_s(run.all_returned_s)}"
    if run.spawned_s:
        line += f"  last QEMU spawned {fmt_s(max(run.spawned_s))}"
    line += (
        f"  CPU until last tag: QEMUs {fmt_s(run.qemu_cpu_s)}, server {fmt_s(run.server_cpu_s)},"
        f" bench {fmt_s(run.client_cpu_s)}, other processes {fmt_s(run.other_cpu_s)}"
    )
    print(line, flush=True)


def print_report(runs: list[Run], count: int) -> None:
    measured = [r for r in runs if r.rep > 0]
    by_kind = {k: [r for r in measured if r.kind == k] for k in (FLOOR, BARE, FARSIDE)}
    reps = len(by_kind[FARSIDE])
    width = 12
    label_width = 62

    def row(label: str, cells: list[str]) -> None:
        print(label.ljust(label_width) + "".join(c.rjust(width) for c in cells))

    def stats(values: list[float]) -> list[str]:
        return [fmt_s(statistics.median(values)), fmt_s(min(values)), fmt_s(max(values))]

    print()
    print(f"{count} VMs of {MEMORY_MIB} MiB, {reps} repetition(s): wall time from the first action of a run")
    row("", ["median", "min", "max"])
    row(f"{KIND_NAMES[FLOOR]}: every tag", stats([r.all_tags_s for r in by_kind[FLOOR]]))
    row(f"{KIND_NAMES[BARE]}: every tag", stats([r.all_tags_s for r in by_kind[BARE]]))
    row("Farside: every VM.start returned", stats([r.all_returned_s for r in by_kind[FARSIDE]]))
    row("Farside: every BOOT tag", stats([r.all_tags_s for r in by_kind[FARSIDE]]))
    calls = [c for r in by_kind[FARSIDE] for c in r.call_s]
    row("Farside: latency of one VM.start call (all calls)", stats(calls))
    row("last QEMU process started (/proc, 10 ms ticks): floor", stats([max(r.spawned_s) for r in by_kind[FLOOR]]))
    row("last QEMU process started (/proc, 10 ms ticks): Farside", stats([max(r.spawned_s) for r in by_kind[FARSIDE]]))
    row("CPU of all QEMUs until the last tag: floor", stats([r.qemu_cpu_s for r in by_kind[FLOOR]]))
    row("CPU of all QEMUs until the last tag: Farside", stats([r.qemu_cpu_s for r in by_kind[FARSIDE]]))
    row("CPU of the server process until the last tag: Farside", stats([r.server_cpu_s for r in by_kind[FARSIDE]]))
    row("CPU of other processes on the host, during: floor runs", stats([r.other_cpu_s for r in by_kind[FLOOR]]))
    row("CPU of other processes on the host, during: Farside runs", stats([r.other_cpu_s for r in by_kind[FARSIDE]]))
    print()
    floor = [r.all_tags_s for r in by_kind[FLOOR]]
    farside = [r.all_tags_s for r in by_kind[FARSIDE]]
    bare_ = [r.all_tags_s for r in by_kind[BARE]]
    median_ratio = statistics.median(farside) / statistics.median(floor)
    min_ratio = min(farside) / min(floor)
    paired = [f / b for f, b in zip(farside, floor, strict=True)]
    verdict = "PASS" if median_ratio <= TARGET_RATIO else "MISS"
    print(f"Ratio Farside / floor, time until every BOOT tag (target: at most {TARGET_RATIO:g}x)")
    print(f"  median / median {median_ratio:5.2f}x   min / min {min_ratio:5.2f}x   [{verdict}]")
    print(f"  per repetition (same repetition's floor): {'  '.join(f'{p:.2f}x' for p in paired)}")
    bare_median = statistics.median(bare_)
    print(
        f"  reference: Farside / bare (no -S, no QMP) median {statistics.median(farside) / bare_median:.2f}x;"
        f" floor / bare median {statistics.median(floor) / bare_median:.2f}x"
    )


def report_host_load(when: str) -> None:
    idle = host_idle_share(2.0)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    note = "" if idle >= 0.9 else "  WARNING: other processes use the CPUs; timings are noisy"
    print(f"host CPUs idle {when} the benchmark (2 s sample): {idle:.0%}, load average {load}{note}", flush=True)


# -- main ---------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one repetition instead of three")
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT, help="VMs to start at once (default 20)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, 1 with --quick)")
    args = parser.parse_args()
    count: int = args.count
    reps: int = args.reps if args.reps is not None else 1 if args.quick else 3
    if count < 1 or reps < 1:
        parser.error("--count and --reps must be at least 1")

    print(
        f"farside bench/vm_boot.py: Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"{'quick' if args.quick else 'full'} mode, {count} VMs x {MEMORY_MIB} MiB, {reps} repetition(s)"
    )
    print(
        f"Farside: {count} threads, each with its own XenAPI session, call VM.start(vm, False, False) "
        "(synchronous) at once, released by a barrier"
    )
    print(
        f"Floor: the same argv (open_command from the driver's spec.json, checked against /proc), spawned as the "
        f"driver does from {count} threads at once; the floor binds each QMP socket and sends qmp_capabilities + cont "
        "(the argv has -S)"
    )
    print(
        f"Readiness: each serial.log read directly from the run directory every {POLL_S * 1000:g} ms "
        "(not over HTTP /console/serial)"
    )
    report_host_load("before")
    tmp = Path(tempfile.mkdtemp(prefix="farside-vmboot-"))
    floor_root = Path(tempfile.mkdtemp(prefix="fsfloor-", dir="/tmp"))  # short: socket paths
    server: PoolServer | None = None
    sessions: list[XenAPI.Session] = []
    runs: list[Run] = []
    try:
        make_pool(tmp / "pool")
        server = PoolServer(tmp / "pool").start()
        began = time.perf_counter()
        guests = make_guests(server, tmp / "lun", count)
        sessions = [server.session() for _ in guests]
        assert server.process is not None
        server_pid = server.process.pid
        print(f"set-up: {count} VMs with their disks and {count} sessions in {time.perf_counter() - began:.1f} s")

        # Warm-up through the API: page cache, the server's code paths, and spec.json per VM.
        warm = farside_run(server, sessions, guests, 0)
        runs.append(warm)
        print_run(warm)
        specs = floor_specs(server, guests)
        # Check that the floor runs exactly what Farside runs: start one VM once more and compare.
        for i, g in enumerate(guests):
            sessions[i].xenapi.VM.start(g.ref, True, False)  # paused: only the command line matters
        try:
            check_same_argv(server, guests, specs, floor_root)
        finally:
            hard_shutdown_all(server, sessions, guests)
        print("floor argv == Farside's QEMU command lines from /proc (descriptor numbers aside): checked")
        time.sleep(SETTLE_S)

        for rep in range(1, reps + 1):
            for kind in ORDERS[(rep - 1) % len(ORDERS)]:
                if kind == FARSIDE:
                    run = farside_run(server, sessions, guests, rep)
                else:
                    run = floor_run(specs, floor_root, guests, kind, rep, server_pid)
                runs.append(run)
                print_run(run)
                time.sleep(SETTLE_S)
        print_report(runs, count)
        report_host_load("after")
    finally:
        for s in sessions:
            with contextlib.suppress(Exception):
                s.xenapi.session.logout()
        killed = kill_qemus(floor_root)
        if server is not None:
            server.stop()  # also kills every QEMU under its run directory, by pid file
        if killed:
            print(f"killed {len(killed)} leftover floor QEMU(s): {killed}")
        shutil.rmtree(floor_root, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
