"""The mirror's errors, each with a XenAPI-style code and the parameters that name what went wrong."""

from __future__ import annotations

from farside.errors import ClientError, StateError


class MirrorUnknown(ClientError):
    """``[name, state dir]``: no mirror of that name in the state directory."""

    code = "MIRROR_UNKNOWN"

    def describe(self) -> str:
        name, state_dir = self.params
        return f"{self.code}: no mirror {name!r} in {state_dir}; see 'farside mirror status --state-dir {state_dir}'"


class MirrorExists(StateError):
    """``[name, state dir]``: a mirror of that name is already in the state directory."""

    code = "MIRROR_EXISTS"

    def describe(self) -> str:
        name, state_dir = self.params
        return (
            f"{self.code}: a mirror {name!r} already exists in {state_dir}; choose another name, "
            f"or 'farside mirror delete {name}' first"
        )


class MirrorInvalid(ClientError):
    """``[message]``: a bad name, path or setting."""

    code = "MIRROR_INVALID"

    def describe(self) -> str:
        return f"{self.code}: {self.params[0]}"


class MirrorState(StateError):
    """``[name, state, message]``: the operation is not allowed in the mirror's state."""

    code = "MIRROR_STATE"

    def describe(self) -> str:
        name, state, message = self.params
        return f"{self.code}: mirror {name!r} is {state}: {message}"


class MirrorBusy(StateError):
    """``[name, message]``: another process holds the mirror (a daemon already runs it)."""

    code = "MIRROR_BUSY"

    def describe(self) -> str:
        return f"{self.code}: mirror {self.params[0]!r}: {self.params[1]}"


class MirrorIoError(StateError):
    """``[name, message]``: a cycle failed reading the source or writing the target."""

    code = "MIRROR_IO_ERROR"

    def describe(self) -> str:
        return f"{self.code}: mirror {self.params[0]!r}: {self.params[1]}"


class MirrorTargetFull(MirrorIoError):
    """``[name, message]``: the target's filesystem is full; the target still holds the last cycle."""

    code = "MIRROR_TARGET_FULL"


class MirrorPreempted(StateError):
    """``[name, what the target holds]``: a command (split, pause, delete) took the mirror over a
    cycle in progress."""

    code = "MIRROR_CYCLE_ABANDONED"

    def describe(self) -> str:
        name, held = self.params
        return (
            f"{self.code}: mirror {name!r}: the cycle was abandoned because a split, pause or delete asked for the "
            f"mirror; the target still holds {held}"
        )


class CycleStopped(Exception):
    """A cycle gave up before its journal was committed: the daemon is stopping, or a command
    preempted it (see ``lock.Preemption``)."""
