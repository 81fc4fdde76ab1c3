"""xe's command line: connection switches, the command name, ``key=value`` parameters, ``--switches``.

``farside xe [-s HOST] [-p PORT] [-u USER] [-pw PASSWORD | -pwf FILE] COMMAND key=value ... [--minimal]``.
As with xe, the connection settings may also be given as ``server=``, ``port=``, ``username=``,
``password=`` and ``passwordfile=`` parameters, and any ``--name`` switch is the parameter
``name=true`` (``--force``, ``--minimal``, ``--multiple``, ``--all``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


class UsageError(ValueError):
    """The command line itself is wrong; the message says how."""


# Switches taking a value, and the connection setting each one names (xe's spellings).
_VALUE_SWITCHES = {
    "-s": "server",
    "-h": "server",
    "-p": "port",
    "-u": "username",
    "-pw": "password",
    "-pwf": "passwordfile",
    "--config": "config",
}
_CONNECTION_KEYS = {"server", "port", "username", "password", "passwordfile", "config"}
# Switches that change how Farside connects rather than what the command does.
_CONNECTION_FLAGS = {"nossl", "tls", "no-verify"}


@dataclass
class Invocation:
    """What the command line asks for.

    Args:
        command: the xe command name (``vm-list``), or None when only switches were given.
        params: the command's parameters, in order; a ``--name`` switch is ``("name", "true")``.
        connection: the connection settings given on the command line (``server``, ``port``,
            ``username``, ``password``, ``passwordfile``, ``config``).
        flags: connection switches given (``nossl``, ``tls``, ``no-verify``).
        help: ``--help`` or ``-help`` was given.
    """

    command: str | None = None
    params: list[tuple[str, str]] = field(default_factory=list)
    connection: dict[str, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    help: bool = False

    @property
    def minimal(self) -> bool:
        return any(k == "minimal" and v.lower() == "true" for k, v in self.params)


def parse(argv: Sequence[str]) -> Invocation:
    """Split an xe command line; raises UsageError for a switch without its value or an unknown one."""
    inv = Invocation()
    items = list(argv)
    i = 0
    while i < len(items):
        arg = items[i]
        i += 1
        if arg in ("--help", "-help"):
            inv.help = True
        elif arg in _VALUE_SWITCHES:
            if i >= len(items):
                raise UsageError(f"Switch {arg} requires a parameter")
            inv.connection[_VALUE_SWITCHES[arg]] = items[i]
            i += 1
        elif arg.startswith("--"):
            name, sep, value = arg[2:].partition("=")
            if name == "config" and sep:
                inv.connection["config"] = value
            elif name in _CONNECTION_FLAGS:
                inv.flags.add(name)
            elif not name:
                raise UsageError("Unknown switch: --")
            else:
                inv.params.append((name, value if sep else "true"))
        elif arg.startswith("-"):
            raise UsageError(f"Unknown switch: {arg}")
        elif "=" in arg:
            key, _, value = arg.partition("=")
            if key in _CONNECTION_KEYS:
                inv.connection[key] = value
            else:
                inv.params.append((key, value))
        elif inv.command is None:
            inv.command = arg
        elif inv.command == "help":
            inv.params.append((arg, ""))  # the command to explain
        else:
            raise UsageError(f"Syntax error: '{arg}' is neither a parameter (key=value) nor a switch")
    return inv
