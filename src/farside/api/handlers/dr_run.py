"""DR_run (a Farside extension): create a run, start it, resume it, clean it up; each as an Async task.

The engine (``farside.dr.engine``) runs here in the server, making its XenAPI calls in-process as
the caller's session; the CLI can run the same engine over HTTP against the same record.
"""

from __future__ import annotations

from farside.api.context import Context
from farside.api.local import LocalSession
from farside.api.registry import handles
from farside.dr.engine import Engine, RunFailed
from farside.dr.plan import TITLES_BY_KIND, Options
from farside.errors import InvalidValue, OperationNotAllowed, XenAPIFailure
from farside.model.types import now


@handles("DR_run.create")
def create(ctx: Context, kind: str, options: dict[str, str]) -> str:
    try:
        Options.parse(kind, options)
    except ValueError as exc:
        raise InvalidValue("options", str(exc)) from None
    with ctx.db.write() as tx:
        return tx.create(
            "DR_run",
            {"kind": kind, "options": options, "name_label": f"{TITLES_BY_KIND[kind]} {now()}", "created": now()},
        )


def _engine(ctx: Context, run: str, states: tuple[str, ...]) -> Engine:
    with ctx.db.read() as tx:
        state = tx.get_field("DR_run", tx.check("DR_run", run), "state")
    if state not in states:
        raise OperationNotAllowed(f"the run is {state}; this needs it to be {' or '.join(states)}")
    return Engine(LocalSession(ctx.services, ctx.caller.session), run, on_progress=ctx.progress)


def _go(engine: Engine, run: str) -> str:
    try:
        engine.run()
    except RunFailed as exc:
        raise XenAPIFailure("DR_RUN_FAILED", run, str(exc)) from None
    return ""


@handles("DR_run.start")
def start(ctx: Context, run: str) -> str:
    return _go(_engine(ctx, run, ("created",)), run)


@handles("DR_run.resume")
def resume(ctx: Context, run: str) -> str:
    return _go(_engine(ctx, run, ("running", "failed")), run)


@handles("DR_run.cleanup")
def cleanup(ctx: Context, run: str) -> str:
    engine = _engine(ctx, run, ("created", "running", "failed", "done", "cleanup failed"))
    try:
        engine.cleanup()
    except RunFailed as exc:
        raise XenAPIFailure("DR_RUN_FAILED", run, str(exc)) from None
    return ""
