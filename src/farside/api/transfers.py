"""The task of an HTTP transfer (``/export``, ``/import``, ``/export_raw_vdi``, ...), as xapi keeps one.

The client passes ``task_id`` (a task it made with ``task.create``), or the server makes one; the
task stays ``pending`` while bytes move, its ``progress`` rises with them (written at most once a
second), and it ends ``success`` (with the transfer's result) or ``failure`` (with the error the
client also gets), or ``cancelled`` when ``task.cancel`` stopped it. The task ref is sent back
in the ``Task-ID`` response header.
"""

from __future__ import annotations

import threading
import time

from farside.api.sessions import Caller
from farside.api.tasks import TaskManager
from farside.db import Database
from farside.errors import FarsideError, InternalError, OperationNotAllowed

PROGRESS_INTERVAL_S = 1.0
HEADER = "Task-ID"


class Transfer:
    """One transfer's task and progress."""

    def __init__(self, tasks: TaskManager, ref: str) -> None:
        self.ref = ref
        self._tasks = tasks
        self.total = 0
        self._done = 0
        self._written_at = 0.0
        self._lock = threading.Lock()
        self._ended = False

    @classmethod
    def begin(cls, db: Database, tasks: TaskManager, caller: Caller, given: str, label: str) -> Transfer:
        """The task ``given`` (which must exist and be pending), or a new one owned by ``caller``."""
        if given:
            with db.read() as tx:
                status = tx.get_field("task", tx.check("task", given), "status")
            if status != "pending":
                raise OperationNotAllowed(f"task {given} is {status}; a transfer reports through a pending task")
            return cls(tasks, given)
        return cls(tasks, tasks.create(caller.session, label))

    def add(self, n: int) -> None:
        """``n`` more bytes moved; stops with TASK_CANCELLED if the task was cancelled."""
        self._tasks.check_cancelled(self.ref)
        with self._lock:
            self._done += n
            now = time.monotonic()
            if self.total <= 0 or now - self._written_at < PROGRESS_INTERVAL_S:
                return
            self._written_at = now
            fraction = min(self._done / self.total, 0.99)
        self._tasks.set_progress(self.ref, fraction)

    def succeed(self, result: str = "") -> None:
        if not self._claim_end():
            return
        self._tasks.succeed(self.ref, result)

    def fail(self, exc: BaseException) -> None:
        if not self._claim_end():
            return
        error = exc if isinstance(exc, FarsideError) else InternalError("the transfer stopped: see the server log")
        self._tasks.fail(self.ref, error)

    def _claim_end(self) -> bool:
        with self._lock:
            ended, self._ended = self._ended, True
        return not ended
