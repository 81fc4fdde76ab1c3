"""Attach: new SRs through DR tasks; SRs this pool knows but has unplugged (failback) plugged again."""

from __future__ import annotations

from typing import Any

from farside.dr.context import RunContext, RunFailed


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    tasks: dict[str, str] = data.setdefault("tasks", {})
    plugged: list[str] = data.setdefault("plugged", [])
    for sr in ctx.data("discover")["srs"]:
        if sr["uuid"] in tasks:
            continue
        ref = ctx.sr_by_uuid(sr["uuid"])
        if ref is not None:
            introduced_by = ctx.s.call("SR.get_introduced_by", ref)
            if introduced_by != "OpaqueRef:NULL" and sr["uuid"] not in plugged:
                if sr["uuid"] not in data.get("creating", []):
                    raise RunFailed(f"SR {sr['name']} was introduced by another run's DR task "
                                    f"{introduced_by}: clean that run up first")  # fmt: skip
                tasks[sr["uuid"]] = introduced_by  # made by this step before an interruption
                ctx.save()
                continue
            for pbd in ctx.s.call("SR.get_PBDs", ref):
                if not ctx.s.call("PBD.get_currently_attached", pbd):
                    if sr["uuid"] not in plugged:  # the intent first: cleanup unplugs it even
                        plugged.append(sr["uuid"])  # if the engine dies inside the plug
                        ctx.save()
                    ctx.s.call("PBD.plug", pbd)
            # Plugged all along (a server restart keeps it so): the LUN may have been copied
            # back under it; a scan finds the VDIs, and the metadata, that came with the copy.
            ctx.s.call("SR.scan", ref)
            continue
        data.setdefault("creating", []).append(sr["uuid"])  # the intent first: a killed engine's
        ctx.save()  # task is then found again (resume) or destroyed (cleanup)
        task = ctx.s.call("DR_task.create", "file", {"path": sr["path"]}, [sr["uuid"]])
        ref = ctx.sr_by_uuid(sr["uuid"])
        owner = ctx.s.call("SR.get_introduced_by", ref) if ref is not None else "OpaqueRef:NULL"
        if owner not in ("OpaqueRef:NULL", task):
            # A create an interrupted engine had in flight introduced the SR first: adopt its task.
            ctx.s.call("DR_task.destroy", task)
            task = owner
        tasks[sr["uuid"]] = task
        ctx.save()
