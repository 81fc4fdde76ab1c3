"""Tasks: ``Async.<Class>.<message>`` calls run in the background and report through a task object.

The task's ``result`` is the XML-RPC encoding of the message's result (``<value>...</value>``), as
xapi stores it; ``error_info`` is the failure's ErrorDescription.

Every role sees every task, as in xapi, so a result that carries a session ref (``Async.VDI.
open_database``) is a credential and is not stored in the record: the record's ``result`` stays
empty and only the owning session (or a pool admin) gets it from ``task.get_result`` and
``task.get_record``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from farside.api import xmlrpc
from farside.db import Database
from farside.errors import FarsideError, InternalError, OperationNotAllowed, TaskCancelled
from farside.model.types import XType, now

log = logging.getLogger(__name__)
# Tasks mostly wait (on QEMU, disks, delays); threads are cheap next to that.
_WORKERS = 64


class TaskManager:
    """Creates task objects, runs their work on a thread pool and records the outcome."""

    def __init__(self, db: Database, host_ref: str) -> None:
        self._db = db
        self._host = host_ref
        self._pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="task")
        self._cancel_requested: set[str] = set()
        self._private: dict[str, str] = {}
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._lock = threading.Lock()

    def create(self, session: str, label: str, description: str = "") -> str:
        """A pending task owned by ``session`` (``task.create``, and the start of every Async call)."""
        with self._db.write() as tx:
            return tx.create(
                "task",
                {
                    "name_label": label,
                    "name_description": description,
                    "status": "pending",
                    "created": now(),
                    "resident_on": self._host,
                    "allowed_operations": ["cancel"],
                    "session": session,
                },
            )

    def submit(self, session: str, label: str, work: Callable[[str], Any], result_type: XType) -> str:
        """Run ``work(task_ref)`` in the background; returns the task ref at once."""
        ref = self.create(session, label)
        self._pool.submit(self._run, ref, work, result_type)
        return ref

    def _run(self, ref: str, work: Callable[[str], Any], result_type: XType) -> None:
        try:
            self.check_cancelled(ref)
            value = work(ref)
            encoded = _encode(result_type, value)
            if "session ref" in result_type.spelling:
                with self._lock:
                    self._private[ref] = encoded
                encoded = ""
            self._finish(ref, "success", result=encoded)
        except TaskCancelled:
            self._finish(ref, "cancelled", error=TaskCancelled(ref).failure)
        except FarsideError as exc:
            self._finish(ref, "failure", error=exc.failure)
        except Exception:
            log.exception("task %s failed with a bug", ref)
            self._finish(ref, "failure", error=InternalError("unexpected error; see the server log").failure)

    def _finish(self, ref: str, status: str, result: str = "", error: list[str] | None = None) -> None:
        with self._lock:
            self._cancel_requested.discard(ref)
        with self._db.write() as tx:
            if not tx.exists("task", ref):
                return  # destroyed by its owner while running
            values: dict[str, Any] = {
                "status": status,
                "finished": now(),
                "allowed_operations": [],
                "current_operations": {},
            }
            if status == "success":
                values["progress"] = 1.0
                values["result"] = result
            if error is not None:
                values["error_info"] = error
            tx.set_fields("task", ref, values)

    def succeed(self, ref: str, result: str = "") -> None:
        """End a task run outside ``submit`` (an HTTP transfer) as a success with ``result``, the
        XML-RPC encoding of its value."""
        self._finish(ref, "success", result=result)

    def fail(self, ref: str, exc: FarsideError) -> None:
        """End a task run outside ``submit`` with the failure of ``exc`` (``cancelled`` for
        TASK_CANCELLED)."""
        status = "cancelled" if isinstance(exc, TaskCancelled) else "failure"
        self._finish(ref, status, error=exc.failure)

    def private_result(self, ref: str) -> str | None:
        """The result kept out of the task's record because it carries a session ref, if any."""
        with self._lock:
            return self._private.get(ref)

    def forget(self, ref: str) -> None:
        """Drop what is kept for a destroyed task."""
        with self._lock:
            self._private.pop(ref, None)
            self._cancel_requested.discard(ref)

    def cancel(self, ref: str) -> None:
        """Ask a pending task to stop; it ends as ``cancelled`` at its next check."""
        with self._db.write() as tx:
            tx.check("task", ref)
            status = tx.get_field("task", ref, "status")
            if status != "pending":
                raise OperationNotAllowed(f"task {ref} is {status}, so it cannot be cancelled")
            tx.set_fields("task", ref, {"status": "cancelling", "allowed_operations": []})
        with self._lock:
            self._cancel_requested.add(ref)
            listeners = list(self._cancel_listeners)
        for listener in listeners:
            listener(ref)

    def on_cancel(self, listener: Callable[[str], None]) -> None:
        """Have ``listener(task_ref)`` called when a task is asked to stop: work that waits (a VM's
        delay) wakes instead of seeing the request only at its next check."""
        with self._lock:
            self._cancel_listeners.append(listener)

    def check_cancelled(self, ref: str) -> None:
        """Raise TASK_CANCELLED if the task was asked to stop; long work calls this between steps."""
        with self._lock:
            if ref in self._cancel_requested:
                raise TaskCancelled(ref)

    def set_progress(self, ref: str, progress: float) -> None:
        with self._db.write() as tx:
            if tx.exists("task", ref):
                tx.set_fields("task", ref, {"progress": min(max(progress, 0.0), 1.0)})

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _encode(result_type: XType, value: Any) -> str:
    if result_type.spelling == "void":
        return ""
    return xmlrpc.encoder(result_type)(value)
