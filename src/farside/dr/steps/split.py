"""Split: with ``split_mirrors``, split the replication of LUNs still replicating into this site."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from farside.dr.context import RunContext, RunFailed
from farside.errors import XenAPIFailure
from farside.storage.replication import ReplicationState


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    """Without ``split_mirrors``, a LUN still being replicated into stops the run here, before
    anything is attached: two writers must never share a LUN, and splitting is the operator's decision."""
    split: list[str] = data.setdefault("split", [])
    live = (ReplicationState.REPLICATING, ReplicationState.PAUSED, ReplicationState.RESYNCING)
    waiting, to_split = [], []
    for sr in ctx.data("discover")["srs"]:
        if sr["path"] in split:
            continue
        state = ctx.replication.state(Path(sr["path"]))
        if state not in live:
            continue
        if ctx.options.kind == "test":
            # A test never splits (replication goes on), and a pool cannot plug a LUN still
            # being written: the test must run on a copy of it.
            raise RunFailed(
                f"{sr['path']} is a mirror target still replicated into ({state.value}): a test failover "
                "runs on a point-in-time copy of it, which replication leaves alone. Take one (with "
                "farside mirror: 'farside mirror snapshot MIRROR DIR') and start a new test on DIR"
            )
        if not ctx.options.split_mirrors:
            waiting.append(f"{sr['path']} ({state.value})")
            continue
        to_split.append(sr)
    running = running_at_source(ctx, {sr["uuid"] for sr in to_split})
    if running:
        # Splitting stops the source's replication for good: never while it still runs VMs on them.
        raise RunFailed(
            f"{', '.join(running)} still run in the source pool on the LUNs to split: shut them down there "
            "first; nothing was split"
        )
    for sr in to_split:
        ctx.replication.split(Path(sr["path"]))
        split.append(sr["path"])
        ctx.save()
    release_at_source(ctx, data)
    if waiting:
        raise RunFailed(
            f"the replication into {', '.join(waiting)} is not split: split the mirrors first, "
            "or let the run split them (split_mirrors=true)"
        )


def running_at_source(ctx: RunContext, sr_uuids: set[str]) -> list[str]:
    """Names of the VMs that run in the source pool (when a session on it was given) with a
    disk on one of these SRs."""
    if ctx.source is None or not sr_uuids:
        return []
    srs = {ref for ref, r in ctx.source.call("SR.get_all_records").items() if r["uuid"] in sr_uuids}
    vdis = {ref for ref, r in ctx.source.call("VDI.get_all_records").items() if r["SR"] in srs}
    vbds = ctx.source.call("VBD.get_all_records")
    return sorted(
        r["name_label"]
        for r in ctx.source.call("VM.get_all_records").values()
        if r["power_state"] != "Halted" and any(vbds.get(v, {}).get("VDI") in vdis for v in r["VBDs"])
    )


def release_at_source(ctx: RunContext, data: dict[str, Any]) -> None:
    """With a session on the source pool, that pool lets go of the SRs whose replication is split
    (unplugs its PBDs of them, giving up its leases), so that it no longer writes what this site
    takes over. A LUN whose replication nobody here manages is the operator's to have stopped."""
    if ctx.source is None or ctx.options.kind == "test":
        return
    released: list[str] = data.setdefault("released", [])
    split = {sr["uuid"] for sr in ctx.data("discover")["srs"]
             if ctx.replication.state(Path(sr["path"])) is ReplicationState.SPLIT}  # fmt: skip
    for sr in ctx.source.call("SR.get_all_records").values():
        if sr["uuid"] not in split or sr["uuid"] in released:
            continue
        for pbd in sr["PBDs"]:
            try:
                ctx.source.call("PBD.unplug", pbd)
            except XenAPIFailure as exc:
                raise RunFailed(f"the source pool did not release SR {sr['name_label']} ({' '.join(exc.failure)}): "
                                "shut down what uses it there, then resume") from None  # fmt: skip
        released.append(sr["uuid"])
        ctx.save()
