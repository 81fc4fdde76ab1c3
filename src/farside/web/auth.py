"""Console logins: a random cookie token mapped, in the server only, to the user's XenAPI session.

The browser never sees the XenAPI session ref: it holds an HttpOnly, SameSite=Strict cookie (Secure
under TLS) whose value is a random token. Each login also gets its own CSRF token, which every
form and every POST must carry back; before login, a double-submit cookie protects the login form.
The XenAPI session does the rest: its idle expiry ends the console login, and its role is the
user's role in the console, so the console can never allow more than XenAPI would.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from farside.api.context import Services
from farside.errors import FarsideError, SessionInvalid, XenAPIFailure
from farside.model.roles import Role

COOKIE = "farside_console"
LOGIN_COOKIE = "farside_login"  # the double-submit CSRF token of the login form
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
ORIGINATOR = "farside-console"
PATH = "/ui"


@dataclass(frozen=True)
class Login:
    """One browser's login: its cookie token, its XenAPI session, its CSRF token and who it is."""

    token: str
    session: str
    csrf: str
    user: str
    role: Role

    def may(self, needed: Role) -> bool:
        return self.role.allows(needed)


class Logins:
    """The console's logins, kept in memory: they end with the server, as XenAPI sessions do."""

    def __init__(self) -> None:
        self._by_token: dict[str, Login] = {}
        self._lock = threading.Lock()

    async def login(self, services: Services, user: str, password: str) -> Login:
        """Log in through XenAPI (SESSION_AUTHENTICATION_FAILED on a wrong password)."""
        assert services.dispatch is not None
        outcome = await services.dispatch("session.login_with_password", [user, password, "1.0", ORIGINATOR])
        if outcome.failure is not None:
            raise XenAPIFailure(outcome.failure[0], *outcome.failure[1:])
        session = str(outcome.value)
        role = services.sessions.validate(session).role
        found = Login(secrets.token_urlsafe(32), session, secrets.token_urlsafe(32), user, role)
        with self._lock:
            self._by_token[found.token] = found
        return found

    def find(self, services: Services, request: Request) -> Login | None:
        """The login behind the request's cookie, if its XenAPI session still lives."""
        token = request.cookies.get(COOKIE, "")
        with self._lock:
            found = self._by_token.get(token)
        if found is None:
            return None
        try:
            services.sessions.validate(found.session)
        except SessionInvalid:
            self.forget(found)
            return None
        return found

    def forget(self, login: Login) -> None:
        with self._lock:
            self._by_token.pop(login.token, None)

    def __len__(self) -> int:
        return len(self._by_token)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_login_cookie(request: Request, response: Response, login: Login) -> None:
    response.set_cookie(COOKIE, login.token, httponly=True, samesite="strict", secure=secure(request), path=PATH)


def clear_login_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(COOKIE, httponly=True, samesite="strict", secure=secure(request), path=PATH)


def login_form_token(request: Request) -> str:
    """The login form's CSRF token: the one the browser holds already, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(32)


def set_login_form_cookie(request: Request, response: Response, token: str) -> None:
    response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), path=PATH)


def same(expected: str, given: str) -> bool:
    """Constant-time comparison of two tokens; an empty token never matches."""
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another site (Origin or Referer)."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return source != "null"
    return urlsplit(source).netloc == request.headers.get("host", "")


class CsrfFailed(FarsideError):
    code = "CSRF_TOKEN_INVALID"
