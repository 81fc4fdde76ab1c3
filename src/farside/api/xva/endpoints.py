"""``GET /export``, ``GET /export_metadata``, ``PUT /import``, ``PUT /import_metadata``: xapi's HTTP
handlers for XVA, each reporting through a task (api/transfers.py) and needing vm-admin, as in
xapi's datamodel.

An export holds its VM for the whole stream (operation ``export``: no start, no destroy meanwhile)
and lets go when the response ends, however it ends. An import streams the body to a worker thread
(api/pipe.py); any failure leaves nothing behind (importer.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from farside.api import operations
from farside.api.context import Services
from farside.api.http import BadRequest, ClientGone, ClosingStream, Endpoint, caller_with, guarded
from farside.api.pipe import consume
from farside.api.storage import vdi_busy
from farside.api.transfers import HEADER, Transfer
from farside.api.xva import exporter, importer
from farside.backup.compression import method
from farside.errors import FarsideError, XenAPIFailure
from farside.model.roles import Role
from farside.model.types import NULL_REF
from farside.model.vm_rules import power_state_error
from farside.storage import image
from farside.storage.errors import VdiInUse

# The VM operations these handlers carry appear in allowed_operations (api/operations.py).
operations.provides("export")
operations.provides("export_metadata")


def flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "false").lower()
    if value not in ("true", "false", "yes", "no", "1", "0", "on", "off"):
        raise BadRequest(f"{name}={value!r} is not true or false")
    return value in ("true", "yes", "1", "on")


def _vm(services: Services, request: Request) -> str:
    uuid, ref = request.query_params.get("uuid", ""), request.query_params.get("ref", "")
    with services.db.read() as tx:
        if ref:
            return tx.check("VM", ref)
        if uuid:
            return tx.ref_of_uuid("VM", uuid)
    raise BadRequest("name the VM with uuid= or ref=")


def _pull(chunks: Iterator[bytes], state: dict[str, Any]) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        try:
            while (piece := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
                yield piece
        except BaseException as exc:
            state["error"] = exc
            raise
        state["done"] = True

    return body()


def export(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        caller = caller_with(services, request, Role.VM_ADMIN, "http/get_export")
        vm = _vm(services, request)
        compression = method(request.query_params.get("use_compression", ""))
        preserve = flag(request, "preserve_power_state")
        with services.db.read() as tx:
            record = tx.get_record("VM", vm)
            if record["current_operations"]:
                raise XenAPIFailure("OTHER_OPERATION_IN_PROGRESS", "VM", vm)
            if record["power_state"] != "Halted":
                raise power_state_error(vm, "Halted", record["power_state"])
            uuid = record["uuid"]
            hostname = tx.get_field("host", services.host, "hostname")
            # Before the VM is held: vdi_busy counts a VM in an operation as using its disks.
            busy = [v for v in exporter.disk_vdis(tx, vm) if vdi_busy(tx, v, services.metadata.replicator.active)]
        if busy:
            raise VdiInUse(*busy)
        transfer = Transfer.begin(services.db, services.tasks, caller, request.query_params.get("task_id", ""),
                                  f"Export of VM {uuid}")  # fmt: skip
        hold = contextlib.ExitStack()
        try:
            hold.enter_context(services.vms.claim(vm, "export", ("Halted",), transfer.ref))
            with services.db.read() as tx:
                document, disks = exporter.collect(tx, vm, hostname, preserve, services.storage.attached_lun)
            for spec in disks:
                await anyio.to_thread.run_sync(image.contained, spec.path, spec.fmt)
            transfer.total = exporter.total(disks)
        except BaseException as exc:
            hold.close()
            transfer.fail(exc)
            raise
        chunks = exporter.stream(document, disks, compression, transfer.add)
        state: dict[str, Any] = {}

        def close() -> None:
            chunks.close()
            hold.close()
            error = state.get("error")
            if state.get("done"):
                transfer.succeed()
            elif isinstance(error, FarsideError):
                transfer.fail(error)
            else:  # cancelled by a disconnect, or never started
                transfer.fail(ClientGone("the client stopped reading the export"))

        headers = {"content-disposition": 'attachment; filename="export.xva"', HEADER: transfer.ref}
        return ClosingStream(_pull(chunks, state), close, headers)

    return endpoint


def export_metadata(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        caller = caller_with(services, request, Role.VM_ADMIN, "http/get_export_metadata")
        vm = _vm(services, request)
        transfer = Transfer.begin(services.db, services.tasks, caller, request.query_params.get("task_id", ""),
                                  "Export of VM metadata")  # fmt: skip
        try:
            with services.db.read() as tx:
                hostname = tx.get_field("host", services.host, "hostname")
                body = exporter.metadata(tx, vm, hostname)
        except BaseException as exc:
            transfer.fail(exc)
            raise
        transfer.succeed()
        headers = {"content-disposition": 'attachment; filename="export.xva"', HEADER: transfer.ref}
        return Response(body, media_type="application/octet-stream", headers=headers)

    return endpoint


def _target_sr(services: Services, request: Request) -> str:
    """sr_id, else sr_uuid, else the pool's default SR (DEFAULT_SR_NOT_FOUND when it has none)."""
    sr_id, sr_uuid = request.query_params.get("sr_id", ""), request.query_params.get("sr_uuid", "")
    with services.db.read() as tx:
        if sr_id:
            return tx.check("SR", sr_id)
        if sr_uuid:
            return tx.ref_of_uuid("SR", sr_uuid)
        default: str = tx.get_field("pool", services.pool, "default_SR")
        if not tx.exists("SR", default):
            raise XenAPIFailure("DEFAULT_SR_NOT_FOUND", default)
        return default


def _import(services: Services, metadata: bool) -> Endpoint:
    what = "http/put_import_metadata" if metadata else "http/put_import"

    @guarded
    async def endpoint(request: Request) -> Response:
        caller = caller_with(services, request, Role.VM_ADMIN, what)
        options = importer.Options(
            restore=flag(request, "restore"), force=flag(request, "force"), dry_run=flag(request, "dry_run"),
            metadata=metadata,
        )  # fmt: skip
        sr = NULL_REF if metadata else _target_sr(services, request)
        label = "VM metadata import" if metadata else "VM import"
        transfer = Transfer.begin(services.db, services.tasks, caller, request.query_params.get("task_id", ""), label)
        try:
            run = importer.Import(services, sr, options, transfer).run
            refs = await consume(request.stream(), run)
        except BaseException as exc:
            transfer.fail(exc)
            raise
        transfer.succeed(importer.result(refs))
        return PlainTextResponse("".join(f"{r}\n" for r in refs), headers={HEADER: transfer.ref})

    return endpoint


def import_xva(services: Services) -> Endpoint:
    return _import(services, metadata=False)


def import_metadata(services: Services) -> Endpoint:
    return _import(services, metadata=True)
