"""The event feed behind ``event.from``: recent commits, and waiting for the next ones.

Commits arrive from whichever thread wrote them; waiters are asyncio tasks on the server's loop,
woken through ``call_soon_threadsafe`` so a change reaches a waiting ``event.from`` at once.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from dataclasses import dataclass

from farside.db import Change, Commit
from farside.model.types import now


@dataclass(frozen=True)
class Event:
    generation: int
    timestamp: str
    change: Change


class EventHub:
    """Keeps the last ``history`` changes and wakes waiters when a commit lands."""

    def __init__(self, history: int, generation: int) -> None:
        self._events: deque[Event] = deque(maxlen=history)
        self._lock = threading.Lock()
        self._generation = generation
        # The oldest generation we can still answer from; tokens before it lost events.
        self._horizon = generation
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = set()

    @property
    def generation(self) -> int:
        return self._generation

    def publish(self, commit: Commit) -> None:
        """The database's change-feed subscriber (it never asks the committer to wait)."""
        stamp = now()
        with self._lock:
            for change in commit.changes:
                if len(self._events) == self._events.maxlen:
                    self._horizon = self._events[0].generation
                self._events.append(Event(commit.generation, stamp, change))
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
