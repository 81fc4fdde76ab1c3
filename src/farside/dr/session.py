"""The engine's view of a pool: XenAPI calls through a small session interface, as XenCenter has.

``XmlRpcSession`` speaks XenAPI over HTTP (what the CLI uses); the pool server provides an
in-process implementation for runs started from the console. The engine uses nothing else, which
keeps open the later goal of driving a real XenServer pool's DR.
"""

from __future__ import annotations

import http.client
import ipaddress
import re
import ssl
import threading
import urllib.parse
import urllib.request
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from farside.errors import InvalidValue, XenAPIFailure

# How long the check that a source_url is a pool server waits for its answer.
PROBE_TIMEOUT_S = 5.0
_HOSTNAME = re.compile(r"(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


class Session(Protocol):
    """A logged-in XenAPI session on one pool."""

    @property
    def handle(self) -> str:
        """The session ref (``session_to`` in the DR calls)."""
        ...

    def call(self, method: str, *args: Any) -> Any:
        """``Class.message`` with this session first; a failure raises XenAPIFailure."""
        ...

    def call_as(self, session: str, method: str, *args: Any) -> Any:
        """The same with another session first (the DR calls take the database session)."""
        ...

    def serial(self, vm_uuid: str) -> bytes:
        """The VM's recent serial console output."""
        ...


# What a call raises when the pool could not be talked to (as opposed to its XenAPIFailure answer).
TRANSPORT_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.Error)


def answers_xenapi(url: str) -> bool:
    """Whether a XenAPI server answers at ``url`` within a few seconds: any XenAPI answer counts,
    the refusal of a call without a session included (nothing is logged in, nothing is sent)."""
    context = ssl._create_unverified_context() if url.startswith("https") else None  # only: does it answer?
    transport = _SafeTransport(3, context) if url.startswith("https") else _Transport(3)
    try:
        result = xmlrpc.client.ServerProxy(url.rstrip("/") + "/", transport=transport).pool.get_all("")
    except (OSError, ValueError, http.client.HTTPException, xmlrpc.client.Error):
        return False
    return isinstance(result, dict) and result.get("Status") in ("Success", "Failure")


class _Transport(xmlrpc.client.Transport):
    """HTTP with a socket timeout: a server that accepts but never answers (a frozen host) fails."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


class _SafeTransport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float, context: ssl.SSLContext | None) -> None:
        super().__init__(context=context)
        self._timeout = timeout

    def make_connection(self, host: Any) -> http.client.HTTPSConnection:
        conn = super().make_connection(host)
        conn.timeout = self._timeout
        return conn


class XmlRpcSession:
    """XenAPI over XML-RPC; ints arrive as decimal strings, as from xapi.

    ``timeout``: seconds a request may wait on the socket (None: no limit, as a long VM.start needs).
    """

    def __init__(
        self, url: str, username: str, password: str, verify_tls: bool = True, timeout: float | None = None
    ) -> None:
        self.url = url.rstrip("/")
        context = None if verify_tls or not url.startswith("https") else ssl._create_unverified_context()
        self._context = context
        self._timeout = timeout
        # One connection per thread: a ServerProxy's HTTP connection carries one request at a time,
        # and the engine starts an order group's VMs from several threads at once.
        self._local = threading.local()
        self._handle = str(
            self._unwrap(self._proxy.session.login_with_password(username, password, "1.0", "farside-dr"))
        )

    @property
    def _proxy(self) -> xmlrpc.client.ServerProxy:
        proxy: xmlrpc.client.ServerProxy | None = getattr(self._local, "proxy", None)
        if proxy is None:
            transport: xmlrpc.client.Transport | None = None
            if self._timeout is not None:
                https = self.url.startswith("https")
                transport = _SafeTransport(self._timeout, self._context) if https else _Transport(self._timeout)
            proxy = xmlrpc.client.ServerProxy(
                self.url + "/", allow_none=True, context=self._context, transport=transport
            )
            self._local.proxy = proxy
        return proxy

    @property
    def handle(self) -> str:
        return self._handle

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """The TLS context of this session's calls, for HTTP transfers beside them (None: defaults)."""
        return self._context

    def call(self, method: str, *args: Any) -> Any:
        return self.call_as(self._handle, method, *args)

    def call_as(self, session: str, method: str, *args: Any) -> Any:
        target: Any = self._proxy
        for part in method.split("."):
            target = getattr(target, part)
        try:
            result = target(session, *args)
        except BaseException:
            # An interrupted call (Ctrl-C: not an Exception, so xmlrpc.client does not reset it)
            # leaves the connection mid-request; the next call, an unclaim say, needs a fresh one.
            self._local.proxy = None
            raise
        return self._unwrap(result)

    def serial(self, vm_uuid: str) -> bytes:
        query = urllib.parse.urlencode({"session_id": self._handle, "uuid": vm_uuid})
        with urllib.request.urlopen(f"{self.url}/console/serial?{query}", context=self._context, timeout=30) as r:
            data: bytes = r.read()
        return data

    def transfer(self, method: str, path: str, body: bytes | None = None, **query: str) -> bytes:
        """One of the pool's HTTP handlers (``GET /pool/xmldbdump``, ...) with this session; its
        4xx answer (the XenAPI failure as text) raises XenAPIFailure."""
        url = f"{self.url}{path}?{urllib.parse.urlencode({'session_id': self._handle, **query})}"
        request = urllib.request.Request(url, data=body, method=method)
        try:
            with urllib.request.urlopen(request, context=self._context, timeout=self._timeout) as r:
                data: bytes = r.read()
        except urllib.error.HTTPError as exc:
            code, _, detail = exc.read().decode(errors="replace").strip().partition(" ")
            raise XenAPIFailure(code or "INTERNAL_ERROR", *([detail] if detail else [])) from None
        return data

    def logout(self) -> None:
        self._proxy.session.logout(self._handle)

    @staticmethod
    def _unwrap(result: Any) -> Any:
        if not isinstance(result, dict) or result.get("Status") not in ("Success", "Failure"):
            # XML-RPC, but not XenAPI's {"Status", "Value" | "ErrorDescription"}: not a pool server.
            raise xmlrpc.client.ResponseError(f"an XML-RPC answer that is not XenAPI's: {result!r:.80}")
        if result["Status"] == "Success":
            return result.get("Value")
        description = [str(d) for d in result.get("ErrorDescription") or ["INTERNAL_ERROR"]]
        raise XenAPIFailure(description[0], *description[1:])


def source_host(text: str) -> str:
    """A host name or IP address as a pool's ``allowed_source_hosts`` keeps it (lower case, IPv6
    without brackets); ValueError for anything else (a URL, a port, a wildcard)."""
    host = text.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    if not _HOSTNAME.fullmatch(host):
        raise ValueError(f"{text!r} is not a host name or IP address (give the host alone: no scheme, port or path)")
    return host


def source_hosts(values: Sequence[str]) -> list[str]:
    """Hosts as ``allowed_source_hosts`` keeps them: each checked (``source_host``), no repeats."""
    return list(dict.fromkeys(source_host(v) for v in values))


def check_source_url(url: str, allowed: Sequence[str]) -> None:
    """INVALID_VALUE unless ``url`` is http(s) to a host in ``allowed``, where either a pool server
    answers or nothing does (the source site is down: that is what a failover is for).

    The host is checked before any connection is made, so a DR run cannot be made to probe
    addresses the pool-admin did not list; on a listed host, a service that is not a pool server
    is refused, so a run cannot be pointed at some other port of it either."""
    check_source_host(url, allowed)
    answer = _pool_server(url)
    if answer is not None and not answer.ok:
        raise InvalidValue("source_url", f"{url}: {answer.why}")


def check_source_host(url: str, allowed: Sequence[str]) -> None:
    """INVALID_VALUE unless ``url`` is http(s), with no credentials, to a host in ``allowed``."""
    try:
        parts = urllib.parse.urlsplit(url)  # a malformed address ("http://[::1") raises here
        host = source_host(parts.hostname or "")
        _ = parts.port  # a port that is not a number raises here
    except ValueError as exc:
        raise InvalidValue("source_url", f"{url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or parts.username or parts.password:
        raise InvalidValue("source_url", f"{url!r}: give the source pool's http:// or https:// address, no credentials")
    listed = [source_host(h) for h in allowed]
    if host not in listed:
        raise InvalidValue(
            "source_url",
            f"{url}: {host} is not a source pool this pool may contact (allowed_source_hosts: "
            f"{', '.join(listed) or 'none'}); a pool-admin adds it (farside init --allow-source HOST, "
            "or pool.add_allowed_source_hosts)",
        )


@dataclass(frozen=True)
class _Answer:
    ok: bool
    why: str = ""


def _pool_server(url: str) -> _Answer | None:
    """What answers at ``url``: a pool server (ok), something else (why not), or nothing (None).

    It is asked ``pool.get_all_records`` with no session: a pool server answers with a XenAPI
    envelope (SESSION_INVALID), which no other service does. No credentials are ever sent, so the
    source pool's self-signed certificate need not verify for this question."""
    parts = urllib.parse.urlsplit(url)
    base = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/") + "/", "", ""))
    transport: xmlrpc.client.Transport = (
        _SafeTransport(PROBE_TIMEOUT_S, ssl._create_unverified_context())
        if parts.scheme == "https"
        else _Transport(PROBE_TIMEOUT_S)
    )
    try:
        answer = xmlrpc.client.ServerProxy(base, transport=transport).pool.get_all_records("")
    except (OSError, http.client.HTTPException):
        return None
    except (xmlrpc.client.Error, xml.parsers.expat.ExpatError, ValueError) as exc:
        return _Answer(False, f"what answers there is not a XenAPI pool server ({exc!r:.80})")
    if not (isinstance(answer, dict) and answer.get("Status") in ("Success", "Failure")):
        return _Answer(False, f"what answers there is not a XenAPI pool server (it answered {answer!r:.80})")
    return _Answer(True)


def source_answers(session: Session, url: str) -> bool:
    """Whether a pool server answers at a run's ``source_url`` (the pre-check's warning); the URL
    is checked against the target pool's ``allowed_source_hosts`` first (INVALID_VALUE)."""
    pool = session.call("pool.get_all")[0]
    check_source_host(url, session.call("pool.get_allowed_source_hosts", pool))
    answer = _pool_server(url)
    return answer is not None and answer.ok
