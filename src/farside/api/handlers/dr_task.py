"""DR_task: attach the SRs of mirrored LUNs at the DR site, and let go of those no VM needs.

As xapi does it (xenapi-dr.md §4.1): probe the LUN for SRs with metadata, introduce and plug only
whitelisted SRs this pool does not know, mark them ``introduced_by`` the task. Unlike xapi, a
create that fails leaves nothing behind: the SRs it introduced are unplugged and forgotten, and
the task is gone. ``destroy`` unplugs and forgets only the SRs still marked as introduced (a
recovered VM's SR is unmarked by the recovery, so it stays).
"""

from __future__ import annotations

import contextlib
import re
from xml.sax.saxutils import unescape

from farside.api.context import Context
from farside.api.handlers.sr import SR_TYPES
from farside.api.registry import handles
from farside.api.storage import forget_sr, sr_record
from farside.errors import OperationNotAllowed, XenAPIFailure
from farside.storage.probe import probe_xml

# The probe XML is ours (storage/probe.py), so its shape is fixed; xapi parses SM's the same way.
_SR = re.compile(
    r"<SR>.*?<UUID>(.*?)</UUID>.*?<name_label>(.*?)</name_label>.*?<name_description>(.*?)</name_description>"
    r".*?<path>(.*?)</path>",
    re.S,
)


@handles("DR_task.create")
def create(ctx: Context, sr_type: str, device_config: dict[str, str], whitelist: list[str]) -> str:
    with ctx.db.read() as tx:
        managers = tx.find("SM", "type", sr_type)
        capable = managers and "SR_METADATA" in tx.get_field("SM", managers[0], "capabilities")
    if sr_type not in SR_TYPES or not capable:
        raise OperationNotAllowed(f"Disaster recovery not supported on SRs of type {sr_type}")
    probe = probe_xml(ctx.services.storage.lun_path(device_config))
    found = [tuple(unescape(v) for v in m) for m in _SR.findall(probe)]
    wanted = [sr for sr in found if sr[0] in whitelist]
    with ctx.db.write() as tx:
        task = tx.create("DR_task", {})
    introduced: list[tuple[str, str]] = []
    try:
        for uuid, name_label, name_description, path in wanted:
            with ctx.db.write() as tx:
                if tx.find("SR", "uuid", uuid):
                    continue  # this pool knows the SR already: not the task's to introduce
                # Introduced by this task from the start: a resumed run adopts it even mid-plug.
                sr = tx.create("SR", {**sr_record(uuid, name_label, name_description, sr_type), "introduced_by": task})
                # The SR's own LUN: the probed directory may be a parent holding several LUNs.
                config = {**device_config, "path": path}
                pbd = tx.create("PBD", {"host": ctx.services.host, "SR": sr, "device_config": config})
            introduced.append((sr, pbd))
            ctx.services.storage.plug(pbd)
    except BaseException:
        _undo(ctx, task, introduced)
        raise
    return task


def _undo(ctx: Context, task: str, introduced: list[tuple[str, str]]) -> None:
    for sr, pbd in reversed(introduced):
        with contextlib.suppress(XenAPIFailure):
            ctx.services.storage.unplug(pbd)
        _forget(ctx, sr)
    with ctx.db.write() as tx:
        if tx.exists("DR_task", task):
            tx.destroy("DR_task", task)


def _forget(ctx: Context, sr: str) -> None:
    with ctx.db.write() as tx:
        if tx.exists("SR", sr):
            forget_sr(tx, sr)


@handles("DR_task.destroy")
def destroy(ctx: Context, task: str) -> str:
    with ctx.db.read() as tx:
        srs = tx.get_field("DR_task", tx.check("DR_task", task), "introduced_SRs")
        pbds = {sr: tx.get_field("SR", sr, "PBDs") for sr in srs}
    for sr in srs:
        for pbd in pbds[sr]:
            ctx.services.storage.unplug(pbd)
        _forget(ctx, sr)
    with ctx.db.write() as tx:
        if tx.exists("DR_task", task):
            tx.destroy("DR_task", task)
    return ""
