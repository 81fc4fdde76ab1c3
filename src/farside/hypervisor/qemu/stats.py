"""One domain's counters: vCPU time from /proc, RAM and disk I/O from QMP, NIC traffic from its taps.

Three QMP queries a sample (``query-cpus-fast`` for the vCPU threads, ``query-memory-size-summary``,
``query-blockstats``), run together, and a few small /proc and /sys reads: cheap enough to run
every 5 s for every VM (bench/metrics.py measures it).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import Mapping
from pathlib import Path

from farside.hypervisor.driver import DiskStats, DomainStats, NicStats, VMSpec
from farside.hypervisor.qemu.argv import tap_name
from farside.hypervisor.qemu.domain import Domain

_TICKS = os.sysconf("SC_CLK_TCK")
_DISK_ID = re.compile(r"(?:^|/)disk(\d+)(?:/|$)")
_NODE = re.compile(r"^vbd(\d+)$")
SYS_NET = Path("/sys/class/net")


async def sample(domain: Domain, spec: VMSpec, timeout: float) -> DomainStats:
    """The counters of ``domain``, whose spec is ``spec``.

    Raises:
        DomainError: QEMU did not answer.
    """
    cpus, memory, blocks = await asyncio.gather(
        domain.execute("query-cpus-fast", timeout=timeout),
        domain.execute("query-memory-size-summary", timeout=timeout),
        domain.execute("query-blockstats", timeout=timeout),
    )
    pid = domain.pid
    threads = [int(c["thread-id"]) for c in cpus if isinstance(c, Mapping)] if isinstance(cpus, list) else []
    vcpus = _vcpu_seconds(pid, threads) if pid is not None else ()
    ram = int(memory.get("base-memory", spec.memory_bytes)) if isinstance(memory, Mapping) else spec.memory_bytes
    return DomainStats(
        vcpu_seconds=vcpus,
        memory_bytes=ram,
        disks=_disks(blocks if isinstance(blocks, list) else []),
        nics=_nics(spec),
    )


def _vcpu_seconds(pid: int, threads: list[int]) -> tuple[float, ...]:
    """CPU time per vCPU thread. Under single-threaded TCG all vCPUs share one thread: its time
    is shared out evenly, so the VM's total stays right."""
    times = {tid: _thread_seconds(pid, tid) for tid in set(threads)}
    return tuple(times[tid] / threads.count(tid) for tid in threads)


def _thread_seconds(pid: int, tid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
    except OSError:
        return 0.0
    # Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _disks(blocks: list[object]) -> dict[int, DiskStats]:
    found = {}
    for entry in blocks:
        if not isinstance(entry, Mapping):
            continue
        match = _DISK_ID.search(str(entry.get("qdev", ""))) or _NODE.match(str(entry.get("node-name", "")))
        stats = entry.get("stats")
        if match is None or not isinstance(stats, Mapping):
            continue
        found[int(match.group(1))] = DiskStats(
            read_bytes=int(stats.get("rd_bytes", 0)),
            write_bytes=int(stats.get("wr_bytes", 0)),
            read_ops=int(stats.get("rd_operations", 0)),
            write_ops=int(stats.get("wr_operations", 0)),
        )
    return found


def _nics(spec: VMSpec, sys_net: Path = SYS_NET) -> dict[int, NicStats]:
    """Bridged NICs' taps; what the host's tap receives the guest sent, and the other way round."""
    found = {}
    for nic in spec.nics:
        try:
            counters = sys_net / tap_name(spec.uuid, nic.device) / "statistics"
            received = int((counters / "rx_bytes").read_text())
            sent = int((counters / "tx_bytes").read_text())
        except (OSError, ValueError):
            continue  # a user-mode NIC has no tap to count
        found[nic.device] = NicStats(rx_bytes=sent, tx_bytes=received)
    return found
