"""PIF: the host's interfaces, read from the host; Farside never reconfigures the host's network.

Every PIF is ``managed=false`` (model/classes/pif.py), so the messages that would change the
host's network answer xapi's PIF_UNMANAGED: the host's own network tools do that, and a DR
server that rewrote its host's addresses could cut itself off from the site it protects.
"""

from __future__ import annotations

from farside.api import pifs
from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import XenAPIFailure


@handles("PIF.scan")
def scan(ctx: Context, host: str) -> str:
    with ctx.db.write() as tx:
        pifs.scan(tx, tx.check("host", host))
    return ""


@handles("PIF.forget")
def forget(ctx: Context, pif: str) -> str:
    """Drop the record (a scan adds it again while its interface exists); never the management PIF."""
    with ctx.db.write() as tx:
        if tx.get_field("PIF", tx.check("PIF", pif), "management"):
            raise XenAPIFailure("PIF_IS_MANAGEMENT_INTERFACE", pif)
        tx.destroy("PIF", pif)
    return ""


def _unmanaged(ctx: Context, pif: str) -> str:
    with ctx.db.read() as tx:
        tx.check("PIF", pif)
    raise XenAPIFailure("PIF_UNMANAGED", pif)


@handles("PIF.reconfigure_ip")
def reconfigure_ip(ctx: Context, pif: str, mode: str, ip: str, netmask: str, gateway: str, dns: str) -> str:
    return _unmanaged(ctx, pif)


@handles("PIF.reconfigure_ipv6")
def reconfigure_ipv6(ctx: Context, pif: str, mode: str, ipv6: str, gateway: str, dns: str) -> str:
    return _unmanaged(ctx, pif)


@handles("PIF.plug")
def plug(ctx: Context, pif: str) -> str:
    return _unmanaged(ctx, pif)


@handles("PIF.unplug")
def unplug(ctx: Context, pif: str) -> str:
    return _unmanaged(ctx, pif)
