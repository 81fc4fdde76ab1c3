"""Readiness probes: what the start step waits for before it counts a recovered VM as up.

A VM names its probe in ``other_config`` (the keys travel with its metadata to the DR site):

- ``farside-ready``: ``serial:TEXT`` (TEXT appears on the serial console), ``tcp:HOST:PORT`` (a TCP
  connect succeeds), ``http://HOST[:PORT]/PATH`` (a GET answers 2xx; ``…#STATUS`` for one status);
- ``farside-ready-serial``: TEXT, the older spelling of ``serial:TEXT`` (the lab's VMs print
  ``BOOT <name>``);
- ``farside-ready-timeout``: seconds to wait; ``farside-ready-policy``: ``continue`` (report the
  timeout and go on) or ``fail`` (the VM's order group fails the start step; later groups do not
  start).

A run's options give the defaults (``ready_timeout``, ``ready_policy``) and ``probe_hosts``: the
hosts TCP and HTTP probes may reach. The metadata comes from the other site, which may be
compromised; without that list a forged VM record could make the DR site connect wherever it
names (a port scan from inside the DR network). A probe to a host not listed is not tried: it is
reported as not ready, with the reason.

Only this boot counts: the serial console the pool serves holds the output of the VM's current
start only, so a line the previous boot printed is never taken for this one's.
"""

from __future__ import annotations

import http.client
import socket
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from farside.dr.session import Session
from farside.errors import XenAPIFailure

PROBE_KEY = "farside-ready"
SERIAL_KEY = "farside-ready-serial"
TIMEOUT_KEY = "farside-ready-timeout"
POLICY_KEY = "farside-ready-policy"
KEYS = (PROBE_KEY, SERIAL_KEY, TIMEOUT_KEY, POLICY_KEY)
POLICIES = ("continue", "fail")
DEFAULT_TIMEOUT_S = 120.0
# A probe never waits longer than this, whatever the metadata says (it comes from the other site).
MAX_TIMEOUT_S = 3600.0
# Serial output is read from the pool (cheap); a network probe opens a connection each time.
SERIAL_POLL_S = 0.02
NETWORK_POLL_S = 0.25
# One connection attempt: a guest that is up answers a connect on loopback or a LAN in well under this.
CONNECT_TIMEOUT_S = 2.0


class ProbeError(ValueError):
    """A probe named in a VM's ``other_config`` (or a run option) that cannot be understood."""


@dataclass(frozen=True)
class Defaults:
    """What a run's options say about probes."""

    timeout: float = DEFAULT_TIMEOUT_S
    policy: str = "continue"
    hosts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Probe:
    kind: str  # "serial", "tcp" or "http"
    target: str  # the text, "host:port", or the URL
    timeout: float
    policy: str

    def describe(self) -> str:
        return f"serial line '{self.target}'" if self.kind == "serial" else f"{self.kind} {self.target}"


def parse_timeout(value: str, what: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ProbeError(f"{what} must be a number of seconds, not {value!r}") from None
    if not 0 < seconds <= MAX_TIMEOUT_S:
        raise ProbeError(f"{what} must be more than 0 and at most {MAX_TIMEOUT_S:.0f} s, not {value!r}")
    return seconds


def parse_policy(value: str, what: str) -> str:
    if value not in POLICIES:
        raise ProbeError(f"{what} must be one of {', '.join(POLICIES)}, not {value!r}")
    return value


def _host_port(spec: str) -> tuple[str, int]:
    host, sep, port = spec.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ProbeError(f"a tcp probe names HOST:PORT, not {spec!r}")
    return host, int(port)


def _http_parts(url: str) -> tuple[urllib.parse.SplitResult, int | None]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ProbeError(f"an http probe is an http:// URL with a host, not {url!r}")
    if parts.username or parts.password:
        raise ProbeError("an http probe's URL must not carry credentials (VM records are readable by every role)")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a bad port
    except ValueError:
        raise ProbeError(f"bad port in the http probe {url!r}") from None
    if parts.fragment and not (parts.fragment.isdigit() and 100 <= int(parts.fragment) <= 599):
        raise ProbeError(f"an http probe's #STATUS is an HTTP status code, not {parts.fragment!r}")
    return parts, int(parts.fragment) if parts.fragment else None


def parse(other_config: dict[str, str], defaults: Defaults) -> Probe | None:
    """The VM's probe, or None when it names none (it counts as up once started).

    Raises:
        ProbeError: a key holds something that is not a probe, a timeout or a policy.
    """
    spec = other_config.get(PROBE_KEY, "")
    if not spec and other_config.get(SERIAL_KEY):
        spec = "serial:" + other_config[SERIAL_KEY]
    if not spec:
        return None
    kind, _, target = spec.partition(":")
    if kind == "http":
        target = spec
        _http_parts(target)
    elif kind == "tcp":
        _host_port(target)
    elif kind != "serial" or not target:
        raise ProbeError(f"{PROBE_KEY} is serial:TEXT, tcp:HOST:PORT or http://HOST/PATH, not {spec!r}")
    timeout = defaults.timeout
    if other_config.get(TIMEOUT_KEY):
        timeout = parse_timeout(other_config[TIMEOUT_KEY], TIMEOUT_KEY)
    policy = defaults.policy
    if other_config.get(POLICY_KEY):
        policy = parse_policy(other_config[POLICY_KEY], POLICY_KEY)
    return Probe(kind, target, timeout, policy)


def host(probe: Probe) -> str | None:
    """The network host a probe reaches (None for the serial console)."""
    if probe.kind == "tcp":
        return _host_port(probe.target)[0]
    if probe.kind == "http":
        return _http_parts(probe.target)[0].hostname
    return None


def _tcp_answers(target: str) -> bool:
    try:
        with socket.create_connection(_host_port(target), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _http_answers(url: str) -> bool:
    parts, status = _http_parts(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port or 80, timeout=CONNECT_TIMEOUT_S)
    try:
        conn.request("GET", (parts.path or "/") + (f"?{parts.query}" if parts.query else ""))
        code = conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return code == status if status is not None else 200 <= code < 300


def _serial_seen(session: Session, vm_uuid: str, text: str) -> bool:
    try:
        return text.encode() in session.serial(vm_uuid)
    except (OSError, XenAPIFailure):
        return False  # the console is not there yet (or for a moment): look again


def wait(
    probe: Probe,
    session: Session,
    vm_uuid: str,
    defaults: Defaults,
    stopped: Callable[[], bool] = lambda: False,
) -> str:
    """Wait until the probe sees the VM up: "" then, else why not (timed out, refused, stopped)."""
    where = host(probe)
    if where is not None and where not in defaults.hosts:
        return f"{probe.describe()} not tried: {where} is not in the run's probe_hosts"
    poll: Callable[[], bool]
    if probe.kind == "serial":
        poll, interval = (lambda: _serial_seen(session, vm_uuid, probe.target)), SERIAL_POLL_S
    elif probe.kind == "tcp":
        poll, interval = (lambda: _tcp_answers(probe.target)), NETWORK_POLL_S
    else:
        poll, interval = (lambda: _http_answers(probe.target)), NETWORK_POLL_S
    deadline = time.monotonic() + probe.timeout
    while not poll():
        if stopped():
            return f"{probe.describe()}: the run stopped before it answered"
        if time.monotonic() > deadline:
            return f"{probe.describe()} not seen within {probe.timeout:g} s"
        time.sleep(interval)
    return ""
