"""The ``farside dr`` commands: failover, failback, test (the wizard, or a script), and runs,
report, resume, cleanup on the DR_run records of the target pool."""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import sys
import xmlrpc.client
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.prompt import Prompt

from farside.cli.dr import connection, options
from farside.cli.dr.driver import Drive, _cancel, clean_up, drive
from farside.cli.dr.failures import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, DrCliError, failed, usage
from farside.cli.dr.tables import age, show, when
from farside.cli.dr.wizard import Wizard
from farside.dr.plan import STEPS, TITLES_BY_KIND
from farside.dr.session import XmlRpcSession
from farside.errors import FarsideError, XenAPIFailure

Command = Callable[[argparse.Namespace], int]
# Where a run can be taken up again by ``resume``.
RESUMABLE = ("created", "running", "paused", "failed")


def guarded(command: Command) -> Command:
    """Every way a command can fail becomes one line on stderr and an exit code; no traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except DrCliError as exc:
            print(f"farside: {exc.message}", file=sys.stderr)
            return exc.exit_code
        except FarsideError as exc:  # a XenAPI failure the command did not expect
            print(f"farside: the pool refused: {exc.describe()}", file=sys.stderr)
            return EXIT_FAILED
        except (KeyboardInterrupt, EOFError):
            print("\nfarside: interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (OSError, http.client.HTTPException, xmlrpc.client.Error) as exc:
            print(f"farside: {connection.lost(getattr(args, 'server', '') or 'the server', exc).message}",
                  file=sys.stderr)  # fmt: skip
            return EXIT_FAILED

    return run


def _consoles() -> tuple[Console, Console]:
    return Console(highlight=False), Console(stderr=True, highlight=False)


def _interactive(args: argparse.Namespace, out: Console) -> bool:
    return sys.stdin.isatty() and out.is_terminal and not args.yes and not args.json


@contextlib.contextmanager
def _logged_in(endpoint: connection.Endpoint) -> Iterator[XmlRpcSession]:
    session = connection.connect(endpoint)
    try:
        yield session
    finally:
        _logout(session)


def _logout(session: XmlRpcSession) -> None:
    with contextlib.suppress(Exception):  # the session expires on its own anyway
        session.logout()


def _source_session(
    stack: contextlib.ExitStack, endpoint: connection.Endpoint | None, err: Console
) -> XmlRpcSession | None:
    session = connection.connect_source(endpoint, err) if endpoint else None
    if session is not None:
        stack.callback(_logout, session)
    return session


def start(kind: str) -> Command:
    """``farside dr failover|failback|test``."""

    def run(args: argparse.Namespace) -> int:
        out, err = _consoles()
        interactive = _interactive(args, out)
        wishes = options.request(args, kind)
        if not interactive:
            options.require_scripted(wishes)
        elif not wishes.luns:
            answer = Prompt.ask("LUN directories, or directories of LUNs (separated by spaces)", console=out)
            args.lun = answer.split()
            wishes = options.request(args, kind)
            options.require_scripted(options.Request(**{**wishes.__dict__, "all": True}))
        target = connection.target(args, interactive)
        source = connection.source(args, interactive)
        if kind == "failback" and source is None and not wishes.declare_site_down:
            # The pool failed back from is up by definition: without asking it, VMs still running
            # there would be started here too, two copies writing the same disks.
            raise usage(
                "a failback needs the pool it fails back from: give --source-server URL (the DR site's "
                "pool; its password with --source-password-file or $FARSIDE_SOURCE_PASSWORD), so that VMs "
                "still running there are found before anything starts here (or, if that site is lost, "
                "--declare-site-down NAME)"
            )
        with contextlib.ExitStack() as stack:
            session = stack.enter_context(_logged_in(target))
            source_session = _source_session(stack, source, err)
            if kind == "failback" and source_session is None and not wishes.declare_site_down:
                raise usage(
                    f"the pool failed back from ({source.url if source else '?'}) does not answer: a failback "
                    "needs it, to refuse VMs still running there; start it, or, if that site is lost, declare it "
                    "down with --declare-site-down NAME"
                )
            run_options = options.run_options(wishes, source.url if source else "", pause=interactive)
            try:
                ref = str(session.call("DR_run.create", kind, run_options))
            except XenAPIFailure as exc:
                if exc.failure[0] == "INVALID_VALUE":
                    raise usage(exc.failure[-1]) from None
                raise
            uuid = session.call("DR_run.get_uuid", ref)
            d = Drive(session, target.url, out, err, source_session, interactive, args.json, wishes)
            d.announce = f"{TITLES_BY_KIND[kind]} run {uuid} on {target.url}"
            if interactive:
                d.ask = Wizard(d)
            return drive(d, ref)

    return guarded(run)


def find_run(session: XmlRpcSession, text: str, url: str) -> tuple[str, dict[str, Any]]:
    """The run a uuid, or a unique beginning of one, names."""
    records: dict[str, dict[str, Any]] = session.call("DR_run.get_all_records")
    found = [(ref, r) for ref, r in records.items() if r["uuid"].startswith(text.strip().lower())]
    if not text.strip() or not found:
        raise usage(f"no DR run {text!r} at {url}: 'farside dr runs' lists them")
    if len(found) > 1:
        raise usage(f"{text!r} begins {len(found)} runs' uuids: give more of it ('farside dr runs' lists them)")
    return found[0]


def _report_json(record: dict[str, Any]) -> dict[str, Any]:
    try:
        report: dict[str, Any] = json.loads(record.get("report_json") or "{}")
    except ValueError:
        return {}
    return report


@guarded
def runs(args: argparse.Namespace) -> int:
    out, _ = _consoles()
    with _logged_in(connection.target(args, False)) as session:
        records: dict[str, dict[str, Any]] = session.call("DR_run.get_all_records")
    listed = sorted(records.values(), key=lambda r: when(r["created"]))
    if args.json:
        keys = ("uuid", "kind", "state", "runner", "options")
        rows_json = [
            {**{k: r[k] for k in keys}, "created": when(r["created"]), "finished": when(r["finished"]), **_summary(r)}
            for r in listed
        ]
        out.print_json(json.dumps(rows_json))
        return EXIT_OK
    rows = []
    for r in listed:
        summary = _summary(r)
        seconds = summary["total_seconds"]
        rows.append((
            r["uuid"], r["kind"], r["state"] + (" (engine at work)" if r["runner"] else ""), when(r["created"]),
            when(r["finished"]),
            f"{seconds:.1f}" if seconds is not None else "", age(summary["metadata_age_seconds"])
            if summary["metadata_age_seconds"] is not None else "",
        ))  # fmt: skip
    if not rows:
        out.print("No DR runs in this pool.")
        return EXIT_OK
    show(out, "", ["uuid", "kind", "state", "created", "finished", "seconds", "metadata age"], rows)
    return EXIT_OK


def _summary(record: dict[str, Any]) -> dict[str, Any]:
    """A run's total time and the age of the oldest metadata it used, from its report."""
    report = _report_json(record)
    ages = [a for a in report.get("metadata_age_seconds", {}).values() if a is not None]
    return {"total_seconds": report.get("total_seconds"), "metadata_age_seconds": max(ages) if ages else None}


@guarded
def report(args: argparse.Namespace) -> int:
    out, _ = _consoles()
    with _logged_in(connection.target(args, False)) as session:
        _, record = find_run(session, args.run_id, session.url)
    if args.json:
        out.print_json(json.dumps({**_report_json(record), "run": record["uuid"], "state": record["state"]}))
        return EXIT_OK
    if not record["report"]:
        raise failed(
            f"the run {record['uuid']} is {record['state']} and has no report yet: one is written when it ends"
        )
    out.print(record["report"].rstrip("\n"), markup=False, highlight=False, soft_wrap=True)
    out.print(f"State: {record['state']}", markup=False, highlight=False)
    return EXIT_OK


@guarded
def resume(args: argparse.Namespace) -> int:
    out, err = _consoles()
    interactive = _interactive(args, out)
    target = connection.target(args, interactive)
    source = connection.source(args, interactive)
    with contextlib.ExitStack() as stack:
        session = stack.enter_context(_logged_in(target))
        source_session = _source_session(stack, source, err)
        ref, record = find_run(session, args.run_id, target.url)
        if record["state"] not in RESUMABLE:
            hint = " ('farside dr cleanup' undoes a test failover)" if record["state"] == "done" else ""
            raise usage(f"the run {record['uuid']} is {record['state']}: there is nothing to resume{hint}")
        fixes = {"confirm_split": args.confirm_split, "split_mirrors": args.split_mirrors}
        d = Drive(session, target.url, out, err, source_session, interactive, args.json)
        changes = {key: "true" for key, given in fixes.items() if given and record["options"].get(key) != "true"}
        declared = (args.declare_site_down or "").strip()
        if declared and record["options"].get("declare_site_down") != declared:
            changes["declare_site_down"] = declared
        if changes:
            try:
                d.set_options(ref, **changes)
            except XenAPIFailure as exc:
                raise failed(f"cannot change the run's options now: {exc.failure[-1]}") from None
        if interactive:
            d.ask = Wizard(d)
        err.print(f"Resuming {record['kind']} run {record['uuid']} ({record['state']})", markup=False, soft_wrap=True)
        if d.ask is not None and record["state"] == "paused":
            # The run stopped at a question nobody answered (the wizard died or was ^C'd there):
            # ask it again before the engine goes past it, never take silence for a yes.
            journal = d.journal(ref)
            paused_at = [name for name in STEPS if journal.get(name, {}).get("paused")]
            if paused_at and not d.ask.at_pause(ref, paused_at[-1]):
                return _cancel(d, ref, str(record["uuid"]))
        return drive(d, ref)


@guarded
def cleanup(args: argparse.Namespace) -> int:
    out, _ = _consoles()
    with _logged_in(connection.target(args, False)) as session:
        ref, record = find_run(session, args.run_id, session.url)
        if record["state"] == "cleaned up":
            out.print(f"The run {record['uuid']} is cleaned up already.", markup=False, soft_wrap=True)
            return EXIT_OK
        state, message = clean_up(session, ref)
    out.print(message, markup=False, highlight=False, soft_wrap=True)
    return EXIT_OK if state == "cleaned up" else EXIT_FAILED
