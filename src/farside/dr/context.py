"""What every step of a DR run works with: the run context (sessions, options, journal) and the
queries of the target pool that several steps share.

A step is a function of the context and its own journal data; the runner (``farside.dr.runner``)
calls the steps in order and journals each before and after it acts.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from farside.dr.plan import Options
from farside.dr.session import Session
from farside.errors import XenAPIFailure
from farside.storage.replication import LunReplication

# The journal is written at each step's start and end, and within a step at most this often:
# anything done since the last write is found again by uuid when a run is resumed.
SAVE_INTERVAL_S = 1.0
# The classes a test failover must leave as it found them (compared by uuid).
CHECKED_CLASSES = ("VM", "VM_appliance", "SR", "VDI", "VBD", "VIF", "network", "PBD", "DR_task")

# An event for a client's progress display: {"step", "state" (started, done, failed, paused,
# progress), "done" and "total" for steps that work through items}.
StepEvent = dict[str, Any]


class RunFailed(Exception):
    """A step could not go on; the reason is in the run's journal and report."""


class RunTakenOver(RunFailed):
    """Another engine holds the run's claim now: this one stops without writing anything more."""


@dataclass
class RunContext:
    """One run as the engine carries it out: ``s`` is the target pool (where the run's record
    lives and everything is recovered), ``source`` a session on the source pool when the operator
    can give one, ``journal`` the steps' state and data as saved in ``DR_run.steps``."""

    s: Session
    run_ref: str
    runner: str
    replication: LunReplication
    options: Options
    journal: dict[str, Any]
    source: Session | None = None
    on_step: Callable[[StepEvent], None] | None = None
    saved_at: float = 0.0
    # Why the claim was lost, once another engine took the run over: nothing more is written.
    lost: str = ""

    # -- the journal -----------------------------------------------------------------------------

    def save(self, force: bool = True) -> None:
        if not force and time.monotonic() - self.saved_at < SAVE_INTERVAL_S:
            return
        self.write(steps=json.dumps(self.journal, sort_keys=True))
        self.saved_at = time.monotonic()

    def write(self, **fields: str) -> None:
        """Save fields of the run as the claim's holder; the pool refuses once another holds it."""
        if self.lost:
            raise RunTakenOver(f"the run was taken over by another engine: {self.lost}")
        try:
            self.s.call("DR_run.save", self.run_ref, self.runner, fields)
        except XenAPIFailure as exc:
            if exc.failure[0] != "OPERATION_NOT_ALLOWED":
                raise
            self.lost = str(exc)
            raise RunTakenOver(f"the run was taken over by another engine: {exc}") from None

    def emit(self, step: str, state: str, **counts: int) -> None:
        if self.on_step is not None:
            self.on_step({"step": step, "state": state, **counts})

    def data(self, step: str) -> dict[str, Any]:
        """A step's journal data (what it found and did), made empty if the step never ran."""
        entry: dict[str, Any] = self.journal.setdefault(step, {"state": "pending", "data": {}})
        data: dict[str, Any] = entry["data"]
        return data

    def done(self, step: str) -> bool:
        return bool(self.journal.get(step, {}).get("state") == "done")

    # -- the target pool ---------------------------------------------------------------------

    def inventory(self) -> dict[str, list[str]]:
        """The uuids of each class a test failover must leave as it found them."""
        return {
            cls: sorted(r["uuid"] for r in self.s.call(f"{cls}.get_all_records").values()) for cls in CHECKED_CLASSES
        }

    def sr_by_uuid(self, uuid: str) -> str | None:
        try:
            return str(self.s.call("SR.get_by_uuid", uuid))
        except XenAPIFailure as exc:
            if exc.failure[0] == "UUID_INVALID":
                return None
            raise

    def selected_vms(self) -> list[dict[str, Any]]:
        """The VMs the run recovers: those selected on their own and the selected vApps' members."""
        loaded, chosen = self.data("load"), self.data("select")
        uuids = list(chosen["vms"])
        for app in chosen["vapps"]:
            uuids += loaded["vapps"][app]["members"]
        return [loaded["vms"][u] for u in uuids]

    def open_database(self, vdi: str) -> str:
        return str(self.s.call("VDI.open_database", vdi))

    def close_database(self, db: str) -> None:
        # Already gone (expired, or the server restarted): nothing to release.
        with contextlib.suppress(XenAPIFailure):
            self.s.call_as(db, "session.logout")

    @contextlib.contextmanager
    def databases(self) -> Iterator[Callable[[str], str]]:
        """Sessions on metadata VDIs, each opened at its first use and all closed at the end."""
        opened: dict[str, str] = {}

        def database(vdi: str) -> str:
            if vdi not in opened:
                opened[vdi] = self.open_database(vdi)
            return opened[vdi]

        try:
            yield database
        finally:
            for db in opened.values():
                self.close_database(db)
