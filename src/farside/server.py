"""The pool server's HTTP app: XenAPI over XML-RPC (``/``, ``/RPC2``) and JSON-RPC (``/jsonrpc``).

Starlette for routing, uvicorn for serving (HTTP or HTTPS). Start-up opens the database, forgets
what does not outlive a server (sessions, tasks), and wires the services together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

import farside.api.handlers  # noqa: F401 - registers every hand-written message
from farside import __version__
from farside.api import http, jsonrpc, xmlrpc
from farside.api.context import Services
from farside.api.dispatcher import Dispatcher, Outcome
from farside.api.events import EventHub
from farside.api.messages import MessageService
from farside.api.metadata import MetadataService
from farside.api.records import AllRecords, Encoded, RecordCache
from farside.api.sessions import SessionStore
from farside.api.storage import StorageService
from farside.api.tasks import TaskManager
from farside.api.vms import VMService
from farside.config import ServerConfig
from farside.db import Database
from farside.db.bootstrap import ensure_storage_managers
from farside.errors import DatabaseError, FarsideError, InternalError
from farside.hypervisor.errors import RunRootBusy
from farside.hypervisor.qemu import QemuDriver
from farside.storage import watchdog
from farside.web import Console, console_app

log = logging.getLogger(__name__)
_EXPIRY_INTERVAL_S = 30.0
# How often the server makes sure its fencing watchdog runs.
_WATCHDOG_CHECK_S = 5.0
_WATCHDOG_LOG = "watchdog.log"


class BodyTooLarge(Exception):
    pass


def open_services(config: ServerConfig) -> Services:
    """The services of the pool whose data is in ``config.data_dir``."""
    db = Database.open(config.db_path)
    try:
        # The run directory's lock before anything is reset: a second server on the same data
        # must stop before it forgets the first one's sessions and tasks.
        driver = QemuDriver(_prepare_run_dir(config), kvm=config.kvm)
    except RunRootBusy as exc:
        db.close()
        by = f" (pid {exc.holder})" if exc.holder else ""
        raise StartupError(f"{config.data_dir} is already served{by}: stop that server first") from None
    except BaseException:
        db.close()
        raise
    try:
        return _services(config, db, driver)
    except BaseException:
        driver.close()
        db.close()
        raise


def _services(config: ServerConfig, db: Database, driver: QemuDriver) -> Services:
    db.reset_runtime_state()
    with db.write() as tx:
        ensure_storage_managers(tx)
    with db.read() as tx:
        pools = tx.refs("pool")
        if len(pools) != 1:
            raise DatabaseError(f"{config.db_path} holds {len(pools)} pools; expected one")
        pool = pools[0]
        host = tx.get_field("pool", pool, "master")
    hub = EventHub(config.event_history, db.generation)
    db.subscribe(hub.publish)
    messages = MessageService(db, config.message_limit)
    storage = StorageService(db, pool, host, config.fencing, messages)
    sessions = SessionStore(db, host, config.session_timeout_s)
    return Services(
        config=config,
        db=db,
        sessions=sessions,
        events=hub,
        tasks=TaskManager(db, host),
        records=RecordCache(db),
        storage=storage,
        vms=VMService(db, driver, storage, pool, host),
        metadata=MetadataService(db, storage, sessions, pool, config.metadata_half_size),
        messages=messages,
        pool=pool,
        host=host,
    )


def _prepare_run_dir(config: ServerConfig) -> Path:
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if run_dir != config.run_link.resolve() and not config.run_link.exists():
        config.run_link.symlink_to(run_dir, target_is_directory=True)
    return run_dir


def build_app(config: ServerConfig, prepared: Services | None = None) -> Starlette:
    """The ASGI app of one pool server (with its services opened already, or at start-up)."""
    state: dict[str, Any] = {}
    console = Console()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = prepared or open_services(config)
        state["dispatcher"] = Dispatcher(services)
        services.loop, services.dispatch = asyncio.get_running_loop(), state["dispatcher"].call
        console.attach(services)
        state["import_raw_vdi"] = http.import_raw_vdi(services)
        state["export_raw_vdi"] = http.export_raw_vdi(services)
        state["serial"] = http.serial_console(services)
        reaper = asyncio.create_task(_expire_sessions(services.sessions))
        keeper = asyncio.create_task(_keep_watchdog(config, services)) if config.watchdog else None
        await asyncio.to_thread(services.vms.reconcile)
        # Before anything writes to the SRs (the heartbeat, metadata replication): a LUN that
        # became a mirror target or another pool's while this server was down is let go.
        await asyncio.to_thread(services.storage.reattach)
        services.storage.start_heartbeat()
        await asyncio.to_thread(services.metadata.start)
        try:
            yield
        finally:
            reaper.cancel()
            if keeper is not None:
                keeper.cancel()  # the watchdog itself runs on: it fences the VMs the server leaves running
            services.storage.stop_heartbeat()
            services.metadata.close()
            services.vms.driver.close()  # VMs keep running; the next server reattaches them
            services.tasks.close()
            services.db.close()

    async def xml_endpoint(request: Request) -> Response:
        try:
            body = await _read_body(request, config.max_body_bytes)
            method, params = xmlrpc.parse_request(body)
        except BodyTooLarge:
            return _too_large(config)
        except xmlrpc.MalformedRequest as exc:
            return PlainTextResponse(f"400 Bad Request: {exc}\n", status_code=400)
        outcome = await state["dispatcher"].call(method, params)
        if isinstance(outcome.value, AllRecords):  # encoded on a worker thread, off the event loop
            answer = await anyio.to_thread.run_sync(_xml_response, outcome)
            return _large([answer] if isinstance(answer, bytes) else [answer.encode()], "text/xml")
        return Response(_xml_response(outcome), media_type="text/xml")

    async def json_endpoint(request: Request) -> Response:
        try:
            body = await _read_body(request, config.max_body_bytes)
            call = jsonrpc.parse_request(body)
        except BodyTooLarge:
            return _too_large(config)
        except jsonrpc.MalformedRequest as exc:
            return PlainTextResponse(f"400 Bad Request: {exc}\n", status_code=400)
        outcome = await state["dispatcher"].call(call.method, call.params)
        if isinstance(outcome.value, AllRecords):
            try:
                result = await anyio.to_thread.run_sync(outcome.value.json_result)
            except Exception:
                log.exception("bug while encoding a result")
                failure = InternalError("unexpected error; see the server log").failure
                return Response(jsonrpc.failure(call, failure), media_type="application/json")
            head, tail = jsonrpc.envelope(call)
            return _large([head, result, tail], "application/json")
        return Response(_json_response(call, outcome), media_type="application/json")

    async def about(request: Request) -> Response:
        return PlainTextResponse(f"Farside pool server {__version__}: XenAPI on / and /RPC2, JSON-RPC on /jsonrpc\n")

    async def import_vdi(request: Request) -> Response:
        return await state["import_raw_vdi"](request)  # type: ignore[no-any-return]

    async def export_vdi(request: Request) -> Response:
        return await state["export_raw_vdi"](request)  # type: ignore[no-any-return]

    async def serial(request: Request) -> Response:
        return await state["serial"](request)  # type: ignore[no-any-return]

    routes: list[BaseRoute] = [
        Mount("/ui", app=console_app(console)),
        Route("/console/serial", serial, methods=["GET"]),
        Route("/import_raw_vdi", import_vdi, methods=["PUT"]),
        Route("/export_raw_vdi", export_vdi, methods=["GET"]),
        Route("/", xml_endpoint, methods=["POST"]),
        Route("/RPC2", xml_endpoint, methods=["POST"]),
        Route("/jsonrpc", json_endpoint, methods=["POST"]),
        Route("/", about, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _xml_response(outcome: Outcome) -> str | bytes:
    if outcome.failure is not None:
        return xmlrpc.failure(outcome.failure)
    try:
        if isinstance(outcome.value, AllRecords):
            return outcome.value.xml_response()
        if isinstance(outcome.value, Encoded):
            return xmlrpc.success(outcome.value.xml)
        assert outcome.result_type is not None
        return xmlrpc.success(xmlrpc.encoder(outcome.result_type)(outcome.value))
    except Exception:
        log.exception("bug while encoding a result")
        return xmlrpc.failure(InternalError("unexpected error; see the server log").failure)


def _json_response(call: jsonrpc.Request, outcome: Outcome) -> bytes:
    if outcome.failure is not None:
        return jsonrpc.failure(call, outcome.failure)
    try:
        value = outcome.value
        if isinstance(value, AllRecords):
            encoded = value.json_result()
        elif isinstance(value, Encoded):
            encoded = value.json
        else:
            encoded = jsonrpc.encode(value)
        return jsonrpc.success(call, encoded)
    except Exception:
        log.exception("bug while encoding a result")
        return jsonrpc.failure(call, InternalError("unexpected error; see the server log").failure)


_CHUNK = 1 << 20


def _large(parts: Sequence[bytes], media_type: str) -> Response:
    """A response of already encoded ``parts``, written 1 MiB at a time.

    One write of a whole 100 MB answer makes asyncio (3.11) copy what the socket did not take at
    once, twice; slices of a memoryview are sent as they are, under uvicorn's flow control.
    """
    size = sum(len(p) for p in parts)
    if size <= _CHUNK:
        return Response(b"".join(parts), media_type=media_type)

    async def chunks() -> AsyncIterator[memoryview]:
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), _CHUNK):
                yield view[start : start + _CHUNK]

    return StreamingResponse(chunks(), media_type=media_type, headers={"content-length": str(size)})


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(config: ServerConfig) -> Response:
    text = f"413 Request Entity Too Large: the limit is {config.max_body_bytes} bytes\n"
    return PlainTextResponse(text, status_code=413)


async def _expire_sessions(sessions: SessionStore) -> None:
    while True:
        await asyncio.sleep(min(_EXPIRY_INTERVAL_S, sessions.timeout_s))
        try:
            await asyncio.to_thread(sessions.expire_idle)
        except Exception:
            log.exception("session expiry failed")


async def _keep_watchdog(config: ServerConfig, services: Services) -> None:
    """Run the fencing watchdog beside the server, as a process of its own (in its own session, so
    that it outlives the server and its signals), and start it again if it ever goes."""
    pool_uuid = await asyncio.to_thread(_pool_uuid, services)
    f = config.fencing
    argv = [sys.executable, "-m", "farside.cli.main", "watchdog", str(config.data_dir), "--pool-uuid", pool_uuid]
    argv += ["--lease-ttl", str(f.lease_ttl_s), "--renew-interval", str(f.renew_interval_s)]
    argv += ["--fence-margin", str(f.fence_margin_s), "--interval", str(f.watchdog_interval_s)]
    argv += ["--kill-timeout", str(f.kill_timeout_s)]
    child: subprocess.Popen[bytes] | None = None
    while True:
        if child is not None and child.poll() is not None and child.returncode != 0:
            log.error("the fencing watchdog exited with %s; see %s", child.returncode, config.data_dir / _WATCHDOG_LOG)
        try:
            if not await asyncio.to_thread(watchdog.running, config.run_dir):
                with open(config.data_dir / _WATCHDOG_LOG, "ab") as out:
                    child = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
                    )
        except OSError as exc:
            log.error("cannot start the fencing watchdog: %s", exc)
        await asyncio.sleep(_WATCHDOG_CHECK_S)


def _pool_uuid(services: Services) -> str:
    with services.db.read() as tx:
        uuid: str = tx.get_field("pool", services.pool, "uuid")
    return uuid


class ListenError(FarsideError):
    code = "CANNOT_LISTEN"
    exit_code = 4


class StartupError(FarsideError):
    """The server cannot start as asked, for a reason the operator fixes: the message alone."""

    code = "CANNOT_START"
    exit_code = 4

    def describe(self) -> str:
        return " ".join(self.params)


def _check_tls(cert: Path, key: Path) -> None:
    """Load the certificate and key as the server will, so that a wrong file is one clear line
    before "serving" (uvicorn would only say "[SSL] PEM lib" once it had started)."""
    try:
        cert_text, key_text = cert.read_text(errors="replace"), key.read_text(errors="replace")
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except OSError as exc:  # ssl.SSLError is one too, the files' own problems are told apart below
        if not isinstance(exc, ssl.SSLError):
            raise StartupError(f"cannot read the TLS files: {exc.strerror or exc}: {exc.filename}") from None
        if "-----BEGIN CERTIFICATE-----" not in cert_text:
            raise StartupError(f"cannot use {cert} as a TLS certificate: it holds no PEM certificate") from None
        if "PRIVATE KEY-----" not in key_text:
            raise StartupError(f"cannot use {key} as a TLS key: it holds no PEM private key") from None
        why = "the key does not match the certificate" if exc.reason == "KEY_VALUES_MISMATCH" else exc.reason or exc
        raise StartupError(f"cannot use {cert} with the key {key} for TLS: {why}") from None


def serve(config: ServerConfig) -> None:
    """Run the pool server until interrupted.

    Everything that can fail for a reason an operator must fix (no pool, a data directory another
    server uses, missing TLS files, a port in use) fails here, before anything is served, as one
    clear error; "serving" is printed only once the port is bound.
    """
    options: dict[str, Any] = {}
    if config.tls:
        for path in (config.cert_path, config.key_path):
            if not path.is_file():
                raise DatabaseError(f"TLS file {path} is missing; give --tls-cert and --tls-key")
        _check_tls(config.cert_path, config.key_path)
        options = {"ssl_certfile": str(config.cert_path), "ssl_keyfile": str(config.key_path)}
    services = open_services(config)
    try:
        sock = _bind(config)
    except OSError as exc:
        services.vms.driver.close()
        services.db.close()
        raise ListenError(f"cannot listen on {config.listen.host}:{config.listen.port}: {exc.strerror or exc}") from exc
    scheme = "https" if config.tls else "http"
    print(f"serving pool in {config.data_dir} on {scheme}://{config.listen.host}:{config.listen.port}", flush=True)
    settings = uvicorn.Config(
        build_app(config, services), log_level="warning", access_log=False, lifespan="on", **options
    )
    uvicorn.Server(settings).run(sockets=[sock])


def _bind(config: ServerConfig) -> socket.socket:
    family = socket.AF_INET6 if ":" in config.listen.host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections accepted from a socket that
    # says it is TCP; without it every answer written in two parts waits 40 ms for a delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((config.listen.host, config.listen.port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock
