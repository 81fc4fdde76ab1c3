"""VM.* and host.* data-source messages, answered from the metrics sampler's RRDs (api/monitor.py).

A name the object does not offer (or no longer records) is ``INVALID_VALUE ["data_source", name]``:
xapi lets rrdd's exception out as an INTERNAL_ERROR there, which Farside never sends.
"""

from __future__ import annotations

from typing import Any

from farside.api.context import Context
from farside.api.monitor import HOST_KEY
from farside.api.registry import handles


def _vm(ctx: Context, vm: str) -> str:
    with ctx.db.read() as tx:
        return str(tx.get_field("VM", tx.check("VM", vm), "uuid"))


def _host(ctx: Context, host: str) -> str:
    with ctx.db.read() as tx:
        tx.check("host", host)
    return HOST_KEY  # one host a pool


@handles("VM.get_data_sources")
def vm_get_data_sources(ctx: Context, vm: str) -> list[dict[str, Any]]:
    return ctx.services.monitor.data_sources(_vm(ctx, vm))


@handles("VM.query_data_source")
def vm_query_data_source(ctx: Context, vm: str, name: str) -> float:
    return ctx.services.monitor.query(_vm(ctx, vm), name)


@handles("VM.record_data_source")
def vm_record_data_source(ctx: Context, vm: str, name: str) -> str:
    ctx.services.monitor.record(_vm(ctx, vm), name)
    return ""


@handles("VM.forget_data_source_archives")
def vm_forget_data_source_archives(ctx: Context, vm: str, name: str) -> str:
    ctx.services.monitor.forget(_vm(ctx, vm), name)
    return ""


@handles("host.get_data_sources")
def host_get_data_sources(ctx: Context, host: str) -> list[dict[str, Any]]:
    return ctx.services.monitor.data_sources(_host(ctx, host))


@handles("host.query_data_source")
def host_query_data_source(ctx: Context, host: str, name: str) -> float:
    return ctx.services.monitor.query(_host(ctx, host), name)


@handles("host.record_data_source")
def host_record_data_source(ctx: Context, host: str, name: str) -> str:
    ctx.services.monitor.record(_host(ctx, host), name)
    return ""


@handles("host.forget_data_source_archives")
def host_forget_data_source_archives(ctx: Context, host: str, name: str) -> str:
    ctx.services.monitor.forget(_host(ctx, host), name)
    return ""
