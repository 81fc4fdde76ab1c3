"""Logging in and out of the console with the pool's accounts."""

from __future__ import annotations

import contextlib

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from farside.api.throttle import note_client
from farside.errors import FarsideError
from farside.web import auth
from farside.web.console import Console, Page


def _next(target: str) -> str:
    """Where to go after login: a console path only (never another site)."""
    if target.startswith(auth.PATH + "/") and not target.startswith("//") and "\\" not in target:
        return target
    return auth.PATH + "/"


def routes(console: Console) -> list[Route]:
    async def form(request: Request) -> Response:
        if console.logins.find(console.services, request) is not None:
            return RedirectResponse(_next(request.query_params.get("next", "")), status_code=303)
        return _form(request, "", 200)

    def _form(request: Request, error: str, status: int) -> Response:
        token = auth.login_form_token(request)
        response = console.render(
            request, "login.html", None, status, login_csrf=token, error=error,
            next=_next(request.query_params.get("next", "")),
        )  # fmt: skip
        auth.set_login_form_cookie(request, response, token)
        return response

    async def submit(request: Request) -> Response:
        data = await request.form()
        values = {k: v if isinstance(v, str) else "" for k, v in data.items()}
        if not auth.same_origin(request) or not auth.same(
            request.cookies.get(auth.LOGIN_COOKIE, ""), values.get(auth.CSRF_FIELD, "")
        ):
            return _form(request, "The login form was stale; please try again.", 403)
        note_client(request)  # the console's logins share the XenAPI login throttle
        try:
            login = await console.logins.login(console.services, values.get("username", ""), values.get("password", ""))
        except FarsideError as exc:
            if exc.failure[0] == "SESSION_AUTHENTICATION_FAILED" and len(exc.params) == 3:  # throttled
                return _form(request, exc.params[1] + ".", 429)
            return _form(request, "Wrong user name or password.", 401)
        response = RedirectResponse(_next(values.get("next", "")), status_code=303)
        auth.set_login_cookie(request, response, login)
        response.delete_cookie(auth.LOGIN_COOKIE, path=auth.PATH)
        return response

    async def logout(page: Page) -> Response:
        console.logins.forget(page.login)
        # A DR run this login started runs on as its XenAPI session: ending that session would stop
        # it. The session then ends by itself once idle, as every XenAPI session does.
        running = False
        for task, session in list(console.tasks.values()):
            if session != page.login.session:
                continue
            try:
                running |= await page.xapi.call("task.get_status", task) == "pending"
            except FarsideError:
                continue
        if not running:
            with contextlib.suppress(FarsideError):  # already gone
                await page.xapi.call("session.logout")
        response = RedirectResponse(f"{auth.PATH}/login", status_code=303)
        auth.clear_login_cookie(page.request, response)
        return response

    return [
        Route("/login", form, methods=["GET"]),
        Route("/login", submit, methods=["POST"]),
        Route("/logout", console.page(logout), methods=["POST"]),
    ]
