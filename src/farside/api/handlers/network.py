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


# xapi: a network serves NBD with TLS or without, never both (datamodel_network.ml's purposes).
_INCOMPATIBLE = {"nbd": "insecure_nbd", "insecure_nbd": "nbd"}


@handles("network.add_purpose")
def add_purpose(ctx: Context, network: str, value: str) -> str:
    with ctx.db.write() as tx:
        purposes: list[str] = tx.get_field("network", tx.check("network", network), "purpose")
        if _INCOMPATIBLE[value] in purposes:
            raise XenAPIFailure("NETWORK_INCOMPATIBLE_PURPOSES", value, _INCOMPATIBLE[value])
        if value not in purposes:
            tx.set_fields("network", network, {"purpose": [*purposes, value]})
    return ""


@handles("network.remove_purpose")
def remove_purpose(ctx: Context, network: str, value: str) -> str:
    with ctx.db.write() as tx:
        purposes = tx.get_field("network", tx.check("network", network), "purpose")
        tx.set_fields("network", network, {"purpose": [p for p in purposes if p != value]})
    return ""
