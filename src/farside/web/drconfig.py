"""DR configuration: which SRs hold this pool's metadata (at most 8), and each metadata VDI's health."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from farside.errors import XenAPIFailure
from farside.web.console import OPERATOR, Console, Page
from farside.web.inventory import overview

# xapi's limit on redo-log (metadata) VDIs, which SR.enable_database_replication enforces too.
MAX_METADATA_SRS = 8


def routes(console: Console) -> list[Route]:
    async def config_page(page: Page) -> Response:
        token = await page.xapi.call("event.get_current_id")
        return page.render("dr.html", o=await overview(page.xapi, console.replication), token=token,
                           limit=MAX_METADATA_SRS, message=page.request.query_params.get("message", ""))  # fmt: skip

    async def config_live(page: Page) -> Response:
        return page.render("dr_live.html", o=await overview(page.xapi, console.replication), limit=MAX_METADATA_SRS)

    async def save(page: Page) -> Response:
        wanted = set(page.fields("sr"))
        if len(wanted) > MAX_METADATA_SRS:
            raise XenAPIFailure(
                "NO_MORE_REDO_LOGS_ALLOWED",
                f"{len(wanted)} SRs ticked; a pool keeps its metadata on {MAX_METADATA_SRS}",
            )
        o = await overview(page.xapi, console.replication)
        by_uuid = {sr.uuid: sr for sr in o.srs}
        unknown = wanted - set(by_uuid)
        if unknown:
            raise XenAPIFailure("UUID_INVALID", "SR", ", ".join(sorted(unknown)))
        changed = []
        # Disable first, so that moving the metadata from one SR to another never passes the limit.
        for sr in o.srs:
            if sr.replicates_here and sr.uuid not in wanted:
                await page.xapi.call("SR.disable_database_replication", sr.ref)
                changed.append(f"stopped on {sr.name}")
        for uuid in sorted(wanted):
            sr = by_uuid[uuid]
            if not sr.replicates_here:
                await page.xapi.call("SR.enable_database_replication", sr.ref)
                changed.append(f"enabled on {sr.name}")
        message = "Metadata replication " + ", ".join(changed) + "." if changed else "Nothing changed."
        return RedirectResponse("/ui/dr?" + urlencode({"message": message}), status_code=303)

    return [
        Route("/dr", console.page(config_page), methods=["GET"]),
        Route("/dr/live", console.page(config_live), methods=["GET"]),
        Route("/dr/metadata", console.page(save, needs=OPERATOR), methods=["POST"]),
    ]
