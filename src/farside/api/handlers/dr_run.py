"""DR_run (a Farside extension): create a run, start it, resume it, clean it up; each as an Async task.

The engine (``farside.dr.runner``) runs here in the server, making its XenAPI calls in-process as
the caller's session; the CLI can run the same engine over HTTP against the same record. Either
way the engine claims the run first (``DR_run.claim``), so two engines never act on one run.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket

from farside.api.context import Context
from farside.api.local import LocalSession
from farside.api.registry import handles
from farside.db.transaction import Transaction
from farside.dr.context import RunFailed
from farside.dr.plan import RUN_STATES, TITLES_BY_KIND, Options
from farside.dr.runner import CLAIM_RENEW_S, Engine, reopened
from farside.dr.session import check_source_url
from farside.errors import InvalidValue, OperationNotAllowed, XenAPIFailure
from farside.mirror.adapter import MirrorReplication
from farside.model.types import format_datetime, now, parse_datetime
from farside.storage.roots import check_lun

# A claim unheard of for this long belongs to an engine that is gone.
CLAIM_STALE_S = 3 * CLAIM_RENEW_S
# What the engine writes as the run goes (DR_run.save).
SAVED_FIELDS = ("state", "steps", "report", "report_json", "finished")


def _lets_go(kind: str, state: str) -> bool:
    """Whether a run in this state no longer holds its LUNs: a failover or failback once done (its
    DR tasks are gone, the SRs are the pool's), any run once cleaned up. A failed run, or a test
    whose VMs and SRs are still here, keeps them until its cleanup."""
    return state == "cleaned up" or (state == "done" and kind != "test")


def _check(ctx: Context, kind: str, options: dict[str, str]) -> None:
    """INVALID_VALUE for options a run must not have: malformed ones, LUNs outside the pool's
    roots, a source_url that is not a pool server on a host the pool-admin allowed."""
    try:
        parsed = Options.parse(kind, options)
    except ValueError as exc:
        raise InvalidValue("options", str(exc)) from None
    roots = ctx.services.storage.lun_roots()
    for lun in parsed.luns:
        check_lun(lun, roots)
    if parsed.source_url:
        with ctx.db.read() as tx:
            allowed = tx.get_field("pool", ctx.services.pool, "allowed_source_hosts")
        check_source_url(parsed.source_url, allowed)


@handles("DR_run.create")
def create(ctx: Context, kind: str, options: dict[str, str]) -> str:
    _check(ctx, kind, options)
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
    # The LUNs' replication is asked of farside mirror (LUNs no mirror manages are "unknown").
    return Engine(
        LocalSession(ctx.services, ctx.caller.session), run, replication=MirrorReplication(), on_progress=ctx.progress
    )


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
    return _go(_engine(ctx, run, ("running", "paused", "failed")), run)


@handles("DR_run.cleanup")
def cleanup(ctx: Context, run: str) -> str:
    engine = _engine(ctx, run, ("created", "running", "paused", "failed", "done", "cleanup failed"))
    try:
        engine.cleanup()
    except RunFailed as exc:
        raise XenAPIFailure("DR_RUN_FAILED", run, str(exc)) from None
    return ""


@handles("DR_run.set_options")
def set_options(ctx: Context, run: str, value: dict[str, str]) -> str:
    """New options for a run that is stopped (created, paused, or failed before recovery); the
    steps that depend on what changed run again when it is resumed."""
    with ctx.db.read() as tx:
        kind = tx.get_field("DR_run", tx.check("DR_run", run), "kind")
    _check(ctx, kind, value)  # outside the write: it may ask the source_url's server
    with ctx.db.write() as tx:
        row = tx.check("DR_run", run)
        record = tx.get_record("DR_run", row)
        if record["state"] not in ("created", "paused", "failed") or record["runner"]:
            raise OperationNotAllowed(f"the run is {record['state']}; options change only while it is stopped")
        try:
            journal = reopened(json.loads(record["steps"] or "{}"), record["options"], value)
        except ValueError as exc:
            raise InvalidValue("options", str(exc)) from None
        tx.set_fields("DR_run", row, {"options": value, "steps": json.dumps(journal, sort_keys=True)})
    return ""


def _gone(runner: str, heartbeat: str) -> bool:
    """Whether the engine that holds a claim is gone: its process on this host has ended, or it
    has not renewed the claim for CLAIM_STALE_S."""
    host, _, rest = runner.partition(":")
    pid = rest.partition(":")[0]
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # alive, another user's
    age = (dt.datetime.now(dt.UTC) - parse_datetime(heartbeat)).total_seconds()
    return age > CLAIM_STALE_S


@handles("DR_run.claim")
def claim(ctx: Context, run: str, runner: str) -> str:
    """Take (or renew) the right to act on the run; refused while another live engine holds it."""
    if not runner:
        raise InvalidValue("runner", "an engine names itself (host:pid:nonce)")
    with ctx.db.write() as tx:
        row = tx.check("DR_run", run)
        record = tx.get_record("DR_run", row)
        holder = record["runner"]
        if holder and holder != runner and not _gone(holder, record["runner_heartbeat"]):
            raise OperationNotAllowed(
                f"the run is being carried out by {holder} (heard from at {record['runner_heartbeat']}); "
                "wait for it to finish, or for it to be gone"
            )
        tx.set_fields("DR_run", row, {"runner": runner, "runner_heartbeat": format_datetime(dt.datetime.now(dt.UTC))})
    return ""


@handles("DR_run.unclaim")
def unclaim(ctx: Context, run: str, runner: str) -> str:
    with ctx.db.write() as tx:
        row = tx.check("DR_run", run)
        if tx.get_field("DR_run", row, "runner") == runner:
            tx.set_fields("DR_run", row, {"runner": ""})
    return ""


@handles("DR_run.save")
def save(ctx: Context, run: str, runner: str, fields: dict[str, str]) -> str:
    """Write the run's journal, state or report, for the engine that holds the claim only: an
    engine that lost it (stalled past CLAIM_STALE_S, taken over) must not overwrite its successor's."""
    unknown = sorted(set(fields) - set(SAVED_FIELDS))
    if unknown:
        raise InvalidValue("fields", f"{', '.join(unknown)}: an engine saves only {', '.join(SAVED_FIELDS)}")
    if "state" in fields and fields["state"] not in RUN_STATES:
        raise InvalidValue("state", f"{fields['state']}: a run is one of {', '.join(RUN_STATES)}")
    for key in ("steps", "report_json"):
        if key in fields:
            try:
                json.loads(fields[key])
            except ValueError:
                raise InvalidValue(key, "not JSON") from None
    if "finished" in fields:
        try:
            parse_datetime(fields["finished"])
        except ValueError:
            why = f"{fields['finished']}: not a date in xapi's form (20260101T00:00:00Z)"
            raise InvalidValue("finished", why) from None
    with ctx.db.write() as tx:
        row = _held(tx, run, runner)
        values: dict[str, object] = dict(fields)
        if "state" in fields and _lets_go(tx.get_field("DR_run", row, "kind"), fields["state"]):
            values["luns"] = []  # in the same transaction as the state that ends the run
        tx.set_fields("DR_run", row, values)
    return ""


def _held(tx: Transaction, run: str, runner: str) -> str:
    """The run's row, if ``runner`` holds its claim."""
    row = tx.check("DR_run", run)
    holder = tx.get_field("DR_run", row, "runner")
    if holder != runner:
        raise OperationNotAllowed(
            f"the run is carried out by {holder or 'no engine'}, not {runner or 'an unnamed one'}: "
            "only the engine holding its claim (DR_run.claim) saves it"
        )
    return row


@handles("DR_run.claim_luns")
def claim_luns(ctx: Context, run: str, runner: str, luns: list[str]) -> str:
    """Hold ``luns`` for the run (its engine's claim needed): refused, naming the run that holds
    any of them, while another run that has not ended does. Checked and written in one transaction."""
    wanted = {lun for lun in luns if lun}
    with ctx.db.write() as tx:
        row = _held(tx, run, runner)
        for other, record in tx.select("DR_run", ("uuid", "kind", "state", "luns")).items():
            shared = sorted(wanted & set(record["luns"]))
            if other != row and shared and not _lets_go(record["kind"], record["state"]):
                raise OperationNotAllowed(
                    f"{', '.join(shared)} {'is' if len(shared) == 1 else 'are'} in use by the {record['kind']} run "
                    f"{record['uuid']} ({record['state']}): one run at a time on a LUN. Wait for it to end, or "
                    f"clean it up (farside dr cleanup {record['uuid']}, DR_run.cleanup)"
                )
        tx.set_fields("DR_run", row, {"luns": sorted(wanted)})
    return ""
