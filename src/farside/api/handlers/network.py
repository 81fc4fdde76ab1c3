"""network: create with a bridge name, destroy only when no VIF uses it."""

from __future__ import annotations

from typing import Any

from farside.api import implicit
from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import XenAPIFailure
from farside.model import NETWORK


@handles("network.create")
def create(ctx: Context, record: dict[str, Any]) -> str:
    with ctx.db.write() as tx:
        ref = implicit.create(tx, NETWORK, record)
        if not tx.get_field("network", ref, "bridge"):
            # xapi names bridges it creates for internal networks xapi0, xapi1, ...
            taken = {tx.get_field("network", r, "bridge") for r in tx.refs("network")}
            index = next(i for i in range(len(taken) + 1) if f"xapi{i}" not in taken)
            tx.set_fields("network", ref, {"bridge": f"xapi{index}"})
        return ref


@handles("network.destroy")
def destroy(ctx: Context, network: str) -> str:
    with ctx.db.write() as tx:
        vifs = tx.get_field("network", tx.check("network", network), "VIFs")
        if vifs:
            raise XenAPIFailure("NETWORK_CONTAINS_VIF", *vifs)
        tx.destroy("network", network)
    return ""
