"""The DR wizard as a library (xenapi-dr.md §5, improved), written against XenAPI alone: the runner
carries a run's steps (``farside.dr.steps``) out in order, from its ``DR_run`` record.

Every step is journaled in the run's record before and after it acts, and each step reconciles by
uuid before it does anything, so a run that was interrupted at any point is resumed (``run``
again) without doing anything twice, and a test failover can always be cleaned up. The runner
holds the run's claim (``DR_run.claim``) while it acts, so two engines never act on one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from farside.dr.context import RunContext, RunFailed, RunTakenOver, StepEvent
from farside.dr.plan import STEPS, Options
from farside.dr.session import TRANSPORT_ERRORS, Session
from farside.dr.steps import (
    attach,
    choose,
    claim,
    cleanup,
    discover,
    fence,
    load,
    precheck,
    protect,
    recover,
    release,
    report,
    select,
    split,
    start,
)
from farside.errors import FarsideError, XenAPIFailure
from farside.model.types import now
from farside.storage.replication import LunReplication, NullReplication

# What each step's outcome depends on among the options: changing them while the run is paused
# (DR_run.set_options) makes these steps run again; nothing before recover has changed the pool.
REDONE_BY = {
    "source_pool": ("choose", "load", "select", "precheck"),
    "split_mirrors": ("split", "select", "precheck"),
    # The proof of fencing is weighed again, and the pre-checks hold a declared name to the metadata.
    "declare_site_down": ("fence", "select", "precheck"),
    "source_url": ("fence", "select", "precheck"),
    "pause_after": (),
}
REDONE_BY_DEFAULT = ("select", "precheck")
# A claim not renewed for this long is taken over (its engine is gone without a word).
CLAIM_RENEW_S = 10.0

Step = Callable[[RunContext, dict[str, Any]], None]
# Each step's action, by the name STEPS gives it the order of.
ACTIONS: dict[str, Step] = {
    "discover": discover.run,
    "fence": fence.run,
    "claim": claim.run,
    "split": split.run,
    "attach": attach.run,
    "choose": choose.run,
    "load": load.run,
    "select": select.run,
    "precheck": precheck.run,
    "recover": recover.run,
    "start": start.run,
    "protect": protect.run,
    "release": release.run,
    "report": report.run,
}


def runner_id() -> str:
    """Who runs an engine: host and process, so that a claim of a dead engine on this host is
    recognised as stale at once (the pool server checks, DR_run.claim)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def reopened(journal: dict[str, Any], old: dict[str, str], new: dict[str, str]) -> dict[str, Any]:
    """The journal after a run's options change from ``old`` to ``new`` while it is stopped: the
    steps whose outcome depends on a changed option are dropped, to run again on resume.

    Raises ValueError when the change comes too late: the LUNs once discovery has run, anything
    once recovery has begun (the pool has changed by then)."""
    changed = {k for k in set(old) | set(new) if old.get(k, "") != new.get(k, "")}
    if "recover" in journal and changed - {"pause_after"}:
        raise ValueError("recovery has begun: the options can no longer change")
    if "luns" in changed and "discover" in journal:
        raise ValueError("the LUNs were discovered already: create a new run for other LUNs")
    dropped = {step for key in changed for step in REDONE_BY.get(key, REDONE_BY_DEFAULT)}
    return {name: entry for name, entry in journal.items() if name not in dropped}


class Engine:
    """Carries out one DR run: ``run`` up to its end or next pause, ``cleanup`` afterwards."""

    def __init__(
        self,
        session: Session,
        run: str,
        replication: LunReplication | None = None,
        on_progress: Callable[[float], None] | None = None,
        source: Session | None = None,
        on_step: Callable[[StepEvent], None] | None = None,
    ) -> None:
        record = session.call("DR_run.get_record", run)
        # ``source``: a session on the source pool, when the operator can give one: the run then
        # asks it whether the VMs still run there.
        self.ctx = RunContext(
            s=session,
            run_ref=run,
            runner=runner_id(),
            replication=replication or NullReplication(),
            options=Options.parse(record["kind"], record["options"]),
            journal=json.loads(record["steps"] or "{}"),
            source=source,
            on_step=on_step,
        )
        self._on_progress = on_progress

    @property
    def journal(self) -> dict[str, Any]:
        return self.ctx.journal

    @property
    def runner(self) -> str:
        return self.ctx.runner

    @runner.setter
    def runner(self, value: str) -> None:
        self.ctx.runner = value

    def run(self) -> str:
        """Carry out the steps not yet done, up to the end or the next pause; the run's state after.

        On failure the run is marked failed, with its report, and RunFailed is raised."""
        with self._claimed():
            self._reload(("created", "running", "paused", "failed"))
            return self._run()

    def cleanup(self) -> None:
        """Let go of what the run attached (and, for a test, of all it recovered): steps.cleanup."""
        with self._claimed():
            self._reload(("created", "running", "paused", "failed", "done", "cleanup failed"))
            cleanup.run(self.ctx)

    @contextlib.contextmanager
    def _claimed(self) -> Iterator[None]:
        """Hold the run's claim while acting on it, so that two engines never run it at once."""
        ctx = self.ctx
        ctx.s.call("DR_run.claim", ctx.run_ref, ctx.runner)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(CLAIM_RENEW_S):
                try:
                    ctx.s.call("DR_run.claim", ctx.run_ref, ctx.runner)
                except XenAPIFailure as exc:
                    if exc.failure[0] == "OPERATION_NOT_ALLOWED":
                        ctx.lost = str(exc)  # another engine took the run over
                        return
                except OSError:
                    pass

        keeper = threading.Thread(target=renew, name="dr-claim", daemon=True)
        keeper.start()
        try:
            yield
        finally:
            stop.set()
            keeper.join()
            # Best effort: a claim left behind is taken over once stale (or at once on this host).
            with contextlib.suppress(XenAPIFailure, *TRANSPORT_ERRORS):
                ctx.s.call("DR_run.unclaim", ctx.run_ref, ctx.runner)

    def _reload(self, states: tuple[str, ...]) -> None:
        """Options and journal as they are now that the run is ours: set_options or another
        engine may have changed them between this engine's construction and its claim."""
        record = self.ctx.s.call("DR_run.get_record", self.ctx.run_ref)
        if record["state"] not in states:
            raise XenAPIFailure("OPERATION_NOT_ALLOWED", f"the run is {record['state']}")
        self.ctx.options = Options.parse(record["kind"], record["options"])
        self.ctx.journal = json.loads(record["steps"] or "{}")

    def _run(self) -> str:
        ctx = self.ctx
        ctx.write(state="running")
        try:
            for name in STEPS:
                self._step(name, ACTIONS[name])
                entry = ctx.journal[name]
                if name in ctx.options.pause_after and not entry.get("paused"):
                    entry["paused"] = True  # paused once: a resume goes on past it
                    ctx.save()
                    ctx.write(state="paused")
                    ctx.emit(name, "paused")
                    return "paused"
        except RunTakenOver:
            raise
        except RunFailed:
            report.write(ctx, "failed")
            ctx.write(state="failed")
            raise
        ctx.write(state="done")
        return "done"

    def _step(self, name: str, action: Step) -> None:
        ctx = self.ctx
        if ctx.done(name):
            return
        entry = ctx.journal.setdefault(name, {"state": "pending", "data": {}})
        entry.update(state="started", started=now(), clock=time.time())
        entry.pop("error", None)
        ctx.save()
        ctx.emit(name, "started")
        try:
            action(ctx, entry["data"])
        # FarsideError, not only XenAPIFailure: the storage adapter raises Farside's own errors
        # (MirrorReplication.split: OperationNotAllowed, MirrorUnknown, ...), which must fail the
        # step, not escape the engine with the run left "running".
        except RunTakenOver:
            raise  # nothing more is ours to write
        except (FarsideError, RunFailed, OSError, ValueError) as exc:
            entry.update(state="failed", error=str(exc))
            ctx.save()
            ctx.emit(name, "failed")
            raise RunFailed(f"{name}: {exc}") from exc
        entry.update(state="done", finished=now(), seconds=round(time.time() - entry.pop("clock"), 3))
        ctx.save()
        ctx.emit(name, "done")
        if self._on_progress is not None and name in STEPS:
            self._on_progress((STEPS.index(name) + 1) / len(STEPS))
