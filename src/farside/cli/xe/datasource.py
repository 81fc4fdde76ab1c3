"""xe's data-source commands for VMs and the host: list, query, record and forget (cli_operations.ml)."""

from __future__ import annotations

import math
from typing import Any

from farside.cli.xe.command import Command, Context, field_param, select
from farside.cli.xe.failures import command_error
from farside.cli.xe.records import VM

_VM = ("vm", "multiple", "data-source")


def ocaml_float(value: float) -> str:
    """A float as OCaml's ``string_of_float`` writes it, which xe prints: ``1.``, ``0.5``, ``inf``."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.12g}"
    return text if any(c in text for c in ".en") else text + "."


def _table(sources: list[dict[str, Any]]) -> list[list[tuple[str, str]]]:
    return [
        [
            ("name_label", str(ds["name_label"])),
            ("name_description", str(ds["name_description"])),
            ("enabled", "true" if ds["enabled"] else "false"),
            ("standard", "true" if ds["standard"] else "false"),
            ("min", ocaml_float(float(ds["min"]))),
            ("max", ocaml_float(float(ds["max"]))),
            ("units", str(ds["units"])),
        ]
        for ds in sources
    ]


def _vm(ctx: Context) -> str:
    [row] = select(ctx, VM, ("data-source",), single=True)
    return row.ref


def _host(ctx: Context) -> str:
    """xe's host selectors, for a pool of one host: ``host=NAME-OR-UUID`` or ``uuid=``, or none."""
    wanted = ctx.params.get("host") or ctx.params.get("uuid")
    for host in ctx.call("host.get_all"):
        if wanted is None or wanted in (ctx.call("host.get_uuid", host), ctx.call("host.get_name_label", host)):
            return str(host)
    raise command_error("No matching hosts found")


def vm_list(ctx: Context) -> None:
    ctx.printer.records(_table(ctx.call("VM.get_data_sources", _vm(ctx))))


def vm_query(ctx: Context) -> None:
    value = float(ctx.call("VM.query_data_source", _vm(ctx), ctx.params["data-source"]))
    ctx.printer.values([f"{value:f}"])


def vm_record(ctx: Context) -> None:
    ctx.call("VM.record_data_source", _vm(ctx), ctx.params["data-source"])


def vm_forget(ctx: Context) -> None:
    ctx.call("VM.forget_data_source_archives", _vm(ctx), ctx.params["data-source"])


def host_list(ctx: Context) -> None:
    ctx.printer.records(_table(ctx.call("host.get_data_sources", _host(ctx))))


def host_query(ctx: Context) -> None:
    value = float(ctx.call("host.query_data_source", _host(ctx), ctx.params["data-source"]))
    ctx.printer.values([f"{value:f}"])


def host_record(ctx: Context) -> None:
    ctx.call("host.record_data_source", _host(ctx), ctx.params["data-source"])


def host_forget(ctx: Context) -> None:
    ctx.call("host.forget_data_source_archives", _host(ctx), ctx.params["data-source"])


_vm_filter = field_param(VM)
_SELECTORS = "(vm=NAME-OR-UUID or field filters)"
_HOST = ("host", "uuid")

COMMANDS = [
    Command(
        "vm-data-source-list", vm_list, optn=_VM[:2], also=_vm_filter,
        help=f"List the data sources that can be recorded for a VM {_SELECTORS}.",
    ),
    Command(
        "vm-data-source-query", vm_query, reqd=("data-source",), optn=_VM[:2], also=_vm_filter,
        help="Query the last value read from a VM data source (its average over the last 5 s).",
    ),
    Command(
        "vm-data-source-record", vm_record, reqd=("data-source",), optn=_VM[:2], also=_vm_filter,
        help="Record the specified data source for a VM.",
    ),
    Command(
        "vm-data-source-forget", vm_forget, reqd=("data-source",), optn=_VM[:2], also=_vm_filter,
        help="Stop recording the specified data source for a VM, and forget all of the recorded data.",
    ),
    Command(
        "host-data-source-list", host_list, optn=_HOST,
        help="List the data sources that can be recorded for a Host (host=NAME-OR-UUID).",
    ),
    Command(
        "host-data-source-query", host_query, reqd=("data-source",), optn=_HOST,
        help="Query the last value read from a Host data source.",
    ),
    Command(
        "host-data-source-record", host_record, reqd=("data-source",), optn=_HOST,
        help="Record the specified data source for a Host.",
    ),
    Command(
        "host-data-source-forget", host_forget, reqd=("data-source",), optn=_HOST,
        help="Stop recording the specified data source for a Host, and forget all of the recorded data.",
    ),
]  # fmt: skip
