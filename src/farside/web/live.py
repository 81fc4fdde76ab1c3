"""Live updates for the browser: a JSON long poll over ``event.from``, made as the logged-in user.

The browser asks ``/ui/events?token=T&classes=VM,SR``; the answer, when something changed or after
about half a minute, is ``{"token": next, "changed": [classes]}``. The page then fetches its live
part again (server-rendered): the browser never has to know how a record is shown.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from farside.errors import XenAPIFailure
from farside.web.console import Console, Page
from farside.web.inventory import CLASSES

POLL_S = 25.0
ALLOWED = {*CLASSES, "DR_run", "task", "VM_metrics"}


def routes(console: Console) -> list[Route]:
    async def events(page: Page) -> Response:
        token = page.request.query_params.get("token", "")
        wanted = [c for c in page.request.query_params.get("classes", "").split(",") if c in ALLOWED]
        if not wanted:
            wanted = list(CLASSES)
        if not token:
            return JSONResponse({"token": str(await page.xapi.call("event.get_current_id")), "changed": []})
        try:
            batch = await page.xapi.call("event.from", wanted, token, POLL_S)
        except XenAPIFailure as exc:
            if exc.failure[0] not in ("EVENTS_LOST", "EVENT_FROM_TOKEN_PARSE_FAILURE"):
                raise
            # Too far behind: start again from now, and let the page reload its live part.
            current = str(await page.xapi.call("event.get_current_id"))
            return JSONResponse({"token": current, "changed": wanted})
        changed = sorted({e["class"] for e in batch["events"]})
        return JSONResponse({"token": batch["token"], "changed": changed}, headers={"cache-control": "no-store"})

    return [Route("/events", console.page(events, json=True), methods=["GET"])]
