"""XenAPI's HTTP handlers beside RPC: raw VDI import and export, and a VM's serial console.

As on XenServer, the session travels as a ``session_id`` query parameter. Failures are HTTP 4xx
with the XenAPI failure as text (never a traceback). Data streams in chunks: an image is never
held in memory. An upload goes to a fresh file on the LUN, is checked (and converted to the VDI's
format) there, and replaces the image by a rename only then: a partial or refused upload never
touches the disk. Images are read in their recorded format only, and only when self-contained.
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
from starlette.types import Receive, Scope, Send

from farside.api.context import Services
from farside.api.metadata import refuse_user_write
from farside.api.sessions import Caller
from farside.api.storage import vdi_busy
from farside.api.transfers import HEADER, Transfer
from farside.backup.disk import Disk
from farside.errors import (
    AuthError,
    ClientError,
    FarsideError,
    HandleInvalid,
    RbacPermissionDenied,
    SessionInvalid,
    UuidInvalid,
    XenAPIFailure,
)
from farside.model.roles import Role
from farside.storage import image
from farside.storage.errors import ImageUnsafe, VdiInUse
from farside.storage.lun import Lun, recorded_format

log = logging.getLogger(__name__)
CHUNK = 1 << 20
# Upload formats (xapi's import_raw_vdi takes a format too); exports are raw.
UPLOAD_FORMATS = ("raw", "qcow2")
_ZERO = bytes(CHUNK)
Endpoint = Callable[[Request], Awaitable[Response]]
Progress = Callable[[int], None]


class BadRequest(ClientError):
    code = "BAD_REQUEST"


class ClientGone(FarsideError):
    """The client stopped reading before a download was complete (xapi's failed write)."""

    code = "CLIENT_ERROR"


def status_of(exc: FarsideError) -> int:
    """The HTTP status of an answer carrying ``exc``."""
    if isinstance(exc, SessionInvalid):
        return 401
    if isinstance(exc, RbacPermissionDenied | AuthError):
        return 403
    if isinstance(exc, HandleInvalid | UuidInvalid):
        return 404
    if isinstance(exc, ClientError | ImageUnsafe):
        return 400
    return 409


def guarded(fn: Endpoint) -> Endpoint:
    """Turn FarsideErrors into 4xx answers carrying the XenAPI failure."""

    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except FarsideError as exc:
            return PlainTextResponse(" ".join(exc.failure) + "\n", status_code=status_of(exc))

    return endpoint


class ClosingStream(StreamingResponse):
    """A streaming response that runs ``on_close`` (on a worker thread) once it has ended, sent in
    full or cut short: the place to end a transfer's task and let go of what it held."""

    def __init__(self, body: AsyncIterator[bytes], on_close: Callable[[], None], headers: dict[str, str]) -> None:
        super().__init__(body, headers=headers, media_type="application/octet-stream")
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await anyio.to_thread.run_sync(self._on_close)


def caller_with(services: Services, request: Request, needed: Role, what: str) -> Caller:
    caller = services.sessions.validate(request.query_params.get("session_id", ""))
    if not caller.role.allows(needed):
        raise RbacPermissionDenied(what, f"{caller.user_name} is {caller.role.wire}; this needs {needed.wire}")
    return caller


def _format(request: Request, allowed: tuple[str, ...]) -> str:
    fmt = request.query_params.get("format", "raw")
    if fmt not in allowed:
        raise BadRequest(f"format {fmt!r} is not supported; use format={' or format='.join(allowed)}")
    return fmt


def _vdi_target(services: Services, request: Request) -> tuple[str, Lun, dict[str, object]]:
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
        caller = caller_with(services, request, Role.VM_ADMIN, "http/put_import_raw_vdi")
        upload_format = _format(request, UPLOAD_FORMATS)
        vdi, lun, record = _vdi_target(services, request)
        refuse_user_write(record["type"], "PUT /import_raw_vdi")
        size = int(str(record["virtual_size"]))
        limit = _upload_limit(upload_format, size)
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise BadRequest(f"the upload ({declared} bytes) is larger than the VDI ({size} bytes)")
        label = f"Import of VDI {record['uuid']}"
        transfer = Transfer.begin(services.db, services.tasks, caller, request.query_params.get("task_id", ""), label)
        transfer.total = int(declared) if declared is not None and declared.isdigit() else size
        try:
            received = await _upload(services, request, vdi, lun, record, upload_format, limit, transfer.add)
        except BaseException as exc:
            transfer.fail(exc)
            raise
        transfer.succeed()
        return PlainTextResponse(
            f"imported {received} bytes into VDI {record['uuid']}\n", headers={HEADER: transfer.ref}
        )

    return endpoint


async def _upload(
    services: Services, request: Request, vdi: str, lun: Lun, record: dict[str, object], upload_format: str,
    limit: int, progress: Progress,
) -> int:  # fmt: skip
    """Receive the body into a fresh file, then make it the VDI's image.

    To the client this is xapi's write in place: the bytes sent replace the disk's first bytes, the
    rest of the disk stays as it was (a raw upload shorter than the disk), and an empty body changes
    nothing. A qcow2 upload is a whole image."""
    size = int(str(record["virtual_size"]))
    target = lun.image_path(str(record["location"]))
    target_format = recorded_format(str(record["location"]))
    fd, name = tempfile.mkstemp(prefix=f".{record['uuid']}.import-", suffix=f".{upload_format}", dir=lun.path)
    staging = Path(name)
    try:
        received = await _receive(request.stream(), fd, limit, progress)
        if received == 0:
            return 0
        with services.db.read() as tx:  # a VM may have started during a long upload
            if vdi_busy(tx, vdi, services.metadata.replicator.active):
                raise VdiInUse(vdi)
        if upload_format == "raw" and received < size:
            await anyio.to_thread.run_sync(_keep_rest, fd, target, target_format, size, received)
        await anyio.to_thread.run_sync(_install, vdi, staging, upload_format, target, target_format, size)
    finally:
        os.close(fd)
        staging.unlink(missing_ok=True)
    with services.db.write() as tx:
        tx.set_fields("VDI", vdi, {"physical_utilisation": target.stat().st_blocks * 512})
    return received


def _keep_rest(fd: int, target: Path, fmt: str, size: int, start: int) -> None:
    """Copy the disk's current bytes from ``start`` on into the staged upload (its data only)."""
    with Disk(target, fmt, size) as disk:
        for index, data in disk.chunks():
            begin = index * CHUNK
            if begin + len(data) <= start:
                continue
            piece = data[max(start - begin, 0) :]
            if piece.count(0) != len(piece):
                os.pwrite(fd, piece, max(begin, start))


async def _receive(stream: AsyncIterator[bytes], fd: int, limit: int, progress: Progress) -> int:
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
            progress(len(block))
    if pending:
        await anyio.to_thread.run_sync(_write_block, fd, bytes(pending))
        progress(len(pending))
    os.ftruncate(fd, total)  # a hole at the end (zeros skipped) still counts
    return total


def _write_block(fd: int, block: bytes) -> None:
    if block == _ZERO[: len(block)]:
        os.lseek(fd, len(block), os.SEEK_CUR)
    else:
        os.write(fd, block)


def _upload_limit(upload_format: str, size: int) -> int:
    """The most bytes an upload may carry: the VDI's size, and for qcow2 room for its own tables
    (under 2 % with 512-byte clusters) and a little more."""
    return size if upload_format == "raw" else size + size // 16 + (16 << 20)


def _install(vdi: str, staging: Path, upload_format: str, target: Path, target_format: str, size: int) -> None:
    """Replace the VDI's image with the upload, made self-contained in the VDI's recorded format.

    A raw upload is guest bytes, whatever they hold. A qcow2 upload must be self-contained and no
    larger than the VDI (VDI_TOO_SMALL); it is always rewritten by qemu-img, so the image kept is
    one qemu-img made (no internal snapshots, bitmaps or odd tables of the sender's). The image is
    replaced by a rename only once the new one is checked."""
    if upload_format == "raw":
        os.truncate(staging, size)
    elif (uploaded := image.contained(staging, upload_format)).virtual_size > size:
        raise XenAPIFailure("VDI_TOO_SMALL", vdi, uploaded.virtual_size)
    ready = staging
    if (upload_format, target_format) != ("raw", "raw"):
        ready = staging.with_suffix(f".{uuidlib.uuid4().hex[:6]}.{target_format}")
    try:
        if ready != staging:
            made = image.convert(staging, upload_format, ready, target_format)
            if made.virtual_size < size:
                image.resize(ready, target_format, size)
        with open(ready, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(ready, target)
    finally:
        ready.unlink(missing_ok=True)


def export_raw_vdi(services: Services) -> Endpoint:
    @guarded
    async def endpoint(request: Request) -> Response:
        caller = caller_with(services, request, Role.VM_ADMIN, "http/get_export_raw_vdi")
        _format(request, ("raw",))
        _, lun, record = _vdi_target(services, request)
        source = lun.image_path(str(record["location"]))
        size = int(str(record["virtual_size"]))
        fmt = recorded_format(str(record["location"]))
        label = f"Export of VDI {record['uuid']}"
        transfer = Transfer.begin(services.db, services.tasks, caller, request.query_params.get("task_id", ""), label)
        transfer.total = size
        temporary: Path | None = None
        try:
            if fmt == "raw":
                await anyio.to_thread.run_sync(image.contained, source, fmt)
            else:
                fd, name = tempfile.mkstemp(prefix=f".{record['uuid']}.export-", suffix=".raw", dir=lun.path)
                os.close(fd)
                temporary = Path(name)
                await anyio.to_thread.run_sync(image.convert, source, fmt, temporary, "raw")
        except BaseException as exc:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            transfer.fail(exc)
            raise
        path = temporary or source
        state: dict[str, BaseException | bool] = {}

        async def body() -> AsyncIterator[bytes]:
            try:
                # The file checked above, never a symlink put in its place since.
                with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW)) as fh:
                    left = size
                    while left > 0:
                        block = await anyio.to_thread.run_sync(fh.read, min(CHUNK, left))
                        if not block:
                            block = bytes(min(CHUNK, left))  # past the end of a short raw file: zeros
                        left -= len(block)
                        transfer.add(len(block))
                        yield block
            except BaseException as exc:
                state["error"] = exc
                raise
            state["done"] = True

        def close() -> None:
            if temporary is not None:
                temporary.unlink(missing_ok=True)
            error = state.get("error")
            if state.get("done"):
                transfer.succeed()
            else:
                transfer.fail(error if isinstance(error, FarsideError) else ClientGone("the client stopped reading"))

        headers = {"content-length": str(size), HEADER: transfer.ref}
        return ClosingStream(body(), close, headers)

    return endpoint


def serial_console(services: Services) -> Endpoint:
    """``GET /console/serial?session_id=…&uuid=<vm uuid>``: the VM's recent serial output."""

    @guarded
    async def endpoint(request: Request) -> Response:
        caller_with(services, request, Role.VM_OPERATOR, "http/get_console")
        uuid = request.query_params.get("uuid", "")
        with services.db.read() as tx:
            tx.ref_of_uuid("VM", uuid)
        data = await anyio.to_thread.run_sync(services.vms.driver.read_serial, uuid)
        return Response(data, media_type="text/plain; charset=utf-8")

    return endpoint
