"""Recover: vApps first, then standalone VMs, each journaled on its own."""

from __future__ import annotations

from typing import Any

from farside.dr.context import RunContext, RunFailed
from farside.errors import XenAPIFailure

# A start or shutdown delay from foreign metadata above the API's bound is clamped to it (docs/dr.md):
# the source pool's value would hold the VM's start, and the run, for as long as it says.
from farside.model.vm_rules import MAX_DELAY_S


def recovered(vm: dict[str, Any], versions: dict[str, int]) -> bool:
    """Whether this VM's recovery already happened (after an interruption): uuid and version."""
    return bool(versions.get(vm["uuid"]) == vm["version"] + 1)


def _members(loaded: dict[str, Any], item: dict[str, Any]) -> list[dict[str, Any]]:
    """The VMs an item recovers: a vApp's members, or the VM itself."""
    return [loaded["vms"][u] for u in item["members"]] if "members" in item else [item]


def clamp_delays(ctx: RunContext, vms: list[dict[str, Any]], data: dict[str, Any]) -> None:
    """Bring the recovered VMs' start and shutdown delays down to MAX_DELAY_S, saying so."""
    clamped: dict[str, str] = data.setdefault("clamped", {})
    for vm in vms:
        # The loaded metadata's values: asking the pool for each VM's two delays was 3 calls a VM.
        # A journal loaded by an older Farside has none, so those VMs are asked.
        delays = vm.get("delays") or {f: None for f in ("start_delay", "shutdown_delay")}
        ref = ""
        for field, loaded in delays.items():
            if loaded is not None and loaded <= MAX_DELAY_S:
                continue
            ref = ref or ctx.s.call("VM.get_by_uuid", vm["uuid"])
            value = int(ctx.s.call(f"VM.get_{field}", ref))
            if value > MAX_DELAY_S:
                ctx.s.call(f"VM.set_{field}", ref, str(MAX_DELAY_S))
                clamped[f"{vm['uuid']} {field}"] = f"{vm['name']}: {field} {value} s clamped to {MAX_DELAY_S} s"
    if clamped:
        ctx.save()


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    loaded, chosen = ctx.data("load"), ctx.data("select")
    done: list[str] = data.setdefault("done", [])
    # Each item's outcome, for the report's one line per action; a failed item does not stop
    # the others, and a resume tries it again.
    failed: dict[str, str] = {}
    items = [("VM_appliance", loaded["vapps"][u]) for u in chosen["vapps"]]
    items += [("VM", loaded["vms"][u]) for u in chosen["vms"]]
    versions = {r["uuid"]: int(r["version"]) for r in ctx.s.call("VM.get_all_records").values()}
    ctx.emit("recover", "progress", done=len(done), total=len(items))  # the bar's total from the start
    with ctx.databases() as database:
        for cls, item in items:
            if item["uuid"] in done:
                continue
            members = _members(loaded, item)
            if not all(recovered(vm, versions) for vm in members):
                try:
                    ctx.s.call_as(database(item["source"]), f"{cls}.recover", item["ref"], ctx.s.handle, False)
                except XenAPIFailure as exc:
                    failed[item["uuid"]] = " ".join(exc.failure)
                    continue
            done.append(item["uuid"])
            ctx.save(force=False)
            ctx.emit("recover", "progress", done=len(done), total=len(items))
    data["failed"] = failed
    clamp_delays(ctx, [vm for _, item in items if item["uuid"] in done for vm in _members(loaded, item)], data)
    if failed:
        names = {item["uuid"]: item["name"] for _, item in items}
        raise RunFailed("; ".join(f"{names[u]}: {error}" for u, error in failed.items()))
