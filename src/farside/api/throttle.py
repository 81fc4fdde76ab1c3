"""Login throttling: failed logins counted per client address and per user name (issue 13).

Once ``failures`` logins failed within ``window_s`` from one address, or for one user name, further
attempts are refused at once, before any password is checked, with SESSION_AUTHENTICATION_FAILED
[user, message, retry-after seconds], until the oldest of those failures leaves the window.

A user name's throttle does not apply to an address with no failure in the window: guessing root's
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
        """Refuse the attempt (SESSION_AUTHENTICATION_FAILED with a retry-after) when throttled."""
        now = self._clock()
        with self._lock:
            refusal = self._refusal(self._by_address, address, now, f"from {address}")
            if refusal is None and self._recent(self._by_address, address, now):
                refusal = self._refusal(self._by_user, user, now, f"for user {user!r}")
        if refusal is not None:
            wait, what = refusal
            raise SessionAuthenticationFailed(user, f"Too many failed logins {what}; try again in {wait} s", str(wait))

    def failed(self, user: str, address: str) -> None:
        now = self._clock()
        with self._lock:
            self._note(self._by_address, address, now)
            self._note(self._by_user, user, now)

    def _note(self, table: OrderedDict[str, _Failures], key: str, now: float) -> None:
        entry = table.get(key)
        if entry is None:
            entry = table[key] = _Failures(deque(maxlen=self.limits.failures))
            while len(table) > LOGIN_THROTTLE_ENTRIES:
                table.popitem(last=False)
        table.move_to_end(key)
        entry.times.append(now)

    def _recent(self, table: OrderedDict[str, _Failures], key: str, now: float) -> bool:
        entry = table.get(key)
        return entry is not None and bool(entry.times) and entry.times[-1] > now - self.limits.window_s

    def _refusal(self, table: OrderedDict[str, _Failures], key: str, now: float, what: str) -> tuple[int, str] | None:
        entry = table.get(key)
        if entry is None or len(entry.times) < self.limits.failures:
            return None
        until = entry.times[0] + self.limits.window_s
        if until <= now:
            return None
        if entry.logged_until < now:
            entry.logged_until = until
            log.warning("throttling logins %s until %.0f s from now (%d failures)", what, until - now, len(entry.times))
        return max(1, math.ceil(until - now)), what
