"""The pool database: SQLite in WAL mode, reached only through this module.

One connection, guarded by a lock: every message's reads and writes are short, and no transaction
is ever held while waiting on a VM, a disk or the network (callers read, act, then write). Each
committed write transaction raises the generation count by one and is published, in commit order,
to the change feed's subscribers (events, serialisation caches, metadata replication).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from farside import __version__
from farside.db import schema
from farside.db.changes import Commit
from farside.db.transaction import Transaction
from farside.errors import DatabaseError
from farside.model import STORED

# A subscriber may return a barrier: write() calls it after the lock is released and before it
# returns, so the caller waits (for metadata to be durable) without holding up other writers.
Barrier = Callable[[], None]
Subscriber = Callable[[Commit], Barrier | None]
# Runs inside every write transaction, after its block and before the commit; it may write more
# (derived fields: allowed_operations), which commits with the rest.
PreCommit = Callable[[Transaction], None]
# Raised when the file is a database written by another program.
_MAGIC = "farside-pool-database"


class Database:
    """A pool database file. Use ``create`` for a new pool and ``open`` for an existing one."""

    def __init__(self, path: Path, conn: sqlite3.Connection) -> None:
        self.path = path
        self._conn = conn
        self._lock = threading.RLock()
        self._subscribers: list[Subscriber] = []
        self._pre_commit: list[PreCommit] = []
        self._modified: dict[tuple[str, str], int] = {}
        self._class_modified: dict[str, int] = {}
        self._generation = self._read_generation()

    @classmethod
    def create(cls, path: Path) -> Database:
        """A new, empty pool database at ``path``; refuses to overwrite an existing file."""
        if path.exists():
            raise DatabaseError(f"{path} already exists; choose an empty data directory")
        conn = _connect(path)
        with conn:
            schema.ensure(conn)
            conn.execute(f"INSERT INTO {schema.META_TABLE} VALUES ('magic', ?)", (_MAGIC,))
            conn.execute(f"INSERT INTO {schema.META_TABLE} VALUES ('generation', '0')")
            conn.execute(f"INSERT INTO {schema.META_TABLE} VALUES ('created_by', ?)", (__version__,))
        return cls(path, conn)

    @classmethod
    def in_memory(cls, label: str) -> Database:
        """A private, empty database in memory (a foreign pool's metadata opened for reading)."""
        conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        schema.ensure(conn)
        conn.execute(f"INSERT INTO {schema.META_TABLE} VALUES ('magic', ?)", (_MAGIC,))
        conn.execute(f"INSERT INTO {schema.META_TABLE} VALUES ('generation', '0')")
        return cls(Path(label), conn)

    @classmethod
    def open(cls, path: Path) -> Database:
        """The existing pool database at ``path``, upgraded to the current declarations."""
        if not path.is_file():
            raise DatabaseError(f"no pool database at {path}; run 'farside init' first")
        try:
            conn = _connect(path)
            row = conn.execute(f"SELECT value FROM {schema.META_TABLE} WHERE key = 'magic'").fetchone()
        except sqlite3.DatabaseError as exc:
            raise DatabaseError(f"{path} is not a Farside pool database ({exc})") from exc
        if row is None or row[0] != _MAGIC:
            conn.close()
            raise DatabaseError(f"{path} is not a Farside pool database")
        with conn:
            schema.ensure(conn)
        return cls(path, conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @property
    def generation(self) -> int:
        """The generation count of the last committed change."""
        return self._generation

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber`` with every commit, in order, right after it is durable."""
        self._subscribers.append(subscriber)

    def before_commit(self, hook: PreCommit) -> None:
        """Call ``hook`` with every write transaction that changed something, before it commits."""
        self._pre_commit.append(hook)

    def last_modified(self, cls: str, ref: str) -> int:
        """The generation at which this process last saw the object change (0: not since start)."""
        return self._modified.get((cls, ref), 0)

    def class_modified(self, cls: str) -> int:
        """The generation at which any object of ``cls`` last changed in this process."""
        return self._class_modified.get(cls, 0)

    @contextmanager
    def read(self) -> Iterator[Transaction]:
        """A consistent view: no write can commit while it is open."""
        with self._lock:
            yield Transaction(self._conn, writable=False)

    @contextmanager
    def write(self, origin: str = "") -> Iterator[Transaction]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        Subscribers see the commit while the lock is held (so in commit order); their barriers
        run after it is released.
        """
        barriers: list[Barrier] = []
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(self._conn, writable=True)
            try:
                yield tx
                if self._pre_commit and tx.log.changes():
                    for hook in self._pre_commit:
                        hook(tx)
                changes = tx.log.changes()
                generation = self._read_generation()
                if changes:
                    generation += 1
                    self._conn.execute(
                        f"UPDATE {schema.META_TABLE} SET value = ? WHERE key = 'generation'",
                        (str(generation),),
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._generation = generation
            if changes:
                commit = Commit(generation, changes, origin)
                for change in changes:
                    self._modified[(change.cls, change.ref)] = generation
                    self._class_modified[change.cls] = generation
                for subscriber in self._subscribers:
                    barrier = subscriber(commit)
                    if barrier is not None:
                        barriers.append(barrier)
        for barrier in barriers:
            barrier()

    def reset_runtime_state(self) -> None:
        """Forget what does not outlive a server: sessions, tasks, non-persistent fields.

        xapi never writes these to disk, so after a restart they are empty or at their defaults.
        """
        with self.write() as tx:
            for name, c in STORED.items():
                if not c.persistent:
                    for ref in tx.refs(name):
                        tx.destroy(name, ref)
                    continue
                volatile = {f.name: f.default for f in c.fields if not f.persist}
                if volatile:
                    tx.reset_fields(name, volatile)

    def _read_generation(self) -> int:
        sql = f"SELECT value FROM {schema.META_TABLE} WHERE key = 'generation'"
        row = self._conn.execute(sql).fetchone()
        return int(row[0]) if row else 0


def _connect(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves. synchronous=FULL: a change is on
    # disk before the call that made it returns.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn
