"""Reading this machine's facts (CPUs, memory, name) from /proc, for the pool's host object."""

from __future__ import annotations

import os
import platform
import socket
from pathlib import Path

from farside.model.host_facts import CPU, HostFacts


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
