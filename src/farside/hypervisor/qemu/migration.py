"""A live migration between two QEMU processes of one VM, on the driver's loop.

Each half is what one host does, so that a migration between hosts later runs the same steps
with the stream over another transport: the destination (started with ``-incoming defer``)
loads from its end of the stream, the source sends with ``migrate`` and stops its vCPUs for the
last pass. Both QEMUs open the same image files; QEMU's own image locks hand over, as the source
inactivates its images when it stops and the destination activates them only when the stream is
loaded, so at no moment do two processes write a disk. Whatever fails, the source is left as it
was: QEMU resumes it when a migration fails, and ``cont`` takes its images back when it fails
after the source had finished sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from farside.hypervisor.driver import DomainState
from farside.hypervisor.errors import DomainError
from farside.hypervisor.qemu.domain import Domain

log = logging.getLogger(__name__)

# The names under which the two ends of the stream are handed to the QEMUs (getfd).
OUTGOING_FD = "farside-migrate-out"
INCOMING_FD = "farside-migrate-in"
# QEMU's default of 32 MiB/s is for a network shared with guests; a local stream is only memory.
LOCAL_BANDWIDTH = 1 << 40


async def migrate(
    source: Domain, target: Domain, send: int, receive: int, timeout: float, switch: Callable[[bool], None]
) -> tuple[float, int]:
    """Move the guest of ``source`` into ``target``, a just-spawned QEMU with ``-incoming defer``.

    ``switch(True)`` is called once ``target`` holds the whole guest, before its vCPUs run: from
    then on it is the VM's QEMU; ``switch(False)`` undoes that if the guest cannot run there.

    Returns:
        The downtime in seconds and the bytes sent.

    Raises:
        DomainError: a step failed; ``source`` runs (or stays paused) as before, ``target`` is the
            caller's to end.
    """
    loop = asyncio.get_running_loop()
    await target.connected_or_exited(timeout)
    await target.incoming(receive, INCOMING_FD, timeout)
    was_running = await source.query_state(timeout) is DomainState.RUNNING
    try:
        await source.execute("migrate-set-parameters", {"max-bandwidth": LOCAL_BANDWIDTH}, timeout)
        await source.monitor.send_fd(send, OUTGOING_FD, timeout)
        await source.execute("migrate", {"uri": f"fd:{OUTGOING_FD}"}, timeout)
        info = await source.wait_migration("the live migration", timeout)
        sent = loop.time()
        await target.wait_incoming("receiving the live migration", timeout)
        switch(True)
        try:
            if was_running:
                await target.execute("cont", timeout=timeout)
        except BaseException:
            switch(False)
            raise
        target.status = "running" if was_running else "paused"
        switched = loop.time()
    except BaseException:
        await _keep_source(source, was_running, timeout)
        raise
    return _downtime(info) + (switched - sent if was_running else 0.0), _transferred(info)


async def _keep_source(source: Domain, was_running: bool, timeout: float) -> None:
    """After a failure: the guest runs on in ``source`` (a failed ``migrate`` resumes it by itself;
    one that completed left it in ``postmigrate``, whose ``cont`` reactivates its images)."""
    if not source.alive():
        return
    with contextlib.suppress(DomainError):
        info = await source.execute("query-migrate", timeout=timeout)
        if isinstance(info, Mapping) and info.get("status") in ("active", "setup", "pre-switchover", "device"):
            await source.execute("migrate_cancel", timeout=timeout)
            await _settled(source, timeout)
        if was_running and await source.query_state(timeout) is not DomainState.RUNNING:
            await source.execute("cont", timeout=timeout)
    log.info("domain %s: migration failed; the guest runs on in pid %s (%s)", source.uuid, source.pid, source.status)


async def _settled(source: Domain, timeout: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        info = await source.execute("query-migrate", timeout=timeout)
        if not isinstance(info, Mapping) or info.get("status") in ("cancelled", "failed", "completed"):
            return
        await asyncio.sleep(0.01)


def _downtime(info: Mapping[str, object]) -> float:
    value = info.get("downtime")
    return float(value) / 1000 if isinstance(value, int | float) else 0.0


def _transferred(info: Mapping[str, object]) -> int:
    ram = info.get("ram")
    value = ram.get("transferred") if isinstance(ram, Mapping) else None
    return int(value) if isinstance(value, int) else 0
