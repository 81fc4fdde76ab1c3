"""Which pool server ``farside xe`` talks to, as whom, and the logged-in session.

Each setting comes from the first place that has it: the command line (``-s``, ``-p``, ``-u``,
``-pw``, ``-pwf``, ``--config``, ``--tls``, ``--no-verify``), the ``FARSIDE_*`` environment
(read in :mod:`farside.config`), then the settings file (``~/.farside/xe.conf`` or ``--config``),
whose lines are ``key=value`` with xe's keys (``server``, ``port``, ``username``, ``password``,
``passwordfile``) plus ``tls`` and ``no-verify``. Server addresses, password files and the login
are :mod:`farside.cli.connection`'s, shared with ``farside dr``; this module words their problems
as xe does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from farside.cli import connection as client
from farside.cli.xe.argv import Invocation
from farside.cli.xe.failures import XeError, describe, usage_error
from farside.config import DEFAULT_CLIENT_CONFIG, DEFAULT_HOST, ClientEnv
from farside.dr.session import XmlRpcSession

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
    except UnicodeDecodeError:
        raise XeError(f"Error opening config file '{path}': not a text file") from None
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
        found = client.read_password_file(path)
    except client.PasswordFileError as exc:
        if exc.problem is client.PasswordFileProblem.UNREADABLE:
            raise XeError(f"Error opening password file '{path}': {exc.reason}") from None
        raise XeError(
            f"Error: password file '{path}' format: expecting the password alone on one line, "
            "or the username on the first line and the password on the second"
        ) from None
    return found.user, found.password


_ADDRESS = {
    client.AddressProblem.NOT_HTTP: "Server '{server}' must be an http:// or https:// URL, or HOST[:PORT]",
    client.AddressProblem.NOT_AN_ADDRESS: (
        "Server '{server}' must be HOST, HOST:PORT, [IPV6]:PORT, or an http:// or https:// URL"
    ),
    client.AddressProblem.CREDENTIALS: "A server URL must not hold a user name or password: use -u with -pw or -pwf",
}


def server_url(server: str, port: str | None, tls: bool) -> str:
    """The base URL for ``-s`` (a URL or ``host[:port]``) and ``-p``."""
    if port is not None and (not port.isdigit() or not 0 < int(port) <= 65535):
        raise usage_error("Port number must be an integer (0-65535)")
    try:
        return client.server_url(server, int(port) if port is not None else None, tls)
    except client.AddressError as exc:
        raise usage_error(_ADDRESS[exc.problem].format(server=exc.server)) from None


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
    return Settings(url, user or client.DEFAULT_USER, password, verify)


_UNABLE = "Unable to contact server at {url} ({reason}). Please check server and port settings.{hint}"
_LOGIN = {
    client.LoginProblem.WRONG_PASSWORD: (
        "Authentication failed for user '{user}' at {url}",
        "Check the user name and password (-u/-pw, -pwf, FARSIDE_USER with FARSIDE_PASSWORD).",
    ),
    client.LoginProblem.THROTTLED: (
        "Authentication refused for user '{user}' at {url}: {reason}.",
        "Wait that long, then check the user name and password before trying again.",
    ),
    client.LoginProblem.CERTIFICATE: (
        "The certificate of {url} could not be verified ({reason}).",
        "To accept a self-signed certificate, add --no-verify (or set FARSIDE_NO_VERIFY=1).",
    ),
    client.LoginProblem.TLS: (
        "Unable to contact server at {url} over TLS ({reason}). Does it run with --tls? "
        "Use an http:// URL if it does not.",
    ),
    client.LoginProblem.HTTP_STATUS: ("{url} did not answer as a pool server ({reason}).",),
    client.LoginProblem.NOT_A_POOL: ("{url} did not answer as a pool server ({reason}).",),
    client.LoginProblem.HUNG_UP: (_UNABLE,),
    client.LoginProblem.TIMEOUT: (_UNABLE,),
    client.LoginProblem.UNREACHABLE: (_UNABLE,),
}


def connect(settings: Settings) -> XmlRpcSession:
    """Log in; every way this can fail becomes an XeError saying what to check."""
    try:
        return client.log_in(settings.url, settings.user, settings.password, settings.verify)
    except client.LoginError as exc:
        if exc.failure is not None and exc.problem is client.LoginProblem.REFUSED:
            raise XeError(*describe(exc.failure.failure[0], exc.failure.params)) from None
        # A TLS server hangs up on a plain HTTP request.
        tls = exc.problem is client.LoginProblem.HUNG_UP and exc.plain_http
        hint = " Does it run with --tls? Then use an https:// URL or --tls." if tls else ""
        lines = _LOGIN[exc.problem]
        raise XeError(
            *(line.format(url=exc.url, user=settings.user, reason=exc.reason, hint=hint) for line in lines)
        ) from None
