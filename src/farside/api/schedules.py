"""Running snapshot schedules (VMSS): the pool server's scheduler, as xapi's (xapi_vmss.ml).

A thread wakes every ``interval`` seconds and runs each enabled schedule whose latest due instant
(model/vmss_rules.py) is after its ``last_run_time``: it snapshots (or checkpoints) each of its
VMs, deletes the oldest of the schedule's snapshots of that VM beyond ``retained_snapshots``, sets
``last_run_time`` and raises VMSS_SNAPSHOT_SUCCEEDED, or VMSS_SNAPSHOT_FAILED naming the VMs that
failed. A due instant that passed while the server was down runs once when it is back, and says
so first (VMSS_SNAPSHOT_MISSED_EVENT): several missed instants make one run, not a burst.

The clock is a function, so tests can give the server a fake one (config.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from farside.api.messages import PRIORITY_INFO, PRIORITY_MINOR, PRIORITY_WARNING, MessageService
from farside.api.snapshots import SnapshotService
from farside.db import Database
from farside.errors import FarsideError
from farside.model.types import format_datetime, parse_datetime
from farside.model.vmss_rules import latest_due

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Scheduler:
    def __init__(self, db: Database, snapshots: SnapshotService, messages: MessageService, clock: Clock,
                 interval_s: float) -> None:  # fmt: skip
        self._db = db
        self._snapshots = snapshots
        self._messages = messages
        self._clock = clock
        self._interval = interval_s
        self._started = datetime.fromtimestamp(clock(), UTC)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one run of a schedule at a time (the thread, snapshot_now)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self._clock(), UTC)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="vmss-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.run_due()
            except Exception:
                log.exception("the snapshot scheduler failed")

    def run_due(self) -> None:
        """Run every enabled schedule that is due now."""
        now = self.now()
        with self._db.read() as tx:
            schedules = tx.get_records("VMSS")
        for ref, vmss in schedules.items():
            if not vmss["enabled"] or not vmss["VMs"]:
                continue
            due = latest_due(vmss["frequency"], vmss["schedule"], now)
            if parse_datetime(vmss["last_run_time"]) >= due:
                continue
            if due < self._started:
                body = (
                    f"The run of snapshot schedule {vmss['name_label']!r} due at {format_datetime(due)} was "
                    f"missed (the pool server was down); it runs once now, at {format_datetime(now)}."
                )
                self._raise(vmss, "VMSS_SNAPSHOT_MISSED_EVENT", PRIORITY_MINOR, body)
            self.run(ref)

    def run(self, vmss: str) -> list[str]:
        """Run the schedule now (snapshot_now, or when due); the uuids of the snapshots taken."""
        with self._lock:
            now = self.now()
            with self._db.read() as tx:
                record = tx.get_record("VMSS", tx.check("VMSS", vmss))
                vms = {vm: tx.get_record("VM", vm) for vm in record["VMs"]}
            taken, failed = [], []
            for vm, v in vms.items():
                name = f"{v['name_label']}-{format_datetime(now)}"
                try:
                    if record["type"] == "checkpoint" and v["power_state"] in ("Running", "Paused"):
                        snap = self._snapshots.checkpoint(vm, name, vmss=vmss, taken_at=format_datetime(now))
                    else:
                        snap = self._snapshots.snapshot(vm, name, [], vmss=vmss, taken_at=format_datetime(now))
                    with self._db.read() as tx:
                        taken.append(tx.get_field("VM", snap, "uuid"))
                    self._prune(vm, record["retained_snapshots"])
                except FarsideError as exc:
                    log.warning("VMSS %s: VM %s not snapshotted: %s", record["uuid"], v["uuid"], exc.describe())
                    failed.append(f"{v['name_label']} ({v['uuid']}): {exc.describe()}")
            with self._db.write() as tx:
                if tx.exists("VMSS", vmss):
                    tx.set_fields("VMSS", vmss, {"last_run_time": format_datetime(now)})
            if failed:
                self._raise(record, "VMSS_SNAPSHOT_FAILED", PRIORITY_WARNING,
                            f"Snapshot schedule {record['name_label']!r} failed for: {'; '.join(failed)}")  # fmt: skip
            else:
                self._raise(record, "VMSS_SNAPSHOT_SUCCEEDED", PRIORITY_INFO,
                            f"Snapshot schedule {record['name_label']!r} took {len(taken)} snapshot(s).")  # fmt: skip
            return taken

    def _prune(self, vm: str, keep: int) -> None:
        """Delete the VM's oldest schedule snapshots beyond ``keep``, with their disks (by the
        time the scheduler stamped them; its clock is the one that decides what is due)."""
        with self._db.read() as tx:
            ours = [
                (tx.get_field("VM", s, "snapshot_time"), s)
                for s in tx.get_field("VM", vm, "snapshots")
                if tx.get_field("VM", s, "is_vmss_snapshot")
            ]
        for _, snap in sorted(ours)[: max(len(ours) - keep, 0)]:
            self._snapshots.uninstall(snap)

    def _raise(self, vmss: dict[str, object], name: str, priority: int, body: str) -> None:
        try:
            self._messages.raise_(name, priority, "VMSS", str(vmss["uuid"]), body)
        except FarsideError as exc:
            log.error("cannot raise %s: %s", name, exc.describe())


__all__ = ["Scheduler"]
