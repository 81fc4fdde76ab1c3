"""Release: a failover or failback keeps what it recovered: its DR tasks go (SRs in use stay)."""

from __future__ import annotations

from typing import Any

from farside.dr.context import RunContext
from farside.errors import XenAPIFailure


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    if ctx.options.kind == "test":
        data["skipped"] = "a test failover releases everything at cleanup"
        return
    destroy_tasks(ctx)


def destroy_tasks(ctx: RunContext) -> None:
    """Destroy the run's DR tasks (each forgets the SRs it introduced that no VM uses)."""
    for task in ctx.data("attach").get("tasks", {}).values():
        try:
            ctx.s.call("DR_task.destroy", task)
        except XenAPIFailure as exc:
            if exc.failure[0] != "HANDLE_INVALID":  # destroyed before an interruption
                raise
