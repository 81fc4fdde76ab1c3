"""The pools ``farside dr`` talks to: the target (where the run is carried out) and, optionally,
the source (asked whether its VMs still run), and the logged-in sessions.

The target comes from ``--server``/``--user``/``--password-file``, else ``FARSIDE_SERVER``,
``FARSIDE_USER``, ``FARSIDE_PASSWORD``/``FARSIDE_PASSWORD_FILE``; the source from the same flags
prefixed ``--source-`` and ``FARSIDE_SOURCE_PASSWORD``. A password file holds the password, or
the user name and the password on two lines (as ``farside xe -pwf``). Secrets stay in this process:
the DR_run record in the pool holds none. Addresses, files and the login are
:mod:`farside.cli.connection`'s; this module says their problems in ``farside dr``'s words.
"""

from __future__ import annotations

import argparse
import getpass
from dataclasses import dataclass

from rich.console import Console

from farside.cli.connection import (
    DEFAULT_USER,
    AddressError,
    AddressProblem,
    LoginError,
    LoginProblem,
    PasswordFileError,
    PasswordFileProblem,
    log_in,
    read_password_file,
    server_url,
)
from farside.cli.dr.failures import DrCliError, usage
from farside.config import DEFAULT_PORT, client_env, source_password_from_env
from farside.dr.session import XmlRpcSession


@dataclass(frozen=True)
class Endpoint:
    """A pool server and the credentials to log in to it."""

    url: str
    user: str
    password: str
    verify: bool


def add_flags(p: argparse.ArgumentParser, source: bool) -> None:
    """The connection flags: the target pool's, and with ``source`` also the source pool's."""
    g = p.add_argument_group("target pool (where the run is carried out)")
    g.add_argument("--server", metavar="URL", help="the pool server, e.g. https://dr.example:8440 ($FARSIDE_SERVER)")
    g.add_argument("--user", metavar="NAME", help=f"user name ($FARSIDE_USER; default {DEFAULT_USER})")
    g.add_argument(
        "--password-file", metavar="F", help="a file holding the password ($FARSIDE_PASSWORD_FILE, $FARSIDE_PASSWORD)"
    )
    g.add_argument(
        "--no-verify", action="store_true", help="accept a TLS certificate that does not verify (self-signed)"
    )
    if not source:
        return
    g = p.add_argument_group("source pool (optional: refuses VMs that still run there)")
    g.add_argument("--source-server", metavar="URL", help="the source pool's server")
    g.add_argument("--source-user", metavar="NAME", help=f"user name there (default {DEFAULT_USER})")
    g.add_argument("--source-password-file", metavar="F", help="its password ($FARSIDE_SOURCE_PASSWORD)")


_ADDRESS = {
    AddressProblem.NOT_HTTP: "{server} is not an http:// or https:// URL of a pool server",
    AddressProblem.NOT_AN_ADDRESS: (
        f"{{server}} is not a server address: give HOST, HOST:PORT, [IPV6]:PORT or a URL "
        f"such as http://127.0.0.1:{DEFAULT_PORT}"
    ),
    AddressProblem.CREDENTIALS: (
        "a server URL holds no user name or password: pass --user and --password-file "
        "(--source-user and --source-password-file for the source pool)"
    ),
}
_PASSWORD_FILE = {
    PasswordFileProblem.UNREADABLE: "cannot read the password file {path}: {reason}",
    PasswordFileProblem.EMPTY: "the password file {path} is empty: put the password on its first line",
    PasswordFileProblem.TOO_MANY_LINES: (
        "the password file {path} has more than two lines: put the password alone on a line, "
        "or the user name on the first line and the password on the second"
    ),
}


def normalise_url(server: str) -> str:
    """A URL for ``server``: ``http://`` and port 8440 are added when left out."""
    try:
        return server_url(server)
    except AddressError as exc:
        raise usage(_ADDRESS[exc.problem].format(server=exc.server)) from None


def read_password(path: str) -> tuple[str | None, str]:
    """The user name (None unless the file gives one) and the password in a password file."""
    try:
        found = read_password_file(path)
    except PasswordFileError as exc:
        raise usage(_PASSWORD_FILE[exc.problem].format(path=exc.path, reason=exc.reason)) from None
    return found.user, found.password


def target(args: argparse.Namespace, interactive: bool) -> Endpoint:
    env = client_env()
    server = args.server or env.server
    if not server:
        raise usage("no target pool: pass --server URL (or set FARSIDE_SERVER)")
    url = normalise_url(server)
    user = args.user or env.user
    # --password-file, else FARSIDE_PASSWORD, else FARSIDE_PASSWORD_FILE
    path = args.password_file or (env.password_file if env.password is None else None)
    if path:
        file_user, password = read_password(path)
        user = user or file_user
    elif env.password is not None:
        password = env.password
    else:
        password = _ask(url, user or DEFAULT_USER, interactive, "--password-file F (or set FARSIDE_PASSWORD)")
    return Endpoint(url, user or DEFAULT_USER, password, not (args.no_verify or env.no_verify))


def source(args: argparse.Namespace, interactive: bool) -> Endpoint | None:
    if not args.source_server:
        if args.source_user or args.source_password_file:
            raise usage("--source-user and --source-password-file need --source-server URL")
        return None
    url = normalise_url(args.source_server)
    user = args.source_user
    if args.source_password_file:
        file_user, password = read_password(args.source_password_file)
        user = user or file_user
    else:
        password = source_password_from_env() or _ask(
            url, user or DEFAULT_USER, interactive, "--source-password-file F (or set FARSIDE_SOURCE_PASSWORD)"
        )
    verify = not (args.no_verify or client_env().no_verify)
    return Endpoint(url, user or DEFAULT_USER, password, verify)


def _ask(url: str, user: str, interactive: bool, how: str) -> str:
    if not interactive:
        raise usage(f"no password for {user} at {url}: pass {how}")
    return getpass.getpass(f"Password for {user} at {url}: ")


class Unreachable(DrCliError):
    """Nothing answers at the address (a pool lost in the disaster, say)."""


# The source pool is asked only whether VMs still run there: a host frozen in the disaster (it
# accepts connections, nothing answers) must not hold the failover up.
SOURCE_TIMEOUT_S = 15.0


_LOGIN = {
    LoginProblem.WRONG_PASSWORD: "{url} refused the user name or password of {user}: check them",
    LoginProblem.THROTTLED: "{url} refused the login of {user}: {reason}; then check the password",
    LoginProblem.REFUSED: "{url} refused the login: {reason}",
    LoginProblem.CERTIFICATE: (
        "the certificate of {url} does not verify ({reason}); pass --no-verify to accept a self-signed one"
    ),
    LoginProblem.TLS: "cannot speak TLS with {url} ({reason}): does the server run with --tls?",
    LoginProblem.HTTP_STATUS: "{url} did not answer as a pool server ({reason})",
    LoginProblem.NOT_A_POOL: "{url} did not answer as a pool server ({reason}): is it a farside server?",
    LoginProblem.HUNG_UP: "{url} closed the connection without answering: {check}",
    LoginProblem.TIMEOUT: "{url} did not answer {waited}: check the address and that the server runs",
    LoginProblem.UNREACHABLE: "cannot reach {url} ({reason}): check the address and that the server runs",
}
# Nothing answers at all: a pool lost in the disaster. A server that hangs up is there.
_NOTHING_ANSWERS = (LoginProblem.TIMEOUT, LoginProblem.UNREACHABLE)


def connect(endpoint: Endpoint, timeout: float | None = None) -> XmlRpcSession:
    """Log in; every way this can fail becomes one line saying what to check."""
    try:
        return log_in(endpoint.url, endpoint.user, endpoint.password, endpoint.verify, timeout)
    except LoginError as exc:
        message = _LOGIN[exc.problem].format(
            url=exc.url,
            user=endpoint.user,
            reason=exc.reason,
            waited=f"within {timeout:g} s" if timeout else "in time",
            check="if the server runs with --tls, use an https:// URL" if exc.plain_http else "is it a farside server?",
        )
        if exc.problem in _NOTHING_ANSWERS:
            raise Unreachable(message) from None
        raise usage(message) from None


def connect_source(endpoint: Endpoint, err: Console) -> XmlRpcSession | None:
    """A session on the source pool, or None when it does not answer: after a disaster it is
    gone, and nothing there can still run. A pool that answers but refuses the login stops us."""
    try:
        return connect(endpoint, timeout=SOURCE_TIMEOUT_S)
    except Unreachable as exc:
        err.print(f"farside: {exc.message}; going on without asking it", markup=False, highlight=False, soft_wrap=True)
        return None
    except DrCliError as exc:
        # Something answers there, so the pool may still run the VMs: the operator decides.
        raise DrCliError(
            f"{exc.message} (the source pool); if that site is really down, run again without --source-server",
            exc.exit_code,
        ) from None


def lost(url: str, exc: BaseException) -> DrCliError:
    """A connection that broke after login."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return DrCliError(f"lost the connection to {url} ({reason})", 1)
