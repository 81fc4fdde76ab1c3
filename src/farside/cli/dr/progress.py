"""A run's steps as they happen (the engine's ``on_step`` events): a progress bar per step on a
terminal, one line per step otherwise."""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from farside.dr.context import StepEvent

# Steps whose events carry counts: their bars show items done out of the total.
COUNTED = ("recover", "start")


class StepDisplay:
    """Shows the steps of one stretch of a run (until it ends or pauses).

    Args:
        console: where to draw; bars only when it is a terminal.
        quiet: nothing at all (``--json``: stdout is for the report).
    """

    def __init__(self, console: Console, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.paused_at: str | None = None
        self._bars: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._began: dict[str, float] = {}

    def __enter__(self) -> StepDisplay:
        if not self.quiet and self.console.is_terminal:
            self._bars = Progress(
                TextColumn("{task.description:<9}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                console=self.console,
            )
            self._bars.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None

    def event(self, e: StepEvent) -> None:
        """One on_step event: {"step", "state"}, with "done" and "total" when state is "progress"."""
        step, state = str(e["step"]), str(e["state"])
        if state == "paused":
            self.paused_at = step
        if self.quiet:
            return
        if self._bars is None:
            self._line(step, state, e)
            return
        bars = self._bars
        if step not in self._tasks:
            self._tasks[step] = bars.add_task(step, total=1, status="")
        task = self._tasks[step]
        if state == "progress":
            bars.update(task, total=max(int(e["total"]), 1), completed=int(e["done"]), status="")
        elif state == "started":
            bars.update(task, status="running")
        elif state == "done":
            total = bars.tasks[bars.task_ids.index(task)].total or 1
            bars.update(task, completed=total, status="done")
            bars.stop_task(task)
        elif state in ("failed", "paused"):
            bars.update(task, status="FAILED" if state == "failed" else "paused")
            bars.stop_task(task)

    def _line(self, step: str, state: str, e: StepEvent) -> None:
        if state == "started":
            self._began[step] = time.monotonic()
            return
        if state == "progress":
            text = f"{step}: {e['done']}/{e['total']}"
        else:
            seconds = time.monotonic() - self._began.get(step, time.monotonic())
            text = f"{step}: {state}" + (f" ({seconds:.2f} s)" if state in ("done", "failed") else "")
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)
