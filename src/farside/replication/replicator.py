"""Keeps every active metadata VDI of this pool current: the database's change-feed subscriber.

On each commit that changed persistent state the replicator builds one delta (inside the commit,
so in commit order and from exactly the committed state), queues it to every target, and hands
the committer a barrier: before the API call returns, its change is durable on every healthy
target, or ``STALL_S`` has passed. Its own status writes (``metadata_latest``, the
``farside-*`` keys) are committed with origin "replication" and never replicated themselves.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from farside.db import Commit, Database
from farside.db.database import Barrier
from farside.model.types import now
from farside.replication.state import delta_payload, full_payload
from farside.replication.target import STALL_S, Target

log = logging.getLogger(__name__)

ORIGIN = "replication"
# xapi's limit (Xapi_globs.redo_log_max_instances).
MAX_TARGETS = 8
# The farside-* keys of a healthy target are refreshed at most this often.
STATUS_INTERVAL_S = 1.0


class Replicator:
    def __init__(self, db: Database, pool: str, half_size: int, key: bytes) -> None:
        self._db = db
        self._pool = pool
        self.half_size = half_size
        self._key = key  # the pool's DR key: every record written is authenticated under it
        self._targets: dict[str, Target] = {}
        self._lock = threading.Lock()
        self._last_status: dict[str, tuple[float, bool]] = {}
        self._pending: dict[str, tuple[bool, int, str]] = {}
        db.subscribe(self._on_commit)

    @property
    def targets(self) -> dict[str, Target]:
        with self._lock:
            return dict(self._targets)

    def active(self, vdi: str) -> bool:
        with self._lock:
            return vdi in self._targets

    def start(self, vdi: str, path: Path) -> None:
        """Write a full copy to ``path`` and keep it current. Raises OSError when it cannot."""
        with self._lock:
            if vdi in self._targets:
                return
            target = Target(vdi, path, self.half_size, self._key, self._full, self._status)
            # Registered before its full copy is taken, so every commit after the copy's
            # generation is queued to it (the copy drops what it already covers). Until the copy
            # is written the target is not current, and holds no committer up (Target.wait_for).
            self._targets[vdi] = target
        try:
            target.start_and_write_full()
        except BaseException:
            with self._lock:
                self._targets.pop(vdi, None)
            target.stop()
            raise

    def stop(self, vdi: str) -> None:
        with self._lock:
            target = self._targets.pop(vdi, None)
        if target is not None:
            target.stop()

    def close(self) -> None:
        for vdi in list(self.targets):
            self.stop(vdi)

    def _pool_identity(self) -> tuple[str, str]:
        with self._db.read() as tx:
            pool = tx.get_record("pool", self._pool)
        return pool["uuid"], pool["name_label"]

    def _full(self) -> tuple[int, dict[str, Any]]:
        with self._db.read() as tx:
            generation = self._db.generation
            pool = tx.get_record("pool", self._pool)
            return generation, full_payload(tx, pool["uuid"], pool["name_label"], generation, now())

    def _on_commit(self, commit: Commit) -> Barrier | None:
        if commit.origin == ORIGIN or not commit.persistent:
            return None
        targets = list(self.targets.values())
        if not targets:
            return None
        with self._db.read() as tx:  # re-entrant: we are inside the commit, the state is exact
            payload = delta_payload(tx, commit, now())
        if payload is None:
            return None
        for target in targets:
            target.enqueue(commit.generation, payload)

        def barrier() -> None:
            deadline = time.monotonic() + STALL_S
            for target in targets:
                target.wait_for(commit.generation, deadline)

        return barrier

    def _flush(self, vdi: str) -> None:
        with self._lock:
            pending = self._pending.pop(vdi, None)
            if pending is not None:
                self._last_status.pop(vdi, None)
        if pending is not None and self.active(vdi):
            self._status(vdi, *pending)

    def _status(self, vdi: str, healthy: bool, generation: int, written: str) -> None:
        """Show a target's state on its VDI: metadata_latest and the farside-* sm_config keys."""
        clock = time.monotonic()
        with self._lock:
            last = self._last_status.get(vdi)
            if last is not None and last[1] == healthy and clock - last[0] < STATUS_INTERVAL_S:
                # Too soon: show it when the interval ends, so a burst's last write is shown too.
                if vdi not in self._pending:
                    timer = threading.Timer(STATUS_INTERVAL_S, self._flush, (vdi,))
                    timer.daemon = True
                    timer.start()
                self._pending[vdi] = (healthy, generation, written)
                return
            self._last_status[vdi] = (clock, healthy)
            self._pending.pop(vdi, None)
        try:
            with self._db.write(origin=ORIGIN) as tx:
                if not tx.exists("VDI", vdi):
                    return
                sm_config = tx.get_field("VDI", vdi, "sm_config")
                pool_name = tx.get_field("pool", self._pool, "name_label")
                sm_config.update(
                    {
                        "farside-generation": str(generation),
                        "farside-written": written,
                        "farside-pool-name": pool_name,
                    }
                )
                tx.set_fields("VDI", vdi, {"metadata_latest": healthy, "sm_config": sm_config})
        except Exception:
            log.exception("could not record the state of metadata VDI %s", vdi)
