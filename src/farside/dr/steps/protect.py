"""Protect: after a failover or failback that started VMs, this pool's metadata goes onto the SRs."""

from __future__ import annotations

from typing import Any

from farside.dr.context import RunContext
from farside.errors import XenAPIFailure


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    if ctx.options.kind == "test" or ctx.options.power == "none":
        data["skipped"] = "nothing was started for good"
        return
    enabled: list[str] = data.setdefault("enabled", [])
    for sr in ctx.data("discover")["srs"]:
        ref = ctx.sr_by_uuid(sr["uuid"])
        if ref is None or sr["uuid"] in enabled:
            continue
        if ctx.s.call("SR.get_introduced_by", ref) != "OpaqueRef:NULL":
            continue  # no recovered VM uses it: release forgets it, so this pool's metadata goes elsewhere
        try:
            ctx.s.call("SR.enable_database_replication", ref)
            enabled.append(sr["uuid"])
        except XenAPIFailure as exc:
            data.setdefault("warnings", []).append(f"{sr['name']}: {' '.join(exc.failure)}")
        ctx.save()
