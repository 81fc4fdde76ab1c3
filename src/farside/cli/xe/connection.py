"""Which pool server ``farside xe`` talks to, as whom, and the logged-in session.

Each setting comes from the first place that has it: the command line (``-s``, ``-p``, ``-u``,
``-pw``, ``-pwf``, ``--config``, ``--tls``, ``--no-verify``), the ``FARSIDE_*`` environment
(read in :mod:`farside.config`), then the settings file (``~/.farside/xe.conf`` or ``--config``),
whose lines are ``key=value`` with xe's keys (``server``, ``port``, ``username``, ``password``,
``passwordfile``) plus ``tls`` and ``no-verify``.
"""

from __future__ import annotations

import http.client
import ssl
import urllib.parse
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from farside.cli.xe.argv import Invocation
from farside.cli.xe.failures import XeError, usage_error
from farside.config import DEFAULT_CLIENT_CONFIG, DEFAULT_HOST, DEFAULT_PORT, ClientEnv
from farside.dr.session import XmlRpcSession
from farside.errors import XenAPIFailure

DEFAULT_USER = "root"
_FILE_KEYS = {"server", "port", "username", "password", "passwordfile", "tls", "no-verify"}
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    url: str
    user: str
    password: str
    verify: bool


def read_config(path: Path) -> dict[str, str]:
    """The ``key=value`` settings of a file; blank lines and ``#`` comments are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise XeError(f"Error opening config file '{path}': {exc.strerror}") from None
    settings = {}
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        if not sep or key.strip() not in _FILE_KEYS:
            raise XeError(
                f"Error parsing config file '{path}' line {number}: expected key=value with a key among "
                + ", ".join(sorted(_FILE_KEYS))
            )
        settings[key.strip()] = value.strip()
    return settings


def read_password_file(path: str) -> tuple[str | None, str]:
    """xe's password file: the username on the first line and the password on the second, or just
    the password on a line of its own. Returns (user or None, password)."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise XeError(f"Error opening password file '{path}': {exc.strerror or exc}") from None
    lines = [line for line in lines if line.strip()]
    if len(lines) == 1:
        return None, lines[0]
    if len(lines) == 2:
        return lines[0], lines[1]
    raise XeError(
        f"Error: password file '{path}' format: expecting the password alone on one line, "
        "or the username on the first line and the password on the second"
    )


def server_url(server: str, port: str | None, tls: bool) -> str:
    """The base URL for ``-s`` (a URL or ``host[:port]``) and ``-p``."""
    if port is not None and (not port.isdigit() or not 0 < int(port) <= 65535):
        raise usage_error("Port number must be an integer (0-65535)")
    if "://" in server:
        try:
            parts = urllib.parse.urlsplit(server)
            url_port = parts.port
        except ValueError:
            parts, url_port = urllib.parse.urlsplit("x:"), None  # refused just below
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise usage_error(f"Server '{server}' must be an http:// or https:// URL, or HOST[:PORT]")
        scheme, host = parts.scheme, parts.hostname
    else:
        host, sep, tail = server.rpartition(":")
        if not sep or "]" in tail or (host.count(":") and not host.startswith("[")):
            host, url_port = server, None
        elif not tail.isdigit():
            raise usage_error(f"Server '{server}' must be HOST or HOST:PORT")
        else:
            url_port = int(tail)
        host = host.strip("[]")
        scheme = "https" if tls else "http"
    chosen = int(port) if port is not None else url_port or DEFAULT_PORT
    shown = f"[{host}]" if ":" in host else host
    url = f"{scheme}://{shown}:{chosen}"
    try:
        urllib.parse.urlsplit(url).port  # noqa: B018 - checks the host part (an IPv6 address in brackets)
    except ValueError:
        form = "HOST, HOST:PORT, [IPV6]:PORT, or an http:// or https:// URL"
        raise usage_error(f"Server '{server}' must be {form}") from None
    return url


def resolve(inv: Invocation, env: ClientEnv) -> Settings:
    """The settings for this invocation: command line, then environment, then settings file."""
    given = inv.connection
    config_path = given.get("config") or env.config
    path = Path(config_path or DEFAULT_CLIENT_CONFIG).expanduser()
    conf = read_config(path) if config_path or path.exists() else {}

    server = given.get("server") or env.server or conf.get("server") or DEFAULT_HOST
    port = given.get("port") or (None if given.get("server") or env.server else conf.get("port"))
    tls = "tls" in inv.flags or (conf.get("tls", "").lower() in _TRUE and "nossl" not in inv.flags)
    url = server_url(server, port, tls and "nossl" not in inv.flags)
    verify = not ("no-verify" in inv.flags or env.no_verify or conf.get("no-verify", "").lower() in _TRUE)

    # The first place with a password (or password file) wins; a password file may name the user.
    sources = [
        (given.get("username"), given.get("password"), given.get("passwordfile")),
        (env.user, env.password, env.password_file),
        (conf.get("username"), conf.get("password"), conf.get("passwordfile")),
    ]
    user = next((u for u, _, _ in sources if u), None)
    password = None
    for _, secret, secret_file in sources:
        if secret is not None:
            password = secret
        elif secret_file:
            file_user, password = read_password_file(secret_file)
            user = user or file_user
        if password is not None:
            break
    if password is None:
        raise usage_error(
            "Username/password must be specified (-u USER -pw PASSWORD, -pwf FILE, "
            "or FARSIDE_USER with FARSIDE_PASSWORD or FARSIDE_PASSWORD_FILE)"
        )
    return Settings(url, user or DEFAULT_USER, password, verify)


def connect(settings: Settings) -> XmlRpcSession:
    """Log in; every way this can fail becomes an XeError saying what to check."""
    url = settings.url
    try:
        return XmlRpcSession(url, settings.user, settings.password, verify_tls=settings.verify)
    except XenAPIFailure as exc:
        if exc.failure[0] == "SESSION_AUTHENTICATION_FAILED":
            raise XeError(
                f"Authentication failed for user '{settings.user}' at {url}",
                "Check the user name and password (-u/-pw, -pwf, FARSIDE_USER with FARSIDE_PASSWORD).",
            ) from None
        raise
    except ssl.SSLCertVerificationError as exc:
        raise XeError(
            f"The certificate of {url} could not be verified ({exc.verify_message}).",
            "To accept a self-signed certificate, add --no-verify (or set FARSIDE_NO_VERIFY=1).",
        ) from None
    except ssl.SSLError as exc:
        raise XeError(
            f"Unable to contact server at {url} over TLS ({exc.reason}). Does it run with --tls? "
            "Use an http:// URL if it does not."
        ) from None
    except (OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        # A TLS server hangs up on a plain HTTP request.
        closed = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError))
        hint = (
            " Does it run with --tls? Then use an https:// URL or --tls." if closed and url.startswith("http:") else ""
        )
        raise XeError(
            f"Unable to contact server at {url} ({reason}). Please check server and port settings.{hint}"
        ) from None
    except xmlrpc.client.ProtocolError as exc:
        raise XeError(f"{url} did not answer as a pool server (HTTP {exc.errcode} {exc.errmsg}).") from None
