"""XenAPI calls made inside the server (a DR run started from the console), through the dispatcher.

Every check a remote call meets applies (session, role, types), so an engine run in-process does
exactly what it would do over HTTP.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from farside.api.context import Services
from farside.api.records import AllRecords, Encoded
from farside.errors import InternalError, XenAPIFailure


class LocalSession:
    """The dr.session.Session interface over this server's dispatcher, as session ``handle``."""

    def __init__(self, services: Services, handle: str) -> None:
        if services.loop is None or services.dispatch is None:
            raise InternalError("in-process XenAPI calls need the running server")
        self._services = services
        self._handle = handle

    @property
    def handle(self) -> str:
        return self._handle

    def call(self, method: str, *args: Any) -> Any:
        return self.call_as(self._handle, method, *args)

    def call_as(self, session: str, method: str, *args: Any) -> Any:
        assert self._services.loop is not None and self._services.dispatch is not None
        future = asyncio.run_coroutine_threadsafe(
            self._services.dispatch(method, [session, *args]), self._services.loop
        )
        outcome = future.result()
        if outcome.failure is not None:
            raise XenAPIFailure(outcome.failure[0], *outcome.failure[1:])
        value = outcome.value
        if isinstance(value, AllRecords):
            return orjson.loads(value.json_result())
        if isinstance(value, Encoded):
            return orjson.loads(value.json)
        return value

    def serial(self, vm_uuid: str) -> bytes:
        return self._services.vms.driver.read_serial(vm_uuid)
