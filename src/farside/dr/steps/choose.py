"""Choose: per source pool, the authenticated metadata VDI with the highest generation; never this pool's own.

A copy that fails authentication (replication.authenticity) is never used, and is reported."""

from __future__ import annotations

from typing import Any

from farside.dr.context import RunContext, RunFailed
from farside.replication import authenticity


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    own = ctx.data("discover")["pool_uuid"]
    best: dict[str, dict[str, Any]] = {}
    warnings: list[str] = data.setdefault("warnings", [])
    vdis = ctx.s.call("VDI.get_all_records")
    for sr in ctx.data("discover")["srs"]:
        ref = ctx.sr_by_uuid(sr["uuid"])
        for vdi, record in vdis.items() if ref else []:
            if record["SR"] != ref or record["type"] != "metadata":
                continue
            found = candidate(ctx, sr, vdi, record, own, warnings)
            if found is None:
                continue
            pool_uuid = found["pool_uuid"]
            if pool_uuid not in best or found["generation"] > best[pool_uuid]["generation"]:
                best[pool_uuid] = found
    if not best:
        raise RunFailed(
            "; ".join(["no authenticated metadata of another pool was found on the attached SRs", *warnings])
        )
    wanted = ctx.options.source_pool
    if wanted and wanted not in best:
        pools = ", ".join(f"{m['pool_name']} ({p})" for p, m in best.items())
        raise RunFailed(f"no metadata of pool {wanted} on the attached SRs; found: {pools}")
    data["metadata"] = [m for p, m in best.items() if not wanted or p == wanted]


def candidate(
    ctx: RunContext, sr: dict[str, Any], vdi: str, record: dict[str, Any], own: str, warnings: list[str]
) -> dict[str, Any] | None:
    """One metadata VDI as the step weighs it, or None (with a warning) when it is not usable."""
    pool_uuid = ctx.s.call("VDI.read_database_pool_uuid", vdi)
    if pool_uuid == own:
        warnings.append(f"SR {sr['name']} holds this pool's own metadata; it is not used")
        return None
    usable, warning = authenticity.screen(vdi, record, sr["name"], pool_uuid)  # authentic copies only
    warnings += [warning] if warning else []
    if not usable or not record["metadata_latest"]:
        return None
    config = record["sm_config"]
    return {
        "vdi": vdi,
        "pool_uuid": pool_uuid,
        "pool_name": config.get("farside-pool-name", ""),
        "generation": int(config.get("farside-generation", "0")),
        "written": config.get("farside-written", ""),
    }
