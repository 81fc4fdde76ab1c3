"""The pool page (hosts, SRs, VMs, vApps), kept current through ``event.from``, and VM serial output."""

from __future__ import annotations

import anyio.to_thread
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from farside.errors import RbacPermissionDenied
from farside.model.roles import Role
from farside.web.console import Console, Page
from farside.web.inventory import overview

# What XenAPI asks to read a VM's console (http/get_console); the console allows no more.
SERIAL_ROLE = Role.VM_OPERATOR


def routes(console: Console) -> list[Route]:
    async def pool_page(page: Page) -> Response:
        token = await page.xapi.call("event.get_current_id")
        return page.render("pool.html", o=await overview(page.xapi, console.replication), token=token)

    async def pool_live(page: Page) -> Response:
        return page.render("pool_live.html", o=await overview(page.xapi, console.replication))

    async def _serial(page: Page) -> tuple[str, str, bytes]:
        if not page.login.may(SERIAL_ROLE):
            raise RbacPermissionDenied(
                "http/get_console", f"{page.login.user} is {page.login.role.wire}; this needs {SERIAL_ROLE.wire}"
            )
        uuid = page.request.path_params["uuid"]
        vm = await page.xapi.call("VM.get_by_uuid", uuid)
        name = await page.xapi.call("VM.get_name_label", vm)
        data = await anyio.to_thread.run_sync(console.services.vms.driver.read_serial, uuid)
        return uuid, str(name), data

    async def serial_page(page: Page) -> Response:
        uuid, name, data = await _serial(page)
        return page.render("serial.html", uuid=uuid, name=name, output=data.decode("utf-8", "replace"))

    async def serial_text(page: Page) -> Response:
        _, _, data = await _serial(page)
        return PlainTextResponse(data.decode("utf-8", "replace"), headers={"cache-control": "no-store"})

    return [
        Route("/", console.page(pool_page), methods=["GET"]),
        Route("/pool/live", console.page(pool_live), methods=["GET"]),
        Route("/vms/{uuid}/serial", console.page(serial_page), methods=["GET"]),
        Route("/vms/{uuid}/serial.txt", console.page(serial_text), methods=["GET"]),
    ]
