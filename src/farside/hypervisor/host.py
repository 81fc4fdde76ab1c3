"""Reading this machine's facts (CPUs, memory, name) from /proc, for the pool's host object."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from pathlib import Path

from farside.model.host_facts import CPU, HostFacts

_TICKS = os.sysconf("SC_CLK_TCK")


def probe(address: str = "127.0.0.1") -> HostFacts:
    """The facts of the machine this process runs on."""
    cpus, sockets = _cpus(Path("/proc/cpuinfo"))
    total, free = _memory(Path("/proc/meminfo"))
    uname = platform.uname()
    return HostFacts(
        hostname=socket.gethostname(),
        address=address,
        memory_total=total,
        memory_free=free,
        cpus=cpus,
        sockets=sockets,
        kernel=uname.release,
        machine=uname.machine,
    )


def _cpus(path: Path) -> tuple[list[CPU], int]:
    blocks = path.read_text().strip().split("\n\n") if path.exists() else []
    cpus = []
    physical = set()
    for index, block in enumerate(blocks):
        info = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            info[key.strip()] = value.strip()
        physical.add(info.get("physical id", "0"))
        cpus.append(
            CPU(
                number=index,
                vendor=info.get("vendor_id", ""),
                model_name=info.get("model name", ""),
                family=info.get("cpu family", ""),
                model=info.get("model", ""),
                stepping=info.get("stepping", ""),
                speed_mhz=int(float(info.get("cpu MHz", "0") or 0)),
                flags=info.get("flags", ""),
            )
        )
    if not cpus:  # no /proc: still describe the CPUs we can count
        count = os.cpu_count() or 1
        cpus = [CPU(i, "", platform.processor(), "", "", "", 0, "") for i in range(count)]
    return cpus, max(len(physical), 1)


def _memory(path: Path) -> tuple[int, int]:
    values = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[key] = int(parts[0]) * 1024
    total = values.get("MemTotal", 0)
    return total, values.get("MemAvailable", values.get("MemFree", total))


@dataclass(frozen=True)
class HostStats:
    """This machine's counters at one moment, for the metrics sampler.

    Args:
        cpu_busy_seconds: per core, the time it spent not idle (counters, from /proc/stat).
        memory_total: bytes of RAM.
        memory_free: bytes available to new work (MemAvailable).
        loadavg: the 1-minute load average.
    """

    cpu_busy_seconds: tuple[float, ...]
    memory_total: int
    memory_free: int
    loadavg: float


def sample(proc: Path = Path("/proc")) -> HostStats:
    """The host's counters now: three small reads of /proc."""
    total, free = _memory(proc / "meminfo")
    return HostStats(_cpu_busy(proc / "stat"), total, free, float((proc / "loadavg").read_text().split()[0]))


def _cpu_busy(path: Path) -> tuple[float, ...]:
    busy = []
    for line in path.read_text().splitlines():
        name, _, rest = line.partition(" ")
        if not (name.startswith("cpu") and name[3:].isdigit()):
            continue
        ticks = [int(x) for x in rest.split()]
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        busy.append((sum(ticks[:8]) - idle) / _TICKS)
    return tuple(busy)
