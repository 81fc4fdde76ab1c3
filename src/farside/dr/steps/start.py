"""Start: by order groups, ascending, all VMs of a group at once; delays are slept inside VM.start.

``start_one`` starts (or resumes, or continues) one VM and waits for its readiness probe (see
dr.probes); its outcome is what the journal and the report keep for that VM. A probe that times
out with policy ``fail`` fails the step once its group is through: later groups do not start.

A resumed step trusts nothing it counted before the interruption: every VM it had counted is
looked at again, and one that is not running (left paused at QEMU's ``-S``, halted, crashed) is
started or continued again, or reported failed; never counted as started on the old word.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from typing import Any

from farside.dr import probes
from farside.dr.context import RunContext, RunFailed
from farside.errors import XenAPIFailure

# How long a dead engine's in-flight operation on a VM is waited for when a run is resumed.
OPERATION_WAIT_S = 300.0


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    if ctx.options.power == "none":
        data["skipped"] = "power option: do not start"
        return
    paused = ctx.options.power == "start_paused"
    results: dict[str, dict[str, Any]] = data.setdefault("vms", {})
    selected = sorted(ctx.selected_vms(), key=lambda vm: vm["order"])
    ctx.emit("start", "progress", done=_started(results), total=len(selected))  # the bar's total from the start
    with ThreadPoolExecutor(max_workers=max(len(selected), 1), thread_name_prefix="dr-start") as pool:
        for order, group in groupby(selected, key=lambda vm: vm["order"]):
            members = list(group)
            for vm, outcome in zip(members, pool.map(lambda vm: _one(ctx, vm, results, paused), members), strict=True):
                results[vm["uuid"]] = outcome
            ctx.save()
            ctx.emit("start", "progress", done=_started(results), total=len(selected))
            failed = [
                f"{vm['name']}: {results[vm['uuid']]['ready']}" for vm in members if _must_fail(results[vm["uuid"]])
            ]
            if failed:
                raise RunFailed(
                    f"order group {order} is not ready, so later groups were not started: {'; '.join(failed)}"
                )


def _started(results: dict[str, dict[str, Any]]) -> int:
    return sum(1 for r in results.values() if r.get("state") == "started")


def _must_fail(outcome: dict[str, Any]) -> bool:
    return bool(outcome.get("ready")) and outcome.get("policy") == "fail"


def _one(ctx: RunContext, vm: dict[str, Any], results: dict[str, dict[str, Any]], paused: bool) -> dict[str, Any]:
    """A VM's outcome: started (or looked at again, after an interruption) and probed."""
    before = results.get(vm["uuid"], {})
    if before.get("state") == "started" and not before.get("ready") and _still_as_counted(ctx, vm, before, paused):
        return before
    return start_one(ctx, vm, paused)


def _still_as_counted(ctx: RunContext, vm: dict[str, Any], before: dict[str, Any], paused: bool) -> bool:
    """Whether a VM counted as started before the run was interrupted is still what was counted."""
    if before.get("note"):
        return True  # left suspended in a test, on purpose
    ref = ctx.s.call("VM.get_by_uuid", vm["uuid"])
    return settled_power_state(ctx, ref) == ("Paused" if paused else "Running")


def settled_power_state(ctx: RunContext, ref: str) -> str:
    """The VM's power state once no operation is in flight on it: a resumed run may meet the
    VM.start (or another operation) that the interrupted engine had asked for, still going on."""
    deadline = time.monotonic() + OPERATION_WAIT_S
    while ctx.s.call("VM.get_current_operations", ref) and time.monotonic() < deadline:
        time.sleep(0.2)
    return str(ctx.s.call("VM.get_power_state", ref))


def start_one(ctx: RunContext, vm: dict[str, Any], paused: bool) -> dict[str, Any]:
    began = time.time()
    ref = ctx.s.call("VM.get_by_uuid", vm["uuid"])
    state = settled_power_state(ctx, ref)
    if state == "Suspended" and ctx.options.kind == "test":
        # Resuming consumes the memory image, which belongs to the replica: a test never does.
        return {"state": "started", "note": "left suspended: a test failover never resumes a memory image"}
    # Halted: start it. Suspended (recovered with its memory image): resume it, so it runs. Paused
    # where it should run (an engine stopped between QEMU's start and its continue): continue it.
    args: tuple[Any, ...] = (paused, False)
    action = {"Halted": "VM.start", "Suspended": "VM.resume"}.get(state)
    if state == "Paused" and not paused:
        action, args = "VM.unpause", ()
    if action is not None:
        try:
            ctx.s.call(action, ref, *args)
        except XenAPIFailure as exc:
            if exc.failure[0] != "OTHER_OPERATION_IN_PROGRESS" or settled_power_state(ctx, ref) == state:
                return {"state": "failed", "error": " ".join(exc.failure)}
    now = ctx.s.call("VM.get_power_state", ref)
    if now != ("Paused" if paused else "Running"):
        return {"state": "failed", "error": f"the VM is {now} after its start"}
    outcome: dict[str, Any] = {"state": "started", "seconds": round(time.time() - began, 3)}
    if not paused:
        outcome.update(wait_ready(ctx, vm, began))
    return outcome


def wait_ready(ctx: RunContext, vm: dict[str, Any], began: float) -> dict[str, Any]:
    """Wait for the VM's readiness probe; what the outcome records of it."""
    defaults = ctx.options.probe_defaults
    try:
        probe = probes.parse(vm["probe"], defaults)
    except probes.ProbeError:
        return {}  # the pre-check warned: it counts as up once started
    if probe is None:
        return {}
    why = probes.wait(probe, ctx.s, vm["uuid"], defaults, stopped=lambda: bool(ctx.lost))
    if why:
        return {"ready": why, "policy": probe.policy}
    return {"ready_seconds": round(time.time() - began, 3)}
