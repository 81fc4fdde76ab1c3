"""host: the clock, evacuation and plugins, with xapi's answers for a pool of one host.

Evacuation moves a host's running VMs to the pool's other hosts; a Farside pool has one host,
so every running VM (not the control domain, which is the host's own system) prevents it with
``NO_HOSTS_AVAILABLE``, xapi's own answer when there is no other live host to plan for. With no
VMs running there is nothing to move and evacuate succeeds, as in xapi.
"""

from __future__ import annotations

import datetime as dt

from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import XenAPIFailure
from farside.model.types import NULL_REF, now

# xapi's system status report capabilities (the bug-report tool's): Farside has no such tool.
NO_STATUS_CAPABILITIES = '<?xml version="1.0" ?><system-status-capabilities></system-status-capabilities>'


@handles("host.get_servertime")
def get_servertime(ctx: Context, host: str) -> str:
    with ctx.db.read() as tx:
        tx.check("host", host)
    return now()


@handles("host.get_server_localtime")
def get_server_localtime(ctx: Context, host: str) -> str:
    """The host's wall clock in its own time zone, without the UTC marker, as xapi sends it."""
    with ctx.db.read() as tx:
        tx.check("host", host)
    return dt.datetime.now().strftime("%Y%m%dT%H:%M:%S")


def _preventing(ctx: Context, host: str) -> dict[str, list[str]]:
    with ctx.db.read() as tx:
        tx.check("host", host)
        dom0 = tx.get_field("host", host, "control_domain")
        resident = [vm for vm in tx.get_field("host", host, "resident_VMs") if vm != dom0]
    return {vm: ["NO_HOSTS_AVAILABLE", vm] for vm in resident}


@handles("host.get_vms_which_prevent_evacuation")
def get_vms_which_prevent_evacuation(ctx: Context, host: str) -> dict[str, list[str]]:
    return _preventing(ctx, host)


@handles("host.evacuate")
def evacuate(ctx: Context, host: str, network: str, evacuate_batch_size: int) -> str:
    if network != NULL_REF:
        with ctx.db.read() as tx:
            tx.check("network", network)
    for _vm, error in sorted(_preventing(ctx, host).items()):
        raise XenAPIFailure(*error)
    return ""


@handles("host.call_plugin")
def call_plugin(ctx: Context, host: str, plugin: str, fn: str, args: dict[str, str]) -> str:
    """Farside has no plugins: xapi's run scripts from /etc/xapi.d/plugins, and none of those
    (dom0 and Xen tools) means anything on a QEMU host; so every name is a missing plugin."""
    with ctx.db.read() as tx:
        tx.check("host", host)
    raise XenAPIFailure("XENAPI_MISSING_PLUGIN", plugin)


@handles("host.get_system_status_capabilities")
def get_system_status_capabilities(ctx: Context, host: str) -> str:
    with ctx.db.read() as tx:
        tx.check("host", host)
    return NO_STATUS_CAPABILITIES
