"""Point-in-time copies of a running domain's disks through QEMU's block layer (QMP).

Each target image is opened by the driver and passed to QEMU as a descriptor (``add-fd``), so the
sandboxed QEMU opens no host path; it is added as a block node with no backing (``backing:
null``), and one ``transaction`` starts a ``blockdev-backup sync=full`` job per disk: QEMU drains
the disks' I/O once, for all of them, and from that instant copies each disk as it was then (a
guest write to a block not copied yet first copies the old block: copy-before-write). The guest's
vCPUs never stop; its disk I/O waits only for the transaction. The targets bypass the page cache
(O_DIRECT, when the driver could open them so) and the copy runs few requests at a time, so that
the guest's own writes are not held up behind it. Works on QEMU 7.2 (FACTS.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping

from farside.hypervisor.errors import DomainError
from farside.hypervisor.qemu.argv import fdset_path
from farside.hypervisor.qemu.domain import Domain

POLL_S = 0.01
# The copy's requests: few at a time, so that the guest's own I/O (on the same thread pool and
# main loop) is not queued behind dozens of copy requests (with a 256 MiB disk the guest was held
# up 194 ms with QEMU's defaults, 31 ms with these: bench/snapshot.py).
X_PERF = {"max-workers": 2, "max-chunk": 1 << 20}


def _node(userdevice: int) -> str:
    return f"farside-snap{userdevice}"


async def backup(domain: Domain, targets: Mapping[int, tuple[int, bool, str]], command_timeout: float,
                 timeout: float) -> float:  # fmt: skip
    """Copy each disk ``vbd<userdevice>`` into its target (an open descriptor, whether it has
    O_DIRECT, and its format); the seconds the ``transaction`` took.

    Raises:
        DomainError: QEMU refused or a job failed; every node and job made here is gone again.
    """
    added: list[str] = []
    jobs: list[str] = []
    try:
        for device, (fd, direct, fmt) in sorted(targets.items()):
            fdset = await domain.monitor.add_fd(fd, f"snapshot of disk {device}", command_timeout)
            node: dict[str, object] = {
                "driver": fmt,
                "node-name": _node(device),
                "file": {"driver": "file", "filename": fdset_path(fdset)},
                "cache": {"direct": direct},
            }
            if fmt == "qcow2":
                node["backing"] = None  # the copy is self-contained, as every image is
            try:
                await domain.execute("blockdev-add", node, command_timeout)
                added.append(_node(device))
            finally:
                # The node holds its own copy; the set's is spare.
                with contextlib.suppress(DomainError):
                    await domain.execute("remove-fd", {"fdset-id": fdset}, command_timeout)
        actions = [
            {
                "type": "blockdev-backup",
                "data": {
                    "device": f"vbd{device}",
                    "target": _node(device),
                    "sync": "full",
                    "job-id": _node(device),
                    "auto-dismiss": False,
                    "x-perf": X_PERF,
                },
            }
            for device in sorted(targets)
        ]
        began = time.monotonic()
        await domain.execute("transaction", {"actions": actions}, command_timeout)
        held = time.monotonic() - began
        jobs = [_node(device) for device in sorted(targets)]
        await _wait_jobs(domain, jobs, command_timeout, timeout)
        return held
    finally:
        for job in jobs:
            with contextlib.suppress(DomainError):
                await domain.execute("job-cancel", {"id": job}, command_timeout)
            with contextlib.suppress(DomainError):
                await domain.execute("job-dismiss", {"id": job}, command_timeout)
        for name in added:
            with contextlib.suppress(DomainError):
                await domain.execute("blockdev-del", {"node-name": name}, command_timeout)


async def _wait_jobs(domain: Domain, jobs: list[str], command_timeout: float, timeout: float) -> None:
    """Until every job has concluded; DomainError naming the first one that failed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await domain.execute("query-jobs", timeout=command_timeout)
        states = (
            {j["id"]: j for j in found if isinstance(j, dict) and j.get("id") in jobs}
            if isinstance(found, list)
            else {}
        )
        for job, info in states.items():
            if info.get("status") == "concluded" and info.get("error"):
                raise DomainError(domain.uuid, f"copying disk {job} failed: {info['error']}")
        if len(states) == len(jobs) and all(j.get("status") == "concluded" for j in states.values()):
            return
        if loop.time() > deadline:
            raise DomainError(domain.uuid, f"copying the disks took longer than {timeout:g} s")
        await asyncio.sleep(POLL_S)
