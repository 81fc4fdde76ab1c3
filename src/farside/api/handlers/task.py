"""task: created by Async calls or by clients, cancelled, and destroyed by their owners.

Any role reads any task (as in xapi); a result that carries a session ref is kept out of the
record and given back only to the owner (see ``api.tasks``).
"""

from __future__ import annotations

from typing import Any

from farside.api.context import Context
from farside.api.registry import handles
from farside.errors import OperationNotAllowed
from farside.model.roles import Role


@handles("task.create")
def create(ctx: Context, label: str, description: str) -> str:
    return ctx.services.tasks.create(ctx.caller.session, label, description)


@handles("task.cancel")
def cancel(ctx: Context, task: str) -> str:
    _check_owner(ctx, task)
    ctx.services.tasks.cancel(task)
    return ""


@handles("task.destroy")
def destroy(ctx: Context, task: str) -> str:
    _check_owner(ctx, task)
    with ctx.db.write() as tx:
        tx.destroy("task", task)
    ctx.services.tasks.forget(task)
    return ""


@handles("task.get_record")
def get_record(ctx: Context, task: str) -> dict[str, Any]:
    with ctx.db.read() as tx:
        record = ctx.records.record(tx, "task", tx.check("task", task))
    private = _private_result(ctx, task)
    if private is not None:
        record["result"] = private
    return record


@handles("task.get_result")
def get_result(ctx: Context, task: str) -> str:
    private = _private_result(ctx, task)
    if private is not None:
        return private
    with ctx.db.read() as tx:
        return str(tx.get_field("task", tx.check("task", task), "result"))


def _private_result(ctx: Context, task: str) -> str | None:
    """The task's kept-back result when the caller owns the task; None otherwise."""
    private = ctx.services.tasks.private_result(task)
    if private is None or not _owns(ctx, task):
        return None
    return private


def _set(ctx: Context, task: str, field: str, value: Any) -> str:
    _check_owner(ctx, task)
    with ctx.db.write() as tx:
        tx.set_fields("task", task, {field: value})
    return ""


@handles("task.set_status")
def set_status(ctx: Context, task: str, value: str) -> str:
    return _set(ctx, task, "status", value)


@handles("task.set_progress")
def set_progress(ctx: Context, task: str, value: float) -> str:
    return _set(ctx, task, "progress", min(max(value, 0.0), 1.0))


@handles("task.set_result")
def set_result(ctx: Context, task: str, value: str) -> str:
    return _set(ctx, task, "result", value)


@handles("task.set_error_info")
def set_error_info(ctx: Context, task: str, value: list[str]) -> str:
    return _set(ctx, task, "error_info", value)


def _owns(ctx: Context, task: str) -> bool:
    """Whether the caller's session owns the task, or the caller is a pool admin."""
    with ctx.db.read() as tx:
        owner = tx.get_field("task", tx.check("task", task), "session")
    return bool(owner == ctx.caller.session or ctx.caller.role.allows(Role.POOL_ADMIN))


def _check_owner(ctx: Context, task: str) -> None:
    """Only the session that owns a task, or a pool admin, may change it."""
    if not _owns(ctx, task):
        raise OperationNotAllowed(f"task {task} belongs to another session")
