"""What a committed transaction changed: the change feed's unit, for events and replication."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Operation = Literal["add", "mod", "del"]


@dataclass(frozen=True)
class Change:
    """One object added, modified or deleted; ``snapshot`` is the last record of a deleted one."""

    cls: str
    op: Operation
    ref: str
    persistent: bool
    snapshot: dict[str, Any] | None = None


@dataclass(frozen=True)
class Commit:
    """A committed write transaction: the generation it produced and what it changed."""

    generation: int
    changes: list[Change] = field(default_factory=list)
    # Who wrote it: "" for ordinary changes; "replication" for the replication machinery's own
    # status fields, which are not replicated themselves (they would write forever).
    origin: str = ""

    @property
    def persistent(self) -> bool:
        """Whether the commit changed state that is kept across restarts and replicated."""
        return any(c.persistent for c in self.changes)


class ChangeLog:
    """Collects one transaction's changes, merging repeats of the same object as xapi reports them."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], Change] = {}

    def note(self, change: Change) -> None:
        key = (change.cls, change.ref)
        before = self._ops.get(key)
        if before is None:
            self._ops[key] = change
        elif before.op == "add" and change.op == "del":
            del self._ops[key]  # born and gone inside one transaction: nobody saw it
        elif before.op == "add":
            self._ops[key] = Change(change.cls, "add", change.ref, before.persistent or change.persistent)
        else:
            persistent = before.persistent or change.persistent
            self._ops[key] = Change(change.cls, change.op, change.ref, persistent, change.snapshot)

    def changes(self) -> list[Change]:
        return list(self._ops.values())
