"""Cleanup: destroy the DR tasks (SRs in use stay). A test failover also removes all it recovered,
the networks recovery created and the SRs it introduced, then checks the pool is as before."""

from __future__ import annotations

import contextlib

from farside.dr.context import CHECKED_CLASSES, RunContext, RunFailed
from farside.dr.steps.release import destroy_tasks
from farside.errors import XenAPIFailure
from farside.model.types import now


def changes(differences: dict[str, dict[str, list[str]]]) -> str:
    """The cleanup's differences from the baseline as a sentence: "VM added a, b; SR removed c"."""
    parts = [
        f"{cls} {what} {', '.join(uuids)}"
        for cls, found in differences.items()
        for what in ("added", "removed")
        if (uuids := found.get(what))
    ]
    return "; ".join(parts) or "nothing"


def run(ctx: RunContext) -> None:
    entry = ctx.journal.setdefault("cleanup", {"state": "pending", "data": {}})
    entry.update(state="started", started=now())
    ctx.save()
    test = ctx.options.kind == "test"
    before = ctx.data("discover").get("baseline") or {}
    if test:
        remove_recovered(ctx, before)
    attach = ctx.data("attach")
    tasks = attach.get("tasks", {})
    for uuid in attach.get("creating", []):  # created, but the engine died before journaling it
        ref = ctx.sr_by_uuid(uuid)
        if uuid not in tasks and ref is not None and uuid not in before.get("SR", []):
            owner = ctx.s.call("SR.get_introduced_by", ref)
            if owner != "OpaqueRef:NULL":
                tasks[uuid] = owner
    destroy_tasks(ctx)
    if test:
        for uuid in list(tasks) + attach.get("plugged", []):
            ref = ctx.sr_by_uuid(uuid)
            if ref is None:
                continue
            for pbd in ctx.s.call("SR.get_PBDs", ref):
                ctx.s.call("PBD.unplug", pbd)
            if uuid in tasks:
                ctx.s.call("SR.forget", ref)
        baseline = ctx.data("discover").get("baseline")
        if baseline is not None:
            now_state = ctx.inventory()
            differences = {
                cls: {"added": sorted(set(now_state[cls]) - set(baseline[cls])),
                      "removed": sorted(set(baseline[cls]) - set(now_state[cls]))}
                for cls in CHECKED_CLASSES if now_state[cls] != baseline[cls]
            }  # fmt: skip
            entry["data"]["differences"] = differences
            if differences:
                entry.update(state="failed", error=f"the pool differs from before the test: {changes(differences)}")
                ctx.save()
                ctx.write(state="cleanup failed")
                raise RunFailed(entry["error"])
    entry.update(state="done", finished=now())
    ctx.save()
    ctx.write(state="cleaned up")


def remove_recovered(ctx: RunContext, before: dict[str, list[str]]) -> None:
    """A test's VMs, vApps and recovery-made networks go; only what the run made: a VM or vApp the
    pool had before the test (its baseline) is not the test's."""
    recovering = ctx.journal.get("recover")
    candidates = [vm for vm in ctx.selected_vms() if vm["uuid"] not in before.get("VM", [])] \
        if recovering is not None else []  # fmt: skip
    done = set(recovering["data"].get("done", [])) if recovering is not None else set()
    records = ctx.s.call("VM.get_all_records") if candidates else {}
    here = {r["uuid"]: (ref, r["power_state"], int(r["version"])) for ref, r in records.items()}
    for vm in candidates:
        if vm["uuid"] not in here:
            continue  # not recovered, or destroyed by a cleanup before this one
        ref, power_state, version = here[vm["uuid"]]
        # This run's copy: journaled as recovered (its own uuid or its vApp's), or, for the item
        # in flight when the engine died, at its source version + 1 and never started running.
        ours = vm["uuid"] in done or vm["appliance"] in done
        if not ours and not (version == vm["version"] + 1 and power_state != "Running"):
            continue
        if power_state == "Suspended" and ctx.s.call("VM.get_suspend_VDI", ref) != "OpaqueRef:NULL":
            # The memory image belongs to the replica: forget its record, so that the
            # hard shutdown below has nothing to delete (nothing replicated is ever lost).
            ctx.s.call("VDI.forget", ctx.s.call("VM.get_suspend_VDI", ref))
        if power_state != "Halted":
            ctx.s.call("VM.hard_shutdown", ref)
        ctx.s.call("VM.destroy", ref)
    if "select" in ctx.journal:
        for uuid in ctx.data("select")["vapps"]:
            if uuid in before.get("VM_appliance", []) or uuid not in done:
                continue
            with contextlib.suppress(XenAPIFailure):  # gone already: a cleanup run before this one
                ctx.s.call("VM_appliance.destroy", ctx.s.call("VM_appliance.get_by_uuid", uuid))
        for ref, net in ctx.s.call("network.get_all_records").items():
            created = net["other_config"].get("farside-created-by") == "recovery"
            if created and not net["VIFs"] and net["uuid"] not in before.get("network", []):
                ctx.s.call("network.destroy", ref)
