"""XenAPI calls from the console's request handlers, as the logged-in user, through the dispatcher.

The console holds no privilege of its own: every call goes through the same checks as a call over
HTTP (session, role, types), made with the XenAPI session that the console's cookie maps to.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import orjson

from farside.api.context import Services
from farside.api.records import AllRecords, Encoded
from farside.errors import InternalError, XenAPIFailure


class Xapi:
    """Calls on this pool as session ``handle`` (a failure raises XenAPIFailure)."""

    def __init__(self, services: Services, handle: str) -> None:
        self._services = services
        self.handle = handle

    async def call(self, method: str, *args: Any) -> Any:
        return await self.call_as(self.handle, method, *args)

    async def call_as(self, session: str, method: str, *args: Any) -> Any:
        dispatch = self._services.dispatch
        if dispatch is None:
            raise InternalError("the console needs the running server")
        outcome = await dispatch(method, [session, *args])
        if outcome.failure is not None:
            raise XenAPIFailure(outcome.failure[0], *outcome.failure[1:])
        value = outcome.value
        if isinstance(value, AllRecords):
            # Encoding a large class is real work: off the event loop, as the server does it.
            return orjson.loads(await anyio.to_thread.run_sync(value.json_result))
        if isinstance(value, Encoded):
            return orjson.loads(value.json)
        return value

    async def records(self, cls: str) -> dict[str, dict[str, Any]]:
        """``cls.get_all_records``: ref -> record."""
        found: dict[str, dict[str, Any]] = await self.call(f"{cls}.get_all_records")
        return found
