"""Start: by order groups, ascending, all VMs of a group at once; delays are slept inside VM.start.

``start_one`` starts (or resumes) one VM and waits for its readiness line; its outcome is what
the journal and the report keep for that VM."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from itertools import groupby
from typing import Any

from farside.dr.context import RunContext
from farside.errors import XenAPIFailure

READY_TIMEOUT_S = 120.0
READY_POLL_S = 0.02
# How long a dead engine's in-flight operation on a VM is waited for when a run is resumed.
OPERATION_WAIT_S = 300.0


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    if ctx.options.power == "none":
        data["skipped"] = "power option: do not start"
        return
    paused = ctx.options.power == "start_paused"
    results: dict[str, dict[str, Any]] = data.setdefault("vms", {})
    selected = sorted(ctx.selected_vms(), key=lambda vm: vm["order"])
    started = sum(1 for r in results.values() if r.get("state") == "started")
    ctx.emit("start", "progress", done=started, total=len(selected))  # the bar's total from the start
    with ThreadPoolExecutor(max_workers=max(len(selected), 1), thread_name_prefix="dr-start") as pool:
        for _, group in groupby(selected, key=lambda vm: vm["order"]):
            pending = [vm for vm in group if results.get(vm["uuid"], {}).get("state") != "started"]
            for vm, outcome in zip(pending, pool.map(lambda vm: start_one(ctx, vm, paused), pending), strict=True):
                results[vm["uuid"]] = outcome
            ctx.save()
            started = sum(1 for r in results.values() if r.get("state") == "started")
            ctx.emit("start", "progress", done=started, total=len(selected))


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
    # Halted: start it. Suspended (recovered with its memory image): resume it, so it runs.
    action = {"Halted": "VM.start", "Suspended": "VM.resume"}.get(state)
    if action is not None:
        try:
            ctx.s.call(action, ref, paused, False)
        except XenAPIFailure as exc:
            if exc.failure[0] != "OTHER_OPERATION_IN_PROGRESS" or settled_power_state(ctx, ref) == state:
                return {"state": "failed", "error": " ".join(exc.failure)}
    outcome: dict[str, Any] = {"state": "started", "seconds": round(time.time() - began, 3)}
    if vm["ready"] and not paused:
        outcome.update(wait_ready(ctx, vm, began))
    return outcome


def wait_ready(ctx: RunContext, vm: dict[str, Any], began: float) -> dict[str, Any]:
    """Wait for the VM's readiness line on its serial console; what the outcome records of it."""
    deadline = time.time() + READY_TIMEOUT_S
    while vm["ready"].encode() not in ctx.s.serial(vm["uuid"]):
        if time.time() > deadline:
            return {"ready": f"'{vm['ready']}' not seen within {READY_TIMEOUT_S:.0f} s"}
        time.sleep(READY_POLL_S)
    return {"ready_seconds": round(time.time() - began, 3)}
