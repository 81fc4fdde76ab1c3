"""Settings with named defaults. ``FARSIDE_*`` environment variables are read here and nowhere else."""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# xapi expires sessions idle for 24 hours; operators can shorten it.
DEFAULT_SESSION_TIMEOUT_S = 24 * 3600.0
# Large enough for any XenAPI call a client makes (VM.create with a full record is a few KiB);
# small enough that a hostile body cannot exhaust memory.
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8440
DEFAULT_LISTEN = f"{DEFAULT_HOST}:{DEFAULT_PORT}"
# Recent commits kept for event.from; older tokens get EVENTS_LOST and must start again with "".
DEFAULT_EVENT_HISTORY = 100_000
# xapi's event.from clamps the timeout; so do we, so a client cannot park a request forever.
MAX_EVENT_TIMEOUT_S = 3600.0

# HTTP limits (issue 13): a client gets this long to send a request's headers, and may pause this
# long inside a body (an upload streams; only a stalled one is cut off). uvicorn's keep-alive (5 s)
# ends idle connections between requests.
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0
# Open connections in all and per client address. Clients of a pool (the SDK, xe, consoles, the
# DR engine) use a handful each; the total stays well below a typical 1024 descriptor limit.
DEFAULT_MAX_CONNECTIONS = 768
DEFAULT_MAX_CLIENT_CONNECTIONS = 64
# Refused connections (a cap reached, descriptors exhausted) are logged once per this interval.
REFUSAL_LOG_INTERVAL_S = 60.0

# Login throttling (issue 13): this many failed logins within the window, from one client address
# or for one user name, and further attempts are refused until the oldest failure leaves the window.
DEFAULT_LOGIN_FAILURES = 5
DEFAULT_LOGIN_WINDOW_S = 60.0
# How many addresses and user names the throttle remembers; the oldest are forgotten first.
LOGIN_THROTTLE_ENTRIES = 100_000
# Password checks (argon2) run at most this many at once, on threads of their own, so that guessing
# never takes the threads every other call runs on.
LOGIN_VERIFY_THREADS = 1

# Each half of a metadata VDI holds a full copy plus deltas (docs/metadata-format.md).
DEFAULT_METADATA_HALF_BYTES = 64 << 20

# The unprivileged system user every QEMU runs as (``make setup`` creates it); it owns no files.
DEFAULT_QEMU_USER = "farside-qemu"

# xapi keeps at most this many messages (alerts); the oldest go first.
DEFAULT_MESSAGE_LIMIT = 10_000

DB_FILE = "pool.db"
TLS_DIR = "tls"
RUN_DIR = "run"
# sun_path holds 107 characters; below the run directory come "/<vm uuid>/qmp.1.sock" (48, the
# longer of a VM's two QMP sockets: a live migration's destination takes the second).
MAX_RUN_DIR_CHARS = 107 - 48


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """``HOST:PORT`` (``[::1]:8440`` for IPv6)."""
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535 or not host:
            raise ValueError(f"--listen takes HOST:PORT, e.g. {DEFAULT_LISTEN}; got {text!r}")
        return cls(host.strip("[]"), int(port))


@dataclass(frozen=True)
class Fencing:
    """One writer per LUN: the lease on a plugged SR's LUN and how its holder fences itself.

    The timing argument is in docs/storage.md ("Fencing"). Every pool that can plug a LUN must
    use the same values.

    Args:
        lease_ttl_s: a lease lives this long after its last renewal.
        renew_interval_s: the holder renews its leases this often.
        fence_margin_s: once a lease has no more than this left, its holder's watchdog kills the
            QEMUs using the LUN, and the server refuses to write to it and fences the SR.
        watchdog_interval_s: how often the watchdog reads the leases.
        kill_timeout_s: how long the watchdog waits for a killed QEMU to be gone.
        takeover_wait_s: another pool takes an expired lease over only this long after its expiry
            (the fence bound: a late watchdog, clock skew between the hosts).
    """

    lease_ttl_s: float = 30.0
    renew_interval_s: float = 10.0
    fence_margin_s: float = 5.0
    watchdog_interval_s: float = 1.0
    kill_timeout_s: float = 2.0
    takeover_wait_s: float = 5.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if not value >= 0 or (value == 0 and name != "takeover_wait_s"):
                raise ValueError(f"fencing setting {name} must be a positive number of seconds, not {value}")
        # A healthy holder must never reach the fence margin between two renewals.
        if self.renew_interval_s + self.fence_margin_s >= self.lease_ttl_s:
            raise ValueError(
                f"lease renewal interval ({self.renew_interval_s:g} s) plus fence margin ({self.fence_margin_s:g} s) "
                f"must be less than the lease TTL ({self.lease_ttl_s:g} s)"
            )
        # The watchdog's QEMUs must be gone by the lease's expiry: it fences at the margin and
        # needs one interval to notice and the kill timeout to finish.
        if self.watchdog_interval_s + self.kill_timeout_s > self.fence_margin_s:
            raise ValueError(
                f"the fence margin ({self.fence_margin_s:g} s) must cover the watchdog interval "
                f"({self.watchdog_interval_s:g} s) plus its kill timeout ({self.kill_timeout_s:g} s)"
            )

    @property
    def fence_bound_s(self) -> float:
        """After a lease's last renewal, the latest moment its holder's QEMUs may still write."""
        return self.lease_ttl_s - self.fence_margin_s + self.watchdog_interval_s + self.kill_timeout_s

    @property
    def takeover_after_s(self) -> float:
        """After a lease's last renewal, the earliest moment another pool may plug its LUN."""
        return self.lease_ttl_s + self.takeover_wait_s


_FENCING_ENV = {
    "lease_ttl_s": "FARSIDE_LEASE_TTL",
    "renew_interval_s": "FARSIDE_LEASE_RENEW",
    "fence_margin_s": "FARSIDE_FENCE_MARGIN",
    "watchdog_interval_s": "FARSIDE_WATCHDOG_INTERVAL",
    "kill_timeout_s": "FARSIDE_FENCE_KILL_TIMEOUT",
    "takeover_wait_s": "FARSIDE_LEASE_TAKEOVER_WAIT",
}


def watchdog_from_env() -> bool:
    """``FARSIDE_WATCHDOG=0`` runs a server without its fencing watchdog (tests of what the
    server does alone); anything else, or nothing, runs it."""
    return os.environ.get("FARSIDE_WATCHDOG") != "0"


def fencing_from_env() -> Fencing:
    """The fencing settings, each from its ``FARSIDE_*`` variable when set (seconds)."""
    values = {}
    for name, var in _FENCING_ENV.items():
        text = os.environ.get(var)
        if not text:
            continue
        try:
            values[name] = float(text)
        except ValueError:
            raise ValueError(f"{var} must be a number of seconds, not {text!r}") from None
    return Fencing(**values)


@dataclass(frozen=True)
class HttpLimits:
    """How long a client may take and how many connections it may hold (see the defaults above)."""

    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_client_connections: int = DEFAULT_MAX_CLIENT_CONNECTIONS


@dataclass(frozen=True)
class LoginLimits:
    """Failed logins allowed per client address and per user name within ``window_s``."""

    failures: int = DEFAULT_LOGIN_FAILURES
    window_s: float = DEFAULT_LOGIN_WINDOW_S


# Where ``farside mirror`` keeps its mirrors' state when neither --state-dir nor FARSIDE_MIRROR_DIR says.
DEFAULT_MIRROR_DIR = Path("/var/lib/farside/mirror")
DEFAULT_VMSS_INTERVAL_S = 30.0


@dataclass(frozen=True)
class Schedules:
    """The snapshot scheduler: how often it looks for due schedules, and its clock.

    ``clock_file`` (``FARSIDE_VMSS_CLOCK``) is for tests: a file holding the epoch seconds the
    scheduler takes as now, so a test can move a real server's schedule clock without waiting.
    """

    interval_s: float = DEFAULT_VMSS_INTERVAL_S
    clock_file: Path | None = None

    def clock(self) -> Callable[[], float]:
        path = self.clock_file
        if path is None:
            return time.time
        return lambda: float(path.read_text().strip())


def schedules_from_env() -> Schedules:
    """``FARSIDE_VMSS_INTERVAL`` (seconds) and ``FARSIDE_VMSS_CLOCK`` (a file) where set."""
    clock = os.environ.get("FARSIDE_VMSS_CLOCK")
    return Schedules(_positive("FARSIDE_VMSS_INTERVAL", DEFAULT_VMSS_INTERVAL_S), Path(clock) if clock else None)


@dataclass(frozen=True)
class ServerConfig:
    """How one pool server runs.

    Args:
        data_dir: the pool's directory (database, TLS material).
        listen: address and port of the API.
        tls: serve HTTPS with ``tls_cert``/``tls_key`` (by default the pair ``farside init`` made).
        session_timeout_s: idle seconds after which a session is invalid.
        max_body_bytes: larger requests get HTTP 413.
        kvm: run guests under KVM; honoured only where the CPU shows vmx or svm (TCG otherwise).
        metadata_half_size: bytes in each half of a new metadata VDI.
        fencing: the LUN leases' timing, and the watchdog's.
        watchdog: run the fencing watchdog (``farside watchdog``) beside the server (``farside
            server`` does unless ``FARSIDE_WATCHDOG=0``; a server run in-process does not).
        message_limit: messages kept; the oldest go when a new one would exceed it.
        http: timeouts and connection caps of the HTTP server.
        login_limits: how many failed logins a client address or a user name gets.
        mirror_dir: the state directory of ``farside mirror``, whose mirrors' RPO ``/metrics`` shows.
    """

    data_dir: Path
    listen: Listen = Listen(DEFAULT_HOST, DEFAULT_PORT)
    tls: bool = False
    tls_cert: Path | None = None
    tls_key: Path | None = None
    session_timeout_s: float = DEFAULT_SESSION_TIMEOUT_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    event_history: int = DEFAULT_EVENT_HISTORY
    kvm: bool = False
    metadata_half_size: int = DEFAULT_METADATA_HALF_BYTES
    fencing: Fencing = Fencing()
    watchdog: bool = False
    message_limit: int = DEFAULT_MESSAGE_LIMIT
    http: HttpLimits = HttpLimits()
    login_limits: LoginLimits = LoginLimits()
    mirror_dir: Path = DEFAULT_MIRROR_DIR
    vmss: Schedules = Schedules()

    @property
    def db_path(self) -> Path:
        return self.data_dir / DB_FILE

    @property
    def run_dir(self) -> Path:
        """Per-VM runtime files: QEMU pid files, QMP sockets, serial logs.

        ``DATA_DIR/run`` when its sockets' paths fit the kernel's limit for Unix socket paths;
        otherwise a short directory named after the data directory, which ``DATA_DIR/run``
        links to, so both names lead to the same files.
        """
        direct = self.data_dir.resolve() / RUN_DIR
        if len(str(direct)) <= MAX_RUN_DIR_CHARS:
            return direct
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"farside-run-{digest}"

    @property
    def run_link(self) -> Path:
        return self.data_dir / RUN_DIR

    @property
    def cert_path(self) -> Path:
        return self.tls_cert or self.data_dir / TLS_DIR / "cert.pem"

    @property
    def key_path(self) -> Path:
        return self.tls_key or self.data_dir / TLS_DIR / "key.pem"


def session_timeout_from_env(default: float = DEFAULT_SESSION_TIMEOUT_S) -> float:
    """``FARSIDE_SESSION_TIMEOUT`` (seconds) when set, else ``default``."""
    text = os.environ.get("FARSIDE_SESSION_TIMEOUT")
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"FARSIDE_SESSION_TIMEOUT must be a number of seconds, not {text!r}") from None
    if value <= 0:
        raise ValueError("FARSIDE_SESSION_TIMEOUT must be positive")
    return value


def event_history_from_env() -> int:
    """``FARSIDE_EVENT_HISTORY`` (changes kept for event.from and event.next) where set."""
    return int(_positive("FARSIDE_EVENT_HISTORY", DEFAULT_EVENT_HISTORY))


def _positive(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive")
    return value


def http_limits_from_env() -> HttpLimits:
    """``FARSIDE_HEADER_TIMEOUT``, ``FARSIDE_BODY_TIMEOUT`` (seconds), ``FARSIDE_MAX_CONNECTIONS`` and
    ``FARSIDE_MAX_CLIENT_CONNECTIONS`` where set, the defaults elsewhere."""
    return HttpLimits(
        header_timeout_s=_positive("FARSIDE_HEADER_TIMEOUT", DEFAULT_HEADER_TIMEOUT_S),
        body_timeout_s=_positive("FARSIDE_BODY_TIMEOUT", DEFAULT_BODY_TIMEOUT_S),
        max_connections=int(_positive("FARSIDE_MAX_CONNECTIONS", DEFAULT_MAX_CONNECTIONS)),
        max_client_connections=int(_positive("FARSIDE_MAX_CLIENT_CONNECTIONS", DEFAULT_MAX_CLIENT_CONNECTIONS)),
    )


def login_limits_from_env() -> LoginLimits:
    """``FARSIDE_LOGIN_FAILURES`` and ``FARSIDE_LOGIN_WINDOW`` (seconds) where set."""
    return LoginLimits(
        failures=int(_positive("FARSIDE_LOGIN_FAILURES", DEFAULT_LOGIN_FAILURES)),
        window_s=_positive("FARSIDE_LOGIN_WINDOW", DEFAULT_LOGIN_WINDOW_S),
    )


def kvm_from_env() -> bool:
    """``FARSIDE_KVM=1`` asks for KVM (still honoured only where the CPU supports it)."""
    return os.environ.get("FARSIDE_KVM") == "1"


# Where a client (``farside xe``, ``farside dr``) finds its pool server when no flag says.
DEFAULT_CLIENT_CONFIG = "~/.farside/xe.conf"


@dataclass(frozen=True)
class ClientEnv:
    """A client's connection settings from the environment (None where a variable is unset).

    Args:
        server: ``FARSIDE_SERVER``, a URL (``https://host:8440``) or ``host[:port]``.
        user: ``FARSIDE_USER``.
        password: ``FARSIDE_PASSWORD``.
        password_file: ``FARSIDE_PASSWORD_FILE``.
        no_verify: ``FARSIDE_NO_VERIFY=1`` accepts a server certificate that does not verify
            (the self-signed one ``farside init`` makes).
        config: ``FARSIDE_XE_CONFIG``, the settings file to read instead of ``~/.farside/xe.conf``.
    """

    server: str | None = None
    user: str | None = None
    password: str | None = None
    password_file: str | None = None
    no_verify: bool = False
    config: str | None = None


def client_env() -> ClientEnv:
    """The ``FARSIDE_*`` connection settings of this process."""
    env = os.environ
    return ClientEnv(
        server=env.get("FARSIDE_SERVER") or None,
        user=env.get("FARSIDE_USER") or None,
        password=env.get("FARSIDE_PASSWORD") or None,
        password_file=env.get("FARSIDE_PASSWORD_FILE") or None,
        no_verify=env.get("FARSIDE_NO_VERIFY", "") in ("1", "true", "yes"),
        config=env.get("FARSIDE_XE_CONFIG") or None,
    )


def mirror_dir_from_env(default: Path = DEFAULT_MIRROR_DIR) -> Path:
    """``FARSIDE_MIRROR_DIR`` when set, else ``default``."""
    text = os.environ.get("FARSIDE_MIRROR_DIR")
    return Path(text) if text else default


def source_password_from_env() -> str | None:
    """``FARSIDE_SOURCE_PASSWORD``: the source pool's password for ``farside dr --source-server``."""
    return os.environ.get("FARSIDE_SOURCE_PASSWORD") or None


def crash_point(name: str) -> None:
    """A fault hook for crash tests: SIGKILL this process here when ``FARSIDE_CRASH_AT`` names
    ``name`` (e.g. ``sr-create:formatted``), as a power cut or an OOM kill would."""
    if os.environ.get("FARSIDE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
