"""The console as one ASGI app, for ``farside server`` to mount at ``/ui``."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Router
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from farside.web import drconfig, history, live, login, pool, wizard
from farside.web.console import Console, SecurityHeaders


def console_app(console: Console) -> ASGIApp:
    routes: list[BaseRoute] = [
        *login.routes(console),
        *pool.routes(console),
        *live.routes(console),
        *drconfig.routes(console),
        *history.routes(console),
        *wizard.routes(console),
        Mount("/static", app=StaticFiles(packages=[("farside.web", "static")]), name="static"),
    ]
    return SecurityHeaders(Router(routes))
