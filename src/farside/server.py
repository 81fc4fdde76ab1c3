"""The pool server's HTTP app: XenAPI over XML-RPC (any POST path no other handler claims, as
xapi) and JSON-RPC (``/jsonrpc``).

Starlette for routing, uvicorn for serving (HTTP or HTTPS). Start-up opens the database, forgets
what does not outlive a server (sessions, tasks), and wires the services together.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import anyio.to_thread
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

import farside.api.handlers  # noqa: F401 - registers every hand-written message
from farside import __version__
from farside.api import (
    consoles,
    http,
    jsonrpc,
    metadata_backup,
    operations,
    pifs,
    prometheus,
    rrd_http,
    tunnel,
    xmldbdump,
    xmlrpc,
)
from farside.api.context import Services
from farside.api.dispatcher import Dispatcher, Outcome
from farside.api.events import EventHub
from farside.api.handlers.vm_clone import sweep_incomplete
from farside.api.messages import MessageService
from farside.api.metadata import MetadataService
from farside.api.monitor import MonitorService
from farside.api.records import AllRecords, Encoded, RecordCache
from farside.api.schedules import Scheduler
from farside.api.sessions import SessionStore
from farside.api.snapshots import SnapshotService
from farside.api.storage import StorageService
from farside.api.tasks import TaskManager
from farside.api.throttle import note_client
from farside.api.vms import VMService
from farside.api.xva import endpoints as xva_endpoints
from farside.api.xva import importer as xva_importer
from farside.config import REFUSAL_LOG_INTERVAL_S, HttpLimits, ServerConfig
from farside.db import Database
from farside.db.bootstrap import (
    ensure_control_domain,
    ensure_default_templates,
    ensure_storage_managers,
    refresh_software_version,
)
from farside.errors import DatabaseError, FarsideError, InternalError
from farside.hypervisor.errors import RunRootBusy
from farside.hypervisor.qemu import QemuDriver
from farside.replication.authenticity import Keyring
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
        ensure_default_templates(tx)
    with db.read() as tx:
        pools = tx.refs("pool")
        if len(pools) != 1:
            raise DatabaseError(f"{config.db_path} holds {len(pools)} pools; expected one")
        pool = pools[0]
        host = tx.get_field("pool", pool, "master")
        keys = Keyring(config.data_dir, tx.get_field("pool", pool, "uuid"))
        address = tx.get_field("host", host, "address")
    with db.write() as tx:  # a pool made before control domains and PIFs existed gets them now
        ensure_control_domain(tx, host)
        pifs.scan(tx, host)
        refresh_software_version(tx, host)
    db.before_commit(operations.refresh)
    hub = EventHub(config.event_history, db.generation)
    db.subscribe(hub.publish)
    messages = MessageService(db, config.message_limit)
    storage = StorageService(db, pool, host, config.fencing, messages)
    sessions = SessionStore(db, host, config.session_timeout_s, config.login_limits)
    tasks = TaskManager(db, host)
    vms = VMService(db, driver, storage, tasks, pool, host, console_base=_base_url(config, address))
    snapshots = SnapshotService(db, vms, storage)
    return Services(
        config=config,
        db=db,
        sessions=sessions,
        events=hub,
        tasks=tasks,
        records=RecordCache(db),
        storage=storage,
        vms=vms,
        metadata=MetadataService(db, storage, sessions, pool, config.metadata_half_size, keys),
        messages=messages,
        monitor=MonitorService(db, driver, host),
        pool=pool,
        host=host,
        snapshots=snapshots,
        schedules=Scheduler(db, snapshots, messages, config.vmss.clock(), config.vmss.interval_s),
    )


def _base_url(config: ServerConfig, host_address: str) -> str:
    """This server's URL as clients reach it (the host's address when it listens on every one)."""
    host = config.listen.host
    if host in ("", "0.0.0.0", "::"):
        host = host_address
    if ":" in host:
        host = f"[{host}]"
    return f"{'https' if config.tls else 'http'}://{host}:{config.listen.port}"


def _prepare_run_dir(config: ServerConfig) -> Path:
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if run_dir != config.run_link.resolve() and not config.run_link.exists():
        config.run_link.symlink_to(run_dir, target_is_directory=True)
    return run_dir


def build_app(
    config: ServerConfig, prepared: Services | None = None, guard: ConnectionGuard | None = None
) -> Starlette:
    """The ASGI app of one pool server (with its services opened already, or at start-up), and the
    guard of its connections when it serves a socket of its own."""
    state: dict[str, Any] = {}
    console = Console()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        services = prepared or open_services(config)
        if guard is not None:
            guard.watch(asyncio.get_running_loop())
            guard.open_console = functools.partial(consoles.connect, services)
        state["dispatcher"] = Dispatcher(services)
        services.loop, services.dispatch = asyncio.get_running_loop(), state["dispatcher"].call
        console.attach(services)
        state["import_raw_vdi"] = http.import_raw_vdi(services)
        state["export_raw_vdi"] = http.export_raw_vdi(services)
        state["serial"] = http.serial_console(services)
        for name in ("rrd_updates", "vm_rrd", "host_rrd"):
            state[name] = getattr(rrd_http, name)(services)
        state["metrics"] = prometheus.metrics(services)
        state["get_xmldbdump"] = xmldbdump.get_dump(services)
        state["put_xmldbdump"] = xmldbdump.put_dump(services)
        state["export"] = xva_endpoints.export(services)
        state["export_metadata"] = xva_endpoints.export_metadata(services)
        state["import"] = xva_endpoints.import_xva(services)
        state["import_metadata"] = xva_endpoints.import_metadata(services)
        state["backup_metadata"] = metadata_backup.backup_endpoint(services)
        state["metadata_backups"] = metadata_backup.list_endpoint(services)
        state["restore_metadata"] = metadata_backup.restore_endpoint(services)
        reaper = asyncio.create_task(_expire_sessions(services.sessions))
        keeper = asyncio.create_task(_keep_watchdog(config, services)) if config.watchdog else None
        await asyncio.to_thread(services.vms.reconcile)
        # Before anything writes to the SRs (the heartbeat, metadata replication): a LUN that
        # became a mirror target or another pool's while this server was down is let go.
        await asyncio.to_thread(services.storage.reattach)
        await asyncio.to_thread(xva_importer.sweep, services)  # imports a kill cut short
        await asyncio.to_thread(_refresh_operations, services)
        await asyncio.to_thread(sweep_incomplete, services.db, services.storage)
        services.storage.start_heartbeat()
        await asyncio.to_thread(services.metadata.start)
        services.monitor.start()
        services.schedules.start()
        try:
            yield
        finally:
            services.vms.stop_delays()  # else tasks.close() would wait out every delay being slept
            reaper.cancel()
            if keeper is not None:
                keeper.cancel()  # the watchdog itself runs on: it fences the VMs the server leaves running
            services.schedules.stop()
            services.storage.stop_heartbeat()
            services.monitor.stop()  # before the driver and the database it reads close
            services.metadata.close()
            services.vms.driver.close()  # VMs keep running; the next server reattaches them
            services.tasks.close()
            services.db.close()

    async def xml_endpoint(request: Request) -> Response:
        note_client(request)
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
            return _large([answer] if isinstance(answer, bytes) else [answer.encode()], XML)
        return _large([_encoded(_xml_response(outcome))], XML)

    async def json_endpoint(request: Request) -> Response:
        note_client(request)
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
                return _large([jsonrpc.failure(call, failure)], JSON)
            head, tail = jsonrpc.envelope(call)
            return _large([head, result, tail], JSON)
        return _large([_json_response(call, outcome)], JSON)

    async def about(request: Request) -> Response:
        text = f"Farside pool server {__version__}: XenAPI as JSON-RPC on /jsonrpc, as XML-RPC on other paths\n"
        return PlainTextResponse(text)

    async def import_vdi(request: Request) -> Response:
        return await state["import_raw_vdi"](request)  # type: ignore[no-any-return]

    async def export_vdi(request: Request) -> Response:
        return await state["export_raw_vdi"](request)  # type: ignore[no-any-return]

    async def serial(request: Request) -> Response:
        return await state["serial"](request)  # type: ignore[no-any-return]

    def late(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return await state[name](request)  # type: ignore[no-any-return]

        return endpoint

    async def get_xmldbdump(request: Request) -> Response:
        return await state["get_xmldbdump"](request)  # type: ignore[no-any-return]

    async def put_xmldbdump(request: Request) -> Response:
        return await state["put_xmldbdump"](request)  # type: ignore[no-any-return]

    routes: list[BaseRoute] = [
        Mount("/ui", app=console_app(console)),
        *(Route(f"/{name}", late(name), methods=["GET"]) for name in ("rrd_updates", "vm_rrd", "host_rrd", "metrics")),
        Route("/console/serial", serial, methods=["GET"]),
        Route("/import_raw_vdi", import_vdi, methods=["PUT"]),
        Route("/export_raw_vdi", export_vdi, methods=["GET"]),
        Route("/pool/xmldbdump", get_xmldbdump, methods=["GET"]),
        Route("/pool/xmldbdump", put_xmldbdump, methods=["PUT"]),
        Route("/export", late("export"), methods=["GET"]),
        Route("/export_metadata", late("export_metadata"), methods=["GET"]),
        Route("/import", late("import"), methods=["PUT"]),
        Route("/import_metadata", late("import_metadata"), methods=["PUT"]),
        Route("/backup_metadata", late("backup_metadata"), methods=["POST"]),
        Route("/metadata_backups", late("metadata_backups"), methods=["GET"]),
        Route("/restore_metadata", late("restore_metadata"), methods=["POST"]),
        Route("/", xml_endpoint, methods=["POST"]),
        Route("/RPC2", xml_endpoint, methods=["POST"]),
        Route("/jsonrpc", json_endpoint, methods=["POST"]),
        Route("/", xml_endpoint, methods=["POST"]),
        Route("/", about, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    # xapi answers XML-RPC on any POST path no other handler claims (clients post to /, /RPC2,
    # /xmlrpc, ...): the router's fallback, so a path a route claims keeps its own answer (405 for
    # a POST to /import_raw_vdi) and /ui still redirects to /ui/.
    not_found = app.router.default

    async def xml_anywhere(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            response = await xml_endpoint(Request(scope, receive))
            await response(scope, receive, send)
        else:
            await not_found(scope, receive, send)

    app.router.default = xml_anywhere
    return app


def _refresh_operations(services: Services) -> None:
    with services.db.write() as tx:
        operations.refresh_all(tx)


def _xml_response(outcome: Outcome) -> str | bytes:
    if outcome.failure is not None:
        return xmlrpc.failure(outcome.failure)
    try:
        if isinstance(outcome.value, AllRecords):
            return outcome.value.xml_response()
        if isinstance(outcome.value, Encoded):
            return xmlrpc.success(outcome.value.xml)
        encode = xmlrpc.generic if outcome.result_type is None else xmlrpc.encoder(outcome.result_type)
        if outcome.bare:
            return xmlrpc.bare(encode(outcome.value))
        return xmlrpc.success(encode(outcome.value))
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
# Exactly what xapi sends (api_server.ml): some clients' XML-RPC transports accept only "text/xml".
XML = "text/xml"
JSON = "application/json"


def _encoded(body: str | bytes) -> bytes:
    return body if isinstance(body, bytes) else body.encode()


def _large(parts: Sequence[bytes], content_type: str) -> Response:
    """A response of already encoded ``parts``, written 1 MiB at a time.

    One write of a whole 100 MB answer makes asyncio (3.11) copy what the socket did not take at
    once, twice; slices of a memoryview are sent as they are, under uvicorn's flow control.
    """
    size = sum(len(p) for p in parts)
    # The header given as it is: Starlette's media_type would add "; charset=utf-8" to text/xml.
    if size <= _CHUNK:
        return Response(b"".join(parts), headers={"content-type": content_type})

    async def chunks() -> AsyncIterator[memoryview]:
        for part in parts:
            view = memoryview(part)
            for start in range(0, len(view), _CHUNK):
                yield view[start : start + _CHUNK]

    return StreamingResponse(chunks(), headers={"content-length": str(size), "content-type": content_type})


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
    guard = ConnectionGuard(config.http, sock)
    settings = uvicorn.Config(
        build_app(config, services, guard),
        log_level="warning",
        access_log=False,
        lifespan="on",
        loop="asyncio",  # the guard's fd-limit handling knows asyncio's accept loop
        http=guard.protocol(),
        ws="none",  # no WebSocket routes; an upgrade would take the connection out of the guard's count
        **options,
    )
    try:
        _Server(settings, services).run(sockets=[sock])
    finally:
        guard.close()


class _Server(uvicorn.Server):
    """uvicorn's server, which also ends the VMs' delays when it is told to stop: a call sleeping
    one (a synchronous VM.start) would otherwise keep its connection, and so the server, open."""

    def __init__(self, config: uvicorn.Config, services: Services) -> None:
        super().__init__(config)
        self._services = services

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # A signal handler must not take a lock the thread it interrupted may hold: a thread does.
        threading.Thread(target=self._services.vms.stop_delays, name="farside-stop-delays", daemon=True).start()


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


class ConnectionGuard:
    """The HTTP server's limits below the ASGI app (issue 13): uvicorn alone waits forever for a
    request's headers, holds any number of connections, and logs a traceback per accept at the fd limit.

    Each connection must send its headers within ``header_timeout_s`` and may not stall inside a body
    for longer than ``body_timeout_s``; connections beyond the caps (in all, per client address; the
    total also stays below RLIMIT_NOFILE) are closed as soon as they are accepted, with no answer. If
    accept meets the descriptor limit all the same (other files took the rest), what waits in the
    backlog is accepted and closed through a spare descriptor kept for that. Refusals are logged once
    per ``REFUSAL_LOG_INTERVAL_S``. Everything runs on the event loop's thread.
    """

    def __init__(self, limits: HttpLimits, listener: socket.socket) -> None:
        self.limits = limits
        # Connections stop short of the descriptor limit, so that the server's own files (the
        # database, images, QEMU's sockets) still open during a flood.
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.max_connections = limits.max_connections
        if soft != resource.RLIM_INFINITY:
            self.max_connections = max(1, min(limits.max_connections, soft - max(8, soft // 8)))
        self._listener = listener
        # Opens the console a CONNECT names (api/consoles.py), once the server's services are up.
        self.open_console: tunnel.Opener | None = None
        self._open: Counter[str] = Counter()
        self._total = 0
        self._spare: int | None = os.open(os.devnull, os.O_RDONLY)
        self._refused: Counter[str] = Counter()
        self._logged_at = time.monotonic() - REFUSAL_LOG_INTERVAL_S

    def admit(self, address: str) -> bool:
        """Count a new connection from ``address``; False (and counted as refused) beyond a cap."""
        if self._total >= self.max_connections:
            self._refuse(f"{self.max_connections} connections open in all")
            return False
        if self._open[address] >= self.limits.max_client_connections:
            self._refuse(f"{self.limits.max_client_connections} connections open from one address")
            return False
        self._open[address] += 1
        self._total += 1
        return True

    def release(self, address: str) -> None:
        self._total -= 1
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def watch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Take over the loop's report of running out of descriptors while accepting."""
        default = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE) and "socket" in context:
                self._shed()
            elif self._listener.fileno() == -1 and "_start_serving" in repr(context.get("handle")):
                pass  # an accept retry asyncio scheduled at the limit, firing after the server closed
            elif default is not None:
                default(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)

    def _shed(self) -> None:
        """Out of descriptors: close what waits in the backlog, using the spare descriptor."""
        reason = "out of file descriptors"
        if self._spare is None:
            self._refuse(reason)
            return
        os.close(self._spare)
        self._spare = None
        shed = 0
        try:
            for _ in range(1024):
                try:
                    conn, _ = self._listener.accept()
                except OSError:
                    break  # the backlog is empty, or the freed descriptor went to another thread
                conn.close()
                shed += 1
        finally:
            with contextlib.suppress(OSError):
                self._spare = os.open(os.devnull, os.O_RDONLY)
        self._refuse(reason, max(shed, 1))

    def _refuse(self, reason: str, count: int = 1) -> None:
        self._refused[reason] += count
        now = time.monotonic()
        if now - self._logged_at < REFUSAL_LOG_INTERVAL_S or not self._refused:
            return
        self._logged_at = now
        summary = "; ".join(f"{n} ({why})" for why, n in self._refused.items())
        self._refused.clear()
        log.warning("refused new connections in the last %d s: %s", REFUSAL_LOG_INTERVAL_S, summary)

    def close(self) -> None:
        if self._spare is not None:
            os.close(self._spare)
            self._spare = None

    def protocol(self) -> type[H11Protocol]:
        """uvicorn's h11 protocol, with this guard's caps and timeouts."""
        guard = self

        class Guarded(H11Protocol):
            _address: str | None = None
            _deadline: asyncio.TimerHandle | None = None
            _phase: str | None = None
            _tunnel: tunnel.Tunnel | None = None

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                peer = transport.get_extra_info("peername")
                address = str(peer[0]) if isinstance(peer, tuple) else ""
                if not guard.admit(address):
                    transport.abort()
                    return
                self._address = address
                super().connection_made(transport)
                self._follow()

            def connection_lost(self, exc: Exception | None) -> None:
                if self._address is None:
                    return  # refused: uvicorn never knew it
                if self._tunnel is not None:
                    self._tunnel.lost()
                guard.release(self._address)
                self._address = None
                self._arm(None, None)
                super().connection_lost(exc)

            def data_received(self, data: bytes) -> None:
                if self._tunnel is None and self.cycle is None and guard.open_console and tunnel.is_connect(data):
                    # A console client's CONNECT, its connection's first request: not HTTP from here on.
                    self._tunnel = tunnel.Tunnel(self.transport, guard.open_console)
                if self._tunnel is not None:
                    self._tunnel.received(data)
                    if self._phase == "headers" and self._tunnel.opened:
                        self._arm(None, None)  # the client's head is in; the stream has no deadline
                    return
                super().data_received(data)
                if self._phase == "body":
                    self._phase = None  # progress: the body's clock starts again
                self._follow()

            def on_response_complete(self) -> None:
                super().on_response_complete()
                self._follow()

            def _follow(self) -> None:
                """Arm the deadline of what the connection waits for from the client."""
                if self.transport is None or self.transport.is_closing():
                    return
                if self.cycle is None or self.cycle.response_complete:
                    # The next request's headers; the clock runs from the connection or the last answer.
                    if self._phase != "headers":
                        self._arm("headers", guard.limits.header_timeout_s)
                elif self.cycle.more_body:
                    if self._phase != "body":
                        self._arm("body", guard.limits.body_timeout_s)
                else:
                    self._arm(None, None)  # the app has the whole request: its time is its own

            def _arm(self, phase: str | None, timeout: float | None) -> None:
                if self._deadline is not None:
                    self._deadline.cancel()
                self._phase = phase
                self._deadline = None if timeout is None else self.loop.call_later(timeout, self._expired)

            def _expired(self) -> None:
                self._deadline = None
                if self._phase == "body" and (self.flow.read_paused or self.cycle.waiting_for_100_continue):
                    # The app is slow, not the client: it has not read what came, or not yet asked
                    # for a body the client holds back until "100 Continue".
                    self._arm("body", guard.limits.body_timeout_s)
                    return
                self._phase = None
                self.transport.close()

        return Guarded
