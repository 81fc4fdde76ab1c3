"""The DR wizard, step by step, over a DR_run that pauses where the operator has a choice.

kind → storage (probe LUN paths, tick SRs) → the run is created and started in the server, pausing
after ``load`` → vApps and VMs with the power option → pre-checks, with a button per fix → recovery
with live progress → the report (a test failover then cleans up and shows the result).

Everything the wizard knows lives in the DR_run record (options, journal, report), so closing the
browser stops nothing, and any page can be reloaded, or the run continued from the history.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from farside.dr.plan import FIX_ACTIONS, KINDS, POWER, TITLES_BY_KIND
from farside.errors import FarsideError, InvalidValue, OperationNotAllowed
from farside.web.console import OPERATOR, Console, Page
from farside.web.history import launch
from farside.web.inventory import mirror_state
from farside.web.runs import RunView, load, load_all

# The run stops after these steps so that the operator can choose: what to recover, then whether
# to go on once the pre-checks are seen.
PAUSES = "load,precheck"
PAGES = ("kind", "storage", "select", "precheck", "recovery", "report")
POWER_LABELS = {"start": "Start", "start_paused": "Start paused", "none": "Do not start"}
DESCRIPTIONS = {
    "failover": "The primary site is lost: recover its VMs and vApps here from the mirrored LUNs, and start them.",
    "failback": "Bring the VMs back to the primary site from the DR site's metadata, once the mirror is reversed.",
    "test": "Check that a failover would work: recover here, paused or not started, then clean up; "
    "this pool and the replica end as they began.",
}


@dataclass
class Found:
    """An SR a probe found on a LUN path."""

    uuid: str
    name: str
    path: str
    metadata: bool
    known: bool
    mirror: str = "unknown"


def _probe_result(xml: str, path: str, known: set[str]) -> list[Found]:
    found = []
    for sr in ET.fromstring(xml).findall("SR"):
        uuid = sr.findtext("UUID", "")
        found.append(
            Found(
                uuid,
                sr.findtext("name_label", ""),
                sr.findtext("path", "") or path,
                sr.findtext("pool_metadata_detected", "") == "true",
                uuid in known,
            )
        )
    return found


def _kind(value: str) -> str:
    if value not in KINDS:
        raise InvalidValue("kind", f"{value!r}; choose {', '.join(KINDS)}")
    return value


def routes(console: Console) -> list[Route]:
    def render(page: Page, template: str, now: str, **context: Any) -> Response:
        return page.render(template, pages=PAGES, now=now, titles=TITLES_BY_KIND, **context)

    async def kind_page(page: Page) -> Response:
        return render(page, "wizard_kind.html", "kind", kinds=KINDS, descriptions=DESCRIPTIONS,
                      unfinished=await _unfinished(page))  # fmt: skip

    async def _unfinished(page: Page) -> list[RunView]:
        return [r for r in await load_all(page.xapi) if r.state in ("created", "running", "paused", "failed")]

    async def storage_page(page: Page) -> Response:
        kind = _kind(page.request.query_params.get("kind", "test"))
        return render(page, "wizard_storage.html", "storage", kind=kind, paths="", found=None, source_url="")

    async def probe(page: Page) -> Response:
        kind = _kind(page.field("kind"))
        paths = [p.strip() for p in page.field("paths").replace(":", "\n").splitlines() if p.strip()]
        if not paths:
            raise InvalidValue("LUN paths", "give at least one LUN directory, or a directory of LUNs")
        pool = (await page.xapi.call("pool.get_all"))[0]
        host = await page.xapi.call("pool.get_master", pool)
        known = {r["uuid"] for r in (await page.xapi.records("SR")).values()}
        found: list[Found] = []
        problems: list[str] = []
        for path in paths:
            try:
                xml = await page.xapi.call("SR.probe", host, {"path": path}, "file", {"metadata": "true"})
            except FarsideError as exc:
                problems.append(f"{path}: {' '.join(exc.failure)}")
                continue
            found += _probe_result(xml, path, known)
        for sr in found:
            sr.mirror = await anyio.to_thread.run_sync(mirror_state, sr.path, console.replication)
        return render(page, "wizard_storage.html", "storage", kind=kind, paths="\n".join(paths), found=found,
                      problems=problems, source_url=page.field("source_url"))  # fmt: skip

    async def create(page: Page) -> Response:
        kind = _kind(page.field("kind"))
        luns = sorted(set(page.fields("lun")))
        if not luns:
            raise InvalidValue("SRs", "tick at least one SR to recover from")
        options = {"luns": ":".join(luns), "pause_after": PAUSES}
        if page.field("source_url").strip():
            options["source_url"] = page.field("source_url").strip()
        if page.field("site_down") == "yes":
            # SRM's disaster-recovery mode: a box ticked and the site's name typed, never one click.
            name = page.field("site_down_name").strip()
            if not name:
                raise InvalidValue("site name", "type the name of the site declared down (its pool's name)")
            options["declare_site_down"] = name
        ref = await page.xapi.call("DR_run.create", kind, options)
        uuid = await page.xapi.call("DR_run.get_uuid", ref)
        await launch(page, "start", uuid)
        return RedirectResponse(f"/ui/wizard/{uuid}", status_code=303)

    async def _running(page: Page, run: RunView) -> bool:
        """Whether an engine acts on the run now: one holds its claim, or a task we began is pending."""
        if run.runner:
            return True
        task = console.tasks.get(run.ref)
        if task is None:
            return False
        try:
            return bool(await page.xapi.call("task.get_status", task[0]) == "pending")
        except FarsideError:
            return False

    async def run_page(page: Page) -> Response:
        """The wizard page for where the run is now."""
        run = await load(page.xapi, page.request.path_params["uuid"])
        if await _running(page, run):
            token = await page.xapi.call("event.get_current_id")
            return render(page, "wizard_progress.html", _stage(run), run=run, token=token)
        if run.state == "paused" and run.paused_after == "load":
            return _select_page(page, run)
        if run.state == "failed" and run.failed_step == "select":
            return _select_page(page, run, run.journal["select"].get("error", ""))
        if run.state == "paused" and run.paused_after == "precheck":
            return render(page, "wizard_precheck.html", "precheck", run=run, problems=_problems(run))
        if run.state == "failed" and run.failed_step == "precheck":
            return render(page, "wizard_precheck.html", "precheck", run=run, problems=_problems(run))
        return render(page, "wizard_report.html", "report", run=run, task_error=await _task_error(page, run))

    async def _task_error(page: Page, run: RunView) -> str:
        """Why the last task this console began on the run failed, if it did."""
        task = console.tasks.get(run.ref)
        if task is None:
            return ""
        try:
            if await page.xapi.call("task.get_status", task[0]) != "failure":
                return ""
            return " ".join(await page.xapi.call("task.get_error_info", task[0]))
        except FarsideError:
            return ""

    def _select_page(page: Page, run: RunView, error: str = "") -> Response:
        loaded = run.data("load")
        vapps = sorted(loaded.get("vapps", {}).values(), key=lambda a: a["name"])
        vms = loaded.get("vms", {})
        standalone = sorted((v for v in vms.values() if not v["appliance"]), key=lambda v: v["name"])
        members = {a["uuid"]: sorted((vms[m] for m in a["members"]), key=lambda v: (v["order"], v["name"]))
                   for a in vapps}  # fmt: skip
        chosen = set(run.options.get("select", "").split(",")) - {""}
        power = run.options.get("power", "start_paused" if run.kind == "test" else "start")
        powers = [p for p in POWER if not (run.kind == "test" and p == "start")]
        return render(page, "wizard_select.html", "select", run=run, vapps=vapps, members=members,
                      standalone=standalone, chosen=chosen, power=power, powers=powers, labels=POWER_LABELS,
                      metadata=run.data("choose").get("metadata", []), left_out=loaded.get("left_out", []),
                      error=error)  # fmt: skip

    async def select_again(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        if "recover" in run.journal or "load" not in run.journal:
            raise OperationNotAllowed("the selection can change only after loading and before recovery")
        return _select_page(page, run)

    async def _set(page: Page, run: RunView, changes: dict[str, str]) -> None:
        options = {**run.options, **changes}
        options = {k: v for k, v in options.items() if v != ""}
        await page.xapi.call("DR_run.set_options", run.ref, options)

    async def choose(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        source_pool = page.field("source_pool")
        if source_pool != run.options.get("source_pool", ""):
            # Another source pool: its metadata is loaded again, and the choice shown again.
            await _set(page, run, {"source_pool": source_pool, "select": "", "pause_after": PAUSES})
            await launch(page, "resume", run.uuid)
            return RedirectResponse(f"/ui/wizard/{run.uuid}", status_code=303)
        chosen = page.fields("item")
        if not chosen:
            return _select_page(page, run, "Tick at least one vApp or VM to recover.")
        power = page.field("power")
        if power not in POWER:
            raise InvalidValue("power", power)
        # Pause after the pre-checks once more, whatever happened before: the operator sees them.
        await _set(page, run, {"select": ",".join(sorted(chosen)), "power": power, "pause_after": "precheck"})
        await launch(page, "resume", run.uuid)
        return RedirectResponse(f"/ui/wizard/{run.uuid}", status_code=303)

    async def fix(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        problems = _problems(run)
        index = page.field("problem")
        if not index.isdigit() or int(index) >= len(problems):
            raise InvalidValue("problem", index)
        problem = problems[int(index)]
        # The fix comes from the journal, never from the form: options, or one call of FIX_ACTIONS
        # made as the operator (XenAPI checks the role), after which the pre-checks run again.
        action = problem.get("action") or {}
        if action.get("method") in FIX_ACTIONS:
            if page.field("vm") != action.get("vm"):
                # The pre-checks ran again since the page was drawn: this button is not for that VM.
                raise InvalidValue("vm", page.field("vm"))
            vm = await page.xapi.call("VM.get_by_uuid", action["vm"])
            await page.xapi.call(action["method"], vm)
            await _set(page, run, {"pause_after": "precheck"})
        elif problem.get("options"):
            await _set(page, run, {**problem["options"], "pause_after": "precheck"})
        else:
            raise InvalidValue("problem", index)
        await launch(page, "resume", run.uuid)
        return RedirectResponse(f"/ui/wizard/{run.uuid}", status_code=303)

    async def split(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        await _set(page, run, {"split_mirrors": "true"})
        await launch(page, "resume", run.uuid)
        return RedirectResponse(f"/ui/wizard/{run.uuid}", status_code=303)

    async def recheck(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        await _set(page, run, {"pause_after": "precheck"})
        await launch(page, "resume", run.uuid)
        return RedirectResponse(f"/ui/wizard/{run.uuid}", status_code=303)

    async def recover(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        if run.state != "paused" or run.paused_after != "precheck":
            raise OperationNotAllowed(f"the run is {run.state}; recovery starts once the pre-checks have passed")
        await _set(page, run, {"pause_after": ""})
        await launch(page, "resume", run.uuid)
        return RedirectResponse(f"/ui/wizard/{run.uuid}", status_code=303)

    async def cleanup(page: Page) -> Response:
        await launch(page, "cleanup", page.request.path_params["uuid"])
        return RedirectResponse(f"/ui/wizard/{page.request.path_params['uuid']}", status_code=303)

    async def progress(page: Page) -> Response:
        run = await load(page.xapi, page.request.path_params["uuid"])
        return page.render("wizard_progress_live.html", run=run, running=await _running(page, run))

    return [
        Route("/wizard", console.page(kind_page), methods=["GET"]),
        Route("/wizard/storage", console.page(storage_page, needs=OPERATOR), methods=["GET"]),
        Route("/wizard/probe", console.page(probe, needs=OPERATOR), methods=["POST"]),
        Route("/wizard/create", console.page(create, needs=OPERATOR), methods=["POST"]),
        Route("/wizard/{uuid}", console.page(run_page), methods=["GET"]),
        Route("/wizard/{uuid}/progress", console.page(progress), methods=["GET"]),
        Route("/wizard/{uuid}/select", console.page(select_again, needs=OPERATOR), methods=["GET"]),
        Route("/wizard/{uuid}/select", console.page(choose, needs=OPERATOR), methods=["POST"]),
        Route("/wizard/{uuid}/fix", console.page(fix, needs=OPERATOR), methods=["POST"]),
        Route("/wizard/{uuid}/split", console.page(split, needs=OPERATOR), methods=["POST"]),
        Route("/wizard/{uuid}/recheck", console.page(recheck, needs=OPERATOR), methods=["POST"]),
        Route("/wizard/{uuid}/recover", console.page(recover, needs=OPERATOR), methods=["POST"]),
        Route("/wizard/{uuid}/cleanup", console.page(cleanup, needs=OPERATOR), methods=["POST"]),
    ]


def _stage(run: RunView) -> str:
    """The wizard page a running run is in: loading what the LUNs hold, pre-checks, recovery, report."""
    if "cleanup" in run.journal or run.state in ("done", "cleaned up", "cleanup failed"):
        return "report"
    if run.journal.get("select", {}).get("state") != "done":
        return "storage"
    if run.journal.get("precheck", {}).get("state") != "done" or run.options.get("pause_after"):
        return "precheck"
    return "recovery"


def _problems(run: RunView) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = run.data("precheck").get("problems", [])
    return found
