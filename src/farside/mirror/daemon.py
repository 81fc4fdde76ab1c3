"""``farside mirror run``: continuous replication cycles until SIGTERM.

The daemon holds each served mirror's ``daemon.lock`` for its whole life, and the mirror lock only
while a cycle runs, so commands issued meanwhile run between cycles. A stop request (SIGTERM or
SIGINT) is noticed between files: a cycle whose journal is not committed yet is abandoned (the
target keeps the previous cycle), one already applying is finished; then the daemon exits 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from farside.errors import FarsideError
from farside.mirror import lock
from farside.mirror.errors import CycleStopped, MirrorBusy, MirrorState, MirrorUnknown
from farside.mirror.pair import Mirrors
from farside.mirror.state import State

log = logging.getLogger(__name__)
# How often a daemon serving all mirrors looks for new ones, and the longest it sleeps.
RESCAN_S = 5.0


class Daemon:
    """Runs the cycles of the named mirrors (all of the state directory's if none are named).

    Args:
        mirrors: the state directory.
        names: the mirrors to serve; empty for all, including ones created later.
        report: told of each cycle's outcome (a line of text), for the CLI.
    """

    def __init__(
        self,
        mirrors: Mirrors,
        names: list[str],
        report: Callable[[str], None] | None = None,
        notice: Callable[[str], None] | None = None,
    ) -> None:
        self.mirrors = mirrors
        self.names = names
        self.stop = threading.Event()
        self.report = report or (lambda line: log.info("%s", line))
        # Told once that this daemon waits as a standby (another holds every mirror).
        self.notice = notice or (lambda line: log.warning("%s", line))
        self._held: dict[str, int] = {}
        self._standby_told = False

    def request_stop(self, signum: int = 0, frame: FrameType | None = None) -> None:
        self.stop.set()

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self) -> None:
        for name in self.names:
            self.mirrors.load(name)  # MIRROR_UNKNOWN now, not later
            if not self._hold(name):
                pid = lock.holder(self.mirrors.state_dir.mirror_dir(name) / lock.DAEMON_LOCK)
                raise MirrorBusy(name, f"a daemon (pid {pid}) already runs it")
        try:
            while not self.stop.is_set():
                wait = self._round()
                self.stop.wait(wait)
        finally:
            for fd in self._held.values():
                os.close(fd)
            self._held.clear()

    def _standby(self, names: list[str]) -> str:
        holders = sorted({str(lock.holder(self.mirrors.state_dir.mirror_dir(n) / lock.DAEMON_LOCK)) for n in names})
        return (
            f"standby: every mirror in {self.mirrors.path} is served by another daemon (pid {', '.join(holders)}); "
            "this one waits and takes over any mirror that daemon lets go of"
        )

    def _hold(self, name: str) -> bool:
        if name in self._held:
            # A mirror deleted and created again has a new lock file.
            if lock.still_at(self._held[name], self.mirrors.state_dir.mirror_dir(name) / lock.DAEMON_LOCK):
                return True
            self._release(name)
        try:
            fd = lock.try_hold(self.mirrors.state_dir.mirror_dir(name) / lock.DAEMON_LOCK)
        except FileNotFoundError:
            return False  # deleted since this round listed it
        if fd is None:
            return False
        self._held[name] = fd
        return True

    def _round(self) -> float:
        """Run every cycle that is due; seconds until the next one."""
        if self.names:
            names = self.names
        else:
            existing = self.mirrors.names()
            for gone in set(self._held) - set(existing):
                self._release(gone)  # deleted: its lock file is gone with it
            names = [n for n in existing if self._hold(n)]
            if existing and not names and not self._standby_told:
                self._standby_told = True
                self.notice(self._standby(existing))
        wait = RESCAN_S
        for name in names:
            if self.stop.is_set():
                break
            try:
                record = self.mirrors.load(name)
            except MirrorUnknown:
                self._release(name)  # deleted meanwhile
                continue
            if record.state_enum not in (State.REPLICATING, State.RESYNCING):
                continue
            due = record.last_attempt + record.interval
            now = time.time()
            if due > now:
                wait = min(wait, due - now)
                continue
            wait = min(wait, record.interval)
            self._cycle(name)
        return max(wait, 0.0)

    def _cycle(self, name: str) -> None:
        try:
            result = self.mirrors.sync(name, stop=self.stop)
        except CycleStopped:
            self.report(f"{name}: stopping; the cycle in progress was abandoned, the target holds the last one")
        except MirrorState:
            pass  # paused or split since this round read the record: nothing to do, nothing wrong
        except FarsideError as exc:
            self.report(f"{name}: {exc.describe()}")
        else:
            s = result.stats
            lag = f", {len(result.lagging)} lagging" if result.lagging else ""
            self.report(f"{name}: cycle {s.number}: {s.files_changed} file(s) changed, {s.bytes_sent} bytes sent{lag}")
            for warning in result.warnings:
                self.report(f"{name}: warning: {warning}")

    def _release(self, name: str) -> None:
        fd = self._held.pop(name, None)
        if fd is not None:
            os.close(fd)
