"""How ``farside dr`` ends when it cannot do what was asked: one line, and an exit code.

0: the run succeeded. 1: the run (or the server) failed; the run can be resumed or cleaned up.
2: the command itself is wrong, or nothing could be done: a missing flag, an unreachable server,
a bad password, an unknown run. Nothing ever ends in a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class DrCliError(Exception):
    """A message for the operator (what is wrong and what to do) and the exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def usage(message: str) -> DrCliError:
    return DrCliError(message, EXIT_USAGE)


def failed(message: str) -> DrCliError:
    return DrCliError(message, EXIT_FAILED)
