"""Reaching a pool server from a client command (``farside xe``, ``farside dr``): the server
argument as a URL, a password file, and the XML-RPC login.

Each of these fails with an error naming the problem (an enum member) and what it is about, never
with a message: each command words the problem its own way (xe's texts for ``farside xe``, one line
naming the flags for ``farside dr``), so both accept the same input and see the same problems.
"""

from __future__ import annotations

import enum
import http.client
import ssl
import urllib.parse
import xml.parsers.expat
import xmlrpc.client
from dataclasses import dataclass
from pathlib import Path

from farside.config import DEFAULT_PORT
from farside.dr.session import XmlRpcSession
from farside.errors import XenAPIFailure

DEFAULT_USER = "root"


class AddressProblem(enum.Enum):
    NOT_HTTP = "a scheme other than http:// or https://"
    NOT_AN_ADDRESS = "no HOST, HOST:PORT, [IPV6]:PORT or URL"
    CREDENTIALS = "a user name or password in the URL"


class AddressError(ValueError):
    """A server argument that names no pool server; ``server`` is the argument as given."""

    def __init__(self, problem: AddressProblem, server: str) -> None:
        super().__init__(f"{server}: {problem.value}")
        self.problem = problem
        self.server = server


def server_url(server: str, port: int | None = None, tls: bool = False) -> str:
    """The base URL (``scheme://host:port``) of the pool server ``server`` names.

    Args:
        server: ``HOST``, ``HOST:PORT``, an IPv6 address bare or in brackets (``[IPV6]:PORT``),
            or an ``http://`` or ``https://`` URL. Surrounding blanks are ignored.
        port: overrides the port ``server`` names; otherwise that one, else DEFAULT_PORT.
        tls: HTTPS for a server given without a scheme (a URL's scheme always wins).

    Raises:
        AddressError: a scheme other than http(s), credentials in the URL (they would end up in
            messages and logs: the commands have flags for them), a port outside 1-65535, or text
            that is no host. A URL's path, query and fragment are dropped: the pool server answers
            XenAPI at its root, so a page's address (``https://dr:8440/ui/``) names it as well.
    """
    text = server.strip()
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = ("https" if tls else "http"), text
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    if "@" in authority:  # checked first: no other message may show the password
        raise AddressError(AddressProblem.CREDENTIALS, server)
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise AddressError(AddressProblem.NOT_HTTP, server)
    if not sep and authority.count(":") > 1 and not authority.startswith("["):
        authority = f"[{authority}]"  # a bare IPv6 address, as xe's -s ::1
    try:
        parts = urllib.parse.urlsplit(f"{scheme}://{authority}")
        url_port = parts.port  # checks the port, and that brackets hold an IPv6 address
    except ValueError:
        raise AddressError(AddressProblem.NOT_AN_ADDRESS, server) from None
    host = parts.hostname
    # urlsplit takes "h:" for a host without a port, and lets port 0 and blanks through.
    if not host or authority.endswith(":") or url_port == 0 or any(c.isspace() for c in authority):
        raise AddressError(AddressProblem.NOT_AN_ADDRESS, server)
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port if port is not None else url_port or DEFAULT_PORT}"


class PasswordFileProblem(enum.Enum):
    UNREADABLE = "cannot be read"
    EMPTY = "holds no password"
    TOO_MANY_LINES = "holds more than a user name and a password"


class PasswordFileError(Exception):
    """A password file that gives no password; ``reason`` is the system's, for UNREADABLE."""

    def __init__(self, problem: PasswordFileProblem, path: str, reason: str = "") -> None:
        super().__init__(f"{path}: {problem.value}")
        self.problem = problem
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class PasswordFile:
    """What a password file says: the password, and the user name when it gives one."""

    user: str | None
    password: str


def read_password_file(path: str) -> PasswordFile:
    """The password alone on a line, or, as xe's ``-pwf``, the user name on the first line and the
    password on the second; blank lines do not count, a trailing newline is no part of either."""
    try:
        lines = Path(path).expanduser().read_text().splitlines()
    except OSError as exc:
        raise PasswordFileError(PasswordFileProblem.UNREADABLE, path, exc.strerror or str(exc)) from None
    except UnicodeDecodeError:
        raise PasswordFileError(PasswordFileProblem.UNREADABLE, path, "not a text file") from None
    lines = [line for line in lines if line.strip()]
    if not lines:
        raise PasswordFileError(PasswordFileProblem.EMPTY, path)
    if len(lines) > 2:
        raise PasswordFileError(PasswordFileProblem.TOO_MANY_LINES, path)
    return PasswordFile(lines[0], lines[1]) if len(lines) == 2 else PasswordFile(None, lines[0])


class LoginProblem(enum.Enum):
    WRONG_PASSWORD = "the user name or password was refused"
    THROTTLED = "too many failed logins"  # ``reason`` says how long to wait
    REFUSED = "the pool refused the login"  # another XenAPI failure: ``failure`` holds it
    CERTIFICATE = "the server's certificate does not verify"
    TLS = "no TLS spoken there"
    HTTP_STATUS = "an HTTP error instead of an answer"
    NOT_A_POOL = "an answer that is not XenAPI over XML-RPC"
    HUNG_UP = "the server closed the connection without answering"
    TIMEOUT = "no answer in time"
    UNREACHABLE = "nothing to connect to"


class LoginError(Exception):
    """A login that failed; ``reason`` is what the lower layer said (``HTTP 501 Not Implemented``,
    ``Connection refused``, ...) and ``failure`` the XenAPI failure, for REFUSED."""

    def __init__(self, problem: LoginProblem, url: str, reason: str = "", failure: XenAPIFailure | None = None) -> None:
        super().__init__(f"{url}: {problem.value}" + (f" ({reason})" if reason else ""))
        self.problem = problem
        self.url = url
        self.reason = reason
        self.failure = failure

    @property
    def plain_http(self) -> bool:
        """Over plain HTTP: a server hanging up then most likely speaks TLS."""
        return self.url.startswith("http:")


def log_in(url: str, user: str, password: str, verify: bool = True, timeout: float | None = None) -> XmlRpcSession:
    """A session on the pool server at ``url``; every way the login fails is a LoginError.

    Args:
        verify: refuse a TLS certificate that does not verify (False accepts a self-signed one).
        timeout: seconds each request may wait on the socket (None: no limit).
    """
    try:
        return XmlRpcSession(url, user, password, verify_tls=verify, timeout=timeout)
    except XenAPIFailure as exc:
        if exc.failure[0] == "SESSION_AUTHENTICATION_FAILED":
            if len(exc.params) == 3:  # [user, message, retry-after]: the pool throttles logins
                raise LoginError(LoginProblem.THROTTLED, url, exc.params[1]) from None
            raise LoginError(LoginProblem.WRONG_PASSWORD, url) from None
        raise LoginError(LoginProblem.REFUSED, url, exc.describe(), exc) from None
    except ssl.SSLCertVerificationError as exc:
        raise LoginError(LoginProblem.CERTIFICATE, url, exc.verify_message or str(exc)) from None
    except ssl.SSLError as exc:
        raise LoginError(LoginProblem.TLS, url, exc.reason or str(exc)) from None
    except (http.client.RemoteDisconnected, ConnectionResetError) as exc:
        # Before HTTPException and OSError, which RemoteDisconnected both is: a TLS server answers
        # plain HTTP this way, and something accepted the connection, so the server is not gone.
        raise LoginError(LoginProblem.HUNG_UP, url, _reason(exc)) from None
    except xmlrpc.client.ProtocolError as exc:
        raise LoginError(LoginProblem.HTTP_STATUS, url, f"HTTP {exc.errcode} {exc.errmsg}") from None
    except (xmlrpc.client.Error, xml.parsers.expat.ExpatError, http.client.HTTPException) as exc:
        raise LoginError(LoginProblem.NOT_A_POOL, url, type(exc).__name__) from None
    except TimeoutError as exc:
        raise LoginError(LoginProblem.TIMEOUT, url, _reason(exc)) from None
    except OSError as exc:
        raise LoginError(LoginProblem.UNREACHABLE, url, _reason(exc)) from None


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__
