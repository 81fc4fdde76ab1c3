"""What a message handler is given: the pool's services and who is calling."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from farside.api.events import EventHub
from farside.api.messages import MessageService
from farside.api.metadata import MetadataService
from farside.api.monitor import MonitorService
from farside.api.records import RecordCache
from farside.api.schedules import Scheduler
from farside.api.sessions import Caller, SessionStore
from farside.api.snapshots import SnapshotService
from farside.api.storage import StorageService
from farside.api.tasks import TaskManager
from farside.api.vms import VMService
from farside.config import ServerConfig
from farside.db import Database


@dataclass
class Services:
    """The long-lived parts of one pool server, wired together at start-up."""

    config: ServerConfig
    db: Database
    sessions: SessionStore
    events: EventHub
    tasks: TaskManager
    records: RecordCache
    storage: StorageService
    vms: VMService
    metadata: MetadataService
    messages: MessageService
    monitor: MonitorService
    pool: str
    host: str
    snapshots: SnapshotService
    schedules: Scheduler
    # Set once the server's loop runs: how code on worker threads makes XenAPI calls in-process.
    loop: asyncio.AbstractEventLoop | None = None
    dispatch: Callable[[str, list[Any]], Coroutine[Any, Any, Any]] | None = None


@dataclass
class Context:
    """One call: the services, the caller, and the task when the call runs as ``Async``."""

    services: Services
    caller: Caller
    task: str | None = None

    @property
    def db(self) -> Database:
        """The database this call reads: the pool's, or a foreign one for an open_database session."""
        return self.caller.database or self.services.db

    @property
    def records(self) -> RecordCache:
        if self.caller.database is None:
            return self.services.records
        return RecordCache(self.caller.database)

    def check_cancelled(self) -> None:
        """Stop with TASK_CANCELLED if this call runs as a task that was cancelled."""
        if self.task is not None:
            self.services.tasks.check_cancelled(self.task)

    def progress(self, fraction: float) -> None:
        """Report progress when running as a task; a no-op for a synchronous call."""
        if self.task is not None:
            self.services.tasks.set_progress(self.task, fraction)
