"""xe's transfer commands: vm-export, vm-import, vdi-export, vdi-import.

Each runs as xe does: a task made with ``task.create`` and passed as ``task_id``, the bytes over
HTTP beside the XenAPI session (``/export``, ``/import``, ``/export_raw_vdi``, ``/import_raw_vdi``),
a progress bar on stderr, and the task's own error when it fails. A download goes to a new file
beside ``filename`` and takes its name only once complete: a failed export leaves no half file.
"""

from __future__ import annotations

import http.client
import os
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from farside.cli.xe.command import Command, Context
from farside.cli.xe.failures import command_error
from farside.dr.session import XmlRpcSession
from farside.errors import XenAPIFailure

BLOCK = 1 << 20
_LOST = "CLIENT_ERROR the connection to the server was lost during the transfer"
_COMPRESS = {"true": "gzip", "gzip": "gzip", "zstd": "zstd", "false": ""}


def _session(ctx: Context) -> XmlRpcSession:
    session = ctx.session
    if not isinstance(session, XmlRpcSession):  # the CLI always has one; a test double may not
        raise command_error("this command needs a pool server to transfer from")
    return session


def _connection(session: XmlRpcSession) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(session.url)
    host, port = parts.hostname or "127.0.0.1", parts.port
    if parts.scheme == "https":
        return http.client.HTTPSConnection(host, port, context=session.tls_context, blocksize=BLOCK)
    return http.client.HTTPConnection(host, port, blocksize=BLOCK)


def _progress(what: str, total: int | None) -> tuple[Progress, Callable[[int], None]]:
    bar = Progress(
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
        console=Console(stderr=True), transient=True,
    )  # fmt: skip
    task = bar.add_task(what, total=total)
    return bar, lambda n: bar.advance(task, n)


def _query(session: XmlRpcSession, task: str, **params: str) -> str:
    return urllib.parse.urlencode({"session_id": session.handle, "task_id": task, **params})


def _outcome(ctx: Context, task: str, status: int, text: str) -> str:
    """The task's result once it has ended; its failure (or the HTTP answer's) raised."""
    record = ctx.call("task.get_record", task)
    deadline = time.monotonic() + 30
    while record["status"] in ("pending", "cancelling") and time.monotonic() < deadline:
        time.sleep(0.1)
        record = ctx.call("task.get_record", task)
    try:
        if record["status"] in ("failure", "cancelled") and record["error_info"]:
            raise XenAPIFailure(*record["error_info"])
    finally:
        ctx.call("task.destroy", task)
    if status != 200:
        code, *params = (text.strip() or f"HTTP_{status}").split(" ", 1)
        raise XenAPIFailure(code, *params)
    return str(record["result"])


def _download(ctx: Context, path: str, query: str, filename: str, task: str) -> None:
    target = Path(filename)
    connection = _connection(_session(ctx))
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent if target.parent.parts else ".")
    staging = Path(name)
    try:
        connection.request("GET", f"{path}?{query}")
        response = connection.getresponse()
        status, text = response.status, ""
        if status == 200:
            bar, advance = _progress(
                f"Exporting to {target.name}", int(response.headers.get("content-length") or 0) or None
            )
            with bar, os.fdopen(fd, "wb") as out:
                fd = -1
                while block := response.read(BLOCK):
                    out.write(block)
                    advance(len(block))
                out.flush()
                os.fsync(out.fileno())
        else:
            text = response.read(64 << 10).decode("utf-8", "replace")
        _outcome(ctx, task, status, text)
        os.replace(staging, target)
    finally:
        if fd >= 0:
            os.close(fd)
        staging.unlink(missing_ok=True)
        connection.close()


class _Counting:
    """A file whose reads move the progress bar."""

    def __init__(self, fh: BinaryIO, advance: Callable[[int], None]) -> None:
        self._fh = fh
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._fh.read(n)
        self._advance(len(data))
        return data


def _upload(ctx: Context, path: str, query: str, filename: str, task: str) -> str:
    source = Path(filename)
    if not source.is_file():
        raise command_error(f"The file {filename} could not be read")
    size = source.stat().st_size
    connection = _connection(_session(ctx))
    bar, advance = _progress(f"Importing {source.name}", size)
    try:
        with bar, open(source, "rb") as fh:
            headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
            try:
                connection.request("PUT", f"{path}?{query}", body=_Counting(fh, advance), headers=headers)
                response = connection.getresponse()
                status, text = response.status, response.read(64 << 10).decode("utf-8", "replace")
            except (OSError, http.client.HTTPException):
                # The server may refuse a stream before it has all of it and close the connection:
                # the task still says why.
                status, text = 0, _LOST
        return _outcome(ctx, task, status, text)
    finally:
        connection.close()


def _vm_uuid(ctx: Context) -> str:
    wanted = ctx.params.get("vm") or ctx.params.get("uuid")
    if wanted is None:
        raise command_error("Required parameter not found: vm")
    try:
        return str(ctx.call("VM.get_uuid", ctx.call("VM.get_by_uuid", wanted)))
    except XenAPIFailure:
        found = ctx.call("VM.get_by_name_label", wanted)
        if len(found) != 1:
            raise command_error(f"{'No' if not found else 'Multiple'} matching VMs found") from None
        return str(ctx.call("VM.get_uuid", found[0]))


def vm_export(ctx: Context) -> None:
    uuid = _vm_uuid(ctx)
    compress = (ctx.params.get("compress") or "false").lower()
    if compress not in _COMPRESS:
        raise command_error("compress must be true, false, gzip or zstd")
    metadata = ctx.params.flag("metadata")
    task = str(ctx.call("task.create", "Export of VM " + uuid, ""))
    params = {"uuid": uuid}
    if not metadata:
        params["use_compression"] = _COMPRESS[compress]
        params["preserve_power_state"] = str(ctx.params.flag("preserve-power-state")).lower()
    path = "/export_metadata" if metadata else "/export"
    _download(ctx, path, _query(_session(ctx), task, **params), ctx.params["filename"], task)
    ctx.printer.values(["Export succeeded"])


def vm_import(ctx: Context) -> None:
    metadata = ctx.params.flag("metadata")
    params = {
        "restore": str(ctx.params.flag("preserve")).lower(),
        "force": str(ctx.params.flag("force")).lower(),
        "dry_run": str(ctx.params.flag("dry-run")).lower(),
    }
    sr_uuid = ctx.params.get("sr-uuid")
    if sr_uuid is not None:
        params["sr_id"] = str(ctx.call("SR.get_by_uuid", sr_uuid))
    task = str(ctx.call("task.create", "VM import", ""))
    path = "/import_metadata" if metadata else "/import"
    result = _upload(ctx, path, _query(_session(ctx), task, **params), ctx.params["filename"], task)
    refs = [r.split("</value>")[0] for r in result.split("<value>")[1:] if r.startswith("OpaqueRef:")]
    ctx.printer.values([",".join(str(ctx.call("VM.get_uuid", r)) for r in refs)])


def vdi_export(ctx: Context) -> None:
    vdi = str(ctx.call("VDI.get_by_uuid", ctx.params["uuid"]))
    task = str(ctx.call("task.create", "Export of VDI " + ctx.params["uuid"], ""))
    query = _query(_session(ctx), task, vdi=vdi, format=ctx.params.get("format") or "raw")
    _download(ctx, "/export_raw_vdi", query, ctx.params["filename"], task)


def vdi_import(ctx: Context) -> None:
    vdi = str(ctx.call("VDI.get_by_uuid", ctx.params["uuid"]))
    task = str(ctx.call("task.create", "Import of VDI " + ctx.params["uuid"], ""))
    query = _query(_session(ctx), task, vdi=vdi, format=ctx.params.get("format") or "raw")
    _upload(ctx, "/import_raw_vdi", query, ctx.params["filename"], task)


COMMANDS = [
    Command(
        "vm-export",
        vm_export,
        reqd=("filename",),
        optn=("vm", "uuid", "compress", "metadata", "preserve-power-state"),
        help="Export a halted VM to an XVA file (compress=true|gzip|zstd; metadata=true for ova.xml alone).",
    ),
    Command(
        "vm-import",
        vm_import,
        reqd=("filename",),
        optn=("sr-uuid", "preserve", "force", "metadata", "dry-run"),
        help="Import a VM from an XVA file (preserve=true keeps its uuid and MACs); prints the new VM's uuid.",
    ),
    Command(
        "vdi-export",
        vdi_export,
        reqd=("uuid", "filename"),
        optn=("format",),
        help="Write a VDI's contents to a file (format=raw).",
    ),
    Command(
        "vdi-import",
        vdi_import,
        reqd=("uuid", "filename"),
        optn=("format",),
        help="Write a file into a VDI (format=raw|qcow2): raw bytes replace the disk's first bytes.",
    ),
]
