"""The pools ``farside dr`` talks to: the target (where the run is carried out) and, optionally,
the source (asked whether its VMs still run), and the logged-in sessions.

The target comes from ``--server``/``--user``/``--password-file``, else ``FARSIDE_SERVER``,
``FARSIDE_USER``, ``FARSIDE_PASSWORD``/``FARSIDE_PASSWORD_FILE``; the source from the same flags
prefixed ``--source-`` and ``FARSIDE_SOURCE_PASSWORD``. Secrets stay in this process: the DR_run
record in the pool holds none.
"""

from __future__ import annotations

import argparse
import getpass
import http.client
import ssl
import urllib.parse
import xml.parsers.expat
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from farside.cli.dr.failures import DrCliError, usage
from farside.config import DEFAULT_PORT, client_env, source_password_from_env
from farside.dr.session import XmlRpcSession
from farside.errors import XenAPIFailure

DEFAULT_USER = "root"


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


def normalise_url(server: str) -> str:
    """A URL for ``server``: ``http://`` and port 8440 are added when left out."""
    if "://" not in server:
        server = f"http://{server}"
    try:
        parts = urllib.parse.urlsplit(server)
        port = parts.port
    except ValueError:  # a bad port, or brackets around something that is no IPv6 address
        raise usage(
            f"{server} is not a server address: give HOST, HOST:PORT, [IPV6]:PORT or a URL "
            f"such as http://127.0.0.1:{DEFAULT_PORT}"
        ) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise usage(f"{server} is not an http:// or https:// URL of a pool server")
    if port is None:
        server = f"{parts.scheme}://{parts.netloc}:{DEFAULT_PORT}{parts.path}"
    return server.rstrip("/")


def read_password(path: str) -> str:
    """The password in a file: its first line (a trailing newline is not part of it)."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise usage(f"cannot read the password file {path}: {exc.strerror or exc}") from None
    if not lines or not lines[0]:
        raise usage(f"the password file {path} is empty: put the password on its first line")
    return lines[0]


def target(args: argparse.Namespace, interactive: bool) -> Endpoint:
    env = client_env()
    server = args.server or env.server
    if not server:
        raise usage("no target pool: pass --server URL (or set FARSIDE_SERVER)")
    url = normalise_url(server)
    user = args.user or env.user or DEFAULT_USER
    if args.password_file:
        password = read_password(args.password_file)
    elif env.password is not None:
        password = env.password
    elif env.password_file:
        password = read_password(env.password_file)
    else:
        password = _ask(url, user, interactive, "--password-file F (or set FARSIDE_PASSWORD)")
    return Endpoint(url, user, password, not (args.no_verify or env.no_verify))


def source(args: argparse.Namespace, interactive: bool) -> Endpoint | None:
    if not args.source_server:
        if args.source_user or args.source_password_file:
            raise usage("--source-user and --source-password-file need --source-server URL")
        return None
    url = normalise_url(args.source_server)
    user = args.source_user or DEFAULT_USER
    if args.source_password_file:
        password = read_password(args.source_password_file)
    else:
        password = source_password_from_env() or _ask(
            url, user, interactive, "--source-password-file F (or set FARSIDE_SOURCE_PASSWORD)"
        )
    verify = not (args.no_verify or client_env().no_verify)
    return Endpoint(url, user, password, verify)


def _ask(url: str, user: str, interactive: bool, how: str) -> str:
    if not interactive:
        raise usage(f"no password for {user} at {url}: pass {how}")
    return getpass.getpass(f"Password for {user} at {url}: ")


class Unreachable(DrCliError):
    """Nothing answers at the address (a pool lost in the disaster, say)."""


# The source pool is asked only whether VMs still run there: a host frozen in the disaster (it
# accepts connections, nothing answers) must not hold the failover up.
SOURCE_TIMEOUT_S = 15.0


def connect(endpoint: Endpoint, timeout: float | None = None) -> XmlRpcSession:
    """Log in; every way this can fail becomes one line saying what to check."""
    url = endpoint.url
    try:
        return XmlRpcSession(url, endpoint.user, endpoint.password, verify_tls=endpoint.verify, timeout=timeout)
    except XenAPIFailure as exc:
        if exc.failure[0] == "SESSION_AUTHENTICATION_FAILED":
            raise usage(f"{url} refused the user name or password of {endpoint.user}: check them") from None
        raise usage(f"{url} refused the login: {exc.describe()}") from None
    except ssl.SSLCertVerificationError as exc:
        raise usage(
            f"the certificate of {url} does not verify ({exc.verify_message}); "
            "pass --no-verify to accept a self-signed one"
        ) from None
    except ssl.SSLError as exc:
        raise usage(f"cannot speak TLS with {url} ({exc.reason}): does the server run with --tls?") from None
    except xmlrpc.client.ProtocolError as exc:
        raise usage(f"{url} did not answer as a pool server (HTTP {exc.errcode} {exc.errmsg})") from None
    except (xmlrpc.client.ResponseError, xml.parsers.expat.ExpatError, http.client.HTTPException) as exc:
        raise usage(f"{url} did not answer as a pool server ({type(exc).__name__}): is it a farside server?") from None
    except TimeoutError:
        waited = f"within {timeout:g} s" if timeout else "in time"
        raise Unreachable(f"{url} did not answer {waited}: check the address and that the server runs") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise Unreachable(f"cannot reach {url} ({reason}): check the address and that the server runs") from None


def connect_source(endpoint: Endpoint, err: Console) -> XmlRpcSession | None:
    """A session on the source pool, or None when it does not answer: after a disaster it is
    gone, and nothing there can still run. A pool that answers but refuses the login stops us."""
    try:
        return connect(endpoint, timeout=SOURCE_TIMEOUT_S)
    except Unreachable as exc:
        err.print(f"farside: {exc.message}; going on without asking it", markup=False, highlight=False, soft_wrap=True)
        return None


def lost(url: str, exc: BaseException) -> DrCliError:
    """A connection that broke after login."""
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return DrCliError(f"lost the connection to {url} ({reason})", 1)
