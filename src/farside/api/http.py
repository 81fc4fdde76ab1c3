"""XenAPI's HTTP handlers beside RPC: raw VDI import and export, and a VM's serial console.

As on XenServer, the session travels as a ``session_id`` query parameter. Failures are HTTP 4xx
with the XenAPI failure as text (never a traceback). Data streams in chunks: an image is never
held in memory, and a partial upload never replaces a disk (it goes to a temporary file first).
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid as uuidlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from farside.api.context import Services
from farside.api.metadata import refuse_user_write
from farside.api.sessions import Caller
from farside.api.storage import vdi_busy
from farside.errors import (
    AuthError,
    ClientError,
    FarsideError,
    HandleInvalid,
    RbacPermissionDenied,
    SessionInvalid,
    UuidInvalid,
)
from farside.model.roles import Role
from farside.storage import image
from farside.storage.errors import VdiInUse
from farside.storage.lun import Lun

log = logging.getLogger(__name__)
CHUNK = 1 << 20
_ZERO = bytes(CHUNK)
Endpoint = Callable[[Request], Awaitable[Response]]


class BadRequest(ClientError):
    code = "BAD_REQUEST"


def _status(exc: FarsideError) -> int:
    if isinstance(exc, SessionInvalid):
        return 401
    if isinstance(exc, RbacPermissionDenied | AuthError):
        return 403
    if isinstance(exc, HandleInvalid | UuidInvalid):
        return 404
    if isinstance(exc, ClientError):
        return 400
    return 409


def guarded(fn: Endpoint) -> Endpoint:
    """Turn FarsideErrors into 4xx answers carrying the XenAPI failure."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except FarsideError as exc:
            return PlainTextResponse(" ".join(exc.failure) + "\n", status_code=_status(exc))

    return endpoint


def _caller(services: Services, request: Request, needed: Role, what: str) -> Caller:
    caller = services.sessions.validate(request.query_params.get("session_id", ""))
    if not caller.role.allows(needed):
        raise RbacPermissionDenied(what, f"{caller.user_name} is {caller.role.wire}; this needs {needed.wire}")
    return caller


def _vdi_target(services: Services, request: Request) -> tuple[str, Lun, dict[str, object]]:
    fmt = request.query_params.get("format", "raw")
    if fmt != "raw":
        raise BadRequest(f"format {fmt!r} is not supported; use format=raw")
    vdi = request.query_params.get("vdi", "")
    with services.db.read() as tx:
        if not tx.exists("VDI", vdi):
            # xapi accepts a uuid here too
            vdi = tx.ref_of_uuid("VDI", vdi) if vdi and not vdi.startswith("OpaqueRef:") else tx.check("VDI", vdi)
        record = tx.get_record("VDI", vdi)
        lun = services.storage.attached_lun(tx, record["SR"])
        busy = vdi_busy(tx, vdi, services.metadata.replicator.active)
    if busy:
        raise VdiInUse(vdi)
    return vdi, lun, record


def import_raw_vdi(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        _caller(services, request, Role.VM_ADMIN, "http/put_import_raw_vdi")
        vdi, lun, record = _vdi_target(services, request)
        refuse_user_write(record["type"], "PUT /import_raw_vdi")
        size = int(str(record["virtual_size"]))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > size:
            raise BadRequest(f"the upload ({declared} bytes) is larger than the VDI ({size} bytes)")
        target = lun.image_path(str(record["location"]))
        fd, name = tempfile.mkstemp(prefix=f".{record['uuid']}.import-", suffix=".raw", dir=lun.path)
        staging = Path(name)
        try:
            received = await _receive(request.stream(), fd, size)
            with services.db.read() as tx:  # a VM may have started during a long upload
                if vdi_busy(tx, vdi, services.metadata.replicator.active):
                    raise VdiInUse(vdi)
            await anyio.to_thread.run_sync(_install, staging, target, size)
        finally:
            os.close(fd)
            staging.unlink(missing_ok=True)
        with services.db.write() as tx:
            tx.set_fields("VDI", vdi, {"physical_utilisation": target.stat().st_blocks * 512})
        return PlainTextResponse(f"imported {received} bytes into VDI {record['uuid']}\n")

    return endpoint


async def _receive(stream: AsyncIterator[bytes], fd: int, limit: int) -> int:
    """Write the body into ``fd``, leaving holes for zero chunks so images stay sparse."""
    total = 0
    pending = bytearray()
    async for chunk in stream:
        pending += chunk
        total += len(chunk)
        if total > limit:
            raise BadRequest(f"the upload is larger than the VDI ({limit} bytes)")
        while len(pending) >= CHUNK:
            block, pending = bytes(pending[:CHUNK]), pending[CHUNK:]
            await anyio.to_thread.run_sync(_write_block, fd, block)
    if pending:
        await anyio.to_thread.run_sync(_write_block, fd, bytes(pending))
    return total


def _write_block(fd: int, block: bytes) -> None:
    if block == _ZERO[: len(block)]:
        os.lseek(fd, len(block), os.SEEK_CUR)
    else:
        os.write(fd, block)


def _install(staging: Path, target: Path, size: int) -> None:
    """Replace the VDI's image with the uploaded data, in the image's own format."""
    os.truncate(staging, size)
    fmt = image.info(target).format if target.exists() else "raw"
    if fmt == "raw":
        with open(staging, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(staging, target)
        return
    converted = staging.with_suffix(f".{uuidlib.uuid4().hex[:6]}.{fmt}")
    try:
        image.convert(staging, converted, "raw", fmt)
        os.replace(converted, target)
    finally:
        converted.unlink(missing_ok=True)


def export_raw_vdi(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        _caller(services, request, Role.VM_ADMIN, "http/get_export_raw_vdi")
        _, lun, record = _vdi_target(services, request)
        source = lun.image_path(str(record["location"]))
        size = int(str(record["virtual_size"]))
        fmt = await anyio.to_thread.run_sync(lambda: image.info(source).format)
        temporary: Path | None = None
        if fmt != "raw":
            fd, name = tempfile.mkstemp(prefix=f".{record['uuid']}.export-", suffix=".raw", dir=lun.path)
            os.close(fd)
            temporary = Path(name)
            await anyio.to_thread.run_sync(image.convert, source, temporary, fmt, "raw")
        path = temporary or source

        async def body() -> AsyncIterator[bytes]:
            try:
                with open(path, "rb") as fh:
                    left = size
                    while left > 0:
                        block = await anyio.to_thread.run_sync(fh.read, min(CHUNK, left))
                        if not block:
                            block = bytes(min(CHUNK, left))  # past the end of a short raw file: zeros
                        left -= len(block)
                        yield block
            finally:
                if temporary is not None:
                    temporary.unlink(missing_ok=True)

        headers = {"content-length": str(size), "content-type": "application/octet-stream"}
        return StreamingResponse(body(), headers=headers)

    return endpoint


def serial_console(services: Services) -> Endpoint:
    """``GET /console/serial?session_id=…&uuid=<vm uuid>``: the VM's recent serial output."""

    @guarded
    async def endpoint(request: Request) -> Response:
        _caller(services, request, Role.VM_OPERATOR, "http/get_console")
        uuid = request.query_params.get("uuid", "")
        with services.db.read() as tx:
            tx.ref_of_uuid("VM", uuid)
        data = await anyio.to_thread.run_sync(services.vms.driver.read_serial, uuid)
        return Response(data, media_type="text/plain; charset=utf-8")

    return endpoint
