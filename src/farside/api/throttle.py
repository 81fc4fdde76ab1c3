"""Login throttling: failed logins counted per client address and per user name (issue 13).

Once ``failures`` logins failed within ``window_s`` from one address, or for one user name, further
attempts are refused at once, before any password is checked, with SESSION_AUTHENTICATION_FAILED
[user, message, retry-after seconds], until the oldest of those failures leaves the window.
Attempts still being checked count against the budget too, so that a burst of concurrent guesses
cannot all pass before the first has failed (and queue ahead of an honest login).

A user name's throttle does not apply to a clean address (no failure in the window, no attempt being
checked): guessing root's
password from elsewhere never locks root out of a clean address. Distributed guessing is still
bounded: each address gets one failure for the name before the name's throttle applies to it too.
Successes clear nothing, so a valid account cannot be used to reset an address's count.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

from starlette.requests import Request

from farside.config import LOGIN_THROTTLE_ENTRIES, LoginLimits
from farside.errors import SessionAuthenticationFailed

log = logging.getLogger(__name__)

# The address of the client whose HTTP request is being answered: the XenAPI endpoints and the
# console's login form set it, and a login's failures count against it.
client_address: ContextVar[str] = ContextVar("client_address", default="")


def note_client(request: Request) -> None:
    """Record the request's client address for the logins it makes."""
    client_address.set(request.client.host if request.client is not None else "")


@dataclass
class _Failures:
    times: deque[float]
    pending: int = 0  # attempts let through and still being checked
    logged_until: float = field(default=-math.inf)  # one log line per throttled period


class LoginThrottle:
    """Thread-safe; ``clock`` is injectable so that tests need no sleeping."""

    def __init__(self, limits: LoginLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self._clock = clock
        self._lock = threading.Lock()
        self._by_address: OrderedDict[str, _Failures] = OrderedDict()
        self._by_user: OrderedDict[str, _Failures] = OrderedDict()

    def check(self, user: str, address: str) -> None:
        """Refuse the attempt (SESSION_AUTHENTICATION_FAILED with a retry-after) when throttled;
        otherwise count it as pending until ``settle``."""
        now = self._clock()
        with self._lock:
            refusal = self._refusal(self._by_address, address, now, f"from {address}")
            if refusal is None and not self._clean(address, now):
                refusal = self._refusal(self._by_user, user, now, f"for user {user!r}")
            if refusal is None:
                self._entry(self._by_address, address).pending += 1
                self._entry(self._by_user, user).pending += 1
        if refusal is not None:
            wait, what = refusal
            raise SessionAuthenticationFailed(user, f"Too many failed logins {what}; try again in {wait} s", str(wait))

    def settle(self, user: str, address: str, failed: bool) -> None:
        """The end of an attempt that ``check`` let through."""
        now = self._clock()
        with self._lock:
            for table, key in ((self._by_address, address), (self._by_user, user)):
                entry = self._entry(table, key)
                entry.pending = max(0, entry.pending - 1)
                if failed:
                    entry.times.append(now)

    def _entry(self, table: OrderedDict[str, _Failures], key: str) -> _Failures:
        entry = table.get(key)
        if entry is None:
            entry = table[key] = _Failures(deque(maxlen=self.limits.failures))
            while len(table) > LOGIN_THROTTLE_ENTRIES:
                table.popitem(last=False)
        table.move_to_end(key)
        return entry

    def _recent(self, entry: _Failures, now: float) -> list[float]:
        return [t for t in entry.times if t > now - self.limits.window_s]

    def _clean(self, address: str, now: float) -> bool:
        entry = self._by_address.get(address)
        return entry is None or (entry.pending == 0 and not self._recent(entry, now))

    def _refusal(self, table: OrderedDict[str, _Failures], key: str, now: float, what: str) -> tuple[int, str] | None:
        entry = table.get(key)
        if entry is None:
            return None
        recent = self._recent(entry, now)
        if len(recent) + entry.pending < self.limits.failures:
            return None
        # Full of failures: until the oldest leaves the window; else attempts being checked fill it.
        until = recent[0] + self.limits.window_s if recent else now + 1
        if entry.logged_until < now:
            entry.logged_until = until
            log.warning("throttling logins %s for %.0f s (%d failures)", what, until - now, len(recent))
        return max(1, math.ceil(until - now)), what
