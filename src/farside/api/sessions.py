"""Sessions: login, logout, validation, idle expiry, and who may see which session.

A session is a row of the non-persistent ``session`` class (so ``session.get_record`` works) plus
an in-memory entry checked on every call, so validating a call costs no database write. Sessions
end with the server, as xapi's do; the SDK logs in again by itself.

A session's ref is the bearer credential of its user, so a caller sees only its own user's
sessions; a pool admin sees every session through reads (``session.get_all_records``), but events
never carry another user's session, whatever the subscriber's role.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import anyio
import anyio.to_thread

from farside.api.throttle import LoginThrottle, client_address
from farside.config import LOGIN_VERIFY_THREADS, LoginLimits
from farside.db import Database, users
from farside.errors import SessionAuthenticationFailed, SessionInvalid
from farside.model.roles import Role
from farside.model.types import now

# last_active is written back at most this often, so a busy session does not write on every call.
_ACTIVITY_WRITE_S = 60.0


@dataclass
class Caller:
    """Who is calling: the session and its user's role.

    ``database`` is set for a session from ``VDI.open_database``: its calls read that foreign
    pool's metadata instead of this pool's database, and may not write.
    """

    session: str
    user: str
    user_name: str
    role: Role
    last_active: float
    written_at: float
    database: Database | None = None


def may_read(caller: Caller, owner: object) -> bool:
    """Whether ``caller`` may read a session whose ``this_user`` is ``owner``."""
    return owner == caller.user or caller.role.allows(Role.POOL_ADMIN)


def may_hear(caller: Caller, owner: object) -> bool:
    """Whether an event about a session whose ``this_user`` is ``owner`` may reach ``caller``."""
    return owner == caller.user


class SessionStore:
    """The live sessions of one pool server."""

    def __init__(self, db: Database, host_ref: str, timeout_s: float, login_limits: LoginLimits) -> None:
        self._db = db
        self._host = host_ref
        self.timeout_s = timeout_s
        self._live: dict[str, Caller] = {}
        self._lock = threading.Lock()
        self.throttle = LoginThrottle(login_limits)
        # Made on first use: a limiter belongs to the running event loop.
        self._verifying: anyio.CapacityLimiter | None = None

    async def login(self, uname: str, password: str, originator: str) -> str:
        """A new session for ``uname``; SESSION_AUTHENTICATION_FAILED if the password is wrong or
        the attempt is throttled.

        A throttled attempt is refused before any password work. Passwords are checked on threads
        of their own (LOGIN_VERIFY_THREADS), so guessing never holds the threads other calls need.
        """
        address = client_address.get()
        self.throttle.check(uname, address)
        if self._verifying is None:
            self._verifying = anyio.CapacityLimiter(LOGIN_VERIFY_THREADS)
        found = None
        try:
            found = await anyio.to_thread.run_sync(self._verify, uname, password, limiter=self._verifying)
        finally:
            self.throttle.settle(uname, address, failed=found is None)
        if found is None:
            raise SessionAuthenticationFailed(uname, "Authentication failure")
        return await anyio.to_thread.run_sync(self._open, found[0], found[1], uname, originator)

    def _verify(self, uname: str, password: str) -> tuple[str, Role] | None:
        with self._db.read() as tx:
            return users.verify(tx, uname, password)

    def _open(self, user_ref: str, role: Role, uname: str, originator: str) -> str:
        stamp = now()
        with self._db.write() as tx:
            ref = tx.create(
                "session",
                {
                    "this_host": self._host,
                    "this_user": user_ref,
                    "last_active": stamp,
                    "validation_time": stamp,
                    "originator": originator,
                    "auth_user_name": uname,
                    "is_local_superuser": uname == "root",
                },
            )
        clock = time.monotonic()
        with self._lock:
            self._live[ref] = Caller(ref, user_ref, uname, role, clock, clock)
        return ref

    def login_database(self, owner: Caller, database: Database, originator: str) -> str:
        """A read-only session on a foreign pool's metadata, for ``owner`` (VDI.open_database)."""
        stamp = now()
        with self._db.write() as tx:
            ref = tx.create(
                "session",
                {
                    "this_host": self._host,
                    "this_user": owner.user,
                    "last_active": stamp,
                    "validation_time": stamp,
                    "originator": originator,
                    "auth_user_name": owner.user_name,
                    "parent": owner.session,
                    "other_config": {"farside-database": str(database.path)},
                },
            )
        clock = time.monotonic()
        with self._lock:
            self._live[ref] = Caller(ref, owner.user, owner.user_name, Role.READ_ONLY, clock, clock, database)
        return ref

    def logout(self, ref: str) -> None:
        with self._lock:
            caller = self._live.pop(ref, None)
        if caller is not None and caller.database is not None:
            caller.database.close()
        with self._db.write() as tx:
            if tx.exists("session", ref):
                for task in tx.find("task", "session", ref):
                    tx.set_fields("task", task, {"session": "OpaqueRef:NULL"})
                tx.destroy("session", ref)

    def validate(self, ref: object) -> Caller:
        """The caller behind ``ref``; SESSION_INVALID [ref] if it is unknown, ended or idle too long."""
        clock = time.monotonic()
        with self._lock:
            caller = self._live.get(ref) if isinstance(ref, str) else None
            if caller is not None and clock - caller.last_active > self.timeout_s:
                del self._live[caller.session]
                expired = caller
                caller = None
            else:
                expired = None
            if caller is not None:
                caller.last_active = clock
                stale = clock - caller.written_at > _ACTIVITY_WRITE_S
                if stale:
                    caller.written_at = clock
        if expired is not None:
            if expired.database is not None:
                expired.database.close()
            self._forget(expired.session)
        if caller is None:
            raise SessionInvalid(ref)
        if stale:
            with self._db.write() as tx:
                if tx.exists("session", caller.session):
                    tx.set_fields("session", caller.session, {"last_active": now()})
        return caller

    def expire_idle(self) -> int:
        """End every session idle for longer than the timeout; returns how many ended."""
        clock = time.monotonic()
        with self._lock:
            idle = [r for r, c in self._live.items() if clock - c.last_active > self.timeout_s]
            ended = [self._live.pop(ref) for ref in idle]
        for caller in ended:
            if caller.database is not None:
                caller.database.close()
            self._forget(caller.session)
        return len(idle)

    def _forget(self, ref: str) -> None:
        with self._db.write() as tx:
            if tx.exists("session", ref):
                tx.destroy("session", ref)
