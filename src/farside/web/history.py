"""History: past DR runs with their reports, recovery time and metadata age, and the trend across
test failovers; one run's page, its report as text or JSON, and resuming or cleaning up a run."""

from __future__ import annotations

import json

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from farside.web.console import OPERATOR, Console, Page
from farside.web.runs import load, load_all, trend

CLEANUP_STATES = ("created", "running", "paused", "failed", "done", "cleanup failed")
RESUME_STATES = ("running", "paused", "failed")


async def launch(page: Page, message: str, uuid: str) -> str:
    """Start ``Async.DR_run.<message>`` on the run as the user: it runs in the server, whatever
    the browser does next. Returns the run's ref."""
    ref = str(await page.xapi.call("DR_run.get_by_uuid", uuid))
    task = await page.xapi.call(f"Async.DR_run.{message}", ref)
    page.console.tasks[ref] = (str(task), page.login.session)
    return ref


def routes(console: Console) -> list[Route]:
    async def history(page: Page) -> Response:
        runs = await load_all(page.xapi)
        token = await page.xapi.call("event.get_current_id")
        return page.render("history.html", runs=runs, trend=trend(runs), token=token)

    async def history_live(page: Page) -> Response:
        runs = await load_all(page.xapi)
        return page.render("history_live.html", runs=runs, trend=trend(runs))

    async def run_page(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        token = await page.xapi.call("event.get_current_id")
        return page.render("run.html", run=run, token=token)

    async def run_live(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        return page.render("run_live.html", run=run)

    async def report_text(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        return Response(run.report, media_type="text/plain; charset=utf-8",
                        headers={"content-disposition": f'attachment; filename="dr-run-{run.uuid}.txt"'})  # fmt: skip

    async def report_json(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        body = json.dumps(run.report_json, indent=2, sort_keys=True) + "\n"
        return Response(body, media_type="application/json",
                        headers={"content-disposition": f'attachment; filename="dr-run-{run.uuid}.json"'})  # fmt: skip

    def action(message: str) -> Route:
        async def act(page: Page) -> Response:
            uuid = page.request.path_params["uuid"]
            await launch(page, message, uuid)
            return RedirectResponse(f"/ui/wizard/{uuid}", status_code=303)

        return Route(f"/runs/{{uuid}}/{message}", console.page(act, needs=OPERATOR), methods=["POST"])

    return [
        Route("/history", console.page(history), methods=["GET"]),
        Route("/history/live", console.page(history_live), methods=["GET"]),
        Route("/runs/{uuid}", console.page(run_page), methods=["GET"]),
        Route("/runs/{uuid}/live", console.page(run_live), methods=["GET"]),
        Route("/runs/{uuid}/report.txt", console.page(report_text), methods=["GET"]),
        Route("/runs/{uuid}/report.json", console.page(report_json), methods=["GET"]),
        action("resume"),
        action("cleanup"),
    ]
