"""The console's core: where the pages find the pool, who is logged in, and how a page is answered.

Every page goes through ``Console.page``: it finds the login behind the cookie (or sends the browser
to the login form), checks the CSRF token and the origin of every POST, checks the role a page
needs, and turns XenAPI failures into a readable page, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from farside import __version__
from farside.api.context import Services
from farside.errors import FarsideError, InternalError, SessionInvalid
from farside.mirror.adapter import MirrorReplication
from farside.model.roles import Role
from farside.model.types import parse_datetime
from farside.storage.replication import LunReplication
from farside.web import auth
from farside.web.client import Xapi

log = logging.getLogger(__name__)
MIB = 1 << 20
# Running a DR wizard, configuring metadata replication: what XenAPI asks of DR_run and SR calls.
OPERATOR = Role.POOL_OPERATOR

Endpoint = Callable[[Request], Awaitable[Response]]


@dataclass
class Page:
    """One request to a console page: the login, XenAPI as that user, and the posted form."""

    console: Console
    request: Request
    login: auth.Login
    xapi: Xapi
    form: FormData = field(default_factory=FormData)

    @property
    def services(self) -> Services:
        return self.console.services

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return self.console.render(self.request, template, self.login, status_code, **context)

    def field(self, name: str, default: str = "") -> str:
        value = self.form.get(name, default)
        return value if isinstance(value, str) else default

    def fields(self, name: str) -> list[str]:
        return [v for v in self.form.getlist(name) if isinstance(v, str)]


Handler = Callable[[Page], Awaitable[Response]]


class Console:
    """The web console of one pool server, mounted at ``/ui``."""

    def __init__(self, replication: LunReplication | None = None) -> None:
        self.logins = auth.Logins()
        # As the DR engine asks it (api/handlers/dr_run.py): LUNs no mirror manages are "unknown".
        self.replication = replication or MirrorReplication()
        self._services: Services | None = None
        # Runs this console set going: DR_run ref -> (the task running it, the XenAPI session).
        self.tasks: dict[str, tuple[str, str]] = {}
        self.templates = Environment(
            loader=PackageLoader("farside.web", "templates"), autoescape=select_autoescape(default=True)
        )
        self.templates.filters.update(mib=mib, when=when, ago=ago, seconds=seconds)
        self.templates.globals.update(version=__version__)

    def attach(self, services: Services) -> None:
        """Called at server start-up, once the services (and in-process XenAPI) are ready."""
        self._services = services

    @property
    def services(self) -> Services:
        if self._services is None:
            raise InternalError("the console is not attached to a running server")
        return self._services

    # -- answering -------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, login: auth.Login | None, status_code: int = 200, **context: Any
    ) -> HTMLResponse:
        context.update(
            login=login,
            csrf=login.csrf if login is not None else "",
            may_operate=login is not None and login.may(OPERATOR),
            path=request.url.path,
        )
        html = self.templates.get_template(template).render(**context)
        return HTMLResponse(html, status_code=status_code, headers={"cache-control": "no-store"})

    def page(self, handler: Handler, needs: Role = Role.READ_ONLY, json: bool = False) -> Endpoint:
        """A Starlette endpoint for ``handler``: login, CSRF and origin on POST, role, errors."""

        async def endpoint(request: Request) -> Response:
            services = self.services
            login = self.logins.find(services, request)
            if login is None:
                if json or request.method != "GET":
                    return JSONResponse({"error": "not logged in"}, status_code=401)
                return RedirectResponse(f"{auth.PATH}/login?next={quote(request.url.path)}", status_code=303)
            form = FormData()
            if request.method == "POST":
                if not auth.same_origin(request):
                    return self._refused(request, login, "the request came from another site", json)
                form = await request.form()
                given = form.get(auth.CSRF_FIELD) or request.headers.get(auth.CSRF_HEADER, "")
                if not auth.same(login.csrf, given if isinstance(given, str) else ""):
                    return self._refused(request, login, "the form is stale or forged (CSRF token)", json)
            if not login.may(needs):
                why = f"{login.user} is {login.role.wire}; this needs {needs.wire} or a stronger role"
                return self._refused(request, login, why, json)
            page = Page(self, request, login, Xapi(services, login.session), form)
            try:
                return await handler(page)
            except SessionInvalid:
                self.logins.forget(login)
                return RedirectResponse(f"{auth.PATH}/login", status_code=303)
            except FarsideError as exc:
                wants_json = json or request.url.path.endswith(".json")
                if exc.failure[0] == "UUID_INVALID" and len(exc.failure) == 3:
                    # A page about something the pool does not have (a stale link, a typo): not found.
                    _, cls, uuid = exc.failure
                    what = _NAMES.get(cls, cls)
                    where = _LISTED_ON.get(cls, "the Pool page")
                    message = f"There is no {what} {uuid} in this pool: {where} lists them."
                    if wants_json:
                        return JSONResponse({"error": message, "failure": exc.failure}, status_code=404)
                    return self.render(request, "error.html", login, 404, failure=["NOT_FOUND", message])
                if wants_json:
                    return JSONResponse({"error": exc.failure}, status_code=409)
                return self.render(request, "error.html", login, 409, failure=exc.failure)

        return endpoint

    def _refused(self, request: Request, login: auth.Login, why: str, json: bool) -> Response:
        if json:
            return JSONResponse({"error": why}, status_code=403)
        return self.render(request, "error.html", login, 403, failure=["FORBIDDEN", why])


# How an unknown uuid's class is named to the operator, and where its records are listed.
_NAMES = {"DR_run": "DR run", "VM_appliance": "vApp", "DR_task": "DR task"}
_LISTED_ON = {"DR_run": "the History page"}


class SecurityHeaders:
    """Headers every console answer carries: no framing, no sniffing, scripts only from /ui/static."""

    HEADERS = [
        (b"content-security-policy",
         b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
         b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
        (b"x-frame-options", b"DENY"),
    ]  # fmt: skip

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + self.HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


# -- template filters ----------------------------------------------------------------------------


def parse_time(text: str) -> dt.datetime | None:
    try:
        return parse_datetime(text)
    except (TypeError, ValueError):
        return None


def mib(value: object) -> str:
    try:
        return f"{int(str(value)) / MIB:,.0f} MiB"
    except ValueError:
        return "?"


def when(text: str) -> str:
    moment = parse_time(text)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment is not None and moment.year > 1970 else "never"


def ago(text: str) -> str:
    moment = parse_time(text)
    if moment is None or moment.year <= 1970:
        return "never"
    return seconds((dt.datetime.now(dt.UTC) - moment).total_seconds()) + " ago"


def seconds(value: object) -> str:
    if value is None or value == "":
        return "-"
    s = float(str(value))
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"
