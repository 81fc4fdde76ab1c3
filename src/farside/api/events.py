"""The event feed behind ``event.from`` and ``event.next``: recent commits, waiting for the next
ones, and the subscriptions that select among them.

Commits arrive from whichever thread wrote them; waiters are asyncio tasks on the server's loop,
woken through ``call_soon_threadsafe`` so a change reaches a waiting ``event.from`` at once.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass

from farside.db import Change, Commit
from farside.model.types import now


@dataclass(frozen=True)
class Event:
    generation: int
    timestamp: str
    change: Change
    unix_time: float


class EventHub:
    """Keeps the last ``history`` changes and wakes waiters when a commit lands."""

    def __init__(self, history: int, generation: int) -> None:
        self._events: deque[Event] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._generation = generation
        # The oldest generation we can still answer from; tokens before it lost events.
        self._horizon = generation
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()
        self.registrations = Registrations()

    @property
    def generation(self) -> int:
        return self._generation

    def publish(self, commit: Commit) -> None:
        """The database's change-feed subscriber (it never asks the committer to wait)."""
        stamp, unix_time = now(), time.time()
        with self._lock:
            for change in commit.changes:
                if len(self._events) == self._events.maxlen:
                    self._horizon = self._events[0].generation
                self._events.append(Event(commit.generation, stamp, change, unix_time))
            self._generation = commit.generation
            waiters, self._waiters = self._waiters, set()
        for loop, future in waiters:
            loop.call_soon_threadsafe(_wake, future)

    def since(self, generation: int) -> list[Event] | None:
        """Events after ``generation`` in commit order; None if some were already dropped."""
        with self._lock:
            if generation < self._horizon:
                return None
            return [e for e in self._events if e.generation > generation]

    async def wait(self, generation: int, timeout: float) -> None:
        """Return when a commit after ``generation`` exists, or after ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        entry = (loop, future)
        with self._lock:
            if self._generation > generation:
                return
            self._waiters.add(entry)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters.discard(entry)


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


@dataclass(frozen=True)
class Subscription:
    """One entry of an event.from or event.register class list, as xapi parses it (xapi_event.ml).

    ``*`` is every class; ``cls`` alone is a class, compared in lower case; ``cls/ref`` is one
    object. A name no class has is accepted and matches nothing, as in xapi.
    """

    cls: str | None  # lower-cased class name; None for "*"
    ref: str | None = None

    @classmethod
    def parse(cls, text: str) -> Subscription:
        if text == "*":
            return cls(None)
        name, slash, ref = text.partition("/")
        return cls(name.lower(), ref if slash else None)

    def matches_class(self, cls: str) -> bool:
        return self.cls is None or self.cls == cls.lower()

    def matches(self, cls: str, ref: str) -> bool:
        return self.matches_class(cls) and (self.ref is None or self.ref == ref)


def subscriptions(names: list[str]) -> list[Subscription]:
    return [Subscription.parse(name) for name in names]


def selects(subs: list[Subscription], cls: str, ref: str) -> bool:
    """Whether any of ``subs`` selects the object."""
    return any(s.matches(cls, ref) for s in subs)


@dataclass
class Registration:
    """A session's ``event.register`` classes and the last generation ``event.next`` gave it."""

    subs: list[Subscription]
    last: int


class Registrations:
    """The ``event.register`` subscriptions of each session (xapi keeps one per session)."""

    def __init__(self) -> None:
        self._by_session: dict[str, Registration] = {}
        self._lock = threading.Lock()

    def get(self, session: str) -> Registration | None:
        with self._lock:
            return self._by_session.get(session)

    def obtain(self, session: str, generation: int) -> Registration:
        """The session's registration, made (from ``generation`` on) if it has none."""
        with self._lock:
            return self._by_session.setdefault(session, Registration([], generation))

    def forget_except(self, live: set[str]) -> None:
        """Drop the registrations of sessions that ended."""
        with self._lock:
            for session in [s for s in self._by_session if s not in live]:
                del self._by_session[session]
