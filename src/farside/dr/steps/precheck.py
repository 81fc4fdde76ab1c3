"""Pre-check: every check of ``farside.dr.checks`` on what the run would recover; an error stops the
run before anything is recovered, warnings go into the report."""

from __future__ import annotations

from typing import Any

from farside.dr.checks import RUN_CHECKS, VM_CHECKS, Scene
from farside.dr.context import RunContext, RunFailed
from farside.dr.plan import Problem


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    scene = Scene.of(ctx)
    problems: list[Problem] = []
    for vm in scene.selected:
        for check_vm in VM_CHECKS:
            problems += check_vm(ctx, scene, vm)
    for check in RUN_CHECKS:
        problems += check(ctx, scene)
    data["problems"] = [p.as_dict() for p in problems]
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise RunFailed("; ".join(f"{p.subject}: {p.text}" + (f" ({p.fix})" if p.fix else "") for p in errors))
