"""Carrying a run out from this process: the engine runs here, over XML-RPC, against the DR_run
record in the target pool, through its pauses (the wizard asks; a script goes on), to its report,
and for a test failover to its cleanup."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rich.console import Console

from farside.cli.dr.connection import lost
from farside.cli.dr.failures import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from farside.cli.dr.options import Request
from farside.cli.dr.progress import StepDisplay
from farside.dr.context import RunFailed, StepEvent
from farside.dr.plan import TITLES_BY_KIND
from farside.dr.runner import Engine
from farside.dr.session import TRANSPORT_ERRORS, XmlRpcSession
from farside.errors import XenAPIFailure
from farside.mirror.adapter import MirrorReplication
from farside.storage.replication import LunReplication

# The flag that applies a pre-check's fix, for the hint after a scripted run fails.
FIX_FLAGS = {"confirm_split": "--confirm-split", "split_mirrors": "--split-mirrors"}


def _replication() -> LunReplication:
    """How the engine learns and changes the LUNs' replication: through ``farside mirror``'s
    markers; a LUN no mirror manages answers "unknown" (the operator confirms the split)."""
    return MirrorReplication()


class Questions(Protocol):
    """What the wizard asks at the run's turning points (wizard.Wizard); a script asks nothing."""

    def at_pause(self, ref: str, step: str) -> bool:
        """Show what the paused step found, take the operator's choices; False: cancel."""
        ...

    def fix(self, ref: str) -> bool:
        """After a failed step: offer its fixes; True when one was applied and the run goes on."""
        ...

    def before_cleanup(self) -> None:
        """A test failover is done: let the operator look before its cleanup."""
        ...


@dataclass
class Drive:
    """What carrying out a run needs: the sessions, and how to talk to the operator."""

    session: XmlRpcSession
    url: str
    out: Console
    err: Console
    source: XmlRpcSession | None = None
    interactive: bool = False
    json: bool = False
    # The command line's wishes, which the wizard shows pre-chosen (None: resuming a run).
    wishes: Request | None = None
    ask: Questions | None = None  # the wizard, on a terminal
    # The line naming a new run, said once the run gets somewhere: LUN paths with no SR on them
    # end the run in one line of their own, with nothing left behind to name.
    announce: str = ""
    replication: Callable[[], LunReplication] = field(default=_replication)

    def journal(self, ref: str) -> dict[str, Any]:
        steps: dict[str, Any] = json.loads(self.session.call("DR_run.get_steps", ref) or "{}")
        return steps

    def options(self, ref: str) -> dict[str, str]:
        options: dict[str, str] = self.session.call("DR_run.get_options", ref)
        return options

    def set_options(self, ref: str, **changes: str) -> None:
        self.session.call("DR_run.set_options", ref, {**self.options(ref), **changes})


def drive(d: Drive, ref: str) -> int:
    """Run the engine until the run ends; the exit code."""
    uuid = str(d.session.call("DR_run.get_uuid", ref))
    kind = str(d.session.call("DR_run.get_kind", ref))
    if d.out.is_terminal:
        _announce(d)  # before the bars take the terminal
    try:
        while True:
            display = StepDisplay(d.out if d.out.is_terminal else d.err, quiet=d.json)

            def on_step(e: StepEvent, display: StepDisplay = display) -> None:
                at_discover = e["step"] == "discover" and e["state"] in ("started", "failed")
                if not at_discover:
                    _announce(d)
                if d.out.is_terminal or not (at_discover and e["state"] == "failed"):
                    display.event(e)  # (a script's failed discover is said in _failed's one line)

            try:
                with display:
                    engine = Engine(d.session, ref, replication=d.replication(), source=d.source, on_step=on_step)
                    state = engine.run()
            except RunFailed as exc:
                if d.ask is not None and d.ask.fix(ref):
                    continue
                return _failed(d, ref, uuid, kind, str(exc))
            if state != "paused":
                break
            if d.ask is None:
                d.set_options(ref, pause_after="")  # nobody to show the pause to: go on
            elif not d.ask.at_pause(ref, display.paused_at or ""):
                return _cancel(d, ref, uuid)
        return _finish(d, ref, uuid, kind)
    except (KeyboardInterrupt, EOFError):
        d.err.print(
            f"\ninterrupted: the run {uuid} stopped where it was; go on with 'farside dr resume {uuid}', "
            f"or undo it with 'farside dr cleanup {uuid}'",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_INTERRUPTED
    except TRANSPORT_ERRORS as exc:
        # The pool (or the way to it) went away mid-run: the run is in its journal, resumable.
        d.err.print(
            f"farside: {lost(d.url, exc).message}: the run {uuid} stopped where it was; once the pool answers, "
            f"go on with 'farside dr resume {uuid}', or undo it with 'farside dr cleanup {uuid}'",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return EXIT_FAILED
    finally:
        _announce(d)  # the run stays: whatever ended the command, say which run it was


def _announce(d: Drive) -> None:
    if d.announce:
        d.err.print(d.announce, markup=False, highlight=False, soft_wrap=True)
        d.announce = ""


def _cancel(d: Drive, ref: str, uuid: str) -> int:
    """The operator said no before anything was recovered: let go of what the run attached."""
    _, message = clean_up(d.session, ref)
    d.err.print(f"cancelled: nothing was recovered. {message}", markup=False, highlight=False, soft_wrap=True)
    return EXIT_FAILED


def _report_json(d: Drive, ref: str, uuid: str, **extra: Any) -> dict[str, Any]:
    report: dict[str, Any] = json.loads(d.session.call("DR_run.get_report_json", ref) or "{}")
    return {**report, "run": uuid, "state": d.session.call("DR_run.get_state", ref), **extra}


def _print_report(d: Drive, ref: str) -> None:
    text = str(d.session.call("DR_run.get_report", ref))
    if d.out.is_terminal:
        d.out.rule("Report")
    d.out.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)


def _finish(d: Drive, ref: str, uuid: str, kind: str) -> int:
    if kind != "test":
        if d.json:
            d.out.print_json(json.dumps(_report_json(d, ref, uuid)))
        else:
            _print_report(d, ref)
        return EXIT_OK
    # A test failover ends with its cleanup, and shows whether the pool is as it was.
    if not d.json:
        _print_report(d, ref)
    if d.ask is not None:
        d.ask.before_cleanup()
    state, message = clean_up(d.session, ref)
    if d.json:
        d.out.print_json(json.dumps(_report_json(d, ref, uuid, cleanup={"state": state, "result": message})))
    else:
        d.out.print(message, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK if state == "cleaned up" else EXIT_FAILED


def _flags(text: str) -> str:
    """The engine's option names (``split_mirrors=true``) as the command line's flags."""
    for key, flag in FIX_FLAGS.items():
        text = text.replace(f"{key}=true", flag)
    return text


def _failed(d: Drive, ref: str, uuid: str, kind: str, reason: str) -> int:
    journal = d.journal(ref)
    step = next((name for name, entry in journal.items() if entry.get("state") == "failed"), "")
    why = reason.partition(": ")[2] or reason  # RunFailed says "step: why"
    if step == "discover" and not any(e.get("state") == "done" for e in journal.values()):
        return _nothing_found(d, ref, why)
    if step == "split" and kind == "test":
        return _not_on_a_target(d, ref, why)
    if d.json:
        d.out.print_json(json.dumps(_report_json(d, ref, uuid)))
    else:
        _print_report(d, ref)
    flags = []
    problems = journal.get("precheck", {}).get("data", {}).get("problems", []) if step == "precheck" else []
    for problem in problems:
        flags += [FIX_FLAGS.get(key, f"{key}={value}") for key, value in problem.get("options", {}).items()]
    if step == "split":
        flags.append("--split-mirrors")
    with_flags = f" {' '.join(sorted(set(flags)))}" if flags else ""
    d.err.print(
        f"farside: the {TITLES_BY_KIND[kind].lower()} failed at {step or 'a step'}: {_flags(why)}\n"
        f"fix that, then go on with 'farside dr resume {uuid}{with_flags}', "
        f"or let go of what the run attached with 'farside dr cleanup {uuid}'",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_FAILED


def _nothing_found(d: Drive, ref: str, why: str) -> int:
    """The LUN paths gave no SR: nothing was done, so the run is removed rather than left failed
    with a resume hint; the operator fixes the paths and starts again."""
    _remove(d, ref)
    # "SR_BACKEND_FAILURE_PATH the LUN path /x does not exist; ...": the code means nothing here.
    code, _, rest = why.partition(" ")
    # Its advice ("create the directory first") is for making an SR, not for finding one.
    detail = rest.partition("; ")[0] if code.isupper() and "_" in code else why
    d.err.print(
        f"farside: no SR to recover from: {detail} (check the paths given to --lun or --lun-dir: "
        "each a LUN directory, or a directory of LUNs; nothing was done)",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    return EXIT_USAGE


def _not_on_a_target(d: Drive, ref: str, why: str) -> int:
    """A test pointed at a LUN still replicated into: nothing was attached, and a resume could
    never plug it, so the run is removed and the operator starts again on a snapshot."""
    _remove(d, ref)
    d.err.print(f"farside: {why} (nothing was done)", markup=False, highlight=False, soft_wrap=True)
    return EXIT_USAGE


def _remove(d: Drive, ref: str) -> None:
    """Clean up a run that did nothing and destroy its record: there is nothing to resume."""
    state, _ = clean_up(d.session, ref)
    if state == "cleaned up":
        d.session.call("DR_run.destroy", ref)
        d.announce = ""  # the run is gone


def clean_up(session: XmlRpcSession, ref: str) -> tuple[str, str]:
    """DR_run.cleanup in the pool; the run's state after it and a sentence saying what it did."""
    kind = session.call("DR_run.get_kind", ref)
    try:
        session.call("DR_run.cleanup", ref)
    except XenAPIFailure as exc:
        if exc.failure[0] != "DR_RUN_FAILED":
            raise
    state = str(session.call("DR_run.get_state", ref))
    steps: dict[str, Any] = json.loads(session.call("DR_run.get_steps", ref) or "{}")
    entry = steps.get("cleanup", {})
    if state != "cleaned up":
        return state, f"Cleanup FAILED: {entry.get('error') or state}"
    if kind != "test":
        return state, "Cleanup: the run's DR tasks are destroyed; SRs in use stay"
    return state, "Cleanup: this pool is exactly as before the test (VMs, vApps, SRs, VDIs, networks compared by uuid)"
