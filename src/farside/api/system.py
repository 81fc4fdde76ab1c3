"""xapi's ``system.*`` calls, answered without a session as xapi answers them (gen_server.ml).

``system.listMethods`` lists the ``Class.message`` name of every message the server answers (not
the ``Async.`` forms nor the ``Class_message`` aliases, as xapi lists them). Its XML-RPC answer is
the bare array, not a ``Status`` struct: xapi sends it so, for XML-RPC introspection clients.
``system.isAlive:<anything>`` echoes its first parameter.
"""

from __future__ import annotations

from typing import Any

from farside.errors import MessageParameterCountMismatch
from farside.model.messages import wire_names
from farside.model.types import XType, parse

LIST_METHODS = "system.listMethods"
IS_ALIVE = "system.isAlive:"
_NAMES = parse("string set")


def answers(method: str) -> bool:
    """Whether ``method`` is one of the system calls."""
    return method == LIST_METHODS or method.startswith(IS_ALIVE)


def call(method: str, params: list[Any]) -> tuple[Any, XType | None]:
    """The value of a system call and its type (None: encode by the value's own type)."""
    if method == LIST_METHODS:
        return [*wire_names(), LIST_METHODS], _NAMES
    if not params:
        raise MessageParameterCountMismatch(method, 1, 0)
    return params[0], None
