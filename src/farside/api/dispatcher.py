"""From a decoded call to a result or a failure: the one place that checks every call.

Order of checks, as xapi does them: the message exists, the parameter count, the session, the
role, the parameter types; then the handler runs. Every FarsideError becomes its failure; any
other exception is a bug, logged with its traceback and answered with INTERNAL_ERROR.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import anyio.to_thread

from farside.api import implicit, refusal, system
from farside.api.context import Context, Services
from farside.api.registry import FOREIGN_DB_MESSAGES, HANDLERS
from farside.api.sessions import Caller
from farside.errors import (
    FarsideError,
    InternalError,
    MessageMethodUnknown,
    MessageParameterCountMismatch,
    RbacPermissionDenied,
)
from farside.model.messages import Signature, lookup
from farside.model.refusals import Refusal
from farside.model.refusals import refusal as refusal_of
from farside.model.roles import Role
from farside.model.types import XType, parse

log = logging.getLogger(__name__)

LOGIN = "session.login_with_password"
LOGIN_REQUIRED = 2  # uname and pwd; version and originator have defaults (xapi counts these two)
ASYNC = "Async."
_TASK_REF = parse("task ref")


@dataclass(frozen=True)
class Outcome:
    """A call's result with its type (for encoding), or its failure."""

    value: Any = None
    result_type: XType | None = None
    failure: list[str] | None = None
    bare: bool = False  # XML-RPC: the value alone, no Status struct (system.listMethods)


class Dispatcher:
    def __init__(self, services: Services) -> None:
        self.services = services

    async def call(self, method: str, params: list[Any]) -> Outcome:
        try:
            return await self._call(method, params)
        except FarsideError as exc:
            return Outcome(failure=exc.failure)
        except Exception:
            log.exception("bug while answering %s", method)
            return Outcome(failure=InternalError("unexpected error; see the server log").failure)

    async def _call(self, method: str, params: list[Any]) -> Outcome:
        if system.answers(method):
            value, result_type = system.call(method, params)
            return Outcome(value, result_type, bare=method == system.LIST_METHODS)
        asynchronous = method.startswith(ASYNC)
        name = method[len(ASYNC) :] if asynchronous else method
        sig = lookup(name)
        if sig is None and (refused := refusal_of(name)) is not None:
            self._refuse(method, refused, params)
        if sig is None or (asynchronous and not sig.asynchronous):
            raise MessageMethodUnknown(method)
        if sig.wire_name == LOGIN:
            return await self._login(sig, params)
        if len(params) != len(sig.params) + 1:
            # xapi counts the parameters after the session, on both sides (gen_server.ml).
            raise MessageParameterCountMismatch(method, len(sig.params), len(params) - 1)
        caller = self._authorise(method, params[0], sig.role, _reads_only(sig))
        args = [xtype.check(value, pname) for (pname, xtype), value in zip(sig.params, params[1:], strict=True)]
        run = _runner(sig)
        if asynchronous:
            tasks = self.services.tasks

            def work(task: str) -> Any:
                return _sync(run, Context(self.services, caller, task), args)

            ref = tasks.submit(caller.session, method, work, sig.result)
            return Outcome(ref, _TASK_REF)
        ctx = Context(self.services, caller)
        if inspect.iscoroutinefunction(run):
            value = await run(ctx, *args)
        else:
            value = await anyio.to_thread.run_sync(_sync, run, ctx, args)
        return Outcome(value, sig.result)

    def _authorise(self, method: str, session: Any, role: Role | None, reads_only: bool) -> Caller:
        """The caller of ``session``, if it may call ``method`` (which needs ``role``)."""
        caller = self.services.sessions.validate(session)
        if caller.database is not None and not reads_only:
            raise RbacPermissionDenied(
                method, "This session reads a foreign pool's metadata; it cannot change anything."
            )
        if role is not None and not caller.role.allows(role):
            raise RbacPermissionDenied(
                method,
                f"No permission in the user role: {caller.user_name} is {caller.role.wire}, "
                f"and {method} needs {role.wire} or a stronger role",
            )
        return caller

    def _refuse(self, method: str, refused: Refusal, params: list[Any]) -> NoReturn:
        """A refused message (sync or Async) answers its error after xapi's count, session and role checks."""
        given = len(params) - (0 if refused.sessionless else 1)
        if given != refused.arity:  # counted after the session, as xapi counts (gen_server.ml)
            raise MessageParameterCountMismatch(method, refused.arity, given)
        if refused.sessionless:
            raise refusal.failure(self.services.db, refused, params)
        self._authorise(method, params[0], refused.role, False)
        raise refusal.failure(self.services.db, refused, params[1:])

    async def _login(self, sig: Signature, params: list[Any]) -> Outcome:
        # xapi gives version and originator defaults, so old clients send two or three params.
        if not LOGIN_REQUIRED <= len(params) <= len(sig.params):
            raise MessageParameterCountMismatch(LOGIN, LOGIN_REQUIRED, len(params))
        args = [xtype.check(value, pname) for (pname, xtype), value in zip(sig.params, params, strict=False)]
        uname, password = args[0], args[1]
        originator = args[3] if len(args) > 3 else ""
        ref = await self.services.sessions.login(uname, password, originator)
        return Outcome(ref, sig.result)


_READ_KINDS = frozenset(
    {"get_all", "get_all_records", "get_all_records_where", "get_record", "get_by_uuid", "get_by_name_label", "get"}
)


def _reads_only(sig: Signature) -> bool:
    return sig.kind in _READ_KINDS or sig.wire_name in FOREIGN_DB_MESSAGES


def _runner(sig: Signature) -> Callable[..., Any]:
    handler = HANDLERS.get(sig.wire_name)
    if handler is not None:
        return handler
    if sig.kind == "explicit":
        raise InternalError(f"{sig.wire_name} is declared but has no handler")

    def generic(ctx: Context, *args: Any) -> Any:
        return implicit.call(ctx, sig, list(args))

    return generic


def _sync(run: Callable[..., Any], ctx: Context, args: list[Any]) -> Any:
    result = run(ctx, *args)
    if inspect.iscoroutine(result):
        result.close()
        raise InternalError("an asynchronous handler cannot run as a task")
    return result
