"""Claim: the LUNs the run works on (its SRs, by uuid and by LUN path) are held for it in the
target pool before anything is split or attached (``DR_run.claim_luns``, one transaction): a second
run on any of them is refused, naming the first. The pool lets go of them when the run ends."""

from __future__ import annotations

from typing import Any

from farside.dr.context import RunContext


def run(ctx: RunContext, data: dict[str, Any]) -> None:
    srs = ctx.data("discover")["srs"]
    luns = sorted({f"SR {sr['uuid']}" for sr in srs} | {f"LUN {sr['path']}" for sr in srs})
    ctx.s.call("DR_run.claim_luns", ctx.run_ref, ctx.runner, luns)
    data["luns"] = luns
