"""Hand-written message handlers, registered by wire name (``VM.set_order``).

A handler takes the call's Context and the message's parameters after the session, already type
checked, and returns the result as a plain value. It may be a coroutine function (``event.from``
waits without holding a thread); plain functions run on a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

Handler = Callable[..., Any]
HANDLERS: dict[str, Handler] = {}
# Hand-written messages a session on a foreign pool's metadata (VDI.open_database) may call.
FOREIGN_DB_MESSAGES: set[str] = set()

H = TypeVar("H", bound=Handler)


def handles(wire_name: str, *, foreign_db: bool = False) -> Callable[[H], H]:
    """Register the decorated function as the handler of ``wire_name``.

    ``foreign_db``: sessions bound to a foreign pool's metadata may call it too (xapi lets them
    call only reads and the DR messages that take them).
    """

    def register(fn: H) -> H:
        if wire_name in HANDLERS:
            raise RuntimeError(f"two handlers for {wire_name}")
        HANDLERS[wire_name] = fn
        if foreign_db:
            FOREIGN_DB_MESSAGES.add(wire_name)
        return fn

    return register
